"""The SoM chat app: talk to a multimodal LLM about a marked image (`som chat`, `python demo_gpt4v_som.py`).

Upload an image (or pick an example): it is marked at once. Ask a question: the answer streams
in, then the regions it names are highlighted (the rest dimmed, `som.draw.highlight`) and listed
with area and box. Re-mark at another granularity or click the image to add a region at any time:
the conversation goes on against the new marks (the model is told that the numbers changed).

Endpoint: any OpenAI-compatible chat endpoint. The server's own settings come from flags or
OPENAI_BASE_URL / SOM_MODEL / OPENAI_API_KEY; a browser user may type others in the settings
panel. Secrets: the key is never logged, never put in a message, never sent to the browser; the
server's key is only ever sent to the server's own endpoint (a user who types another base URL
must type that endpoint's key too), so a shared page cannot be used to send it elsewhere.

Layers: `ChatSession` is one user's image, marks and conversation, with every action, and no
Gradio (tested directly). `build_app` wires it to widgets; each browser session keeps its own
`ChatSession` in a `gr.State`.

Named API endpoints (gradio_client): one without a session,
    /mark       (image, segmenter, granularity, marks, label_mode, alpha, min_area) -> marked image, marks JSON
and the rest per session (a session is freed after `ServeLimits.session_ttl_s` idle seconds):
    /load_image (image, segmenter, granularity) -> marked image, status, chat, mentions
    /remark     (segmenter, granularity)         -> the same, after marking again
    /add_region (x, y)                            -> the same, after adding the region at pixel x, y
    /ask        (message, template, base_url, model, api_key) -> chat, image, mentions, status (streams)
    /show_marks ()                                -> the marked image without highlight
    /clear_chat ()                                -> empty chat (marks kept)
    /endpoint_info (base_url, model, api_key)     -> which endpoint a question would go to (no secrets)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, SPECS, availability, granularity, granularity_choices

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7861
MAX_SIDE_PX = 2048  # larger uploads are scaled down: marks, highlight and LLM image all use this size
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
MENTION_HEADERS = ["mark", "area px", "x1", "y1", "x2", "y2"]
CLASS_HEADER = "class"
REMARK_NOTE = (
    "The image has been marked again since the earlier messages: its regions and their marks changed, "
    "so mark numbers in earlier messages may now name other regions. Use only the marks of the latest image."
)
NO_KEY_HELP = (
    "**No API key is set**, so questions cannot be sent yet (marking works without one). Either "
    "set `OPENAI_API_KEY` in the environment before starting the app (and `OPENAI_BASE_URL` for an "
    "endpoint other than OpenAI, e.g. `http://localhost:11434/v1` for Ollama; `SOM_MODEL` picks the "
    "model), or open **LLM settings** and type a key (and base URL / model) there."
)
KIND_HINTS = {
    "auth": "Check the API key: type it under LLM settings, or set OPENAI_API_KEY before starting the app.",
    "model_not_found": "Type a model this endpoint serves under LLM settings (or set SOM_MODEL).",
    "not_found": "Check the base URL under LLM settings; it usually ends in /v1.",
    "connection": "Is the endpoint running, and is the base URL right?",
    "timeout": "The endpoint may be overloaded; try again, or a smaller model.",
    "rate_limit": "The endpoint is rate limiting; wait a moment and ask again.",
    "context_length": "Try a coarser granularity (fewer marks) or a shorter question.",
    "config": "Open LLM settings to set the endpoint.",
}


class UserError(ValueError):
    """A mistake the user can fix; its message is shown as is."""


# ---------------------------------------------------------------- settings and endpoint
@dataclass(frozen=True)
class ChatDefaults:
    """Server-side settings (flags). base_url/model: None = OPENAI_BASE_URL / SOM_MODEL (else OpenAI, gpt-4o).
    api_key_env: the variable holding the server's key; its value is read per request, never stored."""

    segmenter: str = DEFAULT_SEGMENTER
    granularity: int = DEFAULT_LEVEL
    device: str = "auto"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    templates_file: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 2

    def server_base_url(self) -> str | None:
        return self.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def server_model(self) -> str:
        from som.llm.client import DEFAULT_MODEL

        return self.model or os.environ.get("SOM_MODEL") or DEFAULT_MODEL

    def server_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None


