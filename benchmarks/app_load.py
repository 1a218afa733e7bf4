"""Load and soak test of both apps on loopback: many gradio_client users at once, then idle until
their sessions expire.

Each app runs for real (`demo_som.py` / `demo_gpt4v_som.py` in a subprocess, CPU) with a short
session time to live. N users, each with its own Client (its own session) and its own photo (a
crop of assets/*.jpg, different for every user), make a fixed number of requests each, mixing

* `mark`: the stateless `/mark` (automatic marks, heavy),
* `load`: `/load_image` (the chat app marks it at once, heavy),
* `click`: a session click (`/add_point` in the toolbox, `/add_region` in the chat),
* `download`: fetching the session's files over HTTP (the marked PNG and marks JSON in the toolbox,
  the picture in the chat).

Every answer is checked against the user's own photo (no cross-user leakage): the marked image
must be that photo plus marks (mark types Mark + Contour leave most pixels as they were), the
marks JSON must name its size and file. "busy" answers (the designed refusal past --max-queue)
are counted and retried after a second; anything else is an error.

Reported: p50 / p95 / max latency per endpoint, errors, busy answers, the server's RSS over time
(after warm-up, peak, after the last request, after the sessions expired), session folders and
Gradio's cached files before and after expiry.

    python benchmarks/app_load.py [--app both] [--users 8] [--requests 10] [--segmenter mobile-sam] [--ttl 20]

Writes benchmarks/results/app_load.json and app_load.md. `run_users` is also the short CI version
(tests/app/test_load.py, tests/chat/test_chat_serve.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its shared helpers
from machine import cpu_model  # noqa: E402
PHOTOS = sorted((REPO / "assets").glob("*.jpg"))
LOOK = {"marks": ["Mark", "Contour"], "label_mode": "Number", "alpha": 0.4}  # most pixels stay the photo's
BUSY_PATIENCE_S = 180.0
MIX = ["click", "download", "mark", "click", "load", "click", "download", "mark"]


# ---------------------------------------------------------------- plain HTTP (no gradio_client)
def upload_http(base_url: str, path: Path) -> str:
    """POST a file to Gradio's upload route (multipart, as `curl -F files=@photo.jpg` sends it) ->
    its path on the server."""
    import uuid

    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(base_url.rstrip("/") + "/gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())[0]


def file_data(server_path: str, name: str) -> dict:
    """The JSON a file input takes over plain HTTP."""
    return {"path": server_path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def call_http(base_url: str, api_name: str, data: list, timeout_s: float = 300) -> tuple[str, object]:
    """Gradio's plain REST route: POST /gradio_api/call/NAME {"data": [...]} -> event id, then GET
    /gradio_api/call/NAME/ID (server-sent events) -> ("complete", outputs) or ("error", message)."""
    base = base_url.rstrip("/") + "/gradio_api/call/" + api_name.strip("/")
    req = urllib.request.Request(base, data=json.dumps({"data": data}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{base}/{event_id}", timeout=timeout_s) as r:
        text = r.read().decode()
    event, payload = "", None
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields.get("event") in ("complete", "error"):
            event, raw = fields["event"], fields.get("data", "null")
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError:
                payload = raw
    return event, payload


# ---------------------------------------------------------------- users' photos
def user_photos(n: int, folder: Path, side: int = 384) -> list[Path]:
    """One distinct photo per user: a crop of an asset photo (offset by the user's number), as PNG
    so the server decodes exactly the pixels the check compares with."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB")
        w, h = src.size
        s = min(side, w, h)
        step = i // len(PHOTOS)
        x0 = (37 * step) % max(1, w - s + 1)
        y0 = (23 * step) % max(1, h - s + 1)
        crop = src.crop((x0, y0, x0 + s, y0 + s - 16 * (i % 3)))  # sizes differ too
        path = folder / f"user{i:02d}-{PHOTOS[i % len(PHOTOS)].stem}.png"
        crop.save(path)
        out.append(path)
    return out


