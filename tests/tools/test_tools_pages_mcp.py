"""The screen and page tools of `som mcp --http`, driven by the MCP SDK's own client: a page served
on localhost opened, clicked, typed into, selected, scrolled and re-marked, every error case
(unknown label, unknown / closed / evicted page, element gone, URL not allowed, file outside
the roots), `screen_marks` on a screenshot Chromium took, `som.tools.call` agreeing with the
MCP tools, and the browser closed when the server shuts down.

One server (`--allow-host 127.0.0.1 --max-pages 2`) and one session run the whole story once
(the `story` fixture); the tests below read its replies.
"""

from __future__ import annotations

import functools
import io
import os
import re
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest
from PIL import Image
from tools_helpers import (
    API_KEY, MODEL, ServerProcess, b64, decode_masks, error_text, free_port, http_session, png_of, run_async, server_env,
    stdio_session,
)
from openai_double import Step  # noqa: E402 - tools_helpers puts tests/llm on the path

import som.tools
from som.tools import ResultStore, Roots, ToolContext, ToolError
from som.tools.impl import WebSettings
from som.tools.pages import BrowserHost
from som.web.page import chromium_path

CHROMIUM = chromium_path() or "/usr/bin/chromium"

pytest.importorskip("mcp", reason="som mcp needs the MCP SDK: pip install 'som[mcp]'")
pytest.importorskip("playwright.sync_api", reason="the page tools need playwright")
pytestmark = [pytest.mark.slow, pytest.mark.browser]

VIEW = {"width": 900, "height": 600}
COUNTER = """<!doctype html><html><head><title>counter</title>
<style>body { font: 16px sans-serif; margin: 20px; } button, input, select { font: inherit; margin: 4px; }</style>
</head><body>
<script>window.n = 0;</script>
<div><button id="count" onclick="this.textContent = 'Count: ' + (++window.n)">Count: 0</button></div>
<form id="f" onsubmit="event.preventDefault(); document.title = 'hello ' + document.getElementById('name').value;">
  <input id="name" placeholder="Your name">
</form>
<div><select id="size"><option value="s">Small</option><option value="l">Large</option></select></div>
<div><button id="arm" onclick="setTimeout(() => document.getElementById('ghost').remove(), 2000)">Arm</button>
     <button id="ghost">Ghost</button></div>
<div><a id="away" href="{away}/counter.html">Elsewhere</a> <a id="next" href="/second.html">Second page</a></div>
<div style="height: 500px"></div>
<button id="bottom">Bottom button</button>
</body></html>"""
SECOND = """<!doctype html><html><head><title>second</title></head><body>
<a href="/counter.html">Back to the counter</a></body></html>"""
LOCAL = """<!doctype html><html><head><title>local file</title></head><body>
<button>Local button</button></body></html>"""
SCREEN = """<!doctype html><html><head><style>
body { font: 18px sans-serif; margin: 24px; background: #fff; }
button { font: 18px sans-serif; padding: 6px 16px; border: 1px solid #666; border-radius: 4px; background: #f2f2f2; margin-right: 14px; }
</style></head><body>
<div><button id="save">Save</button><button id="cancel">Cancel</button></div>
<h2 id="title">Quarterly report</h2>
</body></html>"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _by_name(data: dict, name: str) -> dict:
    found = [m for m in data["marks"] if m["name"] == name]
    assert len(found) == 1, (name, [m["name"] for m in data["marks"]])
    return found[0]


def _names(data: dict) -> list[str]:
    return [m["name"] for m in data["marks"]]


def _ok(result) -> dict:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def _screenshot(path: Path) -> dict:
    """Chromium's screenshot of SCREEN at `path`; the DOM boxes of its buttons and heading. (On a
    BrowserHost thread: a sync Playwright on the test's own thread would stop anyio.run there.)"""
    host = BrowserHost()

    def shoot() -> dict:
        page = host.browser().new_page(viewport={"width": 640, "height": 200})
        page.set_content(SCREEN)
        Image.open(io.BytesIO(page.screenshot())).convert("RGB").save(path)
        truth = dict(page.evaluate("""() => ['save', 'cancel', 'title'].map((id) => {
            const r = document.getElementById(id).getBoundingClientRect(); return [id, [r.left, r.top, r.right, r.bottom]]; })"""))
        page.close()
        return truth

    try:
        return host.run(shoot)
    finally:
        host.close()


