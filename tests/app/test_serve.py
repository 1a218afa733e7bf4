"""Serving many users (som.app.serving) through the served toolbox: the one-call /mark (gradio_client,
plain HTTP, the README's curl), limits with readable refusals, "busy" past the queue, sessions
freed after their idle time, a reverse proxy's root path. Real photos; superpixel except where the
default segmenter is the point."""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import sys
import io
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from som.app.serving import Busy, JobGate, ServeLimits, parse_bytes, parse_pixels
from som.app.state import make_refine_options, make_style
from som.marksfile import regions_to_dict
from som.pipeline import mark

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "assets" / "coffee.jpg"
CHELSEA = REPO / "assets" / "chelsea.jpg"
ASTRONAUT = REPO / "assets" / "astronaut.jpg"
LOOK = (["Mark", "Box"], "Alphabet", 0.3, 0.001)


def _load_bench():
    spec = importlib.util.spec_from_file_location("som_bench_app_load", REPO / "benchmarks" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def _upload(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def _app_error():
    from gradio_client.exceptions import AppError

    return AppError


def expected_doc(path: Path, level=2, look=LOOK) -> tuple[np.ndarray, dict]:
    marks, mode, alpha, min_area = look
    r = mark(path, segmenter="superpixel", granularity_level=level, style=make_style(marks, mode, alpha),
             refine_options=make_refine_options(min_area))
    return r.image, json.loads(json.dumps(regions_to_dict(r.regions, r.settings, image_file=path.name)))


def same_marks(doc: dict, expected: dict) -> None:
    assert doc["format"] == "som.marks" and doc["version"] == 2
    assert doc["image"] == expected["image"]
    assert doc["marks"] == expected["marks"]
    for key in ("segmenter", "granularity", "style", "refine"):
        assert doc["settings"][key] == expected["settings"][key], key


# ---------------------------------------------------------------- /mark
def test_mark_through_gradio_client_is_som_mark(client):
    picture, doc = client.predict(_upload(COFFEE), "superpixel", 2, *LOOK, api_name="/mark")
    image, expected = expected_doc(COFFEE)
    same_marks(doc, expected)
    assert len(doc["marks"]) > 10 and doc["marks"][0]["label"] == "a"
    np.testing.assert_array_equal(np.asarray(Image.open(picture).convert("RGB")), image)


def test_mark_defaults_are_nested_mobile_sam(client):
    """One call with the image only: the default segmenter and granularity 4 (nested)."""
    picture, doc = client.predict(_upload(CHELSEA), api_name="/mark")
    w, h = Image.open(CHELSEA).size
    assert doc["image"] == {"file": "chelsea.jpg", "width": w, "height": h}
    assert doc["settings"]["segmenter"] == "mobile-sam"
    assert doc["settings"]["granularity"] == {"level": 4, "name": "nested"}
    assert any(m["parent"] is not None for m in doc["marks"]), "nested marks have parts"
    assert Image.open(picture).size == (w, h)


def test_mark_holds_no_session(served_app, client):
    demo, _ = served_app
    before = len(list(demo.handlers.temp_root.glob("session-*")))
    client.predict(_upload(COFFEE), "superpixel", 2, *LOOK, api_name="/mark")
    assert len(list(demo.handlers.temp_root.glob("session-*"))) == before
    with pytest.raises(_app_error(), match="upload an image first"):  # the call left no image behind
        client.predict(x=10, y=10, api_name="/add_point", segmenter="superpixel")


def test_mark_over_plain_http(app_url):
    server_path = bench.upload_http(app_url, COFFEE)
    event, out = bench.call_http(app_url, "mark", [bench.file_data(server_path, "coffee.jpg"), "superpixel", 2, *LOOK])
    assert event == "complete", out
    picture, doc = out
    image, expected = expected_doc(COFFEE)
    same_marks(doc, expected)
    with urllib.request.urlopen(picture["url"]) as r:
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")), image)
    # a bad image over plain HTTP: the event stream says why in one line
    event, message = bench.call_http(app_url, "mark", [bench.file_data(bench.upload_http(app_url, Path(__file__)),
                                                                        "test_serve.py"), "superpixel", 2, *LOOK])
    assert event == "error" and "not an image" in str(message), message


def readme_curl_block() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(URL=http://127\.0\.0\.1:7860.*?)```", text, re.S)
    assert block, "README has the curl example of /mark"
    return block.group(1)


def test_readme_curl_example_works(app_url, tmp_path):
    if not Path("/usr/bin/curl").exists():
        pytest.skip("needs curl")
    # the README's commands as they are, against the test server, with the cheap segmenter
    script = readme_curl_block().replace("http://127.0.0.1:7860", app_url.rstrip("/")).replace('"mobile-sam"', '"superpixel"')
    assert '"superpixel", 4,' in script
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    data = [ln for ln in out.stdout.splitlines() if ln.startswith("data: ")]
    assert "event: complete" in out.stdout, out.stdout[-2000:]
    picture, doc = json.loads(data[-1][len("data: "):])
    assert doc["format"] == "som.marks" and doc["image"]["file"] == "coffee.jpg" and doc["marks"]
    assert picture["url"].endswith(".png")


# ---------------------------------------------------------------- limits
def _bomb_png(path: Path, side: int) -> Path:
    """A real decompression bomb: a valid 1-bit PNG of side x side black pixels, a few KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\0" + bytes((side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    big = d / "big.jpg"  # a real photo over the test server's 2 MP, well under its 5 MB
    Image.open(ASTRONAUT).resize((1600, 1600)).save(big, quality=90)
    cut = d / "cut.jpg"
    cut.write_bytes(COFFEE.read_bytes()[:3000])
    text = d / "notes.png"
    text.write_text("not a picture\n")
    return {"big": big, "bomb": _bomb_png(d / "bomb.png", 12000), "cut": cut, "text": text}


@pytest.mark.parametrize("kind, words", [
    ("big", r"big\.jpg: 1600x1600 pixels \(2\.6 MP\) is over the 2\.0 MP limit; the server's operator can raise it "
            r"with --max-pixels or SOM_MAX_PIXELS"),
    ("bomb", r"bomb\.png: refused as a decompression bomb: a .* file that declares 12000x12000 pixels \(144 MP"),
    ("cut", r"cut\.jpg: .*truncated"),
    ("text", r"notes\.png: not an image"),
])
@pytest.mark.parametrize("endpoint", ["/mark", "/load_image"])
def test_bad_uploads_are_refused_readably(client, bad_images, kind, words, endpoint):
    args = (_upload(bad_images[kind]), "superpixel") + ((2, *LOOK) if endpoint == "/mark" else ())
    with pytest.raises(_app_error(), match=words) as info:
        client.predict(*args, api_name=endpoint)
    message = str(info.value)
    assert "Traceback" not in message and "/tmp" not in message
    if kind == "bomb":
        assert "truncated" not in message and "corrupt" not in message
    client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")  # still serving


def test_upload_over_the_byte_limit_says_limit_and_flag(app_url, tmp_path):
    big = tmp_path / "noise.png"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 5 * 1024 * 1024 + 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(urllib.error.HTTPError) as info:
        bench.upload_http(app_url, big)
    assert info.value.code == 413
    detail = json.loads(info.value.read())["detail"]
    assert "5 MB limit" in detail and "--max-file-size" in detail and "SOM_MAX_FILE_SIZE" in detail


# ---------------------------------------------------------------- busy
def test_busy_beyond_the_queue_is_answered_at_once(serve):
    from gradio_client import Client

    demo, url = serve(max_jobs=1, max_queue=1)
    gate = demo.handlers.gate
    waiting: dict = {}
    with gate.slot():  # the one slot is taken
        def first():
            waiting["out"] = Client(url, verbose=False).predict(_upload(COFFEE), "superpixel", 2, *LOOK,
                                                                api_name="/mark")

        t = threading.Thread(target=first)
        t.start()
        deadline = time.monotonic() + 60
        while gate.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.waiting == 1  # the queue (of one) is full
        c = Client(url, verbose=False)
        started = time.monotonic()
        with pytest.raises(_app_error(), match=r"busy: 1 automatic marking\(s\) running and 1 waiting.*"
                                               r"--max-jobs 1, --max-queue 1.*try again"):
            c.predict(_upload(CHELSEA), "superpixel", 2, *LOOK, api_name="/mark")
        c.predict(_upload(CHELSEA), "superpixel", api_name="/load_image")
        with pytest.raises(_app_error(), match="busy"):  # the session's automatic marking shares the limit
            c.predict(granularity=2, api_name="/segment_auto", segmenter="superpixel")
        assert time.monotonic() - started < 30 and gate.refused == 2
    t.join(120)
    assert waiting["out"][1]["image"]["file"] == "coffee.jpg"  # the waiting one ran once the slot was free


def test_job_gate_is_first_come_first_served():
    gate = JobGate(max_jobs=1, max_queue=3)
    order: list[int] = []

    def job(i):
        with gate.slot():
            order.append(i)

    with gate.slot():
        threads = []
        for i in range(3):
            threads.append(threading.Thread(target=job, args=(i,)))
            threads[-1].start()
            while gate.waiting < i + 1:
                time.sleep(0.01)
        with pytest.raises(Busy, match="try again"):
            with gate.slot():
                pass
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2] and gate.running == 0 and gate.waiting == 0


# ---------------------------------------------------------------- sessions
def test_idle_sessions_are_freed_with_their_files(serve):
    from gradio_client import Client

    demo, url = serve(session_ttl_s=2)
    c = Client(url, verbose=False)
    c.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    out = c.predict(x=300, y=120, api_name="/add_point", segmenter="superpixel")
    assert "added region 1" in out[2]
    root = demo.handlers.temp_root
    assert len(list(root.glob("session-*"))) == 1
    assert c.session_hash in demo.state_holder.session_data
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (list(root.glob("session-*"))
                                           or c.session_hash in demo.state_holder.session_data):
        time.sleep(0.25)
    assert not list(root.glob("session-*")), "the session's files were deleted"
    assert c.session_hash not in demo.state_holder.session_data, "Gradio's store let go of the session"
    assert demo.janitor.freed >= 1
    with pytest.raises(_app_error(), match="upload an image first"):
        c.predict(x=300, y=120, api_name="/add_point", segmenter="superpixel")


def test_a_request_longer_than_the_time_to_live_keeps_its_session(serve):
    from gradio_client import Client

    demo, url = serve(session_ttl_s=1, max_jobs=1)
    c = Client(url, verbose=False)
    c.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    done: dict = {}
    with demo.handlers.gate.slot():  # the automatic marking waits for the slot, longer than the ttl
        def run():
            try:
                done["out"] = c.predict(granularity=2, api_name="/segment_auto", segmenter="superpixel")
            except Exception as e:  # noqa: BLE001 - shown below
                done["error"] = e

        t = threading.Thread(target=run)
        t.start()
        time.sleep(3)
    t.join(60)
    assert "error" not in done, done.get("error")
    n = len(done["out"][1]["data"])
    assert n > 10 and "coffee" in done["out"][2]
    out = c.predict(api_name="/undo")  # right after: the session is still there, with those marks
    assert len(out[1]["data"]) == n - 1


# ---------------------------------------------------------------- reverse proxy
class _PrefixProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy as nginx's `location /som/ { proxy_pass http://app/; proxy_set_header Host $host; }`:
    /som/X -> app /X with the client's Host, streamed (server-sent events pass through); anything
    outside /som/ is 404."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)
    prefix = "/som"

    def log_message(self, *args):
        pass

    def _forward(self):
        if not self.path.startswith(self.prefix + "/"):
            self.send_error(404, "outside the proxied prefix")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        conn.request(self.command, self.path[len(self.prefix):], body=body or None, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        while chunk := resp.read1(65536):
            self.wfile.write(chunk)
            self.wfile.flush()
        conn.close()

    do_GET = do_POST = do_HEAD = _forward


def test_root_path_behind_a_reverse_proxy(serve):
    from gradio_client import Client

    demo, direct = serve(root_path="/som")
    port = int(direct.split(":")[2].split("/")[0])
    handler = type("Proxy", (_PrefixProxy,), {"upstream": ("127.0.0.1", port)})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", bench.free_port()), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/som/"
        with urllib.request.urlopen(url) as r:
            assert r.status == 200 and "SoM toolbox" in r.read().decode()
        c = Client(url, verbose=False, download_files=False)
        picture, doc = c.predict(_upload(COFFEE), "superpixel", 2, *LOOK, api_name="/mark")
        assert picture["url"].startswith(url + "gradio_api/file="), picture["url"]
        with urllib.request.urlopen(picture["url"]) as r:  # the file comes back through the proxy
            assert Image.open(io.BytesIO(r.read())).size == (600, 400)
        assert doc["image"]["file"] == "coffee.jpg"
    finally:
        proxy.shutdown()


# ---------------------------------------------------------------- settings
def test_limits_from_flags_env_and_defaults():
    env = {"SOM_MAX_PIXELS": "12mp", "SOM_MAX_JOBS": "3", "SOM_SESSION_TTL": "90", "SOM_MAX_FILE_SIZE": "8mb"}
    limits = ServeLimits.from_env(env, max_jobs=2, max_queue=None)
    assert (limits.max_pixels, limits.max_jobs, limits.max_queue, limits.session_ttl_s) == (12_000_000, 2, 8, 90.0)
    assert limits.max_file_bytes == 8 * 1024 * 1024
    assert ServeLimits.from_env({}) == ServeLimits()
    assert parse_bytes("1.5 GB") == 1610612736 and parse_bytes(1000) == 1000 and parse_pixels("50M") == 50_000_000
    for given, words in [({"max_pixels": "lots"}, "--max-pixels"), ({"max_jobs": 0}, "--max-jobs"),
                         ({"max_file_size": "5 parsecs"}, "size"), ({"root_path": "som"}, "--root-path")]:
        with pytest.raises(ValueError, match=words):
            ServeLimits.from_env({}, **given)
    with pytest.raises(ValueError, match="SOM_MAX_JOBS"):
        ServeLimits.from_env({"SOM_MAX_JOBS": "many"})


def test_bad_limit_flags_exit_with_a_message(capsys):
    from som.app.cli import main

    assert main(["--max-pixels", "lots"]) == 2
    assert "--max-pixels" in capsys.readouterr().err


def test_orphaned_session_folders_go_live_ones_stay(tmp_path):
    import os

    from som.app.serving import SessionJanitor

    old = time.time() - 100
    live, orphan, fresh = (tmp_path / n for n in ("session-live", "session-orphan", "session-fresh"))
    for d in (live, orphan, fresh):
        d.mkdir()
        (d / "x.png").write_bytes(b"x")
    for d in (live, orphan):
        os.utime(d, (old, old))
    janitor = SessionJanitor(blocks=None, ttl_s=10, temp_root=tmp_path)
    assert janitor.sweep_files(live={str(live)}) == 1
    assert live.is_dir() and fresh.is_dir() and not orphan.exists()