def _norm_url(url: str | None) -> str | None:
    url = (url or "").strip().rstrip("/")
    return url or None


@dataclass(frozen=True)
class Endpoint:
    """Where a question goes. `key_source` says where the key came from, never what it is."""

    base_url: str | None
    model: str
    key_source: str  # "typed", "env", "placeholder" or "none"

    def describe(self, api_key_env: str) -> str:
        from som.llm.errors import scrub

        where = scrub(self.base_url or "api.openai.com (OpenAI)")
        key = {
            "typed": "the key typed in LLM settings",
            "env": f"the server's key (${api_key_env})",
            "placeholder": "no key (a local server that needs none)",
            "none": "no key",
        }[self.key_source]
        return f"model `{scrub(self.model)}` at `{where}`, with {key}"


def resolve_endpoint(defaults: ChatDefaults, base_url: str = "", model: str = "", api_key: str = "") -> tuple[Endpoint, str | None]:
    """(Endpoint, key or None). The server's key goes only to the server's own base URL."""
    from som.llm.client import LOCAL_PLACEHOLDER_KEY

    server_url = _norm_url(defaults.server_base_url())
    url = _norm_url(base_url) or server_url
    model = (model or "").strip() or defaults.server_model()
    typed = (api_key or "").strip() or None
    if typed:
        return Endpoint(url, model, "typed"), typed
    if url == server_url and defaults.server_key():
        return Endpoint(url, model, "env"), defaults.server_key()
    if url is not None:  # vLLM / Ollama / LM Studio ignore the key, the SDK wants one
        return Endpoint(url, model, "placeholder"), LOCAL_PLACEHOLDER_KEY
    return Endpoint(url, model, "none"), None


def endpoint_note(defaults: ChatDefaults, base_url: str = "", model: str = "", api_key: str = "") -> str:
    """Markdown for the page: where questions go, or how to set a key. Holds no secret."""
    endpoint, key = resolve_endpoint(defaults, base_url, model, api_key)
    if key is None:
        return NO_KEY_HELP
    note = f"Questions go to {endpoint.describe(defaults.api_key_env)}."
    if endpoint.key_source == "placeholder" and _norm_url(base_url) and _norm_url(base_url) != _norm_url(defaults.server_base_url()):
        note += " The server's own key is only sent to its own endpoint: type this endpoint's key if it needs one."
    return note


def make_client(defaults: ChatDefaults, base_url: str = "", model: str = "", api_key: str = ""):
    """An LLMClient for these settings; LLMError(kind='config') with the how-to when there is no key."""
    from som.llm.client import LLMClient, LLMConfig
    from som.llm.errors import LLMError

    endpoint, key = resolve_endpoint(defaults, base_url, model, api_key)
    if key is None:
        raise LLMError("config", NO_KEY_HELP)
    try:
        config = LLMConfig(model=endpoint.model, base_url=endpoint.base_url, api_key=key,
                           timeout_s=defaults.timeout_s, max_retries=defaults.max_retries)
    except ValueError as e:
        raise LLMError("config", str(e)) from None
    return LLMClient(config)


def error_text(e: BaseException, secrets: list[str | None]) -> str:
    """One readable chat message for a failed question (scrubbed of every secret)."""
    from som.llm.errors import LLMError, scrub

    if isinstance(e, LLMError):
        if e.kind == "config" and str(e) == NO_KEY_HELP:
            return NO_KEY_HELP
        hint = KIND_HINTS.get(e.kind, "")
        return f"⚠️ **The LLM call failed** ({e.kind}): {scrub(e, secrets)}" + (f"\n\n{hint}" if hint else "")
    if isinstance(e, (UserError, ValueError)):
        return f"⚠️ {scrub(e, secrets)}"
    return f"⚠️ **Something went wrong** ({type(e).__name__}): {scrub(e, secrets)}"


