"""som.tools without a server: schemas as JSON Schema, argument checks, the result store, allowed roots."""

from __future__ import annotations

import os

import jsonschema
import numpy as np
import pytest

import som.tools
from som.tools import ResultStore, Roots, ToolError
from som.tools.impl import check_arguments
from som.tools.store import StoreRegistry

VALID = [
    ("mark_image", {"path": "coffee.jpg"}),
    ("mark_image", {"image_base64": "aGVsbG8=", "segmenter": "superpixel", "granularity": "wholes",
                    "mark_types": ["mark", "box"], "label_mode": "alphabet"}),
    ("mark_image", {"path": "a.jpg", "segmenter": "superpixel", "classes": ["mug", "laptop"], "names": True}),
    ("regions", {"result_id": 3, "labels": ["1", "7"], "masks": False, "highlight": True}),
    ("ask", {"question": "which mark is the cup?", "result_id": 1, "template": "refer"}),
    ("ask", {"question": "list them", "path": "a.jpg", "granularity": "parts", "highlight": False}),
    ("ask", {"result_id": 2, "template": "list"}),
    ("screen_marks", {"path": "shot.png", "kinds": ["text", "control"], "label_mode": "alphabet"}),
    ("open_page", {"url": "http://127.0.0.1:8000/", "width": 900, "height": 600, "full_page": True, "kinds": ["button"]}),
    ("page_marks", {}),
    ("page_marks", {"page_id": 2, "full_page": False}),
    ("click_mark", {"label": "7"}),
    ("type_mark", {"page_id": 1, "label": "3", "text": "", "submit": True}),
    ("select_mark", {"label": "3", "option": "Large"}),
    ("scroll", {"direction": "up", "amount": 1.5}),
    ("close_page", {"page_id": 1}),
]  # fmt: skip
INVALID = [  # (tool, arguments, what the one-line reason says)
    ("mark_image", {"path": ["a.jpg"]}, "path must be a string"),
    ("mark_image", {"path": "a.jpg", "granularity": "huge"}, "granularity must be one of"),
    ("mark_image", {"path": "a.jpg", "segmenter": "dino"}, "segmenter must be one of"),
    ("mark_image", {"path": "a.jpg", "mark_types": ["mark", "glow"]}, "mark_types[1] must be one of"),
    ("mark_image", {"path": "a.jpg", "mark_types": "mark"}, "mark_types must be an array"),
    ("mark_image", {"path": "a.jpg", "colour": "red"}, "unknown argument(s) colour"),
    ("regions", {}, "missing required argument(s) result_id"),
    ("regions", {"result_id": "one"}, "result_id must be an integer"),
    ("regions", {"result_id": 0}, "result_id must be >= 1"),
    ("regions", {"result_id": True}, "result_id must be an integer"),
    ("regions", {"result_id": 1, "labels": [None]}, "labels[0] must be a string"),
    ("regions", {"result_id": "3a"}, "result_id must be an integer"),
    ("regions", {"result_id": 1, "highlight": "yes"}, "highlight must be a boolean"),
    ("ask", {"question": ["q"]}, "question must be a string"),
    ("ask", {"question": "q", "template": "match"}, "template must be one of"),
    ("screen_marks", {"path": "a.png", "kinds": ["button"]}, "kinds[0] must be one of"),
    ("open_page", {}, "missing required argument(s) url"),
    ("open_page", {"url": "http://x/", "width": 10}, "width must be >= 200"),
    ("open_page", {"url": "http://x/", "kinds": ["vision"]}, "kinds[0] must be one of"),
    ("click_mark", {}, "missing required argument(s) label"),
    ("click_mark", {"label": "1", "page_id": 0}, "page_id must be >= 1"),
    ("type_mark", {"label": "1"}, "missing required argument(s) text"),
    ("select_mark", {"label": "1", "option": ["a"]}, "option must be a string"),
    ("scroll", {"direction": "sideways"}, "direction must be one of"),
    ("scroll", {"amount": 0}, "amount must be >= 0.05"),
    ("scroll", {"amount": "far"}, "amount must be a number"),
    ("close_page", {}, "missing required argument(s) page_id"),
]


def _validator(tool: str) -> jsonschema.Draft202012Validator:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in som.tools.openai_tools()}
    return jsonschema.Draft202012Validator(schemas[tool])