@pytest.fixture(scope="module")
def web_root(tmp_path_factory):
    """The allowed root: a local HTML page and a screenshot Chromium took of SCREEN (with the DOM
    boxes of its buttons and heading); plus the site served on 127.0.0.1 (URL in .site)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"the page tools need Chromium at {CHROMIUM} (apt-get install -y chromium)")
    root = tmp_path_factory.mktemp("webroot")
    (root / "local.html").write_text(LOCAL)
    truth = _screenshot(root / "shot.png")
    site = tmp_path_factory.mktemp("site")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    port = server.server_address[1]
    (site / "counter.html").write_text(COUNTER.replace("{away}", f"http://localhost:{port}"))
    (site / "second.html").write_text(SECOND)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield root, f"http://127.0.0.1:{port}", truth
    server.shutdown()


@pytest.fixture(scope="module")
def page_server(web_root, llm_server):
    root, _, _ = web_root
    env = server_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=llm_server.base_url, SOM_MODEL=MODEL)
    server = ServerProcess(root, env, "--verbose", "--allow-host", "127.0.0.1", "--max-pages", "2")
    yield server
    server.stop()


def _descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(child)
    return out


@asynccontextmanager
async def _lingering_session(url: str):
    """A session whose client goes away without ending it (no DELETE), as a crashed client would."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url, terminate_on_close=False) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@pytest.fixture(scope="module")
def story(page_server, web_root, llm_server):
    """One session: the counter page opened, acted on, and every error case; a second session
    alongside. Returns every reply (and the server's Chromium processes while pages were open)."""
    root, site, _ = web_root
    url = f"{site}/counter.html"
    closed_port = free_port()  # nothing listens there

    async def session():
        out = {}
        async with http_session(page_server.url) as s:
            out["no_page"] = await s.call_tool("click_mark", {"label": "1"})
            out["open"] = await s.call_tool("open_page", {"url": url, **VIEW})
            marks = _ok(out["open"])
            label = {name: _by_name(marks, name)["label"] for name in ("Count: 0", "Your name", "Arm", "Ghost",
                                                                        "Elsewhere", "Second page")}  # fmt: skip
            select = next(m["label"] for m in marks["marks"] if m["tag"] == "select")
            out["click"] = await s.call_tool("click_mark", {"label": label["Count: 0"]})
            out["click2"] = await s.call_tool("click_mark", {"page_id": 1, "label": label["Count: 0"]})
            out["type"] = await s.call_tool("type_mark", {"label": label["Your name"], "text": "Ada"})
            out["submit"] = await s.call_tool("type_mark", {"label": label["Your name"], "text": "Bob", "submit": True})
            out["select"] = await s.call_tool("select_mark", {"label": select, "option": "Large"})
            out["remark"] = await s.call_tool("page_marks", {"page_id": 1})
            out["regions"] = await s.call_tool("regions", {"result_id": _ok(out["remark"])["result_id"],
                                                           "labels": [label["Count: 0"]], "highlight": True})  # fmt: skip
            # ask the LLM about the marked page (a page result is a result like any other)
            llm_server.enqueue(Step(text=f"The counter is the button [{label['Count: 0']}]."))
            n_before = len(llm_server.requests)
            out["ask"] = await s.call_tool("ask", {"result_id": _ok(out["remark"])["result_id"],
                                                   "question": "which mark is the counter?", "template": "refer"})  # fmt: skip
            out["llm_requests"] = llm_server.requests[n_before:]
            # errors on the open page; it keeps serving after each
            out["unknown_label"] = await s.call_tool("click_mark", {"label": "99"})
            out["not_text"] = await s.call_tool("type_mark", {"label": label["Arm"], "text": "x"})
            out["no_option"] = await s.call_tool("select_mark", {"label": select, "option": "Huge"})
            out["arm"] = await s.call_tool("click_mark", {"label": label["Arm"]})
            await anyio.sleep(2.5)  # the page removes Ghost 2 s after Arm's click
            out["gone"] = await s.call_tool("click_mark", {"label": label["Ghost"]})
            out["after_gone"] = await s.call_tool("page_marks", {})
            out["away"] = await s.call_tool("click_mark", {"label": _by_name(_ok(out["after_gone"]), "Elsewhere")["label"]})
            out["scroll"] = await s.call_tool("scroll", {"direction": "down"})
            out["full"] = await s.call_tool("page_marks", {"full_page": True})
            out["scroll_up"] = await s.call_tool("scroll", {"direction": "up", "amount": 5})
            out["next"] = await s.call_tool("click_mark", {"label": _by_name(_ok(out["scroll_up"]), "Second page")["label"]})
            # URLs and files not allowed
            out["host"] = await s.call_tool("open_page", {"url": url.replace("127.0.0.1", "localhost")})
            out["outside"] = await s.call_tool("open_page", {"url": "file:///etc/hostname"})
            out["data_url"] = await s.call_tool("open_page", {"url": "data:text/html,<button>x</button>"})
            out["refused"] = await s.call_tool("open_page", {"url": f"http://127.0.0.1:{closed_port}/"})
            # a file under the root, then a third page: page 1 is closed (cap 2 per connection)
            out["local"] = await s.call_tool("open_page", {"url": "local.html", **VIEW})
            out["chromium"] = _descendants(page_server.proc.pid)
            out["third"] = await s.call_tool("open_page", {"url": f"{site}/second.html", **VIEW})
            out["evicted"] = await s.call_tool("click_mark", {"page_id": 1, "label": "1"})
            out["close"] = await s.call_tool("close_page", {"page_id": 2})
            out["closed"] = await s.call_tool("scroll", {"page_id": 2})
            out["unknown_page"] = await s.call_tool("page_marks", {"page_id": 9})
            async with http_session(page_server.url) as other:  # another connection sees none of these pages
                out["other"] = await other.call_tool("page_marks", {"page_id": 3})
                out["other_open"] = await other.call_tool("open_page", {"url": "local.html"})
            # ...and its page closes when its client ends the session (DELETE)
            out["still"] = await s.call_tool("page_marks", {})
            out["screen"] = await s.call_tool("screen_marks", {"path": "shot.png"})
            out["screen_regions"] = await s.call_tool("regions", {"result_id": _ok(out["screen"])["result_id"]})
            out["screen_bad"] = await s.call_tool("screen_marks", {"path": "local.html"})
            out["screen_outside"] = await s.call_tool("screen_marks", {"path": "/etc/hostname"})
        async with _lingering_session(page_server.url) as s:  # leaves without ending its session
            out["lingering"] = await s.call_tool("open_page", {"url": "local.html"})
        out["label"], out["select_label"] = label, select
        return out

    return run_async(session)