# ---------------------------------------------------------------- segmenters (shared by sessions)
class Segmenters:
    """Each segmenter built once per process and used by one call at a time (models and their
    per-image embedding caches are shared by every session)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self.lock = threading.Lock()
        self.built: dict[str, Any] = {}

    def forget_images(self) -> None:
        """Drop the models' cached embeddings (called when every session has expired)."""
        from som.app.serving import forget_images

        with self.lock:
            for seg in list(self.built.values()):
                forget_images(seg)

    def get(self, name: str):
        if name not in SPECS:
            raise UserError(f"unknown segmenter {name!r}; choose one of {', '.join(SPECS)}")
        ok, why = availability(name)
        if not ok:
            raise UserError(f"segmenter {name} cannot run here: {why}")
        from som.pipeline import cached_segmenter

        seg = self.built[name] = cached_segmenter(name, self.device)
        return seg


def segmenter_choices() -> list[tuple[str, str]]:
    return [(name if availability(name)[0] else f"{name} (unavailable)", name) for name in SPECS]


def example_images() -> list[str]:
    if not ASSETS_DIR.is_dir():
        return []
    return [str(p) for p in sorted(ASSETS_DIR.glob("*.jpg"))]


# ---------------------------------------------------------------- one user's chat, no Gradio
def _append_names(kept, new) -> dict:
    """categories / category_scores of `kept` followed by those of `new`'s first region (a click);
    None when neither has names, "" / NaN for the side without."""
    if kept.categories is None and new.categories is None:
        return {"categories": None, "category_scores": None}
    old_names = kept.categories if kept.categories is not None else [""] * len(kept)
    old_scores = kept.category_scores if kept.category_scores is not None else np.full(len(kept), np.nan)
    name = new.categories[0] if new.categories is not None and len(new) else ""
    score = new.category_scores[0] if new.category_scores is not None and len(new) else np.nan
    return {"categories": [*old_names, name], "category_scores": [*old_scores, score]}


