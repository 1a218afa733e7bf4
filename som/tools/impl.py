"""What the tools do: one implementation behind the MCP server and `som.tools.call`.

`run_tool(name, arguments, context)` checks the arguments against the tool's
schema (`som.tools.schemas`), runs the library (`som.mark`, `som.marksfile`,
`som.draw.highlight`, `som.llm.ask`, `som.screen.mark_screen`, `som.web.mark_page` and the
page's actions) and returns a `ToolResult`: JSON-ready
`data` (the MCP structured content) and PNG `images`. Every failure a caller
can cause (bad image, unknown label or result id, path outside the roots,
missing LLM key...) raises `ToolError` with one readable line; the MCP server
turns it into a tool error (isError), `call` raises it.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from som.tools.pages import (
    DEFAULT_MAX_PAGES,
    BrowserHost,
    PageSet,
    UrlPolicy,
    shared_host,
)
from som.tools.roots import Roots
from som.tools.schemas import (
    DEFAULT_GRANULARITY,
    DEFAULT_MARK_TYPES,
    MARK_TYPES,
    TOOL_NAMES,
    TOOLS,
)
from som.tools.store import ResultStore, StoredResult

log = logging.getLogger(__name__)

# One segmentation at a time per process: a segmenter caches its image embedding, so two
# threads on one model would race; LLM calls run outside this lock.
_MODEL_LOCK = threading.Lock()
_SCREEN_LOCK = threading.Lock()  # the OCR model, likewise
_SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}


class ToolError(ValueError):
    """A tool call that cannot be served; str() is one line saying why (what the client sees)."""

    def __init__(self, message: object) -> None:
        super().__init__(one_line(message))


def one_line(message: object, limit: int = 500) -> str:
    text = " ".join(str(message).split()) or "error"
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class ToolResult:
    """data: JSON-ready dict (MCP structured content); images: PNG bytes (MCP image content)."""

    data: dict[str, Any]
    images: list[bytes] = field(default_factory=list)

    @property
    def text(self) -> str:
        """`data` as compact JSON: the text content for clients that read no structured content."""
        return json.dumps(self.data, separators=(",", ":"))

    def images_base64(self) -> list[str]:
        return [base64.b64encode(png).decode("ascii") for png in self.images]


@dataclass
class WebSettings:
    """The page tools' settings: allow_hosts (patterns for http(s) URLs; empty = any host),
    max_pages (open pages per connection), browser (None: the process's shared BrowserHost)."""

    allow_hosts: tuple[str, ...] = ()
    max_pages: int = DEFAULT_MAX_PAGES
    browser: BrowserHost | None = None

    def __post_init__(self) -> None:
        UrlPolicy(self.allow_hosts)  # bad patterns fail now
        if self.max_pages < 1:
            raise ValueError(f"max pages must be >= 1, got {self.max_pages}")

    @property
    def host(self) -> BrowserHost:
        return self.browser or shared_host()


@dataclass
class ToolContext:
    """Where a call runs: the files it may read and the results (and open pages) of its connection.
    llm_client: builds the LLM client for `ask` (default: from the environment).
    web: which URLs the page tools open, how many pages a connection keeps."""

    roots: Roots
    store: ResultStore
    llm_client: Callable[[], Any] | None = None
    web: WebSettings = field(default_factory=WebSettings)


# ---------------------------------------------------------------- arguments


_PY_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "number": (int, float)}


