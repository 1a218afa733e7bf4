"""Serving many users, for both apps: limits, the one-call `/mark` endpoint, and session expiry.

* `ServeLimits`: upload bytes, image pixels, concurrent heavy jobs (automatic marking) and their
  queue, the idle time after which a session is freed. Flags of `som app` / `som chat`, else
  environment variables (`ENV`), else the defaults here.
* `JobGate`: at most `max_jobs` heavy jobs run at once per app and `max_queue` wait; one more is
  answered at once with `Busy` ("busy, try again"), never left to time out.
* `mark_upload`: the stateless `/mark` (image + settings -> marked image + marks JSON, the same
  document `som mark` writes); `add_mark_endpoint` wires it into a gr.Blocks.
* `SessionJanitor`: every few seconds, in the server's event loop, drops the sessions idle for
  longer than the time to live (Gradio's per-session store included, so their `gr.State` delete
  callbacks run and their temporary files go), deletes orphaned session folders, and hands freed
  memory back to the operating system.
* `launch_kwargs`: what both apps pass to `Blocks.launch` (upload cap with a readable 413, the
  janitor, root path for a reverse proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import datetime
import gc
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from som.imageio import (
    DecompressionBomb,
    ImageError,
    ImageTooLarge,
    check_pixels,
    describe_bytes,
    load_image,
)

log = logging.getLogger("som.app")

ENV = {
    "max_file_size": "SOM_MAX_FILE_SIZE",
    "max_pixels": "SOM_MAX_PIXELS",
    "max_jobs": "SOM_MAX_JOBS",
    "max_queue": "SOM_MAX_QUEUE",
    "session_ttl_s": "SOM_SESSION_TTL",
    "root_path": "SOM_ROOT_PATH",
}
FLAGS = {
    "max_file_size": "--max-file-size",
    "max_pixels": "--max-pixels",
    "max_jobs": "--max-jobs",
    "max_queue": "--max-queue",
    "session_ttl_s": "--session-ttl",
    "root_path": "--root-path",
}
GRADIO_QUEUE_SIZE = 256  # every event together; beyond it Gradio answers "Queue is full! Please try again."
MARK_ENDPOINT = "/mark"


def parse_bytes(value: str | int) -> int:
    """'25mb', '1.5 GB', '800kb', '26214400' -> bytes (1024-based, as Gradio counts)."""
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*", str(value).lower())
        if not m:
            raise ValueError(f"a size is a number with an optional unit b, kb, mb or gb (e.g. 25mb), got {value!r}")
        n = int(float(m.group(1)) * 1024 ** ("b", "kb", "mb", "gb").index(m.group(2) or "b"))
    if n <= 0:
        raise ValueError(f"a size must be > 0, got {value!r}")
    return n


def parse_pixels(value: str | int) -> int:
    """'50mp', '50M', '50000000' -> pixels."""
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(mp|m)?\s*", str(value).lower())
        if not m:
            raise ValueError(f"a pixel count is a number, or megapixels like 50mp, got {value!r}")
        n = int(float(m.group(1)) * (1_000_000 if m.group(2) else 1))
    if n < 256:
        raise ValueError(f"the pixel limit must be at least 256 (16x16), got {value!r}")
    return n


@dataclass(frozen=True)
class ServeLimits:
    """What one app accepts and holds. max_file_size: an upload's bytes ('25mb'); max_pixels: an
    image's width x height, checked on its header before decoding; max_jobs: heavy jobs (automatic
    marking) running at once; max_queue: heavy jobs waiting for a slot (one more is told 'busy');
    session_ttl_s: idle seconds after which a session (image, marks, files) is freed; root_path:
    the URL prefix a reverse proxy serves the app under ('' for none)."""

    max_file_size: str = "25mb"
    max_pixels: int = 50_000_000
    max_jobs: int = 1
    max_queue: int = 8
    session_ttl_s: float = 3600.0
    root_path: str = ""

    def __post_init__(self) -> None:
        parse_bytes(self.max_file_size)
        parse_pixels(self.max_pixels)
        if self.max_jobs < 1:
            raise ValueError(f"{FLAGS['max_jobs']} must be >= 1, got {self.max_jobs}")
        if self.max_queue < 0:
            raise ValueError(f"{FLAGS['max_queue']} must be >= 0, got {self.max_queue}")
        if not self.session_ttl_s > 0:
            raise ValueError(f"{FLAGS['session_ttl_s']} must be > 0 seconds, got {self.session_ttl_s}")
        if self.root_path and not self.root_path.startswith(("/", "http://", "https://")):
            raise ValueError(f"{FLAGS['root_path']} is a URL path like /som (or a full URL), got {self.root_path!r}")

    @property
    def max_file_bytes(self) -> int:
        return parse_bytes(self.max_file_size)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **given: Any) -> "ServeLimits":
        """Limits from `given` (flags; None = not given), else the environment (`ENV`), else defaults.
        A bad value raises ValueError naming the flag or variable it came from."""
        environ = os.environ if environ is None else environ

        def size(v):
            parse_bytes(v)
            return str(v)

        def whole(v):
            try:
                return int(v)
            except ValueError:
                raise ValueError(f"a whole number is expected, got {v!r}") from None

        def seconds(v):
            try:
                return float(v)
            except ValueError:
                raise ValueError(f"a number of seconds is expected, got {v!r}") from None

        kinds = {"max_file_size": size, "max_pixels": parse_pixels, "max_jobs": whole, "max_queue": whole,
                 "session_ttl_s": seconds, "root_path": str}
        values: dict[str, Any] = {}
        for key, kind in kinds.items():
            raw, source = given.get(key), FLAGS[key]
            if raw is None and environ.get(ENV[key], "").strip():
                raw, source = environ[ENV[key]].strip(), ENV[key]
            if raw is None:
                continue
            try:
                values[key] = kind(raw)
                cls(**{key: values[key]})  # the range checks of __post_init__, blamed on this source
            except ValueError as e:
                raise ValueError(f"{source}: {e}") from None
        return cls(**values)

    def hint(self, key: str) -> str:
        return f"the server's operator can raise it with {FLAGS[key]} or {ENV[key]}"


def add_limit_options(p) -> None:
    """The serving flags of `som app` and `som chat` (defaults from the environment, see `ENV`)."""
    d = ServeLimits()
    p.add_argument("--max-file-size", default=None,
                   help=f"largest upload, e.g. 25mb (${ENV['max_file_size']}; default {d.max_file_size})")
    p.add_argument("--max-pixels", default=None,
                   help=f"largest image, width x height, e.g. 50mp; checked before decoding "
                        f"(${ENV['max_pixels']}; default {d.max_pixels // 1_000_000}mp)")
    p.add_argument("--max-jobs", type=int, default=None,
                   help=f"automatic markings running at once (${ENV['max_jobs']}; default {d.max_jobs})")
    p.add_argument("--max-queue", type=int, default=None,
                   help=f"automatic markings waiting for a slot; more are told 'busy, try again' "
                        f"(${ENV['max_queue']}; default {d.max_queue})")
    p.add_argument("--session-ttl", type=float, default=None, metavar="SECONDS",
                   help=f"free a session (image, marks, files) after this many idle seconds "
                        f"(${ENV['session_ttl_s']}; default {d.session_ttl_s:g})")
    p.add_argument("--root-path", default=None,
                   help=f"URL prefix when served behind a reverse proxy, e.g. /som (${ENV['root_path']}, "
                        "else $GRADIO_ROOT_PATH)")


def limits_from_args(args) -> ServeLimits:
    root = args.root_path
    if root is None and not os.environ.get(ENV["root_path"]) and os.environ.get("GRADIO_ROOT_PATH"):
        root = os.environ["GRADIO_ROOT_PATH"]
    return ServeLimits.from_env(max_file_size=args.max_file_size, max_pixels=args.max_pixels, max_jobs=args.max_jobs,
                                max_queue=args.max_queue, session_ttl_s=args.session_ttl, root_path=root)


# ---------------------------------------------------------------- uploads
def upload_path(image: Any) -> tuple[str, str]:
    """A Gradio file payload (dict with path / orig_name, as preprocess=False gives) or a path ->
    (path on disk, the name the user gave it)."""
    path, name = image, None
    if isinstance(image, dict):
        path, name = image.get("path"), image.get("orig_name")
    if not path:
        raise ValueError("no image arrived: send one (in gradio_client: handle_file('photo.jpg'))")
    return str(path), Path(str(name or path)).name


def _with_hint(e: ImageTooLarge, limits: ServeLimits) -> ImageTooLarge:
    if isinstance(e, DecompressionBomb):
        return e
    key = "max_pixels" if e.unit == "pixels" else "max_file_size"
    return type(e)(f"{e}; {limits.hint(key)}", e.size, e.limit, e.unit)


def check_upload(path: str, name: str, limits: ServeLimits) -> None:
    """Refuse an upload over the byte or pixel limit from its size and header (nothing decoded),
    so a refusal never waits for a job slot."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ImageError(f"{name}: the upload did not arrive; try again") from None
    if size > limits.max_file_bytes:
        raise _with_hint(ImageTooLarge(f"{name}: the file is {describe_bytes(size)}, over the "
                                       f"{describe_bytes(limits.max_file_bytes)} upload limit",
                                       size, limits.max_file_bytes, "bytes"), limits)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (Image.DecompressionBombError, ValueError):
        load_upload(path, name, limits)  # PIL refused it on the header: load_image says so in its words
        return
    except (UnidentifiedImageError, OSError):
        return  # load_image says what is wrong with it
    try:
        check_pixels(width, height, name, limits.max_pixels, size)
    except ImageTooLarge as e:
        raise _with_hint(e, limits) from None


