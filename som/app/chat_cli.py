"""`som chat`: serve the SoM chat app in the browser (also `python demo_gpt4v_som.py`).

The API key is read from an environment variable (OPENAI_API_KEY, or the one named by
--api-key-env) when a question is asked; it is never a flag, so it stays out of shell history
and process lists.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any


def add_chat_options(p: argparse.ArgumentParser) -> None:
    from som.app.cli import add_server_options
    from som.cli import add_segmenter_option_flag
    from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, GRANULARITY_HELP, SPECS

    add_server_options(p, 7861)
    p.add_argument("--segmenter", default=DEFAULT_SEGMENTER, choices=sorted(SPECS), help="default: %(default)s")
    p.add_argument("--granularity", default=str(DEFAULT_LEVEL), help=GRANULARITY_HELP)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    add_segmenter_option_flag(p)
    p.add_argument("--base-url", help="default endpoint, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="default model (default: $SOM_MODEL, else gpt-4o)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the server's API key (default: %(default)s)")
    p.add_argument("--templates-file", metavar="F", help="YAML or JSON file adding or overriding prompt templates")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per LLM request (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="log som's steps (never the key)")


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("som: error: the chat app needs Gradio and the openai SDK: pip install 'som[app,llm]'", file=sys.stderr)
        return 1
    from som.app.chat import ChatDefaults, launch
    from som.app.serving import limits_from_args
    from som.segmenters import add_configured_options, granularity

    try:
        limits = limits_from_args(args)
        add_configured_options(args.segmenter_option)
        level = granularity(args.granularity).level
        if args.templates_file:
            from som.llm.templates import load_templates

            load_templates(args.templates_file)
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    except ValueError as e:
        print(f"som: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("som").setLevel(logging.INFO if args.verbose else logging.WARNING)
    defaults = ChatDefaults(segmenter=args.segmenter, granularity=level, device=args.device, base_url=args.base_url,
                            model=args.model, api_key_env=args.api_key_env, templates_file=args.templates_file,
                            timeout_s=args.timeout)
    print(f"SoM chat on http://{args.host}:{args.port}{limits.root_path} (segmenter {args.segmenter}); Ctrl+C stops it",
          file=sys.stderr)
    try:
        launch(host=args.host, port=args.port, share=args.share, defaults=defaults, limits=limits)
    except OSError as e:  # port in use, address not available
        print(f"som: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `som chat` to the `som` command."""
    p = subparsers.add_parser("chat", help="chat with a multimodal LLM about a marked image (Gradio)",
                              description="Serve the Set-of-Mark chat app: upload, mark, ask, see the named regions.")
    add_chat_options(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo_gpt4v_som.py", description="Serve the Set-of-Mark chat app in the browser.")
    add_chat_options(p)
    try:
        return run(p.parse_args(argv))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
