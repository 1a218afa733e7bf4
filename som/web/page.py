"""Marks on live web pages: `mark_page(url_or_page)` -> `PageMarks`, and acting on a mark.

Real Chromium through Playwright (sync API). One script (collect.js) runs in the top frame and
returns every interactive element a user can see in the viewport, including those in same-origin
iframes and open shadow roots; elements that are hidden, zero-sized, off-screen or covered
(hit-tested at their own points) are left out. Each mark gets an `ElementRecord`; its box is in
screenshot pixels (CSS px x devicePixelRatio). `PageMarks.click(7)` re-finds element 7 from its
record (frames, shadow hosts, CSS path, accessible name) and clicks it through Playwright, which
waits until the element can receive the click; a gone element raises `ElementGone`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from som.ui_marks import UIMarkStyle, draw_ui_marks, layout_ui_marks

__all__ = [
    "KINDS",
    "ElementRecord",
    "ElementGone",
    "PageMarks",
    "mark_page",
    "open_page",
    "launch_browser",
    "chromium_path",
    "CHROMIUM_ARGS",
]

_JS_DIR = Path(__file__).resolve().parent
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
KINDS = ("link", "button", "input", "toggle", "menu", "clickable", "vision")
_ROLE_KIND = {
    "link": "link",
    "button": "button",
    "textbox": "input",
    "searchbox": "input",
    "combobox": "input",
    "listbox": "input",
    "spinbutton": "input",
    "slider": "input",
    "checkbox": "toggle",
    "radio": "toggle",
    "switch": "toggle",
    "tab": "menu",
    "menuitem": "menu",
    "menuitemcheckbox": "menu",
    "menuitemradio": "menu",
    "option": "menu",
    "treeitem": "menu",
}
# records every element that gets a click-like listener, so collect.js can count it as interactive
CLICK_LISTENER_JS = """(() => {
  if (window.__somClickTargets) return;
  const targets = new WeakSet();
  Object.defineProperty(window, "__somClickTargets", { value: targets });
  const add = EventTarget.prototype.addEventListener;
  const kinds = new Set(["click", "mousedown", "mouseup", "pointerdown", "pointerup", "touchstart", "dblclick"]);
  EventTarget.prototype.addEventListener = function (type, listener, opts) {
    if (kinds.has(type) && this instanceof Element) targets.add(this);
    return add.call(this, type, listener, opts);
  };
})();"""


def _collect_js() -> str:
    return (_JS_DIR / "collect.js").read_text(encoding="utf-8")


class ElementGone(LookupError):
    """The element a mark names is no longer on the page (mark the page again)."""


@dataclass(frozen=True)
class ElementRecord:
    """One marked element. `xyxy`: its box in screenshot px (visible part, x2/y2 exclusive);
    `box_css` / `point_css`: the same box and the point where hit-testing found it, in CSS px of
    the top viewport. `path`: how to reach the element's root from the top document, as steps
    {"css": selector of an iframe or shadow host in the root so far, "into": "frame" | "shadow"};
    `css` and `xpath` are relative to that root. `reason` says why it counts as interactive
    (tag, role, editable, label, handler, tabindex, pointer)."""

    label: str
    kind: str
    tag: str
    role: str
    name: str
    text: str
    href: str | None
    value: str | None
    placeholder: str | None
    type: str | None
    checked: bool | None
    reason: str
    css: str
    xpath: str
    path: tuple[dict, ...]
    frame_url: str
    xyxy: tuple[float, float, float, float]
    box_css: tuple[float, float, float, float]
    point_css: tuple[float, float]

    @property
    def frame(self) -> str:
        """'main' or the iframe chain, e.g. 'iframe#pay > iframe:nth-of-type(2)'."""
        frames = [s["css"] for s in self.path if s["into"] == "frame"]
        return "main" if not frames else " >> ".join(frames)

    def describe(self) -> str:
        """One line for prompts and errors: [7] button "Save" (css #save)."""
        what = self.name or self.text or self.placeholder or self.href or ""
        extra = f" value={self.value!r}" if self.value else ""
        return f"[{self.label}] {self.role or self.tag} {json.dumps(what[:80], ensure_ascii=False)}{extra}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = [dict(s) for s in self.path]
        d["frame"] = self.frame
        return d


def _kind(rec: dict) -> str:
    if rec["reason"].startswith("vision"):
        return "vision"
    if rec["tag"] in ("input", "textarea", "select") and rec["role"] not in ("button", "checkbox", "radio"):
        return "input"
    if rec["reason"] == "editable":
        return "input"
    return _ROLE_KIND.get(rec["role"], "clickable")


# ---------------------------------------------------------------- browser
def chromium_path() -> str | None:
    """Chromium to drive: $SOM_CHROMIUM, else `chromium` on PATH (Debian: /usr/bin/chromium),
    else None (Playwright's own download, when installed)."""
    found = os.environ.get("SOM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


class BrowserSession:
    """Playwright objects som opened itself and must close (none when the caller gave a page)."""

    def __init__(self, playwright=None, browser=None, context=None) -> None:
        self.playwright, self.browser, self.context = playwright, browser, context

    def close(self) -> None:
        for obj, how in ((self.context, "close"), (self.browser, "close"), (self.playwright, "stop")):
            if obj is not None:
                try:
                    getattr(obj, how)()
                except Exception:  # noqa: BLE001 - closing is best effort; the browser may be gone already
                    pass
        self.playwright = self.browser = self.context = None


def launch_browser(playwright) -> Any:
    """Headless Chromium from `chromium_path()` with the flags a container needs."""
    exe = chromium_path()
    try:
        return playwright.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))
    except Exception as e:
        raise RuntimeError(
            f"could not start Chromium ({'at ' + exe if exe else 'no chromium on PATH'}): "
            f"{str(e).splitlines()[0]}; install it (Debian: apt-get install chromium) or set SOM_CHROMIUM"
        ) from None


