"""The chat app served for real (`python demo_gpt4v_som.py` in a subprocess) against the local
OpenAI-protocol test double: through gradio_client (named endpoints) and in headless Chromium."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import API_KEY, REPO
from openai_double import Step
from PIL import Image

from som.app.chat import MENTION_HEADERS, REMARK_NOTE
from som.draw import highlight
from som.pipeline import mark

PHOTO = REPO / "assets" / "chelsea.jpg"
REPLY = "The cat's ear is [1] and the cushion is [3]."
WRONG_KEY = "sk-wrong-key-5b1e0c7d9a"


@pytest.fixture(scope="module")
def expected_marks():
    """What the app must produce for PHOTO: the library's own marks (superpixel, objects)."""
    return mark(PHOTO, segmenter="superpixel", granularity_level=2)


def read_png(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src).convert("RGB"))


def assert_highlights_exactly(picture: np.ndarray, marks, labels: list[str]) -> None:
    """`picture` is som.draw.highlight of `labels`: named regions undimmed, every other pixel dimmed."""
    np.testing.assert_array_equal(picture, highlight(marks.source, marks.regions, labels, marks.style))
    named = marks.regions.select_labels(labels).full_masks().any(axis=0)
    source = marks.source.astype(np.float32)
    got = picture.astype(np.float32)
    # outside the named regions: darker everywhere it can be (dimmed by 0.55), nowhere brighter
    outside = ~named & (source.sum(axis=2) > 30)
    ratio = got[outside].sum(axis=1) / source[outside].sum(axis=1)
    assert np.median(ratio) < 0.5
    for label in labels:  # inside each named region: the photo at full brightness (plus its fill colour)
        m = marks.regions.full_masks()[marks.regions.index_of(label)]
        assert got[m].mean() > 0.8 * source[m].mean()


def client_for(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def chat_texts(chat: list[dict]) -> list[tuple[str, str]]:
    out = []
    for m in chat:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        out.append((m["role"], content))
    return out


# ---------------------------------------------------------------- gradio_client
def test_api_upload_ask_highlight_remark(apps, chat_server, expected_marks):
    from gradio_client import handle_file

    app = apps["keyed"]
    c = client_for(app)
    picture, status, chat, note, rows = c.predict(handle_file(str(PHOTO)), "superpixel", 2, api_name="/load_image")
    n = len(expected_marks.regions)
    assert f"{n} marks" in status and chat == [] and rows["data"] == []
    np.testing.assert_array_equal(read_png(picture), expected_marks.image)

    chat_server.enqueue(Step(text=REPLY, chunk_chars=3))
    _, chat, picture, note, rows, _ = c.predict("Where is the cat?", "chat", "", "", "", api_name="/ask")
    assert chat_texts(chat)[-2:] == [("user", "Where is the cat?"), ("assistant", REPLY)]
    assert [r[0] for r in rows["data"]] == ["1", "3"]
    areas = expected_marks.regions.areas
    for row in rows["data"]:
        k = expected_marks.regions.index_of(row[0])
        assert row[1] == areas[k] and row[2:] == [int(v) for v in expected_marks.regions.xyxy[k]]
    assert_highlights_exactly(read_png(picture), expected_marks, ["1", "3"])
    assert "[1], [3]" in note

    # re-mark mid-conversation (coarser), click-add a region, and keep talking about the new marks
    picture, status, chat, note, rows = c.predict("superpixel", 3, api_name="/remark")
    n3 = int(status.split("**")[1].split()[0])
    assert rows["data"] == [] and "Marks changed" in chat_texts(chat)[-1][1]
    picture, status, chat, note, rows = c.predict(120, 150, "superpixel", api_name="/add_region")
    assert f"Added mark {n3 + 1}" in status
    chat_server.enqueue(Step(text=f"That is [{n3 + 1}]."))
    _, chat, picture, note, rows, _ = c.predict("And the new one?", "refer", "", "", "", api_name="/ask")
    assert [r[0] for r in rows["data"]] == [str(n3 + 1)]
    sent = chat_server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "system", "system", "user"]
    assert f"1 to {n3 + 1}" in sent[0]["content"] and 'Which mark is "And the new one?"' in sent[-1]["content"][0]["text"]

    picture, note, rows = c.predict(api_name="/show_marks")
    assert rows["data"] == []
    chat, *_ = c.predict(api_name="/clear_chat")
    assert chat == []