def load_upload(source: str | bytes, name: str, limits: ServeLimits):
    """load_image (of a path or the file's bytes) under the app's limits; over a limit, the
    message says how to raise it."""
    try:
        return load_image(source, name=name, max_pixels=limits.max_pixels, max_bytes=limits.max_file_bytes)
    except ImageTooLarge as e:
        raise _with_hint(e, limits) from None


def read_upload(path: str, name: str, limits: ServeLimits) -> bytes:
    """check_upload, then the file's bytes: a job that waits for a slot holds its upload (at most
    max_file_size each, max_queue of them), so Gradio's cache may drop the file meanwhile."""
    check_upload(path, name, limits)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: the upload did not arrive; try again") from None


def cache_age_s(limits: ServeLimits) -> tuple[int, int]:
    """Blocks(delete_cache=...): Gradio's copies of uploads and outputs go once older than the
    session time to live, but never younger than 10 minutes (a request may still be on its way)."""
    age = int(max(limits.session_ttl_s, 600))
    return min(600, age // 2), age


# ---------------------------------------------------------------- heavy jobs
class Busy(ValueError):
    """Too many heavy jobs running and waiting: try again. A ValueError so both apps show it as is."""


class JobGate:
    """Admission for heavy jobs of one app: `max_jobs` run, `max_queue` wait (first come, first
    served), the next is refused at once with Busy."""

    def __init__(self, max_jobs: int, max_queue: int, after: Callable[[], None] | None = None):
        self.max_jobs, self.max_queue = max_jobs, max_queue
        self.after = after  # run after each job, outside the slot (e.g. trim_memory)
        self._cond = threading.Condition()
        self.running = 0
        self._tickets = 0  # FIFO: each waiter takes a ticket, slots go out in ticket order
        self._serving = 0
        self.refused = 0

    @property
    def waiting(self) -> int:
        return self._tickets - self._serving

    @contextlib.contextmanager
    def slot(self):
        with self._cond:
            if self.running >= self.max_jobs or self.waiting > 0:
                if self.waiting >= self.max_queue:
                    self.refused += 1
                    raise Busy(
                        f"busy: {self.running} automatic marking(s) running and {self.waiting} waiting, this server's "
                        f"limit ({FLAGS['max_jobs']} {self.max_jobs}, {FLAGS['max_queue']} {self.max_queue}); "
                        "try again in a few seconds"
                    )
            ticket = self._tickets
            self._tickets += 1
            while ticket != self._serving or self.running >= self.max_jobs:
                self._cond.wait()
            self._serving += 1
            self.running += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify_all()
            if self.after is not None:
                self.after()


# ---------------------------------------------------------------- /mark
def mark_upload(image: Any, segmenter: Any, granularity_level: Any, marks: list[str], label_mode: str, alpha: float,
                min_area: float, *, limits: ServeLimits, gate: JobGate, model_lock: Any = None,
                progress: Callable[[float, str], None] | None = None):
    """The stateless /mark: (marked (H, W, 3) uint8 RGB at the upload's size, the marks document).

    segmenter: a built segmenter (resolved by the app, so an unknown name fails before the queue).
    Bad settings and over-limit uploads fail before waiting for a slot; the decode and the marking
    run inside the slot, so memory is bounded by max_jobs, not by the number of callers.
    """
    from som.app.state import make_refine_options, make_style
    from som.marksfile import regions_to_dict
    from som.pipeline import DEFAULT_MAX_SIDE_PX, mark
    from som.segmenters import granularity

    path, name = upload_path(image)
    style = make_style(marks, label_mode, alpha)
    options = make_refine_options(min_area)
    try:
        level = granularity(granularity_level).level
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0]) from None
    data = read_upload(path, name, limits)
    with gate.slot():
        source = load_upload(data, name, limits)
        with model_lock or contextlib.nullcontext():
            result = mark(source, segmenter=segmenter, granularity_level=level, style=style, refine_options=options,
                          max_side_px=DEFAULT_MAX_SIDE_PX, progress=progress)
    doc = regions_to_dict(result.regions, result.settings, image_file=name)
    return result.image, doc


