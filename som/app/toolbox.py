"""The SoM toolbox in the browser (Gradio 6): automatic and interactive marks.

Layout: left, the image and the settings; right, the canvas (click it to add
regions), the mark table and the downloads. Every action is also a named API
endpoint (see `ENDPOINTS`), callable with `gradio_client`.

User data lives only in a per-session `gr.State` (a `ToolboxSession`) and in that
session's own temporary folder; the only module-level objects are the shared,
read-only segmenter models (built once, guarded by a lock). Sessions idle for longer
than `ServeLimits.session_ttl_s` are freed (`som.app.serving.SessionJanitor`); `/mark`
marks an image in one call without a session; automatic marking (`/mark`,
`/segment_auto`) runs at most `max_jobs` at once, `max_queue` more wait, the next is
told "busy".
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from som.app.state import (
    LABEL_MODES,
    MARK_TYPES,
    NothingAdded,
    TABLE_HEADERS,
    Rendered,
    ToolboxSession,
    UserError,
    make_refine_options,
    make_style,
)
from som.app.serving import (
    GRADIO_QUEUE_SIZE,
    JobGate,
    ServeLimits,
    SessionJanitor,
    add_mark_endpoint,
    cache_age_s,
    check_upload,
    forget_images,
    launch_kwargs,
    load_upload,
    mark_upload,
    new_temp_root,
    trim_memory,
    upload_path,
)
from som.imageio import ImageError
from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, GRANULARITY_LEVELS, SPECS, availability, granularity_choices
from som.segmenters.base import check_classes

log = logging.getLogger("som.app")

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_MARKS = ["Mark", "Mask", "Contour"]
DEFAULT_MIN_AREA = 0.0005
TOOLS = {
    "New region (+ point)": "new",
    "Add + point to last region": "plus",
    "Add - point to last region": "minus",
    "Box (click two corners)": "box",
}
DEFAULT_TOOL = next(iter(TOOLS))

# public API: name -> inputs (besides the session state), what it does
ENDPOINTS = {
    "/mark": "(image, segmenter, granularity, marks, label_mode, alpha, min_area) one call, no session: "
    "the marked image and the marks JSON",
    "/load_image": "(image, segmenter) load an upload; starts the image embedding in the background",
    "/segment_auto": "(segmenter, granularity, marks, label_mode, alpha, min_area, classes) automatic marks; "
    "classes: open vocabulary 'mug, laptop' for a segmenter that names classes (seem), '' for none",
    "/add_text": "(text, segmenter, marks, label_mode, alpha, min_area) new region from a text prompt "
    "('the red mug'; segmenters with text prompts, e.g. seem)",
    "/add_point": "(x, y, segmenter, marks, label_mode, alpha, min_area) new region from a positive point",
    "/refine_last": "(x, y, positive, segmenter, marks, label_mode, alpha, min_area) +/- point on the last region",
    "/add_box": "(x1, y1, x2, y2, segmenter, marks, label_mode, alpha, min_area) new region from a box",
    "/add_stroke": "(stroke, segmenter, marks, label_mode, alpha, min_area) new region from a polyline "
    "'[[x, y], ...]'",
    "/larger": "(marks, label_mode, alpha, min_area) the last click's region -> its next larger mask choice",
    "/smaller": "(marks, label_mode, alpha, min_area) the last click's region -> its next smaller mask choice",
    "/undo": "(marks, label_mode, alpha) remove the last region",
    "/clear": "(marks, label_mode, alpha) remove all regions",
    "/restyle": "(marks, label_mode, alpha) redraw with other mark types / labels / alpha",
    "/segmenter_info": "(segmenter) whether a segmenter can run here, and why not",
}


# ---------------------------------------------------------------- segmenters (shared, read-only)
class SegmenterPool:
    """Builds each segmenter once per process; models are shared by sessions (they hold no user data)."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self._lock = threading.Lock()
        self._built: dict[str, Any] = {}

    def get(self, name: str):
        if name not in SPECS:
            raise UserError(f"unknown segmenter {name!r}; choose one of {', '.join(SPECS)}")
        ok, why = availability(name)
        if not ok:
            raise UserError(f"segmenter {name} cannot run here: {why}")
        with self._lock:
            if name not in self._built:
                from som.pipeline import cached_segmenter

                self._built[name] = cached_segmenter(name, self.device)
            return self._built[name]

    def forget_images(self) -> None:
        """Drop the models' cached embeddings (called when every session has expired)."""
        with self._lock:
            built = list(self._built.values())
        for seg in built:
            forget_images(seg)

    def warm_up(self, name: str, image: np.ndarray) -> None:
        """Build the model and embed the image in the background, so the first click is fast."""

        def work():
            try:
                seg = self.get(name)
                if hasattr(seg, "embed"):
                    seg.embed(image)
            except Exception:  # a failed warm-up only means the first click is slow or errs readably
                log.debug("warm-up of %s failed", name, exc_info=True)

        threading.Thread(target=work, name=f"som-warmup-{name}", daemon=True).start()


