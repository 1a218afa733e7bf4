"""ChatSession (the app's logic without Gradio) against the local OpenAI-protocol test double."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import API_KEY, REPO
from openai_double import Step

from som.app.chat import (
    NO_KEY_HELP,
    REMARK_NOTE,
    ChatDefaults,
    ChatSession,
    Segmenters,
    endpoint_note,
    make_client,
    resolve_endpoint,
)
from som.draw import highlight
from som.llm.templates import load_templates

PHOTO = REPO / "assets" / "chelsea.jpg"
LIB = load_templates()


@pytest.fixture
def defaults(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    return ChatDefaults(segmenter="superpixel", model="test-model", timeout_s=2.0, max_retries=1)


@pytest.fixture(scope="module")
def segmenters():
    return Segmenters("cpu")


def marked_session(segmenters, level=2) -> ChatSession:
    session = ChatSession()
    session.load(str(PHOTO), name=str(PHOTO))
    session.mark(segmenters, "superpixel", level)
    return session


def run(session, question, defaults, template="chat", **endpoint):
    client = make_client(defaults, **endpoint)
    return list(session.ask(question, LIB.get(template), client, [endpoint.get("api_key"), API_KEY]))


def test_answer_streams_and_highlights_named_regions(llm_server, defaults, segmenters, caplog):
    caplog.set_level(logging.DEBUG)
    session = marked_session(segmenters)
    llm_server.enqueue(Step(text="The ear is [1] and the cushion is [3].", chunk_chars=3))
    partial = run(session, "where is the cat?", defaults)
    assert len(partial) > 3 and partial[-1] == "The ear is [1] and the cushion is [3]."
    assert session.labels == ["1", "3"]
    expected = highlight(session.marks.source, session.marks.regions, ["1", "3"], session.marks.style)
    np.testing.assert_array_equal(session.picture(), expected)
    rows = session.mention_rows()
    assert [r[0] for r in rows] == ["1", "3"]
    areas = session.marks.regions.areas
    assert rows[0][1] == areas[0] and rows[0][2:] == [int(v) for v in session.marks.regions.xyxy[0]]
    assert session.display[-1] == {"role": "assistant", "content": "The ear is [1] and the cushion is [3]."}
    (req,) = llm_server.requests
    assert req.images == [("PNG", (300, 451))] and "where is the cat?" in req.all_text
    assert API_KEY not in caplog.text


def test_conversation_continues_after_remark_and_click(llm_server, defaults, segmenters):
    session = marked_session(segmenters, level=3)
    n_before = len(session.marks.regions)
    llm_server.enqueue(Step(text="The cat is [2]."))
    run(session, "where is the cat?", defaults)
    # a click inside a coarse region adds a finer one as the next mark; the others keep their numbers
    status = session.add_region(segmenters, "superpixel", 120, 150)
    assert f"Added mark {n_before + 1}" in status
    assert session.labels == [] and session.picture() is session.marks.image
    llm_server.enqueue(Step(text=f"Now it is [{n_before + 1}]."))
    run(session, "and now?", defaults)
    assert session.labels == [str(n_before + 1)]
    messages = llm_server.requests[-1].body["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "system", "user"]
    assert messages[1]["content"] == "where is the cat?" and messages[2]["content"] == "The cat is [2]."
    assert messages[3]["content"] == REMARK_NOTE
    assert f"1 to {n_before + 1}" in messages[0]["content"]  # the new marks are the valid ones
    assert any("Marks changed" in m["content"] for m in session.display)
    # the same click again names the same region: nothing is added
    with pytest.raises(ValueError, match="already mark"):
        session.add_region(segmenters, "superpixel", 120, 150)
    # re-marking at another granularity: new marks, the model is told again
    session.mark(segmenters, "superpixel", 1)
    assert len(session.marks.regions) > n_before + 1 and session.turns[-1]["content"] == REMARK_NOTE


@pytest.mark.parametrize(
    "steps, endpoint, expect",
    [
        ([], {"api_key": "sk-wrong-0123456789abcdef"}, "rejected the API key (401)"),
        ([], {"model": "no-such-model"}, "model 'no-such-model' not found"),
        ([Step(sleep_s=3.0)], {}, "did not answer within 2 s"),
        ([Step(status=429, message="slow down", headers={"Retry-After": "0"})] * 2, {}, "rate limiting (429)"),
        ([Step(raw=b"<html>oops</html>", content_type="text/html")], {}, "not a valid chat completion"),
        ([Step(status=500, message="boom")] * 2, {}, "failed with 500"),
    ],
    ids=["401", "404-model", "timeout", "429-exhausted", "malformed", "500"],
)
def test_llm_failures_are_readable_chat_messages(llm_server, defaults, segmenters, caplog, steps, endpoint, expect):
    caplog.set_level(logging.DEBUG)
    session = marked_session(segmenters)
    llm_server.enqueue(*steps)
    out = run(session, "where is the cat?", defaults, **endpoint)
    message = session.display[-1]["content"]
    assert out[-1] == message and message.startswith("⚠️ **The LLM call failed**") and expect in message
    assert "Traceback" not in message and API_KEY not in message and "sk-wrong" not in message
    assert session.labels == [] and session.turns == []  # a failed turn is not sent again as history
    assert API_KEY not in caplog.text and "sk-wrong" not in caplog.text
    # the session keeps working
    llm_server.enqueue(Step(text="It is [2]."))
    run(session, "again?", defaults)
    assert session.labels == ["2"]


def test_no_key_says_how_to_set_one(monkeypatch):
    from som.llm.errors import LLMError

    defaults = ChatDefaults()
    assert endpoint_note(defaults) == NO_KEY_HELP and "OPENAI_API_KEY" in NO_KEY_HELP and "LLM settings" in NO_KEY_HELP
    with pytest.raises(LLMError) as e:
        make_client(defaults)
    assert str(e.value) == NO_KEY_HELP


def test_server_key_only_goes_to_the_server_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    defaults = ChatDefaults()
    endpoint, key = resolve_endpoint(defaults)
    assert key == API_KEY and endpoint.key_source == "env"
    endpoint, key = resolve_endpoint(defaults, base_url="http://127.0.0.1:9/v1/")
    assert key == API_KEY
    # a browser user pointing the app elsewhere does not get the server's key sent there
    endpoint, key = resolve_endpoint(defaults, base_url="http://evil.example/v1")
    assert key != API_KEY and endpoint.key_source == "placeholder"
    endpoint, key = resolve_endpoint(defaults, base_url="http://evil.example/v1", api_key="sk-mine-123456")
    assert key == "sk-mine-123456" and endpoint.key_source == "typed"
    for note in (endpoint_note(defaults), endpoint_note(defaults, api_key="sk-mine-123456"),
                 endpoint_note(defaults, base_url="http://evil.example/v1")):
        assert API_KEY not in note and "sk-mine" not in note


def test_user_mistakes(segmenters, defaults):
    session = ChatSession()
    out = run(session, "hello?", defaults)
    assert "upload an image first" in out[-1]
    session = marked_session(segmenters)
    out = run(session, "   ", defaults)
    assert "type a question first" in out[-1]
    with pytest.raises(ValueError, match="outside"):
        session.add_region(segmenters, "superpixel", 10_000, 5)


def test_named_marks_reach_the_prompt_and_the_mentions_table(llm_server, defaults, segmenters):
    """Marks with class names (as a segmenter that knows classes gives them): the prompt lists them,
    and the table of mentioned marks gets a class column, last."""
    import dataclasses

    from som.app.chat import CLASS_HEADER, MENTION_HEADERS

    session = marked_session(segmenters, level=3)
    n = len(session.marks.regions)
    names = ["cat"] + [""] * (n - 2) + ["cushion"]
    session.marks = dataclasses.replace(session.marks, regions=session.marks.regions.replace(categories=names))
    llm_server.enqueue(Step(text="The cat is [1], beside [2]."))
    run(session, "where is the cat?", defaults)
    assert f"1: cat, {n}: cushion." in llm_server.requests[-1].all_text
    assert session.mention_rows() == [[*row, cat] for row, cat in zip(
        [[lab, int(a), *[int(v) for v in b]] for lab, a, b in
         zip(["1", "2"], session.marks.regions.areas[:2], session.marks.regions.xyxy[:2])], ["cat", ""])]
    assert list(session.mention_table().columns) == [*MENTION_HEADERS, CLASS_HEADER]
    # a click adds a mark the segmenter (superpixel) does not name: "" beside the named ones
    session.add_region(segmenters, "superpixel", 120, 150)
    cats = session.marks.regions.categories
    assert len(cats) == len(session.marks.regions) and cats[-1] == "" and "cat" in cats
