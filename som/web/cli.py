"""`som web URL -o OUT` (mark a live page) and `som agent URL "task"` (the agent loop).

Only argparse at import time; Playwright and the LLM client load when a command runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

PROG = "som"


def _fail(message: str, code: int = 1) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _viewport(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m.group(1)) < 100 or int(m.group(2)) < 100:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in CSS px (at least 100x100), e.g. 1280x800; got {text!r}")
    return int(m.group(1)), int(m.group(2))


KINDS_HELP = "link, button, input, toggle, menu, clickable, vision"  # som.web.page.KINDS (not imported: keeps --help light)


def _add_page_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("page")
    g.add_argument("--viewport", type=_viewport, default=(1280, 800), help="WIDTHxHEIGHT in CSS px (default 1280x800)")
    g.add_argument("--scale", type=float, default=1.0, help="device scale factor (screenshot px per CSS px; default 1)")
    g.add_argument("--full-page", action="store_true", help="mark the whole page, not only the viewport")
    g.add_argument("--kinds", default=None, help=f"comma list of element kinds to mark: {KINDS_HELP} (default all)")
    g.add_argument("--vision", action="store_true",
                   help="also mark text, icons and controls seen only in canvases, images and videos (needs som[screen])")
    g.add_argument("--label-mode", default="number", choices=["number", "alphabet"])
    g.add_argument("--font-px", type=int, default=None, help="label font size (default from the screenshot size)")


def _mark_options(args: argparse.Namespace) -> dict:
    from som.ui_marks import UIMarkStyle

    kinds = None if not args.kinds else [k.strip() for k in args.kinds.split(",") if k.strip()]
    style = UIMarkStyle(label_mode=args.label_mode, font_px=args.font_px)
    return {"full_page": args.full_page, "kinds": kinds, "style": style, "vision": args.vision}


def _name_for(url: str) -> str:
    """A file stem from a URL: host and path, unsafe characters replaced."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else Path(url).resolve().as_uri())
    stem = (parts.hostname or "") + parts.path
    stem = re.sub(r"\.html?$", "", stem.strip("/")) or "page"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[-80:].strip("_") or "page"


def cmd_web(args: argparse.Namespace) -> int:
    from som.web.page import mark_page

    try:
        options = _mark_options(args)
        marks = mark_page(args.url, viewport=args.viewport, device_scale_factor=args.scale, timeout_s=args.timeout, **options)
    except (ValueError, RuntimeError, ImportError) as e:
        return _fail(str(e))
    except Exception as e:  # noqa: BLE001 - Playwright errors (page did not load): one line, no traceback
        return _fail(f"could not load {args.url}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
    try:
        png, js = marks.save(args.output, args.name or _name_for(args.url))
        if not args.quiet:
            for e in marks.elements:
                print(e.describe())
        print(f"{args.url} -> {png} ({len(marks)} marks; {js.name})", file=sys.stderr)
    finally:
        marks.close()
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from som.llm.client import LLMClient, LLMConfig
    from som.llm.errors import LLMError, scrub
    from som.web.agent import run_agent

    secret = os.environ.get(args.api_key_env)
    try:
        template = None
        if args.templates_file:
            from som.llm.templates import TemplateLibrary
            from som.web.actions import act_template

            lib = TemplateLibrary({"act": act_template()}).with_file(args.templates_file)
            template = lib.get("act")
        settings = {"timeout_s": args.timeout} if args.timeout else {}
        config = LLMConfig.from_env(model=args.model, base_url=args.base_url, api_key_env=args.api_key_env, **settings)

        def show(step) -> None:
            status = "ok" if step.ok else f"failed: {step.error}"
            print(f"step {step.step}: {step.action or '(no action)'} [{status}] ({step.marks} marks, {step.url})", file=sys.stderr)

        result = run_agent(
            args.url,
            args.task,
            client=LLMClient(config),
            max_steps=args.max_steps,
            allow_hosts=args.allow_host or None,
            transcript_dir=args.transcript,
            viewport=args.viewport,
            device_scale_factor=args.scale,
            template=template,
            mark_options=_mark_options(args),
            on_step=None if args.quiet else show,
        )
    except LLMError as e:
        return _fail(scrub(str(e), [secret]))
    except (ValueError, RuntimeError, ImportError, OSError) as e:
        return _fail(scrub(str(e), [secret]))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    if result.finished:
        print(result.answer)
        return 0
    print(f"{PROG}: no answer after {len(result.steps)} steps (step limit)", file=sys.stderr)
    return 1


def register(sub) -> None:
    p = sub.add_parser("web", help="mark a live web page: NAME.marked.png and NAME.marks.json", description=(
        "Open URL (or an HTML file) in headless Chromium, mark every interactive element a user can see "
        "in the viewport and write the marked screenshot and the marks JSON with each element's record."))
    p.add_argument("url", help="http(s):// or file:// URL, or an HTML file")
    p.add_argument("-o", "--output", default="out", help="output folder (default: ./out)")
    p.add_argument("--name", default=None, help="file stem (default: from the URL)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the page to load (default 30)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the marks")
    _add_page_options(p)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("agent", help="let a multimodal LLM act on a web page through marks", description=(
        "Loop: mark the page, send the marked screenshot and the task to an OpenAI-compatible model, "
        "perform the action it names (click [N], type [N] \"text\", select, hover, scroll, back), until it "
        "answers 'done: <answer>' or the step limit is reached. Prints the answer."))
    p.add_argument("url", help="start URL (or an HTML file)")
    p.add_argument("task", help="what to do, e.g. 'find the opening hours'")
    p.add_argument("--max-steps", type=int, default=10, help="step limit (default 10)")
    p.add_argument("--allow-host", action="append", metavar="HOST",
                   help="a host the browser may navigate to (repeatable; patterns like *.example.org); default: any")
    p.add_argument("--transcript", metavar="DIR", default=None,
                   help="folder for each step's marked screenshot, marks JSON, prompt, answer and action")
    p.add_argument("--model", help="model name (default: $SOM_MODEL, else gpt-4o)")
    p.add_argument("--base-url", help="endpoint base URL (default: $OPENAI_BASE_URL)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="environment variable holding the API key")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per model request")
    p.add_argument("--templates-file", metavar="F", help="YAML/JSON file overriding the 'act' prompt")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the answer")
    _add_page_options(p)
    p.set_defaults(func=cmd_agent)