@dataclass
class ChatSession:
    """One user's image, marks and conversation.

    turns: the conversation as the LLM sees it (text only; the current marked image goes with
    each new question). display: the chat as the page shows it (also notes that are not sent).
    """

    source: np.ndarray | None = None
    image_name: str = "image"
    marks: Any = None  # som.pipeline.MarkResult
    marks_version: int = 0
    mark_info: str = ""
    status: str = "Upload an image or pick an example."
    turns: list[dict] = field(default_factory=list)
    display: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # named in the last answer
    highlighted: np.ndarray | None = None

    # ---- image and marks ------------------------------------------------
    def require_marks(self):
        if self.marks is None:
            raise UserError("upload an image first (or pick an example)")
        return self.marks

    def load(self, image: Any, name: str | None = None) -> None:
        from som.imageio import load_image, resize_rgb, working_size

        label = Path(name).name if name else "image"
        source = load_image(image, name=label)
        h, w = source.shape[:2]
        if min(h, w) < 16:
            raise UserError(f"{label}: image is {w}x{h} pixels; marks need at least 16x16")
        wh, ww = working_size(h, w, MAX_SIDE_PX)
        self.source = np.ascontiguousarray(resize_rgb(source, wh, ww))
        self.image_name = label
        self.marks = None
        self.turns, self.display, self.labels, self.highlighted = [], [], [], None

    def _set_marks(self, result: Any, info: str) -> None:
        had_marks = self.marks is not None
        self.marks = result
        self.marks_version += 1
        self.mark_info = info
        self.labels, self.highlighted = [], None
        if had_marks and any(t["role"] == "assistant" for t in self.turns):
            self.turns.append({"role": "system", "content": REMARK_NOTE})
            self.display.append({"role": "assistant", "content": f"*Marks changed: {info}. The conversation continues with the new marks.*"})

    def mark(self, segmenters: Segmenters, segmenter: str, level: int | str) -> str:
        """Automatic marks (replaces all regions); returns a status line."""
        from som.pipeline import mark

        if self.source is None:
            raise UserError("upload an image first (or pick an example)")
        gran = granularity(level)
        seg = segmenters.get(segmenter)
        t = time.perf_counter()
        with segmenters.lock:
            result = mark(self.source, segmenter=seg, granularity_level=gran.level, max_side_px=MAX_SIDE_PX)
        secs = time.perf_counter() - t
        n = len(result.regions)
        self._set_marks(result, f"{n} marks, {seg.name}, {gran.name}")
        self.status = (f"**{n} marks** on {self.image_name} · {seg.name} · granularity {gran.level} {gran.name} · "
                       f"{secs:.1f} s. Click the image to add a region.")
        return self.status

    def add_region(self, segmenters: Segmenters, segmenter: str, x: float, y: float) -> str:
        """The segmenter's region at pixel (x, y) becomes a new mark (number N+1).

        The click says what the user wants, so the new region takes its pixels from the marks it
        overlaps; those keep their numbers unless nothing of them is left (then marks renumber).
        """
        from som.cropmask import intersection_px, subtract
        from som.pipeline import mark_regions
        from som.refine import RefineOptions
        from som.regions import Regions

        marks = self.require_marks()
        h, w = self.source.shape[:2]
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise UserError(f"a point needs numbers x, y; got {x!r}, {y!r}") from None
        if not (0 <= x < w and 0 <= y < h):
            raise UserError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")
        seg = segmenters.get(segmenter)
        with segmenters.lock:
            out = seg.segment_prompts(self.source, points_xy=np.array([[x, y]], np.float32), point_labels=np.array([1]))
        new = out[:1] if len(out) else Regions.empty(h, w)
        new_box, new_crop = (new.boxes_px[0], new.crops[0]) if len(new) else (np.zeros(4, np.int64), np.zeros((0, 0), bool))
        new_area = int(np.count_nonzero(new_crop))
        min_px = RefineOptions().min_area(h, w)
        if new_area < max(1, min_px):
            raise UserError(f"nothing added: {seg.name} found no region at ({x:.0f}, {y:.0f})")
        old = marks.regions
        inter = np.array([intersection_px(c, b, new_crop, new_box) for b, c in zip(old.boxes_px, old.crops)], np.int64)
        if len(old):
            iou = inter / np.maximum(old.areas + new_area - inter, 1)
            best = int(np.argmax(iou))
            if iou[best] > 0.9:
                raise UserError(f"that region is already mark {old.labels[best]}; nothing added")
        # the new mark takes its pixels from the marks it overlaps (wholes and parts alike: what
        # is left of a part stays inside what is left of its whole, so the nesting holds)
        rest = []
        for b, c, i in zip(old.boxes_px, old.crops, inter):
            c = c.copy() if i else c
            if i:
                subtract(c, b, new_crop, new_box)
            rest.append(c)
        keep = np.array([np.count_nonzero(c) >= max(1, min_px) for c in rest], bool)
        names = {"categories": old.categories, "category_scores": old.category_scores}
        kept = Regions(rest, old.boxes_px, (h, w), parent=old.parent, **names)[np.flatnonzero(keep)]
        kept = Regions.from_crops(kept.boxes_px, kept.crops, (h, w), parent=kept.parent,
                                  categories=kept.categories, category_scores=kept.category_scores)
        marked = Regions(
            [*kept.crops, new_crop], np.concatenate([kept.boxes_px, new_box[None]]), (h, w),
            parent=np.concatenate([kept.parent, [-1]]),
            # the clicked mark's class name, if the segmenter gave one ("" beside named marks if not)
            **_append_names(kept, new),
        )
        with segmenters.lock:
            result = mark_regions(self.source, marked, style=marks.style, refine_options=None)
        result.settings.update({k: v for k, v in marks.settings.items() if k not in result.settings or result.settings[k] is None})
        n = len(result.regions)
        dropped = int((~keep).sum())
        note = f"; {dropped} mark(s) it covered were removed, so marks were renumbered" if dropped else ""
        self._set_marks(result, f"added mark {n} at ({x:.0f}, {y:.0f}), {n} marks{note}")
        self.status = f"**Added mark {n}** ({new_area} px) at ({x:.0f}, {y:.0f}) with {seg.name}{note}. {n} marks now."
        return self.status

    # ---- conversation --------------------------------------------------
    def picture(self) -> np.ndarray | None:
        """What the image pane shows: the last answer's highlight, else the marks."""
        if self.highlighted is not None:
            return self.highlighted
        return None if self.marks is None else self.marks.image

    def mention_rows(self) -> list[list]:
        """The marks the last answer names: MENTION_HEADERS, then their class names last when the
        segmenter named some of them (CLASS_HEADER)."""
        if not self.labels or self.marks is None:
            return []
        chosen = self.marks.regions.select_labels(self.labels)
        areas = chosen.areas
        rows = [[lab, int(a), *[int(round(float(v))) for v in box]] for lab, a, box in zip(chosen.labels, areas, chosen.xyxy)]
        if chosen.categories is not None and any(chosen.categories):
            rows = [[*row, cat] for row, cat in zip(rows, chosen.categories)]
        return rows

    def mention_table(self):
        """`mention_rows` with its column names, for the page's table."""
        import pandas as pd

        rows = self.mention_rows()
        headers = MENTION_HEADERS + ([CLASS_HEADER] if rows and len(rows[0]) > len(MENTION_HEADERS) else [])
        return pd.DataFrame(rows, columns=headers)

    def mention_note(self) -> str:
        if self.marks is None:
            return ""
        if not self.labels:
            return "The regions an answer names are highlighted here and listed below."
        names = ", ".join(f"[{s}]" for s in self.labels)
        return f"**The last answer names {names}**: shown in the image, every other region dimmed. *Show all marks* brings the marks back."

    def clear_chat(self) -> None:
        self.turns, self.display, self.labels, self.highlighted = [], [], [], None

    def ask(self, question: str, template: Any, client: Any, secrets: list[str | None]) -> Iterator[str]:
        """Stream one question: yields the answer text so far; afterwards `labels`, `highlighted`,
        `turns` and `display` are updated. Failures end as a readable message in `display`."""
        from som.llm.ask import ask_stream

        question = (question or "").strip()
        shown = question if template.name == "chat" else f"*{template.name}*: {question}".rstrip(": ")
        self.display.append({"role": "user", "content": shown or f"*{template.name}*"})
        self.display.append({"role": "assistant", "content": "…"})
        reply = self.display[-1]
        text = ""
        try:
            marks = self.require_marks()
            if template.needs_question and not question:
                raise UserError(f"type a question first (template {template.name}: {template.description})")
            history = list(self.turns)
            stream = ask_stream(None, question, template=template, marks=marks, client=client, history=history)
            for delta in stream:
                text += delta
                reply["content"] = text
                yield text
            answer = stream.answer()
        except Exception as e:  # noqa: BLE001 - the chat shows every failure and keeps going
            if not isinstance(e, (UserError,)) and type(e).__name__ != "LLMError":
                from som.llm.errors import scrub

                log.error("question failed: %s: %s", type(e).__name__, scrub(e, secrets))
            message = error_text(e, secrets)
            reply["content"] = f"{text}\n\n{message}" if text else message
            yield reply["content"]
            return
        self.turns.append({"role": "user", "content": question or template.description})
        self.turns.append({"role": "assistant", "content": answer.text})
        self.labels = list(answer.labels)
        self.highlighted = answer.highlighted
        log.info("answer names %d mark(s) of %d", len(self.labels), len(marks.regions))