def segmenter_choices() -> list[tuple[str, str]]:
    out = []
    for name in SPECS:
        ok, _ = availability(name)
        out.append((name if ok else f"{name} (unavailable)", name))
    return out


def segmenter_table_md() -> str:
    lines = ["| segmenter | can run here |", "|---|---|"]
    for name in SPECS:
        ok, why = availability(name)
        lines.append(f"| `{name}` | {'yes' if ok else 'no: ' + why} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- error handling
def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def readable_errors(fn):
    """Every failure becomes a gr.Error with one readable line; the traceback goes to the log only."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (UserError, ImageError) as e:
            raise gr.Error(str(e), print_exception=False) from None
        except ValueError as e:
            raise gr.Error(_first_line(e), print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory: try a smaller image or a coarser granularity", print_exception=False) from None
        except RuntimeError as e:  # torch reports CUDA / CPU allocation failures as RuntimeError
            if "out of memory" in str(e).lower():
                raise gr.Error("out of memory: try a smaller image, a coarser granularity or the CPU",
                               print_exception=False) from None
            log.error("%s failed:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"{fn.__name__} failed: {_first_line(e)}", print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the app must keep serving
            log.error("%s failed:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"{fn.__name__} failed ({type(e).__name__}): {_first_line(e)}",
                           print_exception=False) from None

    return wrapper


# ---------------------------------------------------------------- handlers
def _min_area_px(session: ToolboxSession, min_area: float) -> int:
    h, w = session.require_image().shape[:2]
    return make_refine_options(min_area).min_area(h, w)


def _table(r: Rendered):
    """The mark table with its columns (a class column appears when some mark has a class)."""
    import pandas as pd

    return pd.DataFrame(r.rows, columns=r.headers)


def _present(session: ToolboxSession, r: Rendered):
    if r.warning:
        gr.Warning(r.warning)
    return r.canvas_path, _table(r), r.status, r.marked_png, r.marks_json, r.clean_png, session


def _present_view(session: ToolboxSession, r: Rendered):
    if r.warning:
        gr.Warning(r.warning)
    return r.canvas_path, _table(r), r.status, session


def _empty_outputs(session: ToolboxSession, status: str):
    return None, [], status, None, None, None, session


def _status(session: ToolboxSession, line: str) -> str:
    n = session.n_regions
    h, w = session.source.shape[:2]
    return f"**{n} mark{'s' if n != 1 else ''}** on {session.image_name} ({w}×{h}) · {line}"


class Handlers:
    """The functions behind the events; each takes widget values and the session state."""

    def __init__(self, pool: SegmenterPool, limits: ServeLimits = ServeLimits(), temp_root: Path | None = None):
        self.pool = pool
        self.limits = limits
        self.gate = JobGate(limits.max_jobs, limits.max_queue, after=trim_memory)  # a marking peaks at many MB
        self.temp_root = temp_root

    def _session(self, state: ToolboxSession | None) -> ToolboxSession:
        if isinstance(state, ToolboxSession):
            return state
        return ToolboxSession(temp_root=None if self.temp_root is None else str(self.temp_root))

    # one call ---------------------------------------------------------------
    def mark(self, image: Any, segmenter: str, granularity: Any, marks: list[str], label_mode: str, alpha: float,
             min_area: float, progress=gr.Progress()):
        """Mark an image in one call (no session): the marked image and the marks JSON (`som mark`'s)."""
        seg = self.pool.get(segmenter)

        def report(fraction: float, message: str) -> None:
            progress(min(max(float(fraction), 0.0), 1.0), desc=message)

        progress(0.0, desc="waiting for a free slot" if self.gate.running >= self.gate.max_jobs else "marking")
        return mark_upload(image, seg, granularity, marks, label_mode, alpha, min_area, limits=self.limits,
                           gate=self.gate, progress=report)

    # image ---------------------------------------------------------------
    def load_image(self, image: Any, segmenter: str, state: ToolboxSession | None):
        """Load an uploaded image (path or Gradio file payload); clears the regions."""
        session = self._session(state)
        if image is None:
            session.close()
            return _empty_outputs(self._session(None), "Upload an image or pick an example.")
        path, name = upload_path(image)  # raw payload (preprocess=False): we read the file ourselves
        check_upload(path, name, self.limits)  # over a limit: refused from the header, nothing decoded
        with session.lock:
            session.load(load_upload(path, name, self.limits), name=name)
        if segmenter in SPECS and availability(segmenter)[0]:
            self.pool.warm_up(segmenter, session.source)
        line = "image loaded: click an object to add a region, or press **Run automatic**"
        return _present(session, session.render(make_style(DEFAULT_MARKS), _status(session, line)))

    # automatic -----------------------------------------------------------
    def segment_auto(self, segmenter: str, granularity: float, marks: list[str], label_mode: str, alpha: float,
                     min_area: float, classes: str | None, state: ToolboxSession | None, progress=gr.Progress()):
        """Segment everything at the chosen granularity; replaces the current regions. classes: a
        comma list (open vocabulary) for a segmenter that names classes, '' for none."""
        session = self._session(state)
        session.require_image()
        style = make_style(marks, label_mode, alpha)
        options = make_refine_options(min_area)
        level = int(round(float(granularity)))
        if level not in GRANULARITY_LEVELS:
            raise UserError(f"granularity must be one of {sorted(GRANULARITY_LEVELS)}, got {granularity}")
        progress(0.0, desc=f"loading {segmenter}")
        seg = self.pool.get(segmenter)
        vocabulary = check_classes(seg, classes)  # refused before any work when the segmenter knows none

        def report(fraction: float, message: str) -> None:
            progress(min(max(float(fraction), 0.0), 1.0), desc=message)

        if self.gate.running >= self.gate.max_jobs:
            progress(0.0, desc="waiting for a free slot")
        with self.gate.slot():
            line = session.run_automatic(seg, level, style, options, progress=report, classes=vocabulary)
        progress(1.0, desc="drawing marks")
        rendered = session.render(style, _status(session, line))
        if session.n_regions == 0:
            rendered.warning = "no regions passed the filters: try another granularity or a smaller minimum area"
        return _present(session, rendered)

    # interactive -----------------------------------------------------------
    def _gesture(self, session, segmenter, marks, label_mode, alpha, min_area, action, view_only=False):
        """Run one gesture and draw. view_only: the picture, table and status only (the page's clicks;
        `downloads` writes the files right after), else everything (the API endpoints)."""
        session.require_image()
        style = make_style(marks, label_mode, alpha)
        seg = self.pool.get(segmenter)
        present = _present_view if view_only else _present
        with session.lock:
            try:
                line = action(seg, _min_area_px(session, min_area))
            except NothingAdded as e:  # a valid gesture that changed nothing: say so, keep the picture
                return present(session, session.render(style, _status(session, str(e)), warning=str(e),
                                                       downloads=not view_only))
            return present(session, session.render(style, _status(session, line), downloads=not view_only))

    def downloads(self, state: ToolboxSession | None):
        """Write the marked PNG and the marks JSON of the last drawing (after a click in the page)."""
        s = self._session(state)
        if s.source is None:
            return None, None, None
        with s.lock:
            return s.write_downloads()

    def add_point(self, x: float, y: float, segmenter: str, marks: list[str], label_mode: str, alpha: float,
                  min_area: float, state: ToolboxSession | None):
        """New region from one positive point at pixel (x, y)."""
        s = self._session(state)
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.add_point(seg, x, y, mn))

    def refine_last(self, x: float, y: float, positive: bool, segmenter: str, marks: list[str], label_mode: str,
                    alpha: float, min_area: float, state: ToolboxSession | None):
        """Add a positive (True) or negative (False) point at (x, y) to the last region."""
        s = self._session(state)
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.refine_last(seg, x, y, bool(positive), mn))

    def add_text(self, text: str, segmenter: str, marks: list[str], label_mode: str, alpha: float,
                 min_area: float, state: ToolboxSession | None):
        """New region from a text prompt ('the red mug'), for segmenters with text prompts."""
        s = self._session(state)
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.add_text(seg, text, mn))

    def add_box(self, x1: float, y1: float, x2: float, y2: float, segmenter: str, marks: list[str],
                label_mode: str, alpha: float, min_area: float, state: ToolboxSession | None):
        """New region from a box (x1, y1, x2, y2) in image pixels."""
        s = self._session(state)
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.add_box(seg, x1, y1, x2, y2, mn))

    def add_stroke(self, stroke: str, segmenter: str, marks: list[str], label_mode: str, alpha: float,
                   min_area: float, state: ToolboxSession | None):
        """New region from a stroke: JSON list of [x, y] vertices in image pixels."""
        import json

        try:
            points = json.loads(stroke) if isinstance(stroke, str) else stroke
        except json.JSONDecodeError:
            raise UserError('a stroke is JSON like [[10, 20], [40, 25], [80, 30]]') from None
        s = self._session(state)
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.add_polyline(seg, points, mn))

    def add_painted(self, editor: Any, segmenter: str, marks: list[str], label_mode: str, alpha: float,
                    min_area: float, state: ToolboxSession | None):
        """The brush layer of the stroke editor -> one region."""
        s = self._session(state)
        s.require_image()
        layers = (editor or {}).get("layers") or []
        painted = None
        for layer in layers:
            if layer is None:
                continue
            a = np.asarray(layer)
            ink = a[..., 3] > 0 if a.ndim == 3 and a.shape[2] == 4 else np.asarray(a).any(axis=-1)
            painted = ink if painted is None else painted | ink
        if painted is None or not painted.any():
            raise UserError("paint over an object with the brush first, then press Add stroke")
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area,
                             lambda seg, mn: s.add_stroke(seg, painted, mn))

    def canvas_select(self, tool: str, segmenter: str, marks: list[str], label_mode: str, alpha: float,
                      min_area: float, state: ToolboxSession | None, evt: gr.SelectData):
        """A click on the canvas: what it does depends on the tool."""
        s = self._session(state)
        if s.source is None:
            raise UserError("upload an image first (or pick an example)")
        x, y = (float(v) for v in evt.index[:2])
        kind = TOOLS.get(tool, tool)
        actions = {
            "new": lambda seg, mn: s.add_point(seg, x, y, mn),
            "plus": lambda seg, mn: s.refine_last(seg, x, y, True, mn),
            "minus": lambda seg, mn: s.refine_last(seg, x, y, False, mn),
            "box": lambda seg, mn: s.box_click(seg, x, y, mn),
        }
        if kind not in actions:
            raise UserError(f"unknown tool {tool!r}")
        return self._gesture(s, segmenter, marks, label_mode, alpha, min_area, actions[kind], view_only=True)

    # editing ---------------------------------------------------------------
    def step_choice(self, step: int, marks: list[str], label_mode: str, alpha: float, min_area: float,
                    state: ToolboxSession | None):
        """The last click's region becomes its next larger (step 1) or smaller (-1) mask choice."""
        s = self._session(state)
        s.require_image()
        style = make_style(marks, label_mode, alpha)
        with s.lock:
            try:
                line = s.step_choice(int(step), _min_area_px(s, min_area))
            except NothingAdded as e:
                return _present(s, s.render(style, _status(s, str(e)), warning=str(e)))
            return _present(s, s.render(style, _status(s, line)))

    def larger(self, marks: list[str], label_mode: str, alpha: float, min_area: float, state: ToolboxSession | None):
        """The last click's region -> its next larger mask choice."""
        return self.step_choice(1, marks, label_mode, alpha, min_area, state)

    def smaller(self, marks: list[str], label_mode: str, alpha: float, min_area: float, state: ToolboxSession | None):
        """The last click's region -> its next smaller mask choice."""
        return self.step_choice(-1, marks, label_mode, alpha, min_area, state)

    def undo(self, marks: list[str], label_mode: str, alpha: float, state: ToolboxSession | None):
        """Remove the last region."""
        s = self._session(state)
        s.require_image()
        with s.lock:
            last = s.n_regions
            line = f"removed region {last}" if s.undo() else "nothing to undo"
            return _present(s, s.render(make_style(marks, label_mode, alpha), _status(s, line)))

    def clear(self, marks: list[str], label_mode: str, alpha: float, state: ToolboxSession | None):
        """Remove every region (the image stays)."""
        s = self._session(state)
        s.require_image()
        with s.lock:
            s.clear()
            return _present(s, s.render(make_style(marks, label_mode, alpha), _status(s, "cleared")))

    def restyle(self, marks: list[str], label_mode: str, alpha: float, state: ToolboxSession | None):
        """Redraw the same regions with other mark types, label mode or alpha."""
        s = self._session(state)
        if s.source is None:
            return _empty_outputs(s, "Upload an image or pick an example.")
        return _present(s, s.render(make_style(marks, label_mode, alpha), _status(s, "redrawn")))

    def editor_value(self, state: ToolboxSession | None):
        """The stroke editor shows the clean image as its background."""
        s = self._session(state)
        if s.source is None:
            return None
        return {"background": s.source, "layers": [], "composite": None}

    def segmenter_info(self, segmenter: str) -> str:
        """Whether `segmenter` can run here; a warning in the page when it cannot."""
        if segmenter not in SPECS:
            raise UserError(f"unknown segmenter {segmenter!r}; choose one of {', '.join(SPECS)}")
        ok, why = availability(segmenter)
        if not ok:
            gr.Warning(f"{segmenter} cannot run here: {why}")
            return f"⚠️ `{segmenter}` cannot run here: {why}"
        return f"`{segmenter}`: {SPECS[segmenter].description}"


