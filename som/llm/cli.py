"""`som ask IMAGE "question"`: mark an image, ask an LLM, print the answer and the marks it names.

stdout: the answer text, then one line of JSON with the mentioned marks
([{"label": "3", "xyxy": [x1, y1, x2, y2], "area": 1234}, ...]).
Errors: one line on stderr, exit status 1 (2 for usage errors), no traceback.
The key is read from an environment variable (`--api-key-env`, default
OPENAI_API_KEY), never from the command line, so it stays out of shell history
and process lists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

PROG = "som ask"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `ask` subcommand to an argparse subparsers object; sets `func=run` as its default."""
    p = subparsers.add_parser(
        "ask",
        help="ask a multimodal LLM about an image through its marks",
        description=(
            "Mark IMAGE, send it with QUESTION to an OpenAI-compatible chat endpoint, print the answer and "
            "then the mentioned marks as one line of JSON. Endpoint settings default to OPENAI_BASE_URL, "
            "SOM_MODEL and the key in OPENAI_API_KEY."
        ),
    )
    p.add_argument("image", nargs="?", help="image file to mark and ask about")
    p.add_argument("question", nargs="?", default="", help="question / referring expression / sentence for the template")
    p.add_argument("--template", default="chat", help="prompt template name (see --list-templates); default: chat")
    p.add_argument("--templates-file", metavar="F", help="YAML or JSON file adding or overriding templates")
    p.add_argument("--list-templates", action="store_true", help="list the templates and exit")
    p.add_argument("--image2", metavar="IMAGE", help="second image, for two-image templates such as 'match'")
    p.add_argument("--model", help="model name (default: $SOM_MODEL, else gpt-4o)")
    p.add_argument("--base-url", help="endpoint base URL, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="environment variable holding the API key")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per request attempt")
    p.add_argument("--max-image-side", type=int, default=None, metavar="PX", help="longer image side sent (default 1024)")
    p.add_argument("--image-format", choices=["png", "jpeg"], default=None, help="image encoding sent (default png)")
    p.add_argument("--send-clean", action="store_true", help="also send the unmarked image")
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    p.add_argument("--save-highlight", metavar="PATH", help="save the picture with the mentioned marks emphasised")
    p.add_argument("--save-marked", metavar="PATH", help="save the marked picture that was sent")
    try:  # the options `som mark` has, so both commands mark alike
        from som.cli import add_marking_options
    except ImportError:  # pragma: no cover - som.cli is part of the package
        add_marking_options = None
    if add_marking_options is not None:
        add_marking_options(p)
    else:  # pragma: no cover
        g = p.add_argument_group("marking")
        g.add_argument("--granularity", help="1/parts, 2/objects, 3/wholes, 4/nested")
        g.add_argument("--segmenter", help="segmenter name (see `som segmenters`)")
        g.add_argument("--label-mode", choices=["number", "alphabet"], help="marks as 1, 2, 3… or a, b, c…")
    p.set_defaults(func=run)
    return p


def mark_options(args: argparse.Namespace) -> dict[str, Any]:
    """The marking flags as keyword arguments for som.pipeline.mark (ValueError on bad values)."""
    try:
        from som.cli import marking_kwargs
    except ImportError:  # pragma: no cover
        marking_kwargs = None
    if marking_kwargs is not None and hasattr(args, "marks"):
        return marking_kwargs(args)
    names = ("granularity", "segmenter", "label_mode")  # pragma: no cover - fallback parser
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _save(path: str, image: Any) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def _fail(message: str, secret: str | None = None) -> int:
    from som.llm.errors import scrub

    print(f"{PROG}: error: {scrub(message, [secret])}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """Run `som ask`; returns the exit status."""
    from som.llm.errors import LLMError
    from som.llm.templates import load_templates

    secret = os.environ.get(getattr(args, "api_key_env", None) or "OPENAI_API_KEY")
    try:
        library = load_templates(args.templates_file)
        if args.list_templates:
            width = max(len(n) for n in library.names())
            for t in library:
                extra = " (2 images)" if t.images == 2 else ""
                print(f"{t.name:<{width}}  {t.description}{extra}")
            return 0
        if not args.image:
            print(f"{PROG}: error: an IMAGE is required (or --list-templates)", file=sys.stderr)
            return 2
        template = library.get(args.template)

        from som.llm.ask import ask, ask_stream
        from som.llm.client import LLMClient, LLMConfig

        settings = {
            k: v
            for k, v in {
                "timeout_s": args.timeout,
                "max_image_side_px": args.max_image_side,
                "image_format": args.image_format,
            }.items()
            if v is not None
        }
        config = LLMConfig.from_env(model=args.model, base_url=args.base_url, api_key_env=args.api_key_env, **settings)
        client = LLMClient(config)
        common = dict(
            template=template,
            client=client,
            send_clean=args.send_clean,
            image2=args.image2,
            highlight=bool(args.save_highlight),
            **mark_options(args),
        )
        if args.stream:
            stream = ask_stream(args.image, args.question, **common)
            for delta in stream:
                sys.stdout.write(delta)
                sys.stdout.flush()
            answer = stream.answer()
            sys.stdout.write("\n")
        else:
            answer = ask(args.image, args.question, **common)
            print(answer.text)
        print(json.dumps(answer.to_json()))
        if args.save_marked:
            _save(args.save_marked, answer.marks.image)
        if args.save_highlight:
            if answer.highlighted is None:
                print(f"{PROG}: note: no marks mentioned (or no highlighter available); nothing saved to {args.save_highlight}", file=sys.stderr)
            else:
                _save(args.save_highlight, answer.highlighted)
        return 0
    except LLMError as e:
        return _fail(str(e), secret)
    except (ValueError, OSError) as e:  # ImageError is a ValueError; unwritable output paths are OSError
        return _fail(str(e) or type(e).__name__, secret)
    except ImportError as e:
        return _fail(str(e), secret)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m som.llm.cli`), for use before som/cli.py wires `register`."""
    parser = argparse.ArgumentParser(prog="som")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
