"""Fixtures for som.web: the test pages and Debian's Python documentation served on localhost,
and pages opened in the session's Chromium (tests/conftest.py) at 1280x800."""

from __future__ import annotations

import functools
import glob
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pages import PAGES



class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def _serve(folder: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Base URL of the test pages; a second server on another port is the cross-origin frame's origin."""
    folder = tmp_path_factory.mktemp("site")
    other, other_url = _serve(folder)
    for name, html in PAGES.items():
        # {cross}: another port, so another origin; {away}: another host name for the same server
        html = html.replace("{cross}", other_url).replace("{away}", other_url.replace("127.0.0.1", "localhost"))
        (folder / name).write_text(html)
    server, url = _serve(folder)
    yield url
    server.shutdown()
    other.shutdown()


def python_docs() -> Path | None:
    """Debian's python3-doc HTML (apt-get install python3-doc), or None."""
    for pattern in ("/usr/share/doc/python3-doc/html", "/usr/share/doc/python3.*-doc/html", "/usr/share/doc/python3*/html"):
        for d in sorted(glob.glob(pattern)):
            if (Path(d) / "library" / "os.html").exists():
                return Path(d).resolve()
    return None


@pytest.fixture(scope="session")
def docs_site():
    folder = python_docs()
    if folder is None:
        pytest.skip("real-page tests need Debian's python3-doc (apt-get install python3-doc)")
    server, url = _serve(folder)
    yield url
    server.shutdown()


@pytest.fixture
def open_page(browser):
    """open_page(url, **kw) -> a Playwright Page opened the way mark_page opens one (click-listener
    script installed), closed after the test."""
    from som.web.page import open_page as _open

    sessions = []

    def make(url, **kw):
        page, session = _open(url, browser=browser, **kw)
        sessions.append(session)
        return page

    yield make
    for s in sessions:
        s.close()


@pytest.fixture
def llm_server():
    """The OpenAI-protocol test double of tests/llm (a real local HTTP server), for the agent loop."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
    from openai_double import FakeOpenAIServer

    server = FakeOpenAIServer(api_key=AGENT_KEY, models=("test-model",)).start()
    yield server
    server.stop()


AGENT_KEY = "sk-test-agent-double-0123456789"