def _url_of(target: str) -> str:
    if "://" in target or target.startswith(("about:", "data:")):
        return target
    path = Path(target)
    if path.exists():
        return path.resolve().as_uri()
    raise ValueError(f"{target!r} is neither a URL (http://…, file://…) nor an existing file")


def open_page(
    url: str,
    *,
    browser: Any = None,
    viewport: tuple[int, int] = (1280, 800),
    device_scale_factor: float = 1.0,
    wait_until: str = "load",
    timeout_s: float = 30.0,
) -> tuple[Any, BrowserSession]:
    """A new page at `url` in its own browser context (the click-listener script installed)."""
    url = _url_of(url)  # a bad target fails before any browser starts
    session = BrowserSession()
    try:
        if browser is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                raise ImportError("marking web pages needs Playwright: pip install 'som[web]'") from None
            session.playwright = sync_playwright().start()
            session.browser = browser = launch_browser(session.playwright)
        session.context = browser.new_context(
            viewport={"width": int(viewport[0]), "height": int(viewport[1])}, device_scale_factor=float(device_scale_factor)
        )
        session.context.add_init_script(CLICK_LISTENER_JS)
        page = session.context.new_page()
        page.goto(url, wait_until=wait_until, timeout=timeout_s * 1000)
        return page, session
    except BaseException:
        session.close()
        raise