def test_api_errors_sessions_and_endpoint_info(apps, chat_server):
    from gradio_client import handle_file

    app = apps["keyed"]
    a, b = client_for(app), client_for(app)
    a.predict(handle_file(str(PHOTO)), "superpixel", 2, api_name="/load_image")
    # session b has no image: its question is answered with what to do, a's image is not used
    _, chat, *_ = b.predict("Where is the cat?", "chat", "", "", "", api_name="/ask")
    assert "upload an image first" in chat_texts(chat)[-1][1]
    cases = [
        ({"model": "no-such-model"}, [], "model 'no-such-model' not found"),
        ({"api_key": WRONG_KEY}, [], "rejected the API key (401)"),
        ({}, [Step(status=429, message="slow", headers={"Retry-After": "0"})] * 3, "rate limiting (429)"),
        ({}, [Step(raw=b"{not json", content_type="application/json")], "not a valid chat completion"),
        ({}, [Step(sleep_s=4.0)], "did not answer within 3 s"),
    ]
    for endpoint, steps, expect in cases:
        chat_server.enqueue(*steps)
        args = ["Where is the cat?", "chat", "", endpoint.get("model", ""), endpoint.get("api_key", "")]
        _, chat, picture, note, rows, status = a.predict(*args, api_name="/ask")
        role, text = chat_texts(chat)[-1]
        assert role == "assistant" and expect in text and "Traceback" not in text, text
        assert API_KEY not in json.dumps(chat) and WRONG_KEY not in json.dumps(chat)
    chat_server.enqueue(Step(text="Fine again: [2]."))
    _, chat, picture, note, rows, status = a.predict("ok?", "chat", "", "", "", api_name="/ask")
    assert [r[0] for r in rows["data"]] == ["2"]  # the app kept serving
    info = a.predict("", "", "", api_name="/endpoint_info")
    assert "test-model" in info and "OPENAI_API_KEY" in info and API_KEY not in info
    info = a.predict("", "", WRONG_KEY, api_name="/endpoint_info")
    assert "typed" in info and WRONG_KEY not in info


def test_no_secret_in_pages_or_api(apps):
    for app in apps.values():
        for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json"):
            try:
                body = urllib.request.urlopen(app.url + path, timeout=10).read().decode(errors="replace")
            except OSError:
                continue
            assert API_KEY not in body and WRONG_KEY not in body, path


