"""`som app`: serve the SoM toolbox in the browser (also `python demo_som.py`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_server_options(p: argparse.ArgumentParser, default_port: int) -> None:
    """--host/--port (defaults from $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT, as a Gradio Space
    sets them), --share, and the serving limits (som.app.serving)."""
    import os

    from som.app.serving import add_limit_options

    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface; default $GRADIO_SERVER_NAME, else %(default)s)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or default_port),
                   help="port (default $GRADIO_SERVER_PORT, else %(default)s)")
    p.add_argument("--share", action="store_true", help="also open a public *.gradio.live link")
    add_limit_options(p)


def add_app_options(p: argparse.ArgumentParser) -> None:
    from som.cli import add_segmenter_option_flag
    from som.segmenters import DEFAULT_SEGMENTER, SPECS

    add_server_options(p, 7860)
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER, choices=sorted(SPECS), help="default: %(default)s")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    add_segmenter_option_flag(p)


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("som: error: the app needs Gradio: pip install 'som[app]'", file=sys.stderr)
        return 1
    from som.app.serving import limits_from_args
    from som.app.toolbox import launch
    from som.segmenters import add_configured_options

    try:
        limits = limits_from_args(args)
        add_configured_options(args.segmenter_option)
    except ValueError as e:
        print(f"som: error: {e}", file=sys.stderr)
        return 2
    print(f"SoM toolbox on http://{args.host}:{args.port}{limits.root_path} (segmenter {args.segmenter}); "
          "Ctrl+C stops it", file=sys.stderr)
    try:
        launch(host=args.host, port=args.port, share=args.share, segmenter=args.segmenter, device=args.device,
               limits=limits)
    except OSError as e:  # port in use, address not available
        print(f"som: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `som app` to the `som` command."""
    p = subparsers.add_parser("app", help="open the SoM toolbox in the browser (Gradio)",
                              description="Serve the Set-of-Mark toolbox: automatic and interactive marks.")
    add_app_options(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo_som.py", description="Serve the Set-of-Mark toolbox in the browser.")
    add_app_options(p)
    try:
        return run(p.parse_args(argv))
    except KeyboardInterrupt:
        return 0
