"""Fixtures of the app tests: a served toolbox on a free port, gradio_client clients, Chromium."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "assets" / "coffee.jpg"
CHELSEA = REPO / "assets" / "chelsea.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_MAX_PIXELS = 2_000_000  # the test server's pixel limit (the photos in assets/ are all under it)


def serve_toolbox(**limits):
    """(demo, url): the toolbox served in a background thread as `launch` serves it (CPU), with
    these ServeLimits; the caller closes it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from som.app.serving import GRADIO_QUEUE_SIZE, ServeLimits, launch_kwargs
    from som.app.toolbox import CSS, build_app

    limits = ServeLimits(**limits)
    demo = build_app(device="cpu", limits=limits)
    demo.queue(default_concurrency_limit=2, max_size=GRADIO_QUEUE_SIZE)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[],
                css=CSS, **launch_kwargs(limits, demo.janitor))
    root = limits.root_path.rstrip("/")
    return demo, f"http://127.0.0.1:{port}{root}/"


@pytest.fixture(scope="session")
def served_app():
    """The toolbox served in a background thread (default segmenter mobile-sam, CPU), 5 MB uploads."""
    demo, url = serve_toolbox(max_file_size="5mb", max_pixels=TEST_MAX_PIXELS)
    yield demo, url
    demo.close()


@pytest.fixture(scope="session")
def app_url(served_app):
    return served_app[1]


@pytest.fixture
def serve():
    """serve(**limits) -> (demo, url) of a toolbox of its own; closed after the test."""
    demos = []

    def start(**limits):
        demo, url = serve_toolbox(**limits)
        demos.append(demo)
        return demo, url

    yield start
    for demo in demos:
        demo.close()


@pytest.fixture
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="module")
def mobile_sam():
    """The default segmenter, built once per process."""
    from som.pipeline import cached_segmenter

    return cached_segmenter("mobile-sam", "cpu")


@pytest.fixture
def coffee_session():
    """A toolbox session (no server) with coffee.jpg loaded."""
    from som.app.state import ToolboxSession

    s = ToolboxSession()
    s.load(str(COFFEE), name="coffee.jpg")
    yield s
    s.close()