def test_openai_tools_are_function_schemas_that_validate_as_json_schema():
    tools = som.tools.openai_tools()
    assert [t["function"]["name"] for t in tools] == list(som.tools.TOOL_NAMES) == [
        "mark_image", "regions", "ask", "screen_marks",
        "open_page", "page_marks", "click_mark", "type_mark", "select_mark", "scroll", "close_page",
    ]  # fmt: skip
    for t in tools:
        assert t["type"] == "function" and set(t["function"]) == {"name", "description", "parameters"}
        params = t["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(params)
        jsonschema.Draft7Validator.check_schema(params)
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        for name, prop in params["properties"].items():
            assert prop.get("description"), f"{t['function']['name']}.{name} has no description"
            if "default" in prop:  # defaults are valid values
                jsonschema.validate(prop["default"], prop)
    # callers may edit what they get without changing the next answer
    tools[0]["function"]["parameters"]["properties"].clear()
    assert som.tools.openai_tools()[0]["function"]["parameters"]["properties"]


@pytest.mark.parametrize("tool, arguments", VALID)
def test_valid_arguments_pass_json_schema_and_the_tools_checks(tool, arguments):
    _validator(tool).validate(arguments)
    assert check_arguments(tool, arguments) == arguments


@pytest.mark.parametrize("tool, arguments, reason", INVALID)
def test_invalid_arguments_fail_json_schema_and_the_tools_checks_alike(tool, arguments, reason):
    assert list(_validator(tool).iter_errors(arguments)), "JSON Schema accepted it"
    with pytest.raises(ToolError) as e:
        check_arguments(tool, arguments)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_what_a_model_plainly_means_is_accepted():
    assert check_arguments("mark_image", {"path": "a.jpg", "granularity": 3})["granularity"] == "3"
    assert check_arguments("regions", {"result_id": "2", "labels": [7, "b"]}) == {"result_id": 2, "labels": ["7", "b"]}


def test_unknown_tool_and_non_object_arguments():
    with pytest.raises(ToolError, match="unknown tool 'screenshot'; the tools are mark_image, regions, ask, screen_marks, "):
        som.tools.call("screenshot", {})
    with pytest.raises(ToolError, match="arguments must be a JSON object"):
        som.tools.call("regions", ["result_id", 1])


# ---------------------------------------------------------------- store


def _result(h: int = 300, w: int = 451, n: int = 3):
    """A real MarkResult: scikit-image's chelsea with n hand-made rectangular regions."""
    import skimage.data

    import som
    from som.marksfile import regions_to_dict

    image = skimage.data.chelsea()[:h, :w]
    masks = np.zeros((n, h, w), bool)
    for k in range(n):
        masks[k, 10 + 20 * k : 30 + 20 * k, 10:60] = True
    result = som.mark_regions(image, masks)
    return result, regions_to_dict(result.regions, result.settings, "chelsea")


def test_store_gives_ids_in_order_and_drops_the_oldest_beyond_the_count_cap():
    store = ResultStore(max_results=2)
    result, doc = _result()
    ids = [store.add(result, doc).id for _ in range(3)]
    assert ids == [1, 2, 3] and store.ids() == [2, 3]
    assert store.get(3).result is result
    with pytest.raises(KeyError, match="result 1 was dropped to stay within this connection's cap"):
        store.get(1)
    with pytest.raises(KeyError, match="unknown result id 4: this connection has results 2, 3"):
        store.get(4)
    with pytest.raises(KeyError, match=r"no results yet \(call mark_image first\)"):
        ResultStore().get(1)


def test_store_byte_cap_counts_pictures_and_masks_and_keeps_the_newest():
    result, doc = _result()
    size = ResultStore().add(result, doc).nbytes
    assert size >= 2 * result.image.nbytes  # marked picture and source
    store = ResultStore(max_bytes=int(2.5 * size))
    for _ in range(4):
        store.add(result, doc)
    assert store.ids() == [3, 4] and store.nbytes <= 2.5 * size
    tiny = ResultStore(max_bytes=1)  # a result over the cap alone is still kept until the next one
    assert tiny.add(result, doc).id == 1 and tiny.ids() == [1]
    tiny.add(result, doc)
    assert tiny.ids() == [2]


def test_registry_keeps_one_store_per_connection_and_forgets_the_least_recent():
    reg = StoreRegistry(max_connections=2)
    a, b = reg.for_connection("a"), reg.for_connection("b")
    assert a is not b and reg.for_connection("a") is a
    reg.for_connection("c")  # b is the least recently used
    assert len(reg) == 2 and reg.for_connection("a") is a and reg.for_connection("b") is not b
    with pytest.raises(KeyError, match="carries no MCP session"):
        reg.stateless().get(1)
    for bad in ({"max_results": 0}, {"max_bytes": 0}, {"max_connections": 0}, {"max_total_bytes": 0}):
        with pytest.raises(ValueError):
            StoreRegistry(**bad)


def test_registry_drops_least_recent_connections_beyond_the_total_memory_cap():
    result, doc = _result()
    size = ResultStore().add(result, doc).nbytes
    reg = StoreRegistry(max_total_bytes=int(2.5 * size))
    for key in ("a", "b", "c"):
        reg.for_connection(key).add(result, doc)
    reg.for_connection("a")  # a is used again: b is now the least recent
    assert reg.trim(keep="c") == ["b"]
    assert reg.trim(keep="c") == [] and len(reg) == 2
    reg.for_connection("c").add(result, doc)
    assert reg.trim(keep="c") == ["a"]  # never the connection just served
    assert reg.for_connection("c").ids() == [1, 2]


# ---------------------------------------------------------------- roots


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"x")
    (root / "sub" / "b.jpg").write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (root / "inner_link.jpg").symlink_to(root / "sub" / "b.jpg")
    return tmp_path


