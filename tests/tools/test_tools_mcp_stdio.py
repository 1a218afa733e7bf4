"""`som mcp` over stdio (how Claude Desktop and most MCP clients start it), driven by the SDK's
`ClientSession`: the tools, a real photo marked and its regions, errors (a missing LLM key among
them) as tool errors. (Two clients at once: tests over HTTP, where they share one server.)"""

from __future__ import annotations

import tempfile

import pytest
from tools_helpers import b64, check_drawn, error_text, png_of, server_env, run_async, stdio_session

from som.imageio import load_image
from som.tools import TOOL_NAMES

pytest.importorskip("mcp", reason="som mcp needs the MCP SDK: pip install 'som[mcp]'")
pytestmark = pytest.mark.slow


def test_stdio_session_marks_a_photo_and_reports_errors_without_dying(photo_root):
    log = tempfile.TemporaryFile("w+")
    image = (photo_root / "chelsea.jpg").read_bytes()

    async def session():
        async with stdio_session(photo_root, server_env(), errlog=log) as s:
            out = {"tools": await s.list_tools()}
            out["mark"] = await s.call_tool("mark_image", {"image_base64": b64(image), "segmenter": "superpixel"})
            out["regions"] = await s.call_tool("regions", {"result_id": 1})
            out["no_key"] = await s.call_tool("ask", {"question": "which is the cat?", "result_id": 1})
            out["outside"] = await s.call_tool("mark_image", {"path": "/etc/hostname"})
            out["label"] = await s.call_tool("regions", {"result_id": 1, "labels": ["0"]})
            out["bad"] = await s.call_tool("mark_image", {"image_base64": b64(image[:100])})
            out["after"] = await s.call_tool("regions", {"result_id": 1, "labels": ["1"], "masks": False})
            return out

    out = run_async(session)
    assert [t.name for t in out["tools"].tools] == list(TOOL_NAMES)
    mark = out["mark"]
    assert not mark.is_error, mark.content[0].text
    data = mark.structured_content
    assert data["result_id"] == 1 and data["image"] == {"file": None, "width": 451, "height": 300}
    marks = out["regions"].structured_content["marks"]
    assert len(marks) == data["count"] > 10
    check_drawn(load_image(image), png_of(mark.content[1]), marks)

    assert "no LLM endpoint configured on the server" in error_text(out["no_key"])
    assert "outside the allowed roots" in error_text(out["outside"])
    assert "unknown label(s) 0 in result 1" in error_text(out["label"])
    assert error_text(out["bad"]).startswith("mark_image: image_base64: ")
    assert out["after"].structured_content["marks"] == [{k: v for k, v in marks[0].items() if k != "rle"}]
    log.seek(0)
    assert "Traceback" not in log.read()