def test_open_page_returns_the_marked_screenshot_and_the_elements(story, web_root):
    data = _ok(story["open"])
    assert data["page_id"] == 1 and data["open_pages"] == [1] and data["title"] == "counter"
    assert data["url"].endswith("/counter.html") and data["image"]["width"] == 900 and data["scroll"] == [0, 0]
    shot = png_of(story["open"].content[1])
    assert shot.shape == (600, 900, 3)
    kinds = {m["name"]: m["kind"] for m in data["marks"]}
    assert kinds["Count: 0"] == "button" and kinds["Your name"] == "input" and kinds["Elsewhere"] == "link"
    assert "Bottom button" not in kinds  # below the 600 px viewport
    assert [m["label"] for m in data["marks"]] == [str(i) for i in range(1, data["count"] + 1)]
    for m in data["marks"]:  # each box lies in the screenshot and its outline was drawn around it
        x1, y1, x2, y2 = (int(v) for v in m["xyxy"])
        assert 0 <= x1 < x2 <= 900 and 0 <= y1 < y2 <= 600
    button = _by_name(data, "Count: 0")["xyxy"]
    clean = shot[int(button[1]) + 3 : int(button[3]) - 3, int(button[0]) + 3 : int(button[2]) - 3]
    assert clean.std() > 5  # the button's own pixels (text), not covered by a label


def test_click_type_select_change_the_page_and_return_its_new_marks(story):
    assert _ok(story["click"])["done"] == '''clicked [{}] button "Count: 0"'''.format(story["label"]["Count: 0"])
    assert "Count: 1" in _names(_ok(story["click"])) and "Count: 0" not in _names(_ok(story["click"]))
    assert "Count: 2" in _names(_ok(story["click2"]))
    typed = _ok(story["type"])
    assert _by_name(typed, "Your name")["value"] == "Ada" and typed["title"] == "counter"
    submitted = _ok(story["submit"])
    assert _by_name(submitted, "Your name")["value"] == "Bob" and submitted["title"] == "hello Bob"
    assert submitted["done"].endswith("and pressed Enter")
    chosen = _ok(story["select"])
    assert [m["value"] for m in chosen["marks"] if m["tag"] == "select"] == ["l"]
    again = _ok(story["remark"])  # page_marks sees the same state
    assert "Count: 2" in _names(again) and _by_name(again, "Your name")["value"] == "Bob"
    # every marking is a stored result: regions of the button, a box mask, highlighted
    regions = _ok(story["regions"])
    (mark,) = regions["marks"]
    (mask,) = decode_masks([mark], (600, 900))
    assert mask.sum() == mark["area"] == (mark["xyxy"][2] - mark["xyxy"][0]) * (mark["xyxy"][3] - mark["xyxy"][1])
    assert png_of(story["regions"].content[1]).shape == (600, 900, 3)
    asked = _ok(story["ask"])
    assert asked["labels"] == [mark["label"]] and asked["marks"][0]["xyxy"] == mark["xyxy"]
    (request,) = story["llm_requests"]  # the model saw the marked page screenshot
    assert "which mark is the counter?" in request.all_text and request.images[0] == ("PNG", (600, 900))


