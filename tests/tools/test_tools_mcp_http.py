"""`som mcp --http` driven by the MCP SDK's own client over streamable HTTP: tools, a real photo
marked by MobileSAM, regions whose RLE masks are the drawn marks, `ask` against a local
OpenAI-protocol server, every error case, two clients at once, and `som.tools.call` agreeing
with the MCP tools.

Real segmentations are few and shared: one session marks coffee.jpg once for the module.
"""

from __future__ import annotations

import base64
import io

import anyio
import numpy as np
import pytest
from tools_helpers import (
    API_KEY, b64, check_drawn, check_highlight, decode_masks, error_text, http_session, png_of, run_async,
)
from openai_double import Step

import som.tools
from som.imageio import load_image
from som.tools import ResultStore, Roots, ToolContext, ToolError

pytest.importorskip("mcp", reason="som mcp needs the MCP SDK: pip install 'som[mcp]'")
pytestmark = pytest.mark.slow
SLIC = {"segmenter": "superpixel", "granularity": "wholes", "mark_types": ["mark", "box"], "label_mode": "alphabet"}


@pytest.fixture(scope="module")
def coffee(http_server, photo_root, llm_server):
    """One HTTP session: list the tools, mark coffee.jpg (MobileSAM, defaults), fetch its regions,
    ask about it twice. Returns every reply for the tests below to read."""
    llm_server.enqueue(Step(text="The saucer is [3]; the cup sits on it, see [2] and [3]."))

    async def session():
        async with http_session(http_server.url) as s:
            out = {"tools": await s.list_tools()}
            out["mark"] = await s.call_tool("mark_image", {"path": "coffee.jpg"})
            rid = out["mark"].structured_content["result_id"]
            out["all"] = await s.call_tool("regions", {"result_id": rid})
            out["two"] = await s.call_tool("regions", {"result_id": rid, "labels": ["2"], "highlight": True})
            out["boxes"] = await s.call_tool("regions", {"result_id": rid, "labels": ["3", "1"], "masks": False})
            n_before = len(llm_server.requests)
            question = {"question": "where is the saucer?", "result_id": rid, "template": "refer"}
            out["ask"] = await s.call_tool("ask", question)
            out["llm_requests"] = llm_server.requests[n_before:]
            # the same photo with the other settings a call can choose, for the comparison with call()
            out["slic"] = await s.call_tool("mark_image", {"path": "coffee.jpg", **SLIC})
            slic = out["slic"].structured_content["result_id"]
            picked = {"result_id": slic, "labels": ["c", "a"], "highlight": True}
            out["slic_regions"] = await s.call_tool("regions", picked)
            return out

    return run_async(session)


def test_lists_the_image_tools_with_the_same_schemas_as_function_calling(coffee):
    tools = {t.name: t for t in coffee["tools"].tools}
    assert list(tools) == list(som.tools.TOOL_NAMES)
    for spec in som.tools.openai_tools():
        fn = spec["function"]
        assert tools[fn["name"]].input_schema == fn["parameters"]
        assert tools[fn["name"]].description == fn["description"]


def test_mark_image_returns_the_marked_photo_and_the_marks(coffee, photo_root):
    res = coffee["mark"]
    assert not res.is_error
    data = res.structured_content
    assert [c.type for c in res.content] == ["text", "image"]
    import json

    assert json.loads(res.content[0].text) == data  # the same marks for clients that read only text
    assert data["result_id"] == 1 and data["segmenter"] == "mobile-sam" and data["granularity"] == "nested"
    assert data["image"] == {"file": "coffee.jpg", "width": 600, "height": 400}
    marked = png_of(res.content[1])
    assert marked.shape == (400, 600, 3)
    source = load_image(photo_root / "coffee.jpg")
    assert not np.array_equal(marked, source)
    assert data["count"] == len(data["marks"]) >= 2
    assert [m["label"] for m in data["marks"]] == [str(k) for k in range(1, data["count"] + 1)]
    for m in data["marks"]:
        assert "rle" not in m and m["area"] > 0 and len(m["xyxy"]) == 4


def test_regions_masks_decode_to_the_drawn_marks(coffee, photo_root):
    marks = coffee["all"].structured_content["marks"]
    brief = coffee["mark"].structured_content["marks"]
    assert [{k: v for k, v in m.items() if k != "rle"} for m in marks] == brief
    source = load_image(photo_root / "coffee.jpg")
    check_drawn(source, png_of(coffee["mark"].content[1]), marks)


def test_regions_by_label_with_highlight_and_without_masks(coffee, photo_root):
    all_marks = {m["label"]: m for m in coffee["all"].structured_content["marks"]}
    two = coffee["two"]
    assert [m["label"] for m in two.structured_content["marks"]] == ["2"]
    assert two.structured_content["marks"][0] == all_marks["2"]
    assert [c.type for c in two.content] == ["text", "image"]
    source = load_image(photo_root / "coffee.jpg")
    check_highlight(source, png_of(two.content[1]), decode_masks([all_marks["2"]], source.shape[:2]))
    boxes = coffee["boxes"].structured_content["marks"]
    assert [m["label"] for m in boxes] == ["3", "1"]  # in the order asked
    assert all("rle" not in m for m in boxes) and len(coffee["boxes"].content) == 1