@pytest.mark.parametrize(
    "path, expect",
    [
        ("a.jpg", "root/a.jpg"),
        ("sub/b.jpg", "root/sub/b.jpg"),
        ("sub/../a.jpg", "root/a.jpg"),
        ("inner_link.jpg", "root/sub/b.jpg"),
        ("{tmp}/root/a.jpg", "root/a.jpg"),
        ("../outside.jpg", PermissionError),
        ("sub/../../outside.jpg", PermissionError),
        ("{tmp}/outside.jpg", PermissionError),
        ("link.jpg", PermissionError),
        ("/etc/hostname", PermissionError),
        ("missing.jpg", FileNotFoundError),
        ("sub", IsADirectoryError),
        ("", ValueError),
    ],
)
def test_roots_resolve_only_files_inside(tree, path, expect):
    roots = Roots([tree / "root"])
    path = path.replace("{tmp}", str(tree))
    if isinstance(expect, str):
        assert roots.resolve(path) == (tree / expect).resolve()
    else:
        with pytest.raises(expect) as e:
            roots.resolve(path)
        assert "\n" not in str(e.value)
        if expect is PermissionError:
            assert "outside the allowed roots" in str(e.value)


def test_roots_default_to_the_working_directory_and_must_be_folders(tree, monkeypatch):
    monkeypatch.chdir(tree / "root")
    assert Roots().paths == ((tree / "root").resolve(),)
    assert Roots([tree / "root", tree]).resolve("outside.jpg") == (tree / "outside.jpg").resolve()  # second root
    with pytest.raises(ValueError, match="is not a folder"):
        Roots([tree / "root" / "a.jpg"])
    with pytest.raises(ValueError, match="at least one"):
        Roots([])
    assert os.fspath(Roots([tree]).paths[0]) == os.fspath(tree.resolve())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mcp", "--root", "/nonexistent/folder"], "allowed root '/nonexistent/folder' is not a folder"),
        (["mcp", "--max-results", "0"], "max_results must be >= 1"),
        (["mcp", "--http", "--port", "70000"], "--port must be 1..65535"),
    ],
)
def test_som_mcp_refuses_bad_options_in_one_line(argv, message, capsys):
    from som.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"som: error: {err.removeprefix('som: error: ')}" and message in err and err.count("\n") == 1


def test_classes_for_a_segmenter_without_a_vocabulary_are_refused_in_one_line(tmp_path):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg", tmp_path / "coffee.jpg")
    ctx = som.tools.ToolContext(Roots([tmp_path]), ResultStore())
    with pytest.raises(ToolError, match="mark_image: segmenter 'superpixel' has no class vocabulary; use the 'seem'"):
        som.tools.call("mark_image", {"path": "coffee.jpg", "segmenter": "superpixel", "classes": ["mug"]}, context=ctx)
    assert len(ctx.store) == 0