def add_mark_endpoint(handler: Callable, default_segmenter: str, segmenter_choices: list, show_progress_on=None) -> None:
    """Hidden inputs and outputs of /mark inside the current gr.Blocks, wired to `handler(image,
    segmenter, granularity, marks, label_mode, alpha, min_area)` (API only: no widget shows it)."""
    import gradio as gr

    from som.app.state import LABEL_MODES, MARK_TYPES
    from som.segmenters import DEFAULT_LEVEL, granularity_choices

    with gr.Group(visible=False):
        image = gr.Image(label="image", type="filepath")
        segmenter = gr.Dropdown(segmenter_choices, value=default_segmenter, label="segmenter")
        level = gr.Radio(granularity_choices(), value=DEFAULT_LEVEL, label="granularity")
        marks = gr.CheckboxGroup(list(MARK_TYPES), value=["Mark", "Mask", "Contour"], label="marks")
        label_mode = gr.Radio(list(LABEL_MODES), value="Number", label="label mode")
        alpha = gr.Number(0.4, label="alpha")
        min_area = gr.Number(0.0005, label="min area")
        marked = gr.Image(label="marked image", type="numpy", format="png")
        doc = gr.JSON(label="marks JSON")
        button = gr.Button("mark")
    button.click(handler, [image, segmenter, level, marks, label_mode, alpha, min_area], [marked, doc],
                 api_name=MARK_ENDPOINT.strip("/"), preprocess=False, concurrency_limit=None,
                 api_description="One call: image + settings -> the marked image and the marks JSON "
                                 "(the document `som mark` writes). No session.")