def test_scroll_and_full_page_show_what_lies_below(story):
    down = _ok(story["scroll"])
    assert down["done"] == "scrolled down by 0.8 viewports" and down["scroll"][1] > 0
    assert "Bottom button" in _names(down) and "Count: 2" not in _names(down)
    full = _ok(story["full"])
    assert full["full_page"] and full["image"]["height"] > 600
    assert {"Count: 2", "Bottom button"} <= set(_names(full))
    assert png_of(story["full"].content[1]).shape[0] == full["image"]["height"]
    up = _ok(story["scroll_up"])
    assert up["scroll"] == [0, 0] and "Count: 2" in _names(up)
    # a link to an allowed host: the page follows it
    nxt = _ok(story["next"])
    assert nxt["title"] == "second" and nxt["url"].endswith("/second.html")


def test_errors_are_one_line_tool_errors(story):
    label = story["label"]
    assert "no page is open on this connection; call open_page first" in error_text(story["no_page"])
    assert error_text(story["unknown_label"]).startswith("click_mark: unknown label 99 on page 1: its latest marks are 1 to ")
    assert f"type_mark: mark {label['Arm']} is a button, not a text field" in error_text(story["not_text"])
    assert "has no option 'Huge'; options are ['Small', 'Large']" in error_text(story["no_option"])
    assert "Ghost" in _names(_ok(story["arm"]))
    gone = error_text(story["gone"])
    assert gone.startswith(f'click_mark: mark {label["Ghost"]} ([{label["Ghost"]}] button "Ghost") is gone') and "mark the page again" in gone
    assert "Ghost" not in _names(_ok(story["after_gone"]))
    away = error_text(story["away"])
    assert "tried to open http://localhost:" in away and "which is not allowed (allowed: 127.0.0.1)" in away
    assert away.endswith("the page stays at " + _ok(story["open"])["url"])
    assert "host localhost is not allowed (allowed: 127.0.0.1" in error_text(story["host"])
    assert "'/etc/hostname' is outside the allowed roots" in error_text(story["outside"])
    assert "only http, https and file URLs" in error_text(story["data_url"])
    assert re.fullmatch(r"open_page: could not load http://127\.0\.0\.1:\d+/: net::ERR_CONNECTION_REFUSED.*", error_text(story["refused"]))
    local = _ok(story["local"])
    assert local["page_id"] == 2 and local["url"].startswith("file://") and _names(local) == ["Local button"]
    assert _ok(story["third"])["open_pages"] == [2, 3]
    assert error_text(story["evicted"]) == (
        "click_mark: page 1 is closed (closed to keep this connection within its cap of 2 open pages); "
        "open it again with open_page"
    )
    assert _ok(story["close"]) == {"page_id": 2, "closed": True, "open_pages": [3]}
    assert "page 2 is closed (closed by close_page)" in error_text(story["closed"])
    assert "unknown page id 9: this connection's open pages are 3" in error_text(story["unknown_page"])
    assert "unknown page id 3: this connection's open pages are none" in error_text(story["other"])
    assert _ok(story["other_open"])["page_id"] == 1 and _ok(story["other_open"])["open_pages"] == [1]
    assert _ok(story["still"])["page_id"] == 3  # the page of this connection is untouched
    assert error_text(story["screen_bad"]).startswith("screen_marks: local.html: ")
    assert "outside the allowed roots" in error_text(story["screen_outside"])


def test_screen_marks_reads_a_chromium_screenshot(story, web_root):
    root, _, truth = web_root
    data = _ok(story["screen"])
    assert data["source"] == "screen" and data["image"] == {"file": "shot.png", "width": 640, "height": 200}
    assert png_of(story["screen"].content[1]).shape == (200, 640, 3)
    by_text = {}
    for m in data["marks"]:
        assert m["kind"] in ("text", "icon", "control", "image")
        by_text.setdefault(m["text"].strip().lower(), m)
    for element, text in (("save", "save"), ("cancel", "cancel"), ("title", "quarterly report")):
        assert text in by_text, (text, sorted(by_text))
        x1, y1, x2, y2 = by_text[text]["xyxy"]
        t = truth[element]  # the mark lies on the element the browser drew there
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert t[0] - 2 <= cx <= t[2] + 2 and t[1] - 2 <= cy <= t[3] + 2, (text, by_text[text]["xyxy"], t)
    regions = _ok(story["screen_regions"])
    assert [m["label"] for m in regions["marks"]] == [m["label"] for m in data["marks"]]
    decode_masks(regions["marks"], (200, 640))