def _check_value(tool: str, key: str, value: Any, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    # lenient where a model's intent is plain: label 7 means "7", granularity 2 means "2", result "3" means 3
    if kind == "string" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if kind == "integer" and isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    ok = isinstance(value, _PY_TYPES[kind]) and not (kind in ("integer", "number") and isinstance(value, bool))
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ToolError(f"{tool}: {key} must be {article} {kind}, got {json.dumps(value)[:60]}")
    if "enum" in prop and value not in prop["enum"]:
        choices = ", ".join(map(str, prop["enum"]))
        raise ToolError(f"{tool}: {key} must be one of {choices}; got {json.dumps(value)[:60]}")
    if "minimum" in prop and value < prop["minimum"]:
        raise ToolError(f"{tool}: {key} must be >= {prop['minimum']}, got {value}")
    if kind == "array":
        value = [_check_value(tool, f"{key}[{i}]", v, prop["items"]) for i, v in enumerate(value)]
    return value


def check_arguments(tool: str, arguments: Any) -> dict[str, Any]:
    """Arguments checked against the tool's schema (types, enums, required, no unknown keys)."""
    if tool not in _SCHEMAS:
        raise ToolError(f"unknown tool {tool!r}; the tools are {', '.join(TOOL_NAMES)}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolError(f"{tool}: arguments must be a JSON object, got {type(arguments).__name__}")
    schema = _SCHEMAS[tool]
    props = schema["properties"]
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        raise ToolError(f"{tool}: unknown argument(s) {', '.join(unknown)}; it takes {', '.join(props)}")
    missing = [k for k in schema.get("required", []) if arguments.get(k) is None]
    if missing:
        raise ToolError(f"{tool}: missing required argument(s) {', '.join(missing)}")
    return {k: _check_value(tool, k, v, props[k]) for k, v in arguments.items() if v is not None}


# ---------------------------------------------------------------- images and marking


def _read_image(tool: str, args: dict[str, Any], roots: Roots) -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 RGB of the image the arguments name, and its name for messages and the marks."""
    from som.imageio import ImageError, load_image

    path, b64 = args.get("path"), args.get("image_base64")
    if path is not None and b64 is not None:
        raise ToolError(f"{tool}: give either path or image_base64, not both")
    if path is not None:
        try:
            real = roots.resolve(path)
        except (ValueError, OSError) as e:
            raise ToolError(f"{tool}: {e}") from None
        source: Any = real
        name = real.name
    elif b64 is not None:
        text = b64.strip()
        if text.startswith("data:"):
            head, _, text = text.partition(",")
            if ";base64" not in head:
                raise ToolError(f"{tool}: image_base64 is a data: URL without ;base64")
        try:
            source = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ToolError(f"{tool}: image_base64 is not valid base64") from None
        name = "image_base64"
    else:
        raise ToolError(f"{tool}: give the image as path (a file under the allowed roots) or image_base64")
    try:
        return load_image(source, name=name), name
    except ImageError as e:  # its message starts with the name
        raise ToolError(f"{tool}: {e}") from None
    except MemoryError:
        raise ToolError(f"{tool}: {name}: too large to decode") from None


def _mark_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    from som.draw import MarkStyle
    from som.segmenters import DEFAULT_SEGMENTER

    chosen = set(args.get("mark_types", DEFAULT_MARK_TYPES))
    if not chosen:
        raise ToolError(f"mark_types must name at least one of {', '.join(MARK_TYPES)}")
    style = MarkStyle(label_mode=args.get("label_mode", "number"), names=bool(args.get("names", False)),
                      **{t: t in chosen for t in MARK_TYPES})
    return {
        "segmenter": args.get("segmenter", DEFAULT_SEGMENTER),
        "granularity_level": args.get("granularity", DEFAULT_GRANULARITY),
        "style": style,
        "classes": args.get("classes"),
    }


def _mark_and_store(tool: str, args: dict[str, Any], ctx: ToolContext) -> StoredResult:
    from som.marksfile import regions_to_dict
    from som.pipeline import mark

    image, name = _read_image(tool, args, ctx.roots)
    kwargs = _mark_kwargs(args)
    try:
        with _MODEL_LOCK:
            result = mark(image, **kwargs)
    except MemoryError:
        raise ToolError(f"{tool}: out of memory marking {name}; send a smaller image") from None
    except (ValueError, RuntimeError, ImportError) as e:  # a missing checkpoint or package; torch's RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ToolError(f"{tool}: {first}") from None
    doc = regions_to_dict(result.regions, result.settings, image_file=None if name == "image_base64" else name)
    return ctx.store.add(result, doc, name)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _brief(mark: dict[str, Any]) -> dict[str, Any]:
    """A mark of the marks document without its mask (what mark_image and ask return)."""
    return {k: v for k, v in mark.items() if k != "rle"}


def _summary(item: StoredResult) -> dict[str, Any]:
    settings = item.doc.get("settings") or {}
    if settings.get("source") in ("screen", "web"):  # UI marks: no segmenter
        return {"result_id": item.id, "image": item.doc["image"], "source": settings["source"]}
    gran = settings.get("granularity")
    return {
        "result_id": item.id,
        "image": item.doc["image"],
        "segmenter": settings.get("segmenter"),
        "granularity": gran.get("name") if isinstance(gran, dict) else gran,
    }


def _stored(ctx: ToolContext, result_id: int) -> StoredResult:
    try:
        return ctx.store.get(result_id)
    except KeyError as e:
        raise ToolError(e.args[0]) from None


def _check_labels(item: StoredResult, labels: list[str]) -> list[str]:
    known = list(item.result.regions.labels or [])
    # "C" for c: letters are drawn lower case
    wanted = [str(s).strip() for s in labels]
    wanted = list(dict.fromkeys(s.lower() if s not in known and s.lower() in known else s for s in wanted))
    unknown = [s for s in wanted if s not in known]
    if unknown:
        have = f"{known[0]} to {known[-1]}" if known else "no marks"
        raise ToolError(f"unknown label(s) {', '.join(unknown)} in result {item.id}: its marks are {have}")
    return wanted


# ---------------------------------------------------------------- the tools


def mark_image(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    item = _mark_and_store("mark_image", args, ctx)
    marks = [_brief(m) for m in item.doc["marks"]]
    data = {**_summary(item), "count": len(marks), "marks": marks}
    return ToolResult(data, [png_bytes(item.result.image)])


def regions(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    item = _stored(ctx, args["result_id"])
    labels = item.result.regions.labels or []
    wanted = _check_labels(item, args["labels"]) if "labels" in args else list(labels)
    by_label = {m["label"]: m for m in item.doc["marks"]}
    with_masks = args.get("masks", True)
    marks = [by_label[s] if with_masks else _brief(by_label[s]) for s in wanted]
    images = []
    if args.get("highlight", False):
        from som.draw import highlight

        r = item.result
        images.append(png_bytes(highlight(r.source, r.regions, wanted, r.style)))
    return ToolResult({**_summary(item), "marks": marks}, images)


def ask(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    from som.llm import LLMError
    from som.llm import ask as llm_ask

    has_image = "path" in args or "image_base64" in args
    if "result_id" in args and has_image:
        raise ToolError("ask: give result_id (an earlier result) or an image (path / image_base64), not both")
    marking = sorted(k for k in ("segmenter", "granularity", "mark_types", "label_mode", "classes", "names") if k in args)
    if "result_id" in args and marking:
        raise ToolError(f"ask: {', '.join(marking)} apply to a new image; result {args['result_id']} is already marked")
    try:  # settings first: a missing key fails before any marking
        if ctx.llm_client is not None:
            client = ctx.llm_client()
        else:
            from som.llm.client import LLMClient

            client = LLMClient()
    except LLMError as e:
        if e.kind == "config" and "no API key" in str(e):
            raise ToolError(
                "ask: no LLM endpoint configured on the server: start som mcp with OPENAI_API_KEY set "
                "(or OPENAI_BASE_URL pointing at a local OpenAI-compatible server)"
            ) from None
        raise ToolError(f"ask: {e}") from None
    except ValueError as e:  # LLMConfig's checks (e.g. an empty SOM_MODEL)
        raise ToolError(f"ask: LLM settings: {e}") from None
    except ImportError as e:
        raise ToolError(f"ask: {e}") from None
    item = _stored(ctx, args["result_id"]) if "result_id" in args else _mark_and_store("ask", args, ctx)
    highlight = args.get("highlight", True)
    try:
        answer = llm_ask(None, args.get("question", ""), template=args.get("template", "chat"), marks=item.result,
                         client=client, highlight=highlight)  # fmt: skip
    except LLMError as e:  # its text is scrubbed of the key
        raise ToolError(f"ask: {e}") from None
    except ValueError as e:
        raise ToolError(f"ask: {e}") from None
    by_label = {m["label"]: m for m in item.doc["marks"]}
    data = {
        **_summary(item),
        "answer": answer.text,
        "template": answer.template,
        "labels": list(answer.labels),
        "marks": [_brief(by_label[s]) for s in answer.labels],
    }
    images = [png_bytes(answer.highlighted)] if highlight and answer.highlighted is not None else []
    return ToolResult(data, images)


# ---------------------------------------------------------------- screens and pages


def _ui_result(image: np.ndarray, screenshot: np.ndarray, regions: Any, label_mode: str, settings: dict) -> Any:
    """A MarkResult for UI marks (box regions), so regions and ask work on them like on photos."""
    from som.draw import MarkStyle
    from som.pipeline import MarkResult

    style = MarkStyle(mark=True, mask=False, box=True, contour=False, label_mode=label_mode)
    return MarkResult(image=image, regions=regions, source=screenshot, style=style, settings=dict(settings))


def screen_marks(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    from som.ui_marks import UIMarkStyle

    kinds = args.get("kinds")
    if kinds is not None and not kinds:
        raise ToolError("screen_marks: kinds must name at least one of text, icon, control, image (or be left out)")
    image, name = _read_image("screen_marks", args, ctx.roots)
    label_mode = args.get("label_mode", "number")
    try:
        from som.screen.marks import mark_screen

        with _SCREEN_LOCK:
            marks = mark_screen(image, kinds=kinds, style=UIMarkStyle(label_mode=label_mode))
    except ImportError as e:
        raise ToolError(f"screen_marks: {e} (the server needs som[screen]: pip install rapidocr-onnxruntime)") from None
    except MemoryError:
        raise ToolError(f"screen_marks: out of memory reading {name}; send a smaller screenshot") from None
    except (ValueError, RuntimeError) as e:
        raise ToolError(f"screen_marks: {e}") from None
    doc = marks.to_dict(image_file=None if name == "image_base64" else name)
    item = ctx.store.add(_ui_result(marks.image, marks.screenshot, marks.regions, label_mode, marks.settings), doc, name)
    out = [_brief(m) for m in doc["marks"]]
    return ToolResult({**_summary(item), "count": len(out), "marks": out}, [png_bytes(marks.image)])


# what a page mark tells a client (the records' css/xpath/frame paths stay on the server)
_PAGE_MARK_KEYS = ("label", "xyxy", "area", "kind", "tag", "role", "name", "text", "href", "value", "placeholder",
                   "type", "checked", "frame")  # fmt: skip


def _short(value: Any, limit: int = 300) -> Any:
    return value[: limit - 1] + "…" if isinstance(value, str) and len(value) > limit else value


def _page_set(tool: str, ctx: ToolContext) -> PageSet:
    if ctx.store.stateless:
        raise ToolError(
            f"{tool}: this HTTP request carries no MCP session (Mcp-Session-Id), so no page can be kept open; "
            "connect with the initialize handshake"
        )
    host = ctx.web.host
    pages = ctx.store.page_set(lambda: PageSet(host, ctx.web.max_pages))
    return pages


def _policy(ctx: ToolContext) -> UrlPolicy:
    return UrlPolicy(ctx.web.allow_hosts, ctx.roots)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _on_browser(tool: str, ctx: ToolContext, job: Callable[[], ToolResult]) -> ToolResult:
    """Run job() on the browser thread; what the caller can cause becomes a one-line ToolError."""
    from som.web.page import ElementGone

    try:
        return ctx.web.host.run(job)
    except ToolError:
        raise
    except KeyError as e:  # the page set's reasons
        raise ToolError(f"{tool}: {e.args[0]}") from None
    except (ElementGone, ValueError, ImportError) as e:
        raise ToolError(f"{tool}: {_first_line(e)}") from None
    except Exception as e:
        if type(e).__module__.startswith("playwright"):  # Error / TimeoutError: first line, no call log
            raise ToolError(f"{tool}: {_first_line(e).removeprefix('Error: ')}") from None
        if isinstance(e, (RuntimeError, TimeoutError)):  # Chromium would not start, is shut down, or stuck
            raise ToolError(f"{tool}: {_first_line(e)}") from None
        raise


def _page_output(tool: str, pages: PageSet, page_id: int, ctx: ToolContext, done: str | None = None) -> ToolResult:
    """The page's latest marks as a result (stored, for regions and ask); on the browser thread."""
    marks = pages.get(page_id).marks
    doc = marks.to_dict()
    label_mode = marks.settings.get("label_mode", "number")
    item = ctx.store.add(_ui_result(marks.image, marks.screenshot, marks.regions, label_mode, marks.settings),
                         doc, marks.url)  # fmt: skip
    out = [{k: _short(m.get(k)) for k in _PAGE_MARK_KEYS} for m in doc["marks"]]
    data: dict[str, Any] = {"page_id": page_id}
    if done is not None:
        data["done"] = done
    data.update({
        **_summary(item),
        "url": marks.url,
        "title": marks.title,
        "full_page": marks.settings.get("full_page", False),
        "scroll": marks.settings.get("scroll_css"),
        "open_pages": pages.ids(),
        "count": len(out),
        "marks": out,
    })  # fmt: skip
    return ToolResult(data, [png_bytes(marks.image)])


def open_page(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    policy = _policy(ctx)
    try:
        url = policy.check(args["url"])
    except (ValueError, OSError) as e:
        raise ToolError(f"open_page: {e}") from None
    pages = _page_set("open_page", ctx)
    options = {"full_page": args.get("full_page", False), "kinds": args.get("kinds")}
    if options["kinds"] is not None and not options["kinds"]:
        raise ToolError("open_page: kinds must name at least one element kind (or be left out)")
    viewport = {"width": args.get("width", 1280), "height": args.get("height", 800)}
    blocked: list[str] = []  # http(s) URLs the page tried to reach on hosts not allowed
    options["blocked"] = blocked

    def job() -> ToolResult:
        from som.web.page import CLICK_LISTENER_JS, BrowserSession, mark_page

        context = ctx.web.host.browser().new_context(viewport=viewport, device_scale_factor=1.0)
        session = BrowserSession(context=context)
        try:
            if not policy.any_host:
                context.route("**/*", lambda route: _guard(route, policy, blocked))
            context.add_init_script(CLICK_LISTENER_JS)
            page = context.new_page()
            try:
                page.goto(url, wait_until="load", timeout=30_000)
            except Exception as e:
                if not type(e).__module__.startswith("playwright"):
                    raise
                if blocked:  # the start URL redirected off the allow-list (the browser got 204 instead)
                    raise ToolError(f"open_page: {url} redirects to {blocked[-1]}, which is not allowed "
                                    f"(allowed: {policy.describe()})") from None
                why = _first_line(e).removeprefix("Error: ").removeprefix("Page.goto: ")
                raise ToolError(f"open_page: could not load {url}: {why}") from None
            if not policy.allows_loaded(page.url):
                raise ToolError(f"open_page: {url} led to {page.url}, which is not allowed (allowed: {policy.describe()})")
            marks = mark_page(page, full_page=options["full_page"], kinds=options["kinds"])
        except BaseException:
            session.close()
            raise
        marks._session = session  # closing the marks closes the context
        entry = pages.add(marks, options)
        return _page_output("open_page", pages, entry.id, ctx)

    return _on_browser("open_page", ctx, job)


def _guard(route: Any, policy: UrlPolicy, blocked: list[str]) -> None:
    """With --allow-host: the browser fetches nothing over http(s) from other hosts, redirects
    included (som.web.redirects)."""
    from som.web.redirects import forward_unless_redirected

    url = route.request.url
    if not _http_allowed(url, policy):
        _block(route, url, blocked)
    elif urlsplit(url).scheme not in ("http", "https"):
        route.continue_()
    else:
        target = forward_unless_redirected(route, lambda u: _http_allowed(u, policy))
        if target is not None:
            _block(route, target, blocked)


def _http_allowed(url: str, policy: UrlPolicy) -> bool:
    """False for an http(s) URL whose host the policy does not allow; True for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return True
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    return policy.host_allowed(parts.hostname, port)


def _block(route: Any, url: str, blocked: list[str]) -> None:
    """Refuse a request to a host not allowed: a top-level navigation is answered 204 No Content
    (dropped: the page stays as it was) and remembered in `blocked`; anything else is aborted."""
    log.info("blocked %s (host not allowed)", url[:200])
    request = route.request
    try:
        top = request.is_navigation_request() and request.frame.parent_frame is None
    except Exception:  # noqa: BLE001 - a frame that went away: block it the plain way
        top = False
    if top:
        blocked.append(url)
        del blocked[:-20]
        route.fulfill(status=204, body="")
    else:
        route.abort("blockedbyclient")


def _label_of(tool: str, marks: Any, page_id: int, label: str) -> str:
    try:
        return marks.elements[marks.index_of(label)].label
    except ValueError:
        labels = [e.label for e in marks.elements]
        have = f"{labels[0]} to {labels[-1]}" if labels else "no marks"
        raise ToolError(f"{tool}: unknown label {label} on page {page_id}: its latest marks are {have}") from None


def _act(tool: str, args: dict[str, Any], ctx: ToolContext, do: Callable[[Any, str | None], str]) -> ToolResult:
    """Find the page, do(marks, label) -> what was done, keep the page on allowed URLs, mark it again."""
    pages = _page_set(tool, ctx)
    policy = _policy(ctx)

    def job() -> ToolResult:
        entry = pages.get(args.get("page_id"))
        marks = entry.marks
        label = _label_of(tool, marks, entry.id, args["label"]) if "label" in args else None
        page = marks.page
        before = page.url
        blocked = entry.options.setdefault("blocked", [])
        del blocked[:]
        done = do(marks, label)
        now = page.url
        if blocked:  # the page tried to leave for a host not allowed and stayed where it was
            entry.marks = marks.remark()
            raise ToolError(f"{tool}: {done} tried to open {blocked[-1]}, which is not allowed (allowed: "
                            f"{policy.describe()}); the page stays at {page.url}")  # fmt: skip
        failed = now.startswith("chrome-error:")  # Chromium's error page: a load failed
        if failed or not policy.allows_loaded(now):
            why = (f"{done} led to a page that could not be loaded" if failed
                   else f"{done} led to {now}, which is not allowed (allowed: {policy.describe()})")  # fmt: skip
            try:
                page.go_back(wait_until="load", timeout=10_000)
                if page.url != before:
                    page.goto(before, wait_until="load", timeout=30_000)
            except Exception as e:  # noqa: BLE001 - the page is marked again below either way
                log.info("%s: going back to %s: %s", tool, before, e)
            entry.marks = marks.remark()
            raise ToolError(f"{tool}: {why}; the page is back at {page.url}")
        entry.marks = marks.remark()
        return _page_output(tool, pages, entry.id, ctx, done)

    return _on_browser(tool, ctx, job)


def page_marks(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    pages = _page_set("page_marks", ctx)

    def job() -> ToolResult:
        entry = pages.get(args.get("page_id"))
        if "full_page" in args:
            entry.options["full_page"] = args["full_page"]
        entry.marks = entry.marks.remark(full_page=entry.options["full_page"])
        return _page_output("page_marks", pages, entry.id, ctx)

    return _on_browser("page_marks", ctx, job)


def click_mark(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    def do(marks: Any, label: str | None) -> str:
        what = marks.element(label).describe()
        marks.click(label)
        return f"clicked {what}"

    return _act("click_mark", args, ctx, do)


def type_mark(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    def do(marks: Any, label: str | None) -> str:
        what = marks.element(label).describe()
        marks.type(label, args["text"], submit=args.get("submit", False))
        return f"typed {json.dumps(_short(args['text'], 80), ensure_ascii=False)} into {what}" + (
            " and pressed Enter" if args.get("submit") else "")  # fmt: skip

    return _act("type_mark", args, ctx, do)


def select_mark(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    def do(marks: Any, label: str | None) -> str:
        what = marks.element(label).describe()
        value = marks.select(label, args["option"])
        return f"selected {json.dumps(args['option'], ensure_ascii=False)} (value {json.dumps(value)}) in {what}"

    return _act("select_mark", args, ctx, do)


def scroll(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    direction = args.get("direction", "down")
    amount = min(float(args.get("amount", 0.8)), 20.0)

    def do(marks: Any, label: str | None) -> str:
        marks.scroll(direction, amount)
        return f"scrolled {direction} by {amount:g} viewports"

    return _act("scroll", args, ctx, do)


def close_page(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    pages = _page_set("close_page", ctx)

    def job() -> ToolResult:
        entry = pages.get(args["page_id"])
        pages.close(entry.id, "closed by close_page")
        return ToolResult({"page_id": entry.id, "closed": True, "open_pages": pages.ids()})

    return _on_browser("close_page", ctx, job)


TOOL_FUNCTIONS: dict[str, Callable[[dict[str, Any], ToolContext], ToolResult]] = {
    "mark_image": mark_image,
    "regions": regions,
    "ask": ask,
    "screen_marks": screen_marks,
    "open_page": open_page,
    "page_marks": page_marks,
    "click_mark": click_mark,
    "type_mark": type_mark,
    "select_mark": select_mark,
    "scroll": scroll,
    "close_page": close_page,
}
assert set(TOOL_FUNCTIONS) == set(TOOL_NAMES)


def run_tool(name: str, arguments: Any, ctx: ToolContext) -> ToolResult:
    """Check the arguments and run tool `name`. ToolError (one line) for anything the caller can fix."""
    args = check_arguments(name, arguments)
    return TOOL_FUNCTIONS[name](args, ctx)


_default: ToolContext | None = None
_default_lock = threading.Lock()


def default_context() -> ToolContext:
    """The context of `som.tools.call` without one: roots = the working directory at the first
    call, one result store for the process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ToolContext(Roots(), ResultStore())
        return _default