def own_photo_share(picture: np.ndarray, photo: np.ndarray) -> float:
    """Fraction of pixels of `picture` equal to `photo` (0 when the sizes differ)."""
    if picture.shape != photo.shape:
        return 0.0
    return float(np.mean(np.all(picture == photo, axis=2)))


def likeness(picture: np.ndarray, photo: np.ndarray) -> float:
    """Correlation of the two pictures' brightness (-1 when the sizes differ): a photo under
    translucent mask fills still correlates with itself far more than with any other photo."""
    if picture.shape != photo.shape:
        return -1.0
    return float(np.corrcoef(picture.mean(axis=2).ravel(), photo.mean(axis=2).ravel())[0, 1])


def assert_own(picture: np.ndarray, own: np.ndarray, others: list[np.ndarray], what: str) -> None:
    """`picture` shows `own` (exactly where no mark is drawn), not any of `others`."""
    mine = likeness(picture, own)
    theirs = max([likeness(picture, o) for o in others] or [-1.0])
    assert mine > 0.5 and mine > theirs + 0.1, f"{what} is not this user's photo (likeness {mine:.2f}, others' {theirs:.2f})"


# ---------------------------------------------------------------- one user
@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def _file_url(base: str, value) -> str:
    """A file output of a client with download_files=False -> its URL."""
    if isinstance(value, dict):
        url = value.get("url") or value.get("path")
    else:
        url = str(value)
    if url.startswith("http"):
        return url
    return base.rstrip("/") + "/gradio_api/file=" + url


