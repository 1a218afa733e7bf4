"""`som mcp`: the tools over the Model Context Protocol (official `mcp` SDK, low-level server).

stdio by default (one client per process: the client starts `som mcp`), or streamable
HTTP (`--http`), where each MCP session (`Mcp-Session-Id`) is one connection with its
own result store. Tool calls run in worker threads, so one client's segmentation does
not stall another's LLM question; segmentations themselves take turns (one model).

Every failure of a call is a tool result with isError and a one-line reason; a bug in
a tool is logged on stderr and reported the same way, it never ends the server.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Hashable

from som import __version__
from som.tools.impl import ToolContext, ToolError, WebSettings, one_line, run_tool
from som.tools.roots import Roots
from som.tools.schemas import tool_specs
from som.tools.store import StoreRegistry

log = logging.getLogger(__name__)

SERVER_NAME = "som"
INSTRUCTIONS = (
    "Set-of-Mark tools. mark_image cuts an image into regions and draws a numbered mark on each; it returns "
    "the marked image, the marks (label, parent, box, area) and a result_id; a mark's parent is the mark of the "
    "whole object it is a part of. regions gives the boxes and COCO RLE masks "
    "of marks of that result; ask puts a question about it to the server's LLM and returns the marks named. "
    "screen_marks marks a screenshot (text, icons, controls, images, each with its kind and text). "
    "open_page opens a web page in the server's browser and marks what can be clicked or typed into; "
    "click_mark, type_mark, select_mark and scroll act on a mark of that page and return its new marked "
    "screenshot and marks (labels change after every action: always use the latest); page_marks marks it "
    "again, close_page closes it. Every page and screen result has a result_id too, for regions and ask."
)
MAX_REQUEST_BYTES = 64 * 2**20  # base64 photos are larger than the SDK's 4 MiB default
_STDIO = "stdio"


def _need_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ImportError("som mcp needs the MCP SDK: pip install 'som[mcp]' (or pip install mcp)") from None


def connection_key(ctx: Any) -> Hashable | None:
    """Which connection a request belongs to: its HTTP MCP session, the one stdio client,
    or None for an HTTP request outside any session (2026-07-28 stateless requests)."""
    request = getattr(ctx, "request", None)
    if request is None:
        return _STDIO
    headers = getattr(request, "headers", None) or {}
    session = headers.get("mcp-session-id")
    return ("http", session) if session else None


def build_server(roots: Roots | None = None, stores: StoreRegistry | None = None, web: WebSettings | None = None) -> Any:
    """The MCP server (mcp.server.lowlevel.Server) serving the tools of som.tools. The page tools'
    browser (web.browser, default the process's) starts on the first open_page; `shutdown(server)`
    closes every page and the browser."""
    _need_sdk()
    import anyio.to_thread
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    roots = roots or Roots()
    stores = stores or StoreRegistry()
    web = web or WebSettings()
    tools = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"]) for t in tool_specs()
    ]

    async def list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        key = connection_key(ctx)
        store = stores.for_connection(key) if key is not None else stores.stateless()
        context = ToolContext(roots, store, web=web)
        t = time.perf_counter()
        try:
            result = await anyio.to_thread.run_sync(run_tool, params.name, params.arguments, context)
        except ToolError as e:
            log.info("%s: error after %.2f s: %s", params.name, time.perf_counter() - t, _scrub(str(e)))
            return _error(types, str(e))
        except Exception as e:  # noqa: BLE001 - a bug in one call must not end the server
            log.error("%s failed: %s", params.name, _scrub(f"{type(e).__name__}: {e}"))
            log.debug("traceback", exc_info=True)
            return _error(types, f"{params.name}: internal error: {type(e).__name__}: {one_line(e)}")
        finally:
            if key is not None:
                for gone in stores.trim(keep=key):
                    log.info("dropped the results of connection %s (server memory cap)", gone)
        log.info("%s: ok in %.2f s (connection %s, result %s)", params.name, time.perf_counter() - t,
                 "stateless" if key is None else key, result.data.get("result_id"))  # fmt: skip
        content: list[Any] = [types.TextContent(type="text", text=result.text)]
        content += [types.ImageContent(type="image", data=b64, mime_type="image/png") for b64 in result.images_base64()]
        return types.CallToolResult(content=content, structured_content=result.data)

    async def discover(ctx: Any, params: Any) -> Any:
        # Results live per connection, so this server is stateful: it advertises the handshake
        # era only, and clients that probe (mcp.Client's "auto") open a session with initialize.
        return types.DiscoverResult(
            supported_versions=list(HANDSHAKE_PROTOCOL_VERSIONS),
            capabilities=server.get_capabilities(),
            instructions=INSTRUCTIONS,
        )

    server = Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    server.add_request_handler("server/discover", types.RequestParams, discover)
    server.som_stores, server.som_web = stores, web  # for shutdown()
    return server


def shutdown(server: Any) -> None:
    """Close every connection's pages and the browser (when one was started)."""
    stores, web = getattr(server, "som_stores", None), getattr(server, "som_web", None)
    if stores is not None:
        stores.close_all()
    if web is not None:
        web.host.close()


def _scrub(text: str) -> str:
    """`text` without the LLM key of this process (or anything shaped like a key)."""
    from som.llm.errors import scrub

    return scrub(text, [os.environ.get("OPENAI_API_KEY")])


def _error(types: Any, message: str) -> Any:
    text = _scrub(one_line(message))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def serve_stdio(server: Any) -> None:
    """Serve one client over stdin/stdout until it closes them."""
    import anyio
    from mcp.server.stdio import stdio_server

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    try:
        anyio.run(main)
    finally:
        shutdown(server)


def serve_http(server: Any, host: str = "127.0.0.1", port: int = 8000, path: str = "/mcp") -> None:
    """Serve streamable HTTP at http://host:port/mcp until interrupted."""
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host, max_request_body_size=MAX_REQUEST_BYTES)
    app = _closing_at_shutdown(app, server)
    print(f"som mcp: streamable HTTP on http://{host}:{port}{path}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        shutdown(server)


def _closing_at_shutdown(app: Any, server: Any) -> Any:
    """The ASGI app, closing a session's pages when its client ends it (DELETE with its
    Mcp-Session-Id), and every page and the browser when uvicorn shuts the app down (lifespan
    shutdown: uvicorn re-raises SIGTERM/SIGINT after serving, so code after uvicorn.run may not run)."""
    import anyio.to_thread

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "DELETE":
            session = dict(scope.get("headers") or []).get(b"mcp-session-id")
            status: list[int] = []

            async def watch(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                await send(message)

            await app(scope, receive, watch)
            if session and status and status[0] < 300:
                key = ("http", session.decode("latin-1"))
                log.info("connection %s ended by its client", key)
                server.som_stores.forget(key)  # its results go, its pages close
            return
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def send_closing(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await anyio.to_thread.run_sync(shutdown, server)
            await send(message)

        return await app(scope, receive, send_closing)

    return wrapped
