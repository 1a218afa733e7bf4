"""Allow-lists hold across HTTP redirects: an allowed host that answers 302 to a host not allowed
must not make the browser fetch from that host: the page tools (`--allow-host`: pages and
sub-resources) and `som agent` (`--allow-host`: top-level navigations).

A real local HTTP server answers on 127.0.0.1 (allowed) and on localhost (the same server, not
allowed); it records the Host header of every request, so the test sees what reached it."""

from __future__ import annotations

import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import som.tools
from som.tools import ResultStore, Roots, ToolContext, ToolError
from som.tools.impl import WebSettings
from som.tools.pages import BrowserHost
from som.web.page import chromium_path

pytest.importorskip("playwright.sync_api", reason="the page tools need playwright")
CHROMIUM = chromium_path() or "/usr/bin/chromium"


class _Site(BaseHTTPRequestHandler):
    seen: typing.ClassVar[list[tuple[str, str]]] = []  # (host header, path) of every request

    def log_message(self, *args):
        pass

    def do_GET(self):
        host = self.headers.get("Host", "")
        type(self).seen.append((host.split(":")[0], self.path))
        port = self.server.server_address[1]
        if self.path.startswith("/away"):  # an allowed page that redirects off the allow-list
            self._redirect(f"http://localhost:{port}/secret")
        elif self.path.startswith("/hop"):  # a redirect that stays on the allowed host
            self._redirect("/page")
        elif self.path.startswith("/img-away"):
            self._redirect(f"http://localhost:{port}/secret-img")
        elif self.path.startswith("/links"):
            self._html(b"<html><body><a href='/away'>Leave</a> <a href='/hop'>Stay</a></body></html>")
        else:
            self._html(b"<html><body><h1>Page</h1><button>Go</button>"
                       b"<img src='/img-away' width=10 height=10></body></html>")

    def _html(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str):
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def site():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"the page tools need Chromium at {CHROMIUM} (apt-get install -y chromium)")
    _Site.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_redirects_to_hosts_not_allowed_are_not_followed(site, tmp_path):
    host = BrowserHost(max_pages=2)
    ctx = ToolContext(Roots([tmp_path]), ResultStore(), web=WebSettings(allow_hosts=("127.0.0.1",), browser=host))
    try:
        with pytest.raises(ToolError, match=r"/away redirects to http://localhost:\d+/secret, which is not allowed"):
            som.tools.call("open_page", {"url": f"{site}/away"}, context=ctx)
        opened = som.tools.call("open_page", {"url": f"{site}/hop"}, context=ctx)  # allowed redirect: followed
        assert opened.data["url"].endswith("/page")
    finally:
        host.close()
    assert ("127.0.0.1", "/away") in _Site.seen and ("127.0.0.1", "/img-away") in _Site.seen
    assert [path for name, path in _Site.seen if name == "localhost"] == []  # nothing reached the other host


def test_agent_allow_list_holds_across_redirects(site, browser, llm_server):
    """The model clicks a link whose target redirects to a host not allowed: the step is blocked,
    nothing reaches that host; then a link redirecting within the allowed host is followed."""
    from test_agent import client_for, mark_of

    from som.web.agent import run_agent

    def model(request):
        n = len(llm_server.requests)
        if n == 1:
            return f"click [{mark_of(request, 'Leave')}]"
        if n == 2:
            assert "blocked" in request.all_text
            return f"click [{mark_of(request, 'Stay')}]"
        return "done: stayed"

    llm_server.responder = model
    result = run_agent(f"{site}/links", "leave", client=client_for(llm_server), browser=browser, max_steps=4,
                       allow_hosts=["127.0.0.1"])
    assert result.finished
    assert not result.steps[0].ok and "localhost" in result.steps[0].error
    assert result.steps[1].ok and result.steps[2].url.endswith("/page"), "a redirect within the allowed host is followed"
    # the navigation never reached the other host (the agent's list covers navigations only: /page's
    # image may load from anywhere)
    assert ("localhost", "/secret") not in _Site.seen