class User:
    """One gradio_client user of one app, with its own session and photo."""

    def __init__(self, base_url: str, app: str, photo: Path, segmenter: str, seed: int, outcome: Outcome,
                 others: list[np.ndarray] = ()):
        from gradio_client import Client

        self.base, self.app, self.photo, self.segmenter = base_url, app, photo, segmenter
        self.pixels = np.asarray(Image.open(photo).convert("RGB"))
        self.others = list(others)  # the other users' photos
        self.client = Client(base_url, verbose=False, download_files=False)
        self.rng = random.Random(seed)
        self.out = outcome
        self.files: list[str] = []  # URLs of the session's latest downloads
        self.loaded = False

    # each op returns normally, or raises AssertionError (a leak or a wrong answer) or another error
    def op(self, kind: str) -> None:
        if kind != "load" and kind != "mark" and not self.loaded:
            kind = "load"
        getattr(self, "_" + kind)()

    def _call(self, endpoint: str, *args, **kwargs):
        from gradio_client.exceptions import AppError

        # a "busy" answer is the designed refusal: count it, back off (1, 2, 4, 4... s) and try again,
        # for up to BUSY_PATIENCE_S; latency is that of the call that was served
        give_up = time.monotonic() + BUSY_PATIENCE_S
        wait = 1.0
        while True:
            t = time.perf_counter()
            try:
                result = self.client.predict(*args, api_name=endpoint, **kwargs)
                busy = self.app == "chat" and endpoint in ("/load_image", "/remark") and "busy:" in str(result[1])
            except AppError as e:
                if "busy:" not in str(e):
                    raise
                busy = True
            if not busy:
                self.out.latencies.setdefault(endpoint, []).append(time.perf_counter() - t)
                return result
            self.out.busy[endpoint] = self.out.busy.get(endpoint, 0) + 1
            if time.monotonic() > give_up:
                raise RuntimeError(f"{endpoint}: still busy after {BUSY_PATIENCE_S:.0f} s")
            time.sleep(wait)
            wait = min(2 * wait, 4.0)

    def _picture(self, value) -> np.ndarray:
        import io

        return np.asarray(Image.open(io.BytesIO(_fetch(_file_url(self.base, value)))).convert("RGB"))

    def _mark(self) -> None:
        from gradio_client import handle_file

        picture, doc = self._call("/mark", handle_file(str(self.photo)), self.segmenter, 2, LOOK["marks"],
                                  LOOK["label_mode"], LOOK["alpha"], 0.0005)
        h, w = self.pixels.shape[:2]
        assert doc["image"] == {"file": self.photo.name, "width": w, "height": h}, f"/mark named {doc['image']}"
        assert all(m["rle"]["size"] == [h, w] for m in doc["marks"]), "/mark masks of another size"
        marked = self._picture(picture)
        assert_own(marked, self.pixels, self.others, "/mark picture")
        share = own_photo_share(marked, self.pixels)
        assert share > 0.5, f"/mark picture is not this user's photo ({share:.2f} of pixels match)"

    def _load(self) -> None:
        from gradio_client import handle_file

        if self.app == "toolbox":
            out = self._call("/load_image", handle_file(str(self.photo)), self.segmenter)
            assert self.photo.stem in out[2], f"/load_image status names another image: {out[2]}"
            clean = self._picture(out[5])
            assert np.array_equal(clean, self.pixels), "/load_image clean image is not this user's photo"
            self.files = [_file_url(self.base, out[5])]
        else:
            out = self._call("/load_image", handle_file(str(self.photo)), self.segmenter, 2)
            assert "marks**" in out[1] and self.photo.name in out[1], f"/load_image status: {out[1]}"
            self.files = [_file_url(self.base, out[0])]
        self.loaded = True

    def _click(self) -> None:
        h, w = self.pixels.shape[:2]
        x, y = self.rng.uniform(0.1, 0.9) * w, self.rng.uniform(0.1, 0.9) * h
        if self.app == "toolbox":
            out = self._call("/add_point", x, y, self.segmenter, LOOK["marks"], LOOK["label_mode"], LOOK["alpha"], 0.0005)
            assert self.photo.stem in out[2], f"/add_point status names another image: {out[2]}"
            if out[3] is not None:
                self.files = [_file_url(self.base, out[3]), _file_url(self.base, out[4])]
        else:
            out = self._call("/add_region", x, y, self.segmenter)
            assert "⚠️" not in out[1] or "nothing added" in out[1] or "already mark" in out[1], out[1]
            self.files = [_file_url(self.base, out[0])]

    def _download(self) -> None:
        t = time.perf_counter()
        for url in self.files:
            data = _fetch(url)
            if url.endswith(".json"):
                doc = json.loads(data)
                h, w = self.pixels.shape[:2]
                assert (doc["image"]["width"], doc["image"]["height"]) == (w, h), "marks JSON of another image"
            else:
                import io

                assert_own(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), self.pixels, self.others, "download")
        self.out.latencies.setdefault("download", []).append(time.perf_counter() - t)


def run_users(base_url: str, app: str, photos: list[Path], requests: int, segmenter: str = "superpixel",
              mix: list[str] = MIX, timeout_s: float = 600) -> Outcome:
    """`len(photos)` users at once, `requests` requests each (first a load, then `mix` in turn,
    shifted per user so the endpoints interleave). Returns latencies, busy answers and errors."""
    outcome = Outcome()
    lock = threading.Lock()
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in photos]

    def work(i: int, photo: Path) -> None:
        mine = Outcome()
        try:
            user = User(base_url, app, photo, segmenter, seed=i, outcome=mine,
                        others=[px for j, px in enumerate(pixels) if j != i])
            for k in range(requests):
                kind = "load" if k == 0 else mix[(i + k) % len(mix)]
                try:
                    user.op(kind)
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    mine.errors.append(f"user {i} {kind}: {type(e).__name__}: {str(e).strip()[:300]}")
        except Exception as e:  # noqa: BLE001
            mine.errors.append(f"user {i}: {type(e).__name__}: {e}")
        with lock:
            for k, v in mine.latencies.items():
                outcome.latencies.setdefault(k, []).extend(v)
            for k, v in mine.busy.items():
                outcome.busy[k] = outcome.busy.get(k, 0) + v
            outcome.errors.extend(mine.errors)

    threads = [threading.Thread(target=work, args=(i, p), daemon=True) for i, p in enumerate(photos)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        outcome.errors.append(f"users still running after {timeout_s:.0f} s")
    return outcome


def latency_table(outcome: Outcome) -> dict:
    out = {}
    for endpoint, xs in sorted(outcome.latencies.items()):
        xs = sorted(xs)
        out[endpoint] = {
            "n": len(xs),
            "p50_ms": round(1000 * statistics.median(xs), 1),
            "p95_ms": round(1000 * xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))], 1),
            "max_ms": round(1000 * xs[-1], 1),
        }
    return out


