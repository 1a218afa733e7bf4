"""`som mcp`: serve the SoM tools to MCP clients (Claude Desktop, IDE agents, agent frameworks).

stdio by default (the client starts the server); `--http` serves streamable HTTP at
http://HOST:PORT/mcp. Files are read only under the --root folders (default: the working
directory). The page tools open http(s) URLs of any host, or only those of --allow-host, and
file:// URLs under the roots; each connection keeps --max-pages pages open. `ask` uses the LLM endpoint of the server's environment (OPENAI_API_KEY,
OPENAI_BASE_URL, SOM_MODEL); the key is never logged or sent to clients.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "mcp",
        help="serve mark_image / regions / ask / screen_marks / the page tools as MCP tools (stdio, or --http)",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: %(default)s)")
    p.add_argument("--root", action="append", metavar="DIR",
                   help="folder whose files clients may read (repeatable; default: the working directory)")
    p.add_argument("--allow-host", action="append", metavar="HOST", default=[],
                   help="host the page tools may open over http(s): example.org, *.example.org (subdomains too), "
                   "host:port (repeatable; default: any host)")
    p.add_argument("--max-pages", type=int, default=4, help="web pages kept open per connection (default: %(default)s)")
    p.add_argument("--max-results", type=int, default=32, help="results kept per connection (default: %(default)s)")
    p.add_argument("--max-mb", type=float, default=256,
                   help="memory of the results kept per connection, MiB (default: %(default)s)")
    p.add_argument("--max-total-mb", type=float, default=2048,
                   help="memory of all connections' results; the least recently used go first (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="log requests on stderr (never the key)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from som.tools.impl import WebSettings
    from som.tools.roots import Roots
    from som.tools.store import StoreRegistry

    try:
        roots = Roots(args.root)
        web = WebSettings(allow_hosts=tuple(args.allow_host), max_pages=args.max_pages)
        stores = StoreRegistry(max_results=args.max_results, max_bytes=max(1, int(args.max_mb * 2**20)),
                               max_total_bytes=max(1, int(args.max_total_mb * 2**20)))
        if not 0 < args.port < 65536:
            raise ValueError(f"--port must be 1..65535, got {args.port}")
    except ValueError as e:
        print(f"som: error: {e}", file=sys.stderr)
        return 2
    try:
        from som.tools.server import build_server, serve_http, serve_stdio

        server = build_server(roots, stores, web)
    except ImportError as e:
        print(f"som: error: {e}", file=sys.stderr)
        return 1
    # stdout carries the protocol on stdio: logs go to stderr only
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("som").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if args.http:
        serve_http(server, args.host, args.port)
    else:
        serve_stdio(server)
    return 0