# ---------------------------------------------------------------- marks
@dataclass
class PageMarks:
    """A marked page. `image`: the marked screenshot, (H, W, 3) uint8 RGB; `screenshot`: the same
    without marks; `regions`: one box region per element (labels 1..N, in document order);
    `elements[k]`: the record of region k. Acting methods take the mark's label (7 or "7")."""

    image: np.ndarray
    screenshot: np.ndarray
    regions: Any
    elements: list[ElementRecord]
    page: Any
    url: str
    title: str
    device_scale_factor: float
    settings: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    _session: BrowserSession | None = field(default=None, repr=False)
    _placement: Any = field(default=None, repr=False)
    _options: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.elements)

    def index_of(self, mark: int | str) -> int:
        """Position of mark `mark` (its label, e.g. 7 or "7"); ValueError naming the valid marks."""
        label = str(mark).strip().strip("[]")
        for k, rec in enumerate(self.elements):
            if rec.label == label:
                return k
        shown = f"1 to {len(self)}" if self.elements and self.elements[-1].label == str(len(self)) else ", ".join(r.label for r in self.elements)
        raise ValueError(f"no mark {mark!r} on this page; marks are {shown or 'none'}")

    def element(self, mark: int | str) -> ElementRecord:
        return self.elements[self.index_of(mark)]

    def locate(self, mark: int | str):
        """The live Playwright ElementHandle of a mark, found again from its record."""
        rec = self.element(mark)
        frame = self.page.main_frame
        shadow: list[str] = []
        js = _collect_js()
        for step in rec.path:
            if step["into"] == "shadow":
                shadow.append(step["css"])
                continue
            handle = frame.evaluate_handle(js, {"find": {"shadow": shadow, "css": step["css"], "tag": "iframe", "name": ""}})
            el = handle.as_element()
            inner = el.content_frame() if el is not None else None
            if inner is None:
                raise ElementGone(f"mark {rec.label} ({rec.describe()}) is gone: its frame {step['css']} is no longer on the page; mark the page again")
            frame, shadow = inner, []
        name = "" if rec.kind == "vision" else rec.name  # a vision mark's text is the picture's, not the element's name
        handle = frame.evaluate_handle(js, {"find": {"shadow": shadow, "css": rec.css, "tag": rec.tag, "name": name}})
        el = handle.as_element()
        if el is None:
            why = handle.json_value()
            raise ElementGone(f"mark {rec.label} ({rec.describe()}) is gone from the page ({why}); mark the page again")
        return el

    # ------------------------------------------------------------ acting
    def _settle(self, timeout_s: float = 10.0) -> None:
        try:
            self.page.wait_for_load_state("load", timeout=timeout_s * 1000)
        except Exception:  # noqa: BLE001 - a page that never finishes loading is still usable
            pass

    def _vision_point(self, mark: int | str) -> tuple[float, float] | None:
        """(x, y) CSS px of a vision mark, after checking its picture is still there; None for DOM marks."""
        rec = self.element(mark)
        if rec.kind != "vision":
            return None
        self.locate(mark)  # the canvas / image holding it must still be on the page
        return rec.point_css

    def click(self, mark: int | str, timeout_s: float = 5.0) -> None:
        """Click element `mark` (Playwright waits until it is visible, stable and not covered);
        a vision mark is clicked at its point in the picture."""
        point = self._vision_point(mark)
        if point is not None:
            self.page.mouse.click(*point)
        else:
            self.locate(mark).click(timeout=timeout_s * 1000)
        self._settle()

    def type(self, mark: int | str, text: str, submit: bool = False, timeout_s: float = 5.0) -> None:
        """Replace the text of input / textarea / contenteditable `mark` with `text` (Enter after it with submit)."""
        rec = self.element(mark)
        if rec.kind == "vision":  # a field drawn in a canvas: click it, then type
            self.click(mark, timeout_s)
            self.page.keyboard.type(str(text))
            if submit:
                self.page.keyboard.press("Enter")
                self._settle()
            return
        if rec.kind != "input" or rec.tag == "select":
            raise ValueError(f"mark {rec.label} is a {rec.role or rec.tag}, not a text field: {rec.describe()}")
        el = self.locate(mark)
        el.fill(str(text), timeout=timeout_s * 1000)
        if submit:
            el.press("Enter", timeout=timeout_s * 1000)
            self._settle()

    def select(self, mark: int | str, option: str, timeout_s: float = 5.0) -> str:
        """Choose `option` (its visible text, else its value) in <select> `mark`; returns the value chosen."""
        rec = self.element(mark)
        if rec.tag != "select":
            raise ValueError(f"mark {rec.label} is a {rec.role or rec.tag}, not a <select>: {rec.describe()}")
        el = self.locate(mark)
        options = el.evaluate("s => [...s.options].map(o => [o.label || o.text, o.value])")
        want = str(option).strip()
        for label, value in options:
            if want in (label.strip(), value):
                el.select_option(value=value, timeout=timeout_s * 1000)
                return value
        low = [(label, value) for label, value in options if want.lower() == label.strip().lower()]
        if low:
            el.select_option(value=low[0][1], timeout=timeout_s * 1000)
            return low[0][1]
        raise ValueError(f"mark {rec.label} has no option {option!r}; options are {[o[0] for o in options]}")

    def hover(self, mark: int | str, timeout_s: float = 5.0) -> None:
        point = self._vision_point(mark)
        if point is not None:
            self.page.mouse.move(*point)
        else:
            self.locate(mark).hover(timeout=timeout_s * 1000)

    def scroll(self, direction: str = "down", amount: float = 0.8) -> None:
        """Scroll the page by `amount` viewports (up, down, left, right)."""
        d = str(direction).strip().lower()
        steps = {"down": (0, 1), "up": (0, -1), "right": (1, 0), "left": (-1, 0)}
        if d not in steps:
            raise ValueError(f"scroll direction must be one of {', '.join(steps)}, got {direction!r}")
        dx, dy = steps[d]
        self.page.evaluate(
            "([dx, dy, a]) => window.scrollBy({left: dx * innerWidth * a, top: dy * innerHeight * a, behavior: 'instant'})",
            [dx, dy, float(amount)],
        )

    def remark(self, **options: Any) -> "PageMarks":
        """Mark the page again (after an action), keeping the same browser session and settings."""
        opts = {**self._options, **options}
        new = mark_page(self.page, **opts)
        new._session, self._session = self._session, None
        return new

    def close(self) -> None:
        """Close what `mark_page` opened (context, browser, Playwright); a page you passed in stays open."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> "PageMarks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ output
    def to_dict(self, image_file: str | None = None) -> dict[str, Any]:
        """The marks JSON (format som.marks) with the element record beside each mark's standard keys."""
        from som.marksfile import regions_to_dict

        doc = regions_to_dict(self.regions, self.settings, image_file)
        doc["page"] = {"url": self.url, "title": self.title, "device_scale_factor": self.device_scale_factor}
        for mark, rec in zip(doc["marks"], self.elements):
            extra = rec.to_json()
            for key in ("label", "xyxy"):
                extra.pop(key)
            mark.update(extra)
        return doc

    def save(self, out_dir: str | Path, name: str = "page") -> tuple[Path, Path]:
        """Write NAME.marked.png and NAME.marks.json into out_dir; returns both paths."""
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png, js = out / f"{name}.marked.png", out / f"{name}.marks.json"
        Image.fromarray(self.image).save(png)
        js.write_text(json.dumps(self.to_dict(image_file=png.name), ensure_ascii=False))
        return png, js