# ---------------------------------------------------------------- page
CSS = """
#som-canvas img { cursor: crosshair; }
#som-status { min-height: 2.2em; }
"""

HELP = """
# Set-of-Mark toolbox
Upload an image (or pick an example). **Run automatic** marks everything; or **click the
marked image** to add regions one by one (each click = one region, numbered next; existing
marks keep their numbers and pixels). **Larger** / **Smaller** step the last click's region
through the segmenter's mask choices, from parts to wholes. Download the marked PNG, the marks JSON (same format as
`som mark`) or the clean image.
"""


def build_app(default_segmenter: str = DEFAULT_SEGMENTER, device: str = "auto",
              limits: ServeLimits = ServeLimits()) -> gr.Blocks:
    """The toolbox as a gr.Blocks (not launched). Serve it with `launch`, or with
    `demo.launch(**launch_kwargs(limits, demo.janitor))` (the limits and session expiry need both)."""
    if default_segmenter not in SPECS:
        raise ValueError(f"unknown segmenter {default_segmenter!r}; registered: {', '.join(SPECS)}")
    temp_root = new_temp_root("toolbox")
    h = Handlers(SegmenterPool(device), limits, temp_root)
    wrap = readable_errors
    ttl = limits.session_ttl_s

    with gr.Blocks(title="SoM toolbox", delete_cache=cache_age_s(limits)) as demo:
        # no time_to_live here: Gradio's would expire a session while a request of it runs (it counts
        # from the last write); demo.janitor frees idle sessions, and calls this callback
        state = gr.State(None, delete_callback=lambda s: s.close() if isinstance(s, ToolboxSession) else None)
        gr.Markdown(HELP)
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                image_in = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"],
                                    elem_id="som-input", height=260)
                examples = sorted(ASSETS_DIR.glob("*.jpg")) if ASSETS_DIR.is_dir() else []
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image_in], label="Examples")
                segmenter = gr.Dropdown(segmenter_choices(), value=default_segmenter, label="Segmenter",
                                        elem_id="som-segmenter")
                seg_info = gr.Markdown(h.segmenter_info(default_segmenter) if availability(default_segmenter)[0]
                                       else f"⚠️ `{default_segmenter}`: {availability(default_segmenter)[1]}")
                granularity = gr.Radio(granularity_choices(), value=DEFAULT_LEVEL, label="Granularity",
                                       info="flat: 1 parts · 2 objects · 3 wholes; 4 nested: wholes with their "
                                            "parts inside them (automatic mode)")
                run_btn = gr.Button("Run automatic", variant="primary", elem_id="som-run")
                with gr.Accordion("Marks", open=True):
                    marks = gr.CheckboxGroup(list(MARK_TYPES), value=DEFAULT_MARKS, label="Mark types",
                                             info="Names: class names beside the labels, where the segmenter "
                                                  "gives them (seem)")
                    label_mode = gr.Radio(list(LABEL_MODES), value="Number", label="Labels")
                    alpha = gr.Slider(0.0, 1.0, value=0.4, step=0.05, label="Mask alpha")
                    min_area = gr.Number(DEFAULT_MIN_AREA, label="Minimum area",
                                         info="below 1: fraction of the image; from 1 up: pixels")
                with gr.Accordion("Classes and text (segmenters that name classes, e.g. seem)", open=False):
                    classes = gr.Textbox("", label="Classes", placeholder="mug, laptop, window", elem_id="som-classes",
                                         info="open vocabulary for Run automatic; empty: the segmenter's own")
                    with gr.Row():
                        text_in = gr.Textbox(label="Text prompt", placeholder="the red mug", elem_id="som-text",
                                             scale=3)
                        text_btn = gr.Button("Add as a region", size="sm", elem_id="som-text-btn", scale=1)
                with gr.Accordion("Segmenters on this machine", open=False):
                    gr.Markdown(segmenter_table_md())
            with gr.Column(scale=3, min_width=400):
                tool = gr.Radio(list(TOOLS), value=DEFAULT_TOOL, label="A click on the image…",
                                elem_id="som-tool")
                canvas = gr.Image(label="Marked image", type="filepath", interactive=False,
                                  format="png", elem_id="som-canvas", buttons=["fullscreen"], show_label=False)
                status = gr.Markdown("Upload an image or pick an example.", label="status", elem_id="som-status")
                with gr.Row():
                    smaller_btn = gr.Button("Smaller", size="sm", elem_id="som-smaller")
                    larger_btn = gr.Button("Larger", size="sm", elem_id="som-larger")
                    undo_btn = gr.Button("Undo last region", size="sm", elem_id="som-undo")
                    clear_btn = gr.Button("Clear all", size="sm", elem_id="som-clear")
                with gr.Row():
                    dl_png = gr.DownloadButton("Marked PNG", size="sm", elem_id="som-dl-png")
                    dl_json = gr.DownloadButton("Marks JSON", size="sm", elem_id="som-dl-json")
                    dl_clean = gr.DownloadButton("Clean image", size="sm", elem_id="som-dl-clean")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Marks", interactive=False, elem_id="som-table",
                                     max_height=320, wrap=False)
                with gr.Accordion("Paint a stroke (one region from a brush stroke)", open=False):
                    editor = gr.ImageEditor(label="Paint over one object", type="numpy", sources=[],
                                            transforms=[], layers=False, elem_id="som-editor",
                                            brush=gr.Brush(colors=["#ff2d2d"], default_size=12,
                                                           color_mode="fixed"))
                    stroke_btn = gr.Button("Add stroke as a region", size="sm", elem_id="som-stroke")

        # API-only inputs (hidden): coordinates and the stroke polyline
        with gr.Group(visible=False):
            x_in, y_in = gr.Number(label="x"), gr.Number(label="y")
            x2_in, y2_in = gr.Number(label="x2"), gr.Number(label="y2")
            positive_in = gr.Checkbox(True, label="positive")
            stroke_in = gr.Textbox(label="stroke")
            api_btns = {name: gr.Button(name) for name in ("point", "refine", "box", "stroke")}

        outputs = [canvas, table, status, dl_png, dl_json, dl_clean, state]
        look = [marks, label_mode, alpha]
        common = [segmenter, *look, min_area, state]

        image_in.change(wrap(h.load_image), [image_in, segmenter, state], outputs, api_name="load_image",
                        preprocess=False).then(h.editor_value, [state], [editor], api_visibility="private")
        # automatic marking: h.gate limits it (max_jobs run, max_queue wait, the next hears "busy")
        run_btn.click(wrap(h.segment_auto), [segmenter, granularity, *look, min_area, classes, state], outputs,
                      api_name="segment_auto", concurrency_limit=None)
        # a click in the page shows its picture first, then writes the downloads (PNG encoding
        # costs as much as the decoder); the API endpoints below return everything at once
        canvas.select(wrap(h.canvas_select), [tool, *common], [canvas, table, status, state], api_visibility="private",
                      concurrency_limit=4, show_progress_on=[status], trigger_mode="multiple", queue=False,
                      ).then(wrap(h.downloads), [state], [dl_png, dl_json, dl_clean], api_visibility="private")
        api_btns["point"].click(wrap(h.add_point), [x_in, y_in, *common], outputs, api_name="add_point",
                                concurrency_limit=4, show_progress_on=[status])
        api_btns["refine"].click(wrap(h.refine_last), [x_in, y_in, positive_in, *common], outputs,
                                 api_name="refine_last", concurrency_limit=4, show_progress_on=[status])
        api_btns["box"].click(wrap(h.add_box), [x_in, y_in, x2_in, y2_in, *common], outputs, api_name="add_box",
                              concurrency_limit=4, show_progress_on=[status])
        api_btns["stroke"].click(wrap(h.add_stroke), [stroke_in, *common], outputs, api_name="add_stroke",
                                 concurrency_limit=4, show_progress_on=[status])
        text_btn.click(wrap(h.add_text), [text_in, *common], outputs, api_name="add_text", concurrency_limit=4,
                       show_progress_on=[status])
        stroke_btn.click(wrap(h.add_painted), [editor, *common], outputs, api_visibility="private",
                         concurrency_limit=4, show_progress_on=[status])
        larger_btn.click(wrap(h.larger), [*look, min_area, state], outputs, api_name="larger", concurrency_limit=4,
                         show_progress_on=[status])
        smaller_btn.click(wrap(h.smaller), [*look, min_area, state], outputs, api_name="smaller", concurrency_limit=4,
                          show_progress_on=[status])
        undo_btn.click(wrap(h.undo), [*look, state], outputs, api_name="undo", concurrency_limit=4, show_progress_on=[status])
        clear_btn.click(wrap(h.clear), [*look, state], outputs, api_name="clear", concurrency_limit=4, show_progress_on=[status])
        restyle_btn = gr.Button("restyle", visible=False)
        restyle_btn.click(wrap(h.restyle), [*look, state], outputs, api_name="restyle", concurrency_limit=4, show_progress_on=[status])
        for c in look:
            c.change(wrap(h.restyle), [*look, state], outputs, api_visibility="private", concurrency_limit=4, show_progress_on=[status],
                     trigger_mode="always_last")
        segmenter.change(wrap(h.segmenter_info), [segmenter], [seg_info], api_name="segmenter_info")
        add_mark_endpoint(wrap(h.mark), default_segmenter, segmenter_choices())
    demo.janitor = SessionJanitor(demo, ttl, temp_root, on_idle=h.pool.forget_images)
    demo.handlers = h
    return demo


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    segmenter: str = DEFAULT_SEGMENTER,
    device: str = "auto",
    limits: ServeLimits = ServeLimits(),
    prevent_thread_lock: bool = False,
    quiet: bool = False,
):
    """Build and serve the toolbox. Returns what `Blocks.launch` returns."""
    demo = build_app(segmenter, device, limits)
    demo.queue(default_concurrency_limit=2, max_size=GRADIO_QUEUE_SIZE)
    return demo.launch(
        server_name=host, server_port=port, share=share, allowed_paths=[], prevent_thread_lock=prevent_thread_lock,
        quiet=quiet, css=CSS, show_error=False, theme=gr.themes.Soft(), **launch_kwargs(limits, demo.janitor),
    )