def test_ask_about_an_earlier_result_returns_the_answer_and_the_marks_it_names(coffee):
    res = coffee["ask"]
    assert not res.is_error, res.content[0].text
    data = res.structured_content
    assert data["answer"] == "The saucer is [3]; the cup sits on it, see [2] and [3]."
    assert data["labels"] == ["3", "2"] and data["template"] == "refer" and data["result_id"] == 1
    brief = {m["label"]: m for m in coffee["mark"].structured_content["marks"]}
    assert data["marks"] == [brief["3"], brief["2"]]
    assert [c.type for c in res.content] == ["text", "image"]  # the highlight
    (request,) = coffee["llm_requests"]  # the marked picture went to the model, as PNG
    assert request.images[0] == ("PNG", (400, 600)) and "where is the saucer?" in request.all_text
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def _tiny_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


ERRORS = [  # (tool, arguments, part of the one-line reason); {rid}: a result of the session
    ("mark_image", {"path": "notes.txt"}, "notes.txt: not an image"),
    ("mark_image", {"image_base64": b64(b"GIF89 but not really")}, "image_base64: not an image"),
    ("mark_image", {"image_base64": "data:image/png;base64,@@@"}, "image_base64 is not valid base64"),
    ("mark_image", {"image_base64": "TRUNCATED"}, "truncated"),
    ("mark_image", {"image_base64": b64(_tiny_png())}, "marks need at least 16x16"),
    ("mark_image", {"image_base64": ""}, "image_base64: file is empty"),
    ("mark_image", {"path": "/etc/hostname"}, "outside the allowed roots"),
    ("mark_image", {"path": "../outside/secret.jpg"}, "outside the allowed roots"),
    ("mark_image", {"path": "escape.jpg"}, "outside the allowed roots"),  # a symbolic link leading out
    ("mark_image", {"path": "missing.jpg"}, "no such file"),
    ("mark_image", {"path": "photos"}, "is not a file"),
    ("mark_image", {}, "give the image as path"),
    ("mark_image", {"path": "coffee.jpg", "image_base64": "aGk="}, "not both"),
    ("mark_image", {"path": "coffee.jpg", "granularity": "huge"}, "granularity must be one of"),
    ("mark_image", {"path": "coffee.jpg", "colour": "red"}, "unknown argument(s) colour"),
    ("regions", {"result_id": "{rid}", "labels": ["2", "999"]}, "unknown label(s) 999 in result {rid}"),
    ("regions", {"result_id": 99}, "unknown result id 99: this connection has results {rid}"),
    ("regions", {"result_id": "one"}, "result_id must be an integer"),
    ("regions", {}, "missing required argument(s) result_id"),
    ("ask", {"question": "q", "result_id": 99}, "unknown result id 99"),
    ("ask", {"question": "q", "result_id": "{rid}", "path": "coffee.jpg"}, "not both"),
    ("ask", {"question": "q", "path": "/etc/passwd"}, "outside the allowed roots"),
    ("screenshot", {}, "unknown tool 'screenshot'"),
]


def test_every_error_is_a_one_line_tool_error_and_the_server_keeps_serving(http_server, photo_root):
    truncated = (photo_root / "coffee.jpg").read_bytes()[:3000]

    async def session():
        async with http_session(http_server.url) as s:
            ok = await s.call_tool("mark_image", {"path": "photos/cat.jpg", "segmenter": "superpixel"})
            rid = ok.structured_content["result_id"]
            seen = []
            for tool, args, reason in ERRORS:
                args = {k: (rid if v == "{rid}" else v) for k, v in args.items()}
                if args.get("image_base64") == "TRUNCATED":
                    args["image_base64"] = b64(truncated)
                seen.append((reason.replace("{rid}", str(rid)), await s.call_tool(tool, args)))
            after = await s.call_tool("regions", {"result_id": rid, "labels": ["1"]})
            return rid, seen, after

    rid, seen, after = run_async(session)
    for reason, res in seen:
        text = error_text(res)
        assert reason in text, (reason, text)
        assert "Traceback" not in text
    assert not after.is_error and after.structured_content["result_id"] == rid
    assert http_server.proc.poll() is None


def test_ask_a_new_image_stores_its_marks_and_llm_failures_are_tool_errors(http_server, llm_server):
    llm_server.enqueue(Step(text="A cat: [1]."), Step(status=400, message="this model cannot see images"))

    async def session():
        async with http_session(http_server.url) as s:
            asked = await s.call_tool("ask", {"question": "what is this?", "path": "photos/cat.jpg",
                                              "segmenter": "superpixel", "highlight": False})  # fmt: skip
            rid = asked.structured_content["result_id"]
            regions = await s.call_tool("regions", {"result_id": rid, "labels": ["1"]})
            failed = await s.call_tool("ask", {"question": "and now?", "result_id": rid})
            return asked, regions, failed

    asked, regions, failed = run_async(session)
    assert asked.structured_content["labels"] == ["1"] and len(asked.content) == 1  # no highlight asked
    assert asked.structured_content["image"]["file"] == "cat.jpg"
    assert asked.structured_content["segmenter"] == "superpixel"
    assert regions.structured_content["marks"][0]["label"] == "1" and "rle" in regions.structured_content["marks"][0]
    text = error_text(failed)
    assert text.startswith("ask: ") and "refused the request (400): this model cannot see images" in text