# ---------------------------------------------------------------- browser
class Page:
    """A fresh browser context on the app, recording every response body it receives."""

    def __init__(self, browser, url: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
        self.page = self.ctx.new_page()
        self.bodies: list[str] = []
        self.page.on("response", self._record)
        self.page.goto(url)
        self.page.wait_for_selector("#som-upload input[type=file]", state="attached", timeout=30_000)

    def _record(self, response) -> None:
        try:
            self.bodies.append(response.body().decode(errors="replace"))
        except Exception:  # noqa: BLE001 - streams and redirects have no body to read
            pass

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def wait_text(self, selector: str, needle: str, timeout_ms: int = 30_000) -> None:
        self.page.wait_for_function(
            "([s, n]) => { const e = document.querySelector(s); return e && e.innerText.includes(n); }",
            arg=[selector, needle], timeout=timeout_ms,
        )

    def upload(self, path: Path) -> None:
        self.page.locator("#som-upload input[type=file]").set_input_files(str(path))
        self.wait_text("#som-status", "marks on")

    def ask(self, question: str) -> None:
        box = self.page.locator("#som-message textarea")
        box.fill(question)
        box.press("Enter")

    def mention_labels(self) -> list[str]:
        """First column of the mentions table, read from its text (header cells, then data cells)."""
        self.page.locator("#som-mentions").scroll_into_view_if_needed()  # the table renders rows when visible
        words = self.text("#som-mentions").split()
        n = len(MENTION_HEADERS)
        header = " ".join(MENTION_HEADERS).split()
        for i in range(len(words) - len(header) + 1):
            if words[i : i + len(header)] == header:
                data = words[i + len(header) :]
                return data[::n] if len(data) % n == 0 else []
        return []

    def wait_mentions(self, expected: list[str], timeout_s: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while (got := self.mention_labels()) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        return got

    def assert_no_secret(self, *secrets: str) -> None:
        html = self.page.content()
        for s in secrets:
            assert s not in html
            assert not any(s in body for body in self.bodies)


@pytest.mark.browser
def test_browser_chat_highlights_the_named_regions(apps, chat_server, browser, expected_marks, artifacts):
    app = apps["keyed"]
    ui = Page(browser, app.url)
    ui.wait_text("#som-endpoint-note", "test-model")
    ui.upload(PHOTO)
    chat_server.enqueue(Step(text=REPLY, chunk_chars=2))
    ui.ask("Where is the cat?")
    ui.wait_text("#som-chatbot", REPLY)
    ui.wait_text("#som-mention-note", "[1], [3]")
    assert ui.wait_mentions(["1", "3"]) == ["1", "3"]
    src = ui.page.locator("#som-chat-image img").get_attribute("src")
    assert_highlights_exactly(read_png(ui.page.request.get(src).body()), expected_marks, ["1", "3"])
    assert "where is the cat?" in chat_server.requests[-1].all_text.lower()
    ui.page.screenshot(path=str(artifacts / "chat.png"), full_page=True)

    # mid-conversation: coarser marks, then a click on the image adds a region
    ui.page.get_by_label("3 wholes").check()
    ui.wait_text("#som-status", "granularity 3 wholes")
    ui.wait_text("#som-chatbot", "Marks changed")
    n3 = int(ui.text("#som-status").split()[0])
    img = ui.page.locator("#som-chat-image img")
    box = img.bounding_box()  # the picture is centred in this box, scaled down to fit, never up
    scale = min(box["width"] / 451, box["height"] / 300, 1.0)
    dx, dy = (box["width"] - 451 * scale) / 2, (box["height"] - 300 * scale) / 2
    img.click(position={"x": dx + 120.5 * scale, "y": dy + 150.5 * scale})
    ui.wait_text("#som-status", f"Added mark {n3 + 1}")
    x, y = (int(v) for v in re.search(r"at \((\d+), (\d+)\)", ui.text("#som-status")).groups())
    assert abs(x - 120) <= 1 and abs(y - 150) <= 1  # the region is made where the user clicked
    chat_server.enqueue(Step(text=f"The new one is [{n3 + 1}]."))
    ui.ask("And the new region?")
    ui.wait_text("#som-chatbot", f"The new one is [{n3 + 1}].")
    assert ui.wait_mentions([str(n3 + 1)]) == [str(n3 + 1)]
    assert REMARK_NOTE in json.dumps(chat_server.requests[-1].body["messages"])
    ui.page.screenshot(path=str(artifacts / "chat-after-click.png"), full_page=True)
    ui.assert_no_secret(API_KEY)
    ui.ctx.close()


@pytest.mark.browser
def test_browser_wrong_key_is_a_readable_message(apps, chat_server, browser, artifacts):
    app = apps["keyed"]
    ui = Page(browser, app.url)
    ui.upload(PHOTO)
    ui.page.get_by_text("LLM settings").click()
    ui.page.locator("#som-api-key input").fill(WRONG_KEY)
    ui.ask("Where is the cat?")
    ui.wait_text("#som-chatbot", "rejected the API key (401)")
    chat = ui.text("#som-chatbot")
    assert "Traceback" not in chat and WRONG_KEY not in chat
    assert ui.mention_labels() == []
    ui.page.screenshot(path=str(artifacts / "chat-401.png"), full_page=True)
    ui.assert_no_secret(API_KEY, WRONG_KEY)
    ui.ctx.close()


@pytest.mark.browser
def test_browser_without_key_explains_how_to_set_one(apps, browser, artifacts):
    ui = Page(browser, apps["keyless"].url)
    ui.wait_text("#som-endpoint-note", "No API key is set")
    note = ui.text("#som-endpoint-note")
    assert "No API key is set" in note and "OPENAI_API_KEY" in note and "LLM settings" in note
    ui.upload(PHOTO)  # marking works without a key
    ui.ask("Where is the cat?")
    ui.wait_text("#som-chatbot", "No API key is set")
    assert "OPENAI_API_KEY" in ui.text("#som-chatbot")
    assert ui.page.locator("#som-api-key input").input_value() == ""
    ui.page.screenshot(path=str(artifacts / "chat-no-key.png"), full_page=True)
    ui.ctx.close()


def test_logs_never_hold_a_key(apps):
    """Last in the module: everything the apps printed so far (errors, retries, 401s included)."""
    for name, app in apps.items():
        log = app.log()
        assert "Running on local URL" in log, name
        assert API_KEY not in log and WRONG_KEY not in log, name
        assert "Traceback" not in log, f"{name} logged a traceback:\n{log}"
