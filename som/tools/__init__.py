"""som.tools: Set-of-Mark as agent tools, over MCP (`som mcp`) or OpenAI-style function calling.

    import som.tools
    tools = som.tools.openai_tools()                 # pass as tools= to an OpenAI-compatible chat call
    result = som.tools.call("mark_image", {"path": "photo.jpg"})
    result.data["marks"], result.images[0]           # marks as JSON, the marked picture as PNG bytes
    som.tools.call("regions", {"result_id": result.data["result_id"], "labels": ["3"]})

The tools: `mark_image` (mark an image: marked picture + marks), `regions` (boxes, areas and
COCO RLE masks of marks of an earlier result), `ask` (ask the configured LLM about an image or
an earlier result; the answer and the marks it names), `screen_marks` (mark a screenshot: kind
and text per mark), and the page tools: `open_page` (a URL in the process's headless Chromium,
marked), `page_marks`, `click_mark`, `type_mark`, `select_mark`, `scroll` (act, then the new
marks), `close_page`. The MCP server (`som.tools.server`, `som mcp`) runs the same code, so
`call` and the MCP tools give the same results.

Modules: `schemas` (the tools as JSON Schema), `store` (results per connection, size cap),
`roots` (files only under allowed folders), `pages` (the browser, open pages, allowed URLs),
`impl` (the tools), `server` (MCP), `cli` (`som mcp`).
"""

from __future__ import annotations

from typing import Any

from som.tools.impl import ToolContext, ToolError, ToolResult, default_context, run_tool
from som.tools.roots import Roots
from som.tools.schemas import TOOL_NAMES, openai_tools, tool_specs
from som.tools.store import ResultStore


def call(name: str, arguments: dict[str, Any] | None = None, *, context: ToolContext | None = None) -> ToolResult:
    """Run tool `name` with `arguments` (a dict, as a model's function call sends it, JSON-decoded).

    Returns a ToolResult: `.data` (JSON-ready dict, the same as the MCP tool's structured
    content), `.images` (PNG bytes), `.text` (`data` as JSON, for the tool message).
    Raises ToolError, whose text is one line, for anything the caller can fix.
    Results are kept for later calls (result_id) in one store per process, or in `context`'s;
    files are read only under `context.roots` (default: the working directory).
    """
    return run_tool(name, arguments, context or default_context())


__all__ = [
    "TOOL_NAMES", "ResultStore", "Roots", "ToolContext", "ToolError", "ToolResult",
    "call", "openai_tools", "tool_specs",
]  # fmt: skip