# ---------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """An app in a subprocess, with its own Gradio cache folder; RSS sampled every 0.5 s."""

    def __init__(self, app: str, segmenter: str, ttl: float, max_jobs: int, max_queue: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.cache = Path(tempfile.mkdtemp(prefix=f"som-load-{app}-cache-"))
        script = "demo_som.py" if app == "toolbox" else "demo_gpt4v_som.py"
        flags = ["--port", str(self.port), "--segmenter", segmenter, "--device", "cpu", "--session-ttl", str(ttl),
                 "--max-jobs", str(max_jobs), "--max-queue", str(max_queue)]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"som-load-{app}-tmp-"))  # its session folders go in here
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(self.cache),
               "TMPDIR": str(self.tmp)}
        env.pop("OPENAI_API_KEY", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(REPO / script), *flags], cwd=REPO, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.samples: list[tuple[float, float, str]] = []  # (seconds since start, RSS MB, phase)
        self.phase = "start"
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set() and self.proc.poll() is None:
            try:
                self.samples.append((round(time.monotonic() - self.started, 1), round(rss_mb(self.proc.pid), 1), self.phase))
            except OSError:
                break
            self._stop.wait(0.5)

    def wait(self, timeout_s: float = 120) -> "Server":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {self.proc.stderr.read()[-2000:]}")
            try:
                _fetch(self.url + "config")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the app did not come up")

    def rss(self) -> float:
        return round(rss_mb(self.proc.pid), 1)

    def cached_files(self) -> int:
        return sum(1 for p in self.cache.rglob("*") if p.is_file())

    def session_dirs(self) -> int:
        return sum(1 for _ in self.tmp.glob("som-app/*/session-*"))

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        import shutil

        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def settle(server: Server, seconds: float = 3.0) -> float:
    time.sleep(seconds)
    return server.rss()


