"""Serving many users with the chat app (served for real, superpixel): the one-call /mark through
gradio_client and plain HTTP, a few users at once without leakage, sessions freed after their idle
time. (The job gate and "busy" are the toolbox's code too: tests/app/test_serve.py.)"""

from __future__ import annotations

import importlib.util
import sys
import io
import json
import time
import urllib.request

import numpy as np
import pytest
from conftest import REPO, ChatApp
from PIL import Image

from som.app.state import make_refine_options, make_style
from som.marksfile import regions_to_dict
from som.pipeline import mark

PHOTO = REPO / "assets" / "chelsea.jpg"
LOOK = (["Mark", "Mask"], "Number", 0.5, 0.001)


def _bench():
    spec = importlib.util.spec_from_file_location("som_bench_app_load", REPO / "benchmarks" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="module")
def expected():
    r = mark(PHOTO, segmenter="superpixel", granularity_level=3, style=make_style(*LOOK[:3]),
             refine_options=make_refine_options(LOOK[3]))
    return r.image, json.loads(json.dumps(regions_to_dict(r.regions, r.settings, image_file=PHOTO.name)))


def test_mark_through_gradio_client_and_plain_http(apps, expected):
    from gradio_client import Client, handle_file

    app = apps["keyless"]
    image, doc = expected
    picture, got = Client(app.url, verbose=False).predict(handle_file(str(PHOTO)), "superpixel", 3, *LOOK, api_name="/mark")
    assert got["marks"] == doc["marks"] and got["image"] == doc["image"]
    assert got["settings"]["granularity"] == {"level": 3, "name": "wholes"}
    np.testing.assert_array_equal(np.asarray(Image.open(picture).convert("RGB")), image)

    path = bench.upload_http(app.url, PHOTO)
    event, out = bench.call_http(app.url, "mark", [bench.file_data(path, PHOTO.name), "superpixel", 3, *LOOK])
    assert event == "complete", out
    assert out[1]["marks"] == doc["marks"]
    with urllib.request.urlopen(out[0]["url"]) as r:
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")), image)
    event, message = bench.call_http(app.url, "mark", [bench.file_data(path, PHOTO.name), "no-such-model", 3, *LOOK])
    assert event == "error" and "unknown segmenter" in str(message)


def test_users_at_once_get_their_own_marks(apps, tmp_path):
    photos = bench.user_photos(3, tmp_path, side=256)
    outcome = bench.run_users(apps["keyless"].url, "chat", photos, requests=4, segmenter="superpixel", timeout_s=300)
    assert not outcome.errors, outcome.errors
    assert {"/mark", "/load_image", "/add_region"} <= set(outcome.latencies), outcome.latencies.keys()


def test_idle_sessions_expire(tmp_path):
    from gradio_client import Client, handle_file

    app = ChatApp({}, tmp_path / "short.log", "--session-ttl", "2").wait()
    try:
        c = Client(app.url, verbose=False)
        picture, status, *_ = c.predict(handle_file(str(PHOTO)), "superpixel", 3, api_name="/load_image")
        assert "marks**" in status
        picture, status, *_ = c.predict(120, 150, "superpixel", api_name="/add_region")
        assert "Added mark" in status
        time.sleep(5)  # idle past the time to live: the session (image, marks, chat) is gone
        picture, status, *_ = c.predict(120, 150, "superpixel", api_name="/add_region")
        assert "upload an image first" in status and picture is None
        assert "Traceback" not in app.log()
    finally:
        app.stop()