# ---------------------------------------------------------------- Gradio
def _session(state: Any) -> ChatSession:
    return state if isinstance(state, ChatSession) else ChatSession()


# No object-fit on the marked image: Gradio maps clicks to pixels assuming it is never scaled up.
CSS = """
#som-endpoint-note { font-size: 0.95em; }
"""

HELP = """# SoM chat
Upload an image (or pick an example): it is cut into regions and every region gets a number.
Ask about it: the answer names regions like **[3]**, and those are highlighted. Click the image to add a region;
change the granularity to re-mark. The conversation continues with the new marks."""


def build_app(defaults: ChatDefaults = ChatDefaults(), limits: Any = None):
    """The chat app as a gr.Blocks (not launched). Serve it with `launch`, or with
    `demo.launch(**launch_kwargs(limits, demo.janitor))` (limits: a som.app.serving.ServeLimits)."""
    import gradio as gr

    from som.app.serving import (
        JobGate,
        ServeLimits,
        SessionJanitor,
        add_mark_endpoint,
        cache_age_s,
        load_upload,
        mark_upload,
        read_upload,
        trim_memory,
        upload_path,
    )
    from som.llm.templates import load_templates

    limits = limits or ServeLimits()
    library = load_templates(defaults.templates_file)
    templates = [t for t in library if t.images == 1]  # two-image templates need a second upload
    segmenters = Segmenters(defaults.device)
    gate = JobGate(limits.max_jobs, limits.max_queue, after=trim_memory)  # automatic marking: load_image, remark, /mark

    def describe_template(name: str) -> str:
        try:
            t = library.get(name)
        except ValueError:
            return ""
        need = "" if t.needs_question else " The message box is optional for this one."
        return f"*{t.description}.*{need}"

    def marks_outputs(session: ChatSession, status: str):
        return (session.picture(), status, session.display, session.mention_note(), session.mention_table(), session)

    def fail_outputs(session: ChatSession, e: Exception):
        if not isinstance(e, (UserError, ValueError)):
            log.error("marking failed: %s: %s", type(e).__name__, e)
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, MemoryError):
            text = "out of memory: try a smaller image or a coarser granularity"
        return marks_outputs(session, f"⚠️ {text}")

    def on_image(image, segmenter, level, state):
        session = ChatSession()  # a new image starts a new conversation
        if image is None:
            return marks_outputs(session, "Upload an image or pick an example.")
        try:
            path, name = upload_path(image)
            data = read_upload(path, name, limits)  # over a limit: refused from the header, before the queue
            with gate.slot():
                session.load(load_upload(data, name, limits), name=name)
                status = session.mark(segmenters, segmenter, level)
        except Exception as e:  # noqa: BLE001 - readable, keep serving
            return fail_outputs(session, e)
        return marks_outputs(session, status)

    def on_remark(segmenter, level, state):
        session = _session(state)
        if session.source is None:
            return marks_outputs(session, "Upload an image or pick an example.")
        try:
            with gate.slot():
                status = session.mark(segmenters, segmenter, level)
        except Exception as e:  # noqa: BLE001
            return fail_outputs(session, e)
        return marks_outputs(session, status)

    def on_mark(image, segmenter, granularity, marks, label_mode, alpha, min_area):
        """Mark an image in one call (no session): the marked image and the marks JSON (`som mark`'s)."""
        try:
            seg = segmenters.get(segmenter)
            return mark_upload(image, seg, granularity, marks, label_mode, alpha, min_area, limits=limits, gate=gate,
                               model_lock=segmenters.lock)
        except (UserError, ValueError) as e:  # ImageError, Busy and bad settings are ValueErrors
            raise gr.Error(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
                           print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory: try a smaller image or a coarser granularity", print_exception=False) from None

    def on_add(x, y, segmenter, state):
        session = _session(state)
        try:
            status = session.add_region(segmenters, segmenter, x, y)
        except Exception as e:  # noqa: BLE001
            return fail_outputs(session, e)
        return marks_outputs(session, status)

    def on_click(segmenter, state, evt):
        x, y = (list(evt.index or []) + [None, None])[:2]
        return on_add(x, y, segmenter, state)

    on_click.__annotations__["evt"] = gr.SelectData  # a real class: Gradio reads it to pass the click

    def on_show_marks(state):
        session = _session(state)
        session.labels, session.highlighted = [], None
        return session.picture(), session.mention_note(), session.mention_table(), session

    def on_clear(state):
        session = _session(state)
        session.clear_chat()
        return session.display, session.picture(), session.mention_note(), session.mention_table(), session

    def on_ask(message, template_name, base_url, model, api_key, state):
        session = _session(state)
        secrets = [api_key, defaults.server_key()]
        status = session.status
        try:
            template = library.get(template_name or "chat")
            client = make_client(defaults, base_url or "", model or "", api_key or "")
        except Exception as e:  # noqa: BLE001 - no key, bad template: say so in the chat
            session.display.append({"role": "user", "content": (message or "").strip() or "…"})
            session.display.append({"role": "assistant", "content": error_text(e, secrets)})
            yield "", session.display, session.picture(), session.mention_note(), session.mention_table(), status, session
            return
        for _ in session.ask(message, template, client, secrets):
            yield "", session.display, gr.skip(), gr.skip(), gr.skip(), gr.skip(), session
        yield "", session.display, session.picture(), session.mention_note(), session.mention_table(), status, session

    def on_endpoint(base_url, model, api_key):
        return endpoint_note(defaults, base_url or "", model or "", api_key or "")

    server_url = defaults.server_base_url()
    key_known = defaults.server_key() is not None or server_url is not None
    ttl = limits.session_ttl_s
    with gr.Blocks(title="SoM chat", analytics_enabled=False, delete_cache=cache_age_s(limits)) as demo:
        state = gr.State(None)  # demo.janitor frees it after ttl idle seconds (see som.app.toolbox)
        gr.Markdown(HELP)
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                upload = gr.Image(label="Your image", type="filepath", sources=["upload", "clipboard"], height=200, elem_id="som-upload")
                examples = example_images()
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[upload], label="Examples")
                with gr.Row():
                    segmenter = gr.Dropdown(segmenter_choices(), value=defaults.segmenter, label="Segmenter", scale=1)
                    level = gr.Radio(granularity_choices(), value=int(defaults.granularity), label="Granularity (parts … wholes, or nested: wholes with their parts)", scale=2)
                picture = gr.Image(label="Marked image · click a spot to add a region", type="numpy", format="png", interactive=False,
                                   height=520, elem_id="som-chat-image", buttons=["download", "fullscreen"])
                status = gr.Markdown("Upload an image or pick an example.", label="status", show_label=False, elem_id="som-status")
                with gr.Row():
                    remark_btn = gr.Button("Re-mark", size="sm")
                    show_btn = gr.Button("Show all marks", size="sm")
                with gr.Accordion("Add a region by coordinates", open=False):
                    with gr.Row():
                        x_in = gr.Number(label="x (pixels)", precision=0)
                        y_in = gr.Number(label="y (pixels)", precision=0)
                        add_btn = gr.Button("Add region", size="sm")
            with gr.Column(scale=5, min_width=360):
                note = gr.Markdown(NO_KEY_HELP if not key_known else "", label="endpoint", show_label=False, elem_id="som-endpoint-note")
                chatbot = gr.Chatbot(label="Conversation", height=520, elem_id="som-chatbot", buttons=["copy"], group_consecutive_messages=False,
                                     placeholder="Ask about the marked image, e.g. *Which marks show the cat?*")
                with gr.Row():
                    message = gr.Textbox(placeholder="Ask about the image… (Enter sends)", label="message", show_label=False, scale=5,
                                         elem_id="som-message", lines=1, max_lines=6)
                    send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="som-send")
                mention_note = gr.Markdown("", label="mentions note", show_label=False, elem_id="som-mention-note")
                mentions = gr.Dataframe(headers=MENTION_HEADERS, value=[], interactive=False, label="Marks named in the last answer",
                                        elem_id="som-mentions", datatype=["str", "number", "number", "number", "number", "number"])
                clear_btn = gr.Button("Clear conversation", size="sm")
                with gr.Accordion("LLM settings", open=not key_known, elem_id="som-settings"):
                    template = gr.Dropdown([(t.name, t.name) for t in templates], value="chat", label="Prompt template")
                    template_info = gr.Markdown(describe_template("chat"))
                    base_url = gr.Textbox(label="Base URL", placeholder=f"server default: {_placeholder_url(server_url)}", elem_id="som-base-url")
                    model = gr.Textbox(label="Model", placeholder=f"server default: {defaults.server_model()}", elem_id="som-model")
                    api_key = gr.Textbox(label="API key", type="password", elem_id="som-api-key",
                                         placeholder=("the server's key is used (only with the server's base URL)" if defaults.server_key()
                                                      else f"not set on the server: type one, or set {defaults.api_key_env}"))
                    gr.Markdown("The key stays on the server for the request only: it is never logged or sent back to this page.")

        marks_out = [picture, status, chatbot, mention_note, mentions, state]
        # automatic marking: `gate` limits it (max_jobs run, max_queue wait, the next hears "busy")
        heavy = {"concurrency_limit": None}
        upload.change(on_image, [upload, segmenter, level, state], marks_out, api_name="load_image", **heavy)
        remark_btn.click(on_remark, [segmenter, level, state], marks_out, api_name="remark", **heavy)
        level.input(on_remark, [segmenter, level, state], marks_out, api_visibility="private", **heavy)
        segmenter.input(on_remark, [segmenter, level, state], marks_out, api_visibility="private", **heavy)
        add_btn.click(on_add, [x_in, y_in, segmenter, state], marks_out, api_name="add_region")
        picture.select(on_click, [segmenter, state], marks_out, api_visibility="private")
        show_btn.click(on_show_marks, [state], [picture, mention_note, mentions, state], api_name="show_marks")
        clear_btn.click(on_clear, [state], [chatbot, picture, mention_note, mentions, state], api_name="clear_chat")
        ask_out = [message, chatbot, picture, mention_note, mentions, status, state]
        ask_in = [message, template, base_url, model, api_key, state]
        send.click(on_ask, ask_in, ask_out, api_name="ask")
        message.submit(on_ask, ask_in, ask_out, api_visibility="private")
        template.change(describe_template, [template], [template_info], api_visibility="private")
        endpoint_in = [base_url, model, api_key]
        demo.load(on_endpoint, endpoint_in, [note], api_name="endpoint_info")
        for box in endpoint_in:
            box.blur(on_endpoint, endpoint_in, [note], api_visibility="private")
        add_mark_endpoint(on_mark, defaults.segmenter, segmenter_choices())
    demo.janitor = SessionJanitor(demo, ttl, on_idle=segmenters.forget_images)
    demo.gate = gate
    return demo


def _placeholder_url(url: str | None) -> str:
    from som.llm.errors import scrub

    return scrub(url) if url else "OpenAI (api.openai.com)"


def launch(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    share: bool = False,
    defaults: ChatDefaults = ChatDefaults(),
    limits: Any = None,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
):
    """Build and serve the chat app (limits: a som.app.serving.ServeLimits). Returns what `Blocks.launch` returns."""
    import gradio as gr

    from som.app.serving import GRADIO_QUEUE_SIZE, ServeLimits, launch_kwargs

    limits = limits or ServeLimits()
    demo = build_app(defaults, limits)
    demo.queue(default_concurrency_limit=4, max_size=GRADIO_QUEUE_SIZE)
    return demo.launch(
        server_name=host, server_port=port, share=share, allowed_paths=[], prevent_thread_lock=prevent_thread_lock,
        quiet=quiet, css=CSS, show_error=False, theme=gr.themes.Soft(), **launch_kwargs(limits, demo.janitor),
    )