def test_two_clients_at_once_keep_their_own_results(http_server, photo_root):
    async def client(name: str, segmenter: str, out: dict):
        async with http_session(http_server.url) as s:
            marked = await s.call_tool("mark_image", {"path": name, "segmenter": segmenter})
            rid = marked.structured_content["result_id"]
            regions = await s.call_tool("regions", {"result_id": rid})
            other = await s.call_tool("regions", {"result_id": rid + 1})
            out[name] = (marked, regions, other)

    async def both():
        out: dict = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(client, "astronaut.jpg", "superpixel", out)
            tg.start_soon(client, "chelsea.jpg", "superpixel", out)
        return out

    out = run_async(both)
    for name, (w, h) in [("astronaut.jpg", (512, 512)), ("chelsea.jpg", (451, 300))]:
        marked, regions, other = out[name]
        assert not marked.is_error, marked.content[0].text
        data = marked.structured_content
        assert data["result_id"] == 1  # each connection counts its own results
        assert data["image"] == {"file": name, "width": w, "height": h}
        assert regions.structured_content["image"]["file"] == name
        assert "unknown result id 2: this connection has results 1" in error_text(other)
        check_drawn(load_image(photo_root / name), png_of(marked.content[1]), regions.structured_content["marks"])


def test_call_gives_the_same_results_as_the_mcp_tools(coffee, photo_root):
    ctx = ToolContext(Roots([photo_root]), ResultStore())
    ctx.store.add(*_placeholder(ctx))  # so that IDs line up with the session's (result 2)
    marked = som.tools.call("mark_image", {"path": "coffee.jpg", **SLIC}, context=ctx)
    assert marked.data == coffee["slic"].structured_content
    assert marked.data["result_id"] == 2 and marked.data["marks"][0]["label"] == "a"
    assert np.array_equal(png_of_bytes(marked.images[0]), png_of(coffee["slic"].content[1]))
    picked = som.tools.call("regions", {"result_id": 2, "labels": ["C", "a"], "highlight": True}, context=ctx)
    assert picked.data == coffee["slic_regions"].structured_content
    assert np.array_equal(png_of_bytes(picked.images[0]), png_of(coffee["slic_regions"].content[1]))
    assert [m["label"] for m in picked.data["marks"]] == ["c", "a"]
    with pytest.raises(ToolError) as e:
        som.tools.call("regions", {"result_id": 2, "labels": ["c", "zz"]}, context=ctx)
    assert str(e.value) == "unknown label(s) zz in result 2: its marks are a to " + marked.data["marks"][-1]["label"]


def _placeholder(ctx):
    """A real result to take ID 1: chelsea with one hand-made region (no model)."""
    import skimage.data

    from som.marksfile import regions_to_dict

    image = skimage.data.chelsea()
    masks = np.zeros((1, *image.shape[:2]), bool)
    masks[0, 50:150, 50:150] = True
    result = som.mark_regions(image, masks)
    return result, regions_to_dict(result.regions, result.settings, "chelsea")


def png_of_bytes(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_call_ask_scrubs_a_rejected_key(photo_root, llm_server, monkeypatch):
    wrong = "sk-test-WRONG-key-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("SOM_MODEL", "test-model")
    ctx = ToolContext(Roots([photo_root]), ResultStore())
    with pytest.raises(ToolError) as e:
        som.tools.call("ask", {"question": "q", "path": "chelsea.jpg", "segmenter": "superpixel"}, context=ctx)
    assert "rejected the API key (401)" in str(e.value) and wrong not in str(e.value)
    assert base64.b64encode(wrong.encode()).decode() not in str(e.value)


def test_the_sdks_high_level_client_gets_a_session_and_a_stateless_client_is_told_why(http_server):
    from mcp import Client

    async def run():
        async with Client(http_server.url) as auto:  # probes server/discover first, then falls back
            version = auto.protocol_version
            marked = await auto.call_tool("mark_image", {"path": "chelsea.jpg", "segmenter": "superpixel"})
            again = await auto.call_tool("regions", {"result_id": marked.structured_content["result_id"]})
        async with Client(http_server.url, mode="2026-07-28") as stateless:  # per-request envelope, no session
            lone = await stateless.call_tool("mark_image", {"path": "chelsea.jpg", "segmenter": "superpixel"})
            later = await stateless.call_tool("regions", {"result_id": 1})
        return version, marked, again, lone, later

    version, marked, again, lone, later = run_async(run)
    assert version == "2025-11-25"  # the handshake: this server keeps results per session
    assert not again.is_error and again.structured_content["image"]["file"] == "chelsea.jpg"
    assert not lone.is_error and lone.structured_content["count"] == marked.structured_content["count"]
    assert "carries no MCP session" in error_text(later)
