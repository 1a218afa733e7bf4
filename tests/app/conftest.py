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


@pytest.fixture(scope="session")
def app_url():
    """The toolbox served in a background thread (default segmenter mobile-sam, CPU)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from som.app.toolbox import CSS, build_app

    demo = build_app(device="cpu")
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size="5mb", allowed_paths=[], css=CSS)
    yield f"http://127.0.0.1:{port}/"
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