def _screenshot(page, want_w: int) -> np.ndarray:
    """The viewport as (H, W, 3) uint8 RGB, `want_w` px wide (CSS width x devicePixelRatio).
    Chromium: straight through the DevTools protocol with `optimizeForSpeed` (PNG encoding tuned
    for speed: 2-3x faster than Playwright's screenshot); where that gives another size (an
    emulated device scale factor) or another browser: Playwright's screenshot."""
    import base64

    import cv2

    data = None
    cdp = getattr(page, "_som_cdp", None)
    try:
        if cdp is None:
            cdp = page.context.new_cdp_session(page)
            setattr(page, "_som_cdp", cdp)
        data = base64.b64decode(cdp.send("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True})["data"])
    except Exception:  # noqa: BLE001 - not Chromium, or the session went away: the portable way
        data = None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data is not None else None
    if bgr is None or bgr.shape[1] != want_w:
        bgr = cv2.imdecode(np.frombuffer(page.screenshot(type="png"), np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def mark_page(
    target: Any,
    *,
    full_page: bool = False,
    kinds: Iterable[str] | None = None,
    style: UIMarkStyle = UIMarkStyle(),
    browser: Any = None,
    viewport: tuple[int, int] = (1280, 800),
    device_scale_factor: float = 1.0,
    wait_until: str = "load",
    timeout_s: float = 30.0,
    max_full_page_px: int = 16384,
    vision: bool = False,
) -> PageMarks:
    """Mark the interactive elements of a web page.

    target: a URL (http://…, file://…), a local HTML file, or a Playwright sync `Page` (marked as it
    is; som opens nothing). For a URL, som starts Playwright and Chromium (or uses `browser`),
    opens a context with `viewport` (CSS px) and `device_scale_factor`, and loads the page;
    `PageMarks.close()` (or `with`) closes them.
    full_page: mark the whole page (the viewport is stretched to the document's height, at most
    `max_full_page_px`, for the screenshot and hit-testing, then restored), else the viewport only.
    kinds: element kinds to keep (see KINDS: link, button, input, toggle, menu, clickable); None = all.
    vision: also mark what only the picture shows (needs som[screen]): text, icons and controls
    that `som.screen` finds inside canvases, images, SVGs and videos, away from every DOM mark.
    Their records have kind "vision" and the picture's element as tag/css; acting on them clicks
    (hovers, types) at their point.
    """
    if kinds is not None:
        kinds = tuple(kinds)
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown element kinds {unknown}; choose from {', '.join(KINDS)}")
    session = None
    if isinstance(target, (str, Path)):
        page, session = open_page(
            str(target), browser=browser, viewport=viewport, device_scale_factor=device_scale_factor,
            wait_until=wait_until, timeout_s=timeout_s,
        )
    elif hasattr(target, "evaluate") and hasattr(target, "screenshot"):
        page = target
    else:
        raise ValueError(f"mark_page takes a URL, an HTML file or a Playwright Page, got {type(target).__name__}")
    try:
        marks = _mark_open_page(
            page, full_page=full_page, kinds=kinds, style=style, max_full_page_px=max_full_page_px, vision=vision
        )
    except BaseException:
        if session is not None:
            session.close()
        raise
    marks._session = session
    marks._options = dict(full_page=full_page, kinds=kinds, style=style, max_full_page_px=max_full_page_px, vision=vision)
    return marks


def _vision_records(shot: np.ndarray, media: list[dict], dom_boxes: np.ndarray, scale: float) -> list[tuple[dict, np.ndarray]]:
    """(raw record, box) pairs for what som.screen finds inside pictures and no DOM mark covers."""
    from som.screen.elements import detect_elements
    from som.screen.ocr import read_text

    if not media:
        return []
    h, w = shot.shape[:2]
    areas = np.array([m["box"] for m in media], np.float64) * scale
    x1, y1 = int(max(0, areas[:, 0].min())), int(max(0, areas[:, 1].min()))
    x2, y2 = int(min(w, np.ceil(areas[:, 2].max()))), int(min(h, np.ceil(areas[:, 3].max())))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return []
    crop = np.ascontiguousarray(shot[y1:y2, x1:x2])  # OCR only the part of the screen with pictures
    found = detect_elements(crop, read_text(crop))
    out = []
    for e in found:
        b = np.array(e.xyxy, np.float64) + [x1, y1, x1, y1]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        owner = [i for i, a in enumerate(areas) if a[0] <= cx <= a[2] and a[1] <= cy <= a[3]]
        if not owner or e.kind == "image":
            continue
        if len(dom_boxes):
            d = dom_boxes
            inside_dom = (d[:, 0] <= cx) & (cx <= d[:, 2]) & (d[:, 1] <= cy) & (cy <= d[:, 3])
            ix = np.clip(np.minimum(d[:, 2], b[2]) - np.maximum(d[:, 0], b[0]), 0, None)
            iy = np.clip(np.minimum(d[:, 3], b[3]) - np.maximum(d[:, 1], b[1]), 0, None)
            if inside_dom.any() or ((ix * iy) > 0.3 * (b[2] - b[0]) * (b[3] - b[1])).any():
                continue  # the DOM already marks it
        m = media[owner[-1]]  # the innermost (latest in document order) picture holding it
        css_box = [float(v) / scale for v in b]
        out.append(({
            "tag": m["tag"], "role": "", "name": e.text, "text": e.text, "href": None, "value": None,
            "placeholder": None, "type": None, "checked": None, "reason": f"vision-{e.kind}",
            "css": m["css"], "xpath": m["xpath"], "path": m["path"], "frame_url": m["frame_url"],
            "box": css_box, "point": [(css_box[0] + css_box[2]) / 2, (css_box[1] + css_box[3]) / 2],
        }, b))
    return out


def _mark_open_page(page, *, full_page, kinds, style, max_full_page_px, vision=False) -> PageMarks:
    timings: dict[str, float] = {}
    restore = None
    if full_page:
        size = page.viewport_size or {"width": 1280, "height": 800}
        height = int(page.evaluate("Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)"))
        restore = size
        page.evaluate("window.scrollTo(0, 0)")
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, int(max_full_page_px)))})
    try:
        t0 = time.perf_counter()
        found = json.loads(page.evaluate(_collect_js(), {"min_px": 2, "media": bool(vision)}))
        t1 = time.perf_counter()
        shot = _screenshot(page, round(found["viewport"][0] * found["dpr"]))
        t2 = time.perf_counter()
    finally:
        if restore is not None:
            page.set_viewport_size(restore)
    timings["collect"] = (t1 - t0) * 1000
    timings["screenshot"] = (t2 - t1) * 1000
    h, w = shot.shape[:2]
    # screenshot px per CSS px (the device scale factor, measured rather than trusted)
    scale = w / float(found["viewport"][0])
    raw = [r for r in found["elements"] if kinds is None or _kind(r) in kinds]
    if kinds is not None and "vision" not in kinds:
        vision = False
    boxes = np.array([r["box"] for r in raw], np.float64).reshape(-1, 4) * scale
    # whole pixels covering the element (floor / ceil), then clipped to the image
    boxes = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    raw = [r for r, k in zip(raw, keep) if k]
    boxes = boxes[keep]
    if vision:
        tv = time.perf_counter()
        media = found.get("media", [])
        # a DOM mark on the picture itself (a canvas with a click handler) exposes only the whole;
        # the parts drawn in it still get vision marks
        pictures = {(m["css"], json.dumps(m["path"])) for m in media}
        solid = np.array([(r["css"], json.dumps(r["path"])) not in pictures for r in raw], bool)
        extra = _vision_records(shot, media, boxes[solid] if len(boxes) else boxes, scale)
        if extra:
            raw += [r for r, _ in extra]
            vb = np.array([b for _, b in extra], np.float64)
            boxes = np.concatenate([boxes, np.concatenate([np.floor(vb[:, :2]), np.ceil(vb[:, 2:])], axis=1)])
        timings["vision"] = (time.perf_counter() - tv) * 1000
    t3 = time.perf_counter()
    regions, placement = layout_ui_marks(boxes, (h, w), style, image=shot)
    t4 = time.perf_counter()
    image = draw_ui_marks(shot, regions, placement, style)
    t5 = time.perf_counter()
    timings["layout"] = (t4 - t3) * 1000
    timings["draw"] = (t5 - t4) * 1000
    elements = [
        ElementRecord(
            label=label,
            kind=_kind(r),
            tag=r["tag"],
            role=r["role"],
            name=r["name"],
            text=r["text"],
            href=r["href"],
            value=r["value"],
            placeholder=r["placeholder"],
            type=r["type"],
            checked=r["checked"],
            reason=r["reason"],
            css=r["css"],
            xpath=r["xpath"],
            path=tuple(r["path"]),
            frame_url=r["frame_url"],
            xyxy=tuple(float(v) for v in box),
            box_css=tuple(round(float(v), 2) for v in r["box"]),
            point_css=tuple(round(float(v), 2) for v in r["point"]),
        )
        for label, r, box in zip(regions.labels, raw, boxes)
    ]
    settings = {
        "source": "web",
        "full_page": bool(full_page),
        "kinds": list(kinds) if kinds is not None else list(KINDS),
        "viewport_css": list(found["viewport"]),
        "scroll_css": list(found["scroll"]),
        "label_mode": style.label_mode,
    }
    return PageMarks(
        image=image,
        screenshot=shot,
        regions=regions,
        elements=elements,
        page=page,
        url=found["url"],
        title=found["title"],
        device_scale_factor=float(scale),
        settings=settings,
        timings_ms=timings,
        _placement=placement,
    )