# ---------------------------------------------------------------- sessions
def trim_memory() -> None:
    """Collect garbage and give free heap pages back to the OS (glibc's malloc_trim), so the
    process's RSS falls after sessions are freed instead of staying at its peak."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def forget_images(segmenter: Any) -> None:
    """Drop a segmenter's per-image caches (embeddings, decoded candidates: bounded, but holding
    users' images) once no session is left; segmenters without such caches have no `forget_images`."""
    forget = getattr(segmenter, "forget_images", None)
    if forget is not None:
        forget()


def new_temp_root(app: str) -> Path:
    """A folder of this app instance's session files: <system temp>/som-app/<app>-XXXX."""
    from som.app.state import app_temp_root

    return Path(tempfile.mkdtemp(prefix=f"{app}-", dir=app_temp_root()))


class SessionJanitor:
    """Frees idle sessions of a gr.Blocks. Runs in the server's event loop (Gradio changes its
    per-session store there too), every `every_s` seconds."""

    def __init__(self, blocks: Any, ttl_s: float, temp_root: Path | None = None, every_s: float | None = None,
                 on_idle: Callable[[], None] | None = None):
        self.blocks, self.ttl_s, self.temp_root = blocks, float(ttl_s), temp_root
        self.on_idle = on_idle  # called once every session is gone (e.g. forget the models' cached images)
        self._seen_busy: dict[str, datetime.datetime] = {}  # session -> last sweep that saw it in the queue
        self.every_s = every_s if every_s is not None else max(1.0, min(30.0, self.ttl_s / 4))
        self.freed = 0  # sessions freed so far

    def expire(self) -> int:
        """Drop every session idle for longer than the time to live (its states' delete callbacks
        run); returns how many were dropped. Call in the server's event loop."""
        holder = getattr(self.blocks, "state_holder", None)
        if holder is None:
            return 0
        now = datetime.datetime.now()
        busy = self._sessions_in_queue()
        for sid in busy:  # idle time counts from a request's end (give or take a sweep), not its start
            self._seen_busy[sid] = now
        idle = [sid for sid in list(holder.time_last_used)
                if sid not in busy and (now - self._last_active(holder, sid)).total_seconds() > self.ttl_s]
        for sid in idle:
            try:
                holder.delete_state(sid)  # runs the delete_callback of each gr.State of the session
            except Exception:  # noqa: BLE001 - one bad callback must not stop the others
                log.warning("freeing session state failed", exc_info=True)
            with holder.lock:
                holder.session_data.pop(sid, None)
                holder.time_last_used.pop(sid, None)
            self._seen_busy.pop(sid, None)
        for sid in [s for s in self._seen_busy if s not in holder.session_data]:
            del self._seen_busy[sid]
        self.freed += len(idle)
        return len(idle)

    def _sessions_in_queue(self) -> set:
        """Sessions with a request waiting or running in Gradio's queue: a request longer than the
        time to live must find its session when it ends (it writes its state into it)."""
        queue = getattr(self.blocks, "_queue", None)
        events = [e for job in list(getattr(queue, "active_jobs", None) or []) if job for e in job]
        for waiting in list(getattr(queue, "event_queue_per_concurrency_id", {}).values()):
            events.extend(list(getattr(waiting, "queue", [])))
        return {getattr(e, "session_hash", None) for e in events}

    def _last_active(self, holder: Any, sid: str) -> datetime.datetime:
        """When the session last did something: Gradio stamps a request when it starts and a
        gr.State when a request sets it; the sweeps note when a request was still in the queue."""
        last = max(holder.time_last_used.get(sid) or datetime.datetime.min,
                   self._seen_busy.get(sid, datetime.datetime.min))
        session = holder.session_data.get(sid)
        for _, set_at in list(getattr(session, "_state_ttl", {}).values()):
            last = max(last, set_at)
        return last

    def sweep_files(self, live: set[str] = frozenset()) -> int:
        """Delete session folders no live session owns and nobody touched for longer than the time
        to live (a session dropped without its callback, e.g. evicted by Gradio past its capacity)."""
        if self.temp_root is None or not self.temp_root.is_dir():
            return 0
        cutoff = time.time() - self.ttl_s - 1
        n = 0
        for d in self.temp_root.iterdir():
            try:
                if str(d) not in live and d.is_dir() and d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
                    n += 1
            except FileNotFoundError:
                pass
        return n

    def live_folders(self) -> set[str]:
        """The folders of the sessions Gradio still holds (call in the server's event loop)."""
        holder = getattr(self.blocks, "state_holder", None)
        if holder is None:
            return set()
        return {str(v.workdir) for session in list(holder.session_data.values())
                for v in list(getattr(session, "state_data", {}).values()) if getattr(v, "workdir", None)}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                dropped = self.expire()
                files = await asyncio.to_thread(self.sweep_files, self.live_folders())
                holder = getattr(self.blocks, "state_holder", None)
                if dropped and self.on_idle is not None and holder is not None and not holder.session_data:
                    await asyncio.to_thread(self.on_idle)
                if dropped or files:
                    await asyncio.to_thread(trim_memory)
                    log.info("freed %d idle session(s), %d folder(s)", dropped, files)
            except Exception:  # noqa: BLE001 - keep sweeping
                log.warning("session sweep failed", exc_info=True)

    def lifespan(self):
        """A FastAPI lifespan (Blocks.launch(app_kwargs={'lifespan': ...})) that runs the janitor."""

        @contextlib.asynccontextmanager
        async def _lifespan(app):
            task = asyncio.create_task(self.run())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if self.temp_root is not None:
                    shutil.rmtree(self.temp_root, ignore_errors=True)

        return _lifespan


class UploadLimitMessage:
    """ASGI middleware: Gradio answers an upload over max_file_size with a bare 413 ("File size
    exceeded maximum allowed size of N bytes."); say the limit readably and how to raise it."""

    def __init__(self, app, limits: ServeLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope.get("path", "").rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        replaced = False

        async def send_readable(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                replaced = True
                body = json.dumps({"detail": (
                    f"the upload is over this server's {describe_bytes(self.limits.max_file_bytes)} limit; "
                    f"{self.limits.hint('max_file_size')}")}).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            if replaced:
                return  # Gradio's own body
            await send(message)

        await self.app(scope, receive, send_readable)


def launch_kwargs(limits: ServeLimits, janitor: SessionJanitor) -> dict:
    """Keyword arguments of Blocks.launch that make the limits and the janitor work."""
    from starlette.middleware import Middleware

    return {
        "max_file_size": limits.max_file_bytes,
        "root_path": limits.root_path or None,
        "app_kwargs": {"lifespan": janitor.lifespan(), "middleware": [Middleware(UploadLimitMessage, limits=limits)]},
    }