def soak(app: str, users: int, requests: int, segmenter: str, ttl: float, max_jobs: int, max_queue: int,
         photos_dir: Path) -> dict:
    server = Server(app, segmenter, ttl, max_jobs, max_queue).wait()
    try:
        photos = user_photos(users, photos_dir)
        result: dict = {"app": app, "rss_mb": {"started": server.rss()}}
        server.phase = "warm-up"
        warm = run_users(server.url, app, photos[:1], requests=len(MIX) + 1, segmenter=segmenter)
        result["warm_up_errors"] = warm.errors
        result["rss_mb"]["after_warm_up"] = settle(server)
        server.phase = "load"
        t = time.perf_counter()
        outcome = run_users(server.url, app, photos, requests=requests, segmenter=segmenter)
        result["load_s"] = round(time.perf_counter() - t, 1)
        server.phase = "after"
        result["rss_mb"]["after_last_request"] = settle(server)
        result["session_folders_after_load"] = server.session_dirs() if app == "toolbox" else None
        result["cached_files_after_load"] = server.cached_files()
        server.phase = "expiry"
        # sessions expire ttl s after their last request and the janitor looks every max(1, ttl/4) s
        # (Gradio's cached copies of uploads and outputs stay for max(ttl, 10 min): not awaited here)
        time.sleep(ttl + max(1.0, ttl / 4) + 8)
        result["rss_mb"]["after_expiry"] = settle(server, 1.0)
        result["session_folders_after_expiry"] = server.session_dirs() if app == "toolbox" else None
        result["cached_files_after_expiry"] = server.cached_files()
        result["rss_mb"]["peak"] = max(s[1] for s in server.samples)
        result["latency"] = latency_table(outcome)
        result["requests"] = sum(len(v) for v in outcome.latencies.values())
        result["busy"] = outcome.busy
        result["errors"] = outcome.errors
        result["rss_samples"] = server.samples
        return result
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", choices=["toolbox", "chat", "both"], default="both")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--requests", type=int, default=10, help="requests per user (the first is a load)")
    ap.add_argument("--segmenter", default="mobile-sam")
    ap.add_argument("--ttl", type=float, default=20.0, help="session time to live of the apps, seconds")
    ap.add_argument("--max-jobs", type=int, default=1)
    ap.add_argument("--max-queue", type=int, default=4)
    ap.add_argument("--rss-bound-mb", type=float, default=300.0,
                    help="RSS after the last request may exceed RSS after warm-up by this much (the users' "
                         "live sessions and the models' caches of their images)")
    ap.add_argument("--expiry-bound-mb", type=float, default=100.0,
                    help="RSS after the sessions expired may exceed RSS after warm-up by this much")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()

    apps = ["toolbox", "chat"] if args.app == "both" else [args.app]
    load = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="som-load-photos-") as tmp:
        for app in apps:
            runs.append(soak(app, args.users, args.requests, args.segmenter, args.ttl, args.max_jobs, args.max_queue,
                             Path(tmp)))
    for r in runs:
        rss = r["rss_mb"]
        r["rss_ok"] = {
            "after_last_request_within_bound": rss["after_last_request"] <= rss["after_warm_up"] + args.rss_bound_mb,
            "after_expiry_back_to_baseline": rss["after_expiry"] <= rss["after_warm_up"] + args.expiry_bound_mb,
        }
    result = {
        "command": "python benchmarks/app_load.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "loadavg_at_start": [round(v, 2) for v in load]},
        "settings": vars(args),
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "app_load.json").write_text(json.dumps(result, indent=1))
    md = [f"# Load and soak ({args.users} users x {args.requests} requests, {args.segmenter}, CPU)", "",
          f"`{result['command']}` — {result['date']} — {os.cpu_count()} cores, {cpu_model()}, load average at start "
          f"{result['machine']['loadavg_at_start'][0]} (shared machine); apps with --session-ttl {args.ttl:g} "
          f"--max-jobs {args.max_jobs} --max-queue {args.max_queue}.", ""]
    for r in runs:
        rss = r["rss_mb"]
        md += [f"## {r['app']}", "",
               f"{r['requests']} requests in {r['load_s']} s; errors: {len(r['errors'])}; busy answers (retried): "
               f"{sum(r['busy'].values())} {r['busy'] or ''}", "",
               "| endpoint | n | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|",
               *[f"| `{k}` | {v['n']} | {v['p50_ms']} | {v['p95_ms']} | {v['max_ms']} |" for k, v in r["latency"].items()],
               "",
               f"RSS (MB): after warm-up {rss['after_warm_up']}, peak {rss['peak']}, after the last request "
               f"{rss['after_last_request']} (bound +{args.rss_bound_mb:g}: "
               f"{'ok' if r['rss_ok']['after_last_request_within_bound'] else 'EXCEEDED'}), after the sessions expired "
               f"{rss['after_expiry']} (bound +{args.expiry_bound_mb:g}: "
               f"{'ok' if r['rss_ok']['after_expiry_back_to_baseline'] else 'EXCEEDED'}).",
               f"Session folders {r['session_folders_after_load']} -> {r['session_folders_after_expiry']}; "
               f"Gradio's cached files {r['cached_files_after_load']} -> {r['cached_files_after_expiry']}.", ""]
        if r["errors"]:
            md += ["Errors:", *[f"- {e}" for e in r["errors"][:20]], ""]
    (out / "app_load.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    ok = all(not r["errors"] and all(r["rss_ok"].values()) for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