def test_call_gives_the_same_pages_and_screens_as_the_mcp_tools(story, web_root):
    root, site, _ = web_root
    host = BrowserHost(max_pages=2)
    ctx = ToolContext(Roots([root]), ResultStore(), web=WebSettings(allow_hosts=("127.0.0.1",), browser=host))
    try:
        opened = som.tools.call("open_page", {"url": f"{site}/counter.html", **VIEW}, context=ctx)
        same = {k: v for k, v in _ok(story["open"]).items() if k != "marks"}
        assert {k: v for k, v in opened.data.items() if k != "marks"} == same
        assert opened.data["marks"] == _ok(story["open"])["marks"]
        assert Image.open(io.BytesIO(opened.images[0])).size == (900, 600)
        clicked = som.tools.call("click_mark", {"label": story["label"]["Count: 0"]}, context=ctx)
        assert clicked.data["marks"] == _ok(story["click"])["marks"]
        with pytest.raises(ToolError, match="unknown label 99 on page 1"):
            som.tools.call("click_mark", {"label": "99"}, context=ctx)
        with pytest.raises(ToolError, match="host localhost is not allowed"):
            som.tools.call("open_page", {"url": f"{site}/counter.html".replace("127.0.0.1", "localhost")}, context=ctx)
        # the server-wide cap: another connection on the same browser opens two pages, this one's goes
        other = ToolContext(Roots([root]), ResultStore(), web=ctx.web)
        for _ in range(2):
            assert som.tools.call("open_page", {"url": "local.html"}, context=other).data["count"] == 1
        with pytest.raises(ToolError, match=r"page 1 is closed \(closed to stay within the server's cap of 2 open pages\)"):
            som.tools.call("page_marks", {"page_id": 1}, context=ctx)
        # (screen_marks goes the same way; a second OCR model load here would double its time)
        with pytest.raises(ToolError, match="screen_marks: image_base64: "):
            som.tools.call("screen_marks", {"image_base64": b64(b"not a picture")}, context=ctx)
    finally:
        host.close()
    with pytest.raises(ToolError, match="the server's browser is shut down"):
        som.tools.call("page_marks", {}, context=ctx)


def test_the_server_closes_its_pages_and_browser_when_it_stops(story, page_server):
    chromium = {pid: cmd for pid, cmd in story["chromium"].items() if "chrom" in cmd}
    assert chromium, "no Chromium process under the server while pages were open"
    assert page_server.proc.poll() is None  # it served every error above without dying
    log = page_server.stop()
    assert "Traceback" not in log
    # a session's pages close when its client ends it, those of a client that went away at shutdown
    assert "page 1 is closed (the connection closed)" in log and "page 3 is closed (the connection closed)" in log
    assert _ok(story["lingering"])["page_id"] == 1 and "page 1 is closed (the server shut down)" in log
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in chromium):
        time.sleep(0.1)
    alive = [pid for pid in chromium if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert not alive, f"Chromium processes left after the server stopped: {alive}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_page_tools_over_stdio_and_the_browser_closes_when_the_client_leaves(tmp_path):
    (tmp_path / "page.html").write_text(
        "<!doctype html><title>stdio</title><button onclick=\"this.textContent = 'Pressed'\">Press me</button>"
    )
    log = tempfile.TemporaryFile("w+")

    async def session():
        async with stdio_session(tmp_path, server_env(), "--verbose", errlog=log) as s:
            opened = await s.call_tool("open_page", {"url": "page.html", "width": 400, "height": 300})
            clicked = await s.call_tool("click_mark", {"label": "1"})
            outside = await s.call_tool("open_page", {"url": "../x.html"})
            return opened, clicked, outside

    opened, clicked, outside = run_async(session)
    assert _names(_ok(opened)) == ["Press me"] and png_of(opened.content[1]).shape == (300, 400, 3)
    assert _names(_ok(clicked)) == ["Pressed"]
    assert "outside the allowed roots" in error_text(outside)
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text and "page 1 is closed (the server shut down)" in text
