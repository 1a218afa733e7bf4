"""LLMClient through the real openai SDK against the local OpenAI-protocol test double."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import API_KEY
from openai_double import Step

from som.imageio import working_size
from som.llm.client import LOCAL_PLACEHOLDER_KEY, LLMClient, LLMConfig, build_messages, encode_image
from som.llm.errors import LLMError, scrub


def _messages(client, images=None, user="Which mark is the cat? [template text]"):
    if images is None:
        images = [np.full((300, 451, 3), 120, np.uint8)]
    return build_messages("system rule: marks in brackets like [3]", user, images, client.config)


def test_complete_sends_key_text_and_image(llm_server, make_client):
    client = make_client(max_image_side_px=256)
    assert client.complete(_messages(client)) == "The cup is [2]."
    (req,) = llm_server.requests
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert req.body["model"] == "test-model" and "stream" not in req.body
    assert "system rule: marks in brackets like [3]" in req.all_text
    assert "[template text]" in req.all_text
    assert req.images == [("PNG", working_size(300, 451, 256))] == [("PNG", (170, 256))]


def test_jpeg_and_no_upscaling(llm_server, make_client):
    client = make_client(image_format="jpg", max_image_side_px=2048, jpeg_quality=80)
    assert client.config.image_format == "jpeg"
    small, second = np.zeros((40, 30, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    client.complete(_messages(client, [small, second]))
    assert llm_server.requests[0].images == [("JPEG", (40, 30)), ("JPEG", (64, 64))]


def test_encode_image_rejects_non_rgb():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        encode_image(np.zeros((4, 4), np.uint8), LLMConfig(api_key="k"))


def test_streaming_yields_deltas(llm_server, make_client):
    llm_server.enqueue(Step(text="The cat is [1]; the cushion is [2].", chunk_chars=3))
    client = make_client()
    deltas = list(client.stream(_messages(client)))
    assert len(deltas) > 5 and "".join(deltas) == "The cat is [1]; the cushion is [2]."
    assert llm_server.requests[0].body["stream"] is True


def test_options_reach_the_server(llm_server, make_client):
    client = make_client(temperature=0.2, max_tokens=77, image_detail="low")
    client.complete(_messages(client))
    body = llm_server.requests[0].body
    assert body["temperature"] == 0.2 and body["max_tokens"] == 77
    assert body["messages"][-1]["content"][1]["image_url"]["detail"] == "low"


# ---------------------------------------------------------------- failures -> one LLMError kind each

FAILURES = [
    # (name, scripted steps, config overrides, kind, words in the message)
    ("context length", [Step(status=400, code="context_length_exceeded", message="This model's maximum context length is 8192 tokens.")], {}, "context_length", "too long"),
    ("azure content filter", [Step(status=400, code="content_filter", message="The response was filtered due to the prompt triggering Azure OpenAI's content management policy.")], {}, "content_filter", "refused"),
    ("filtered finish", [Step(text="", finish_reason="content_filter")], {}, "content_filter", "content filter"),
    ("refusal", [Step(text=None, refusal="I can't help with that.")], {}, "content_filter", "refused"),
    ("malformed JSON", [Step(raw=b'{"id": "x", "choices": [')], {}, "malformed_reply", "not a valid chat completion"),
    ("not JSON at all", [Step(raw=b"<html>502 Bad Gateway</html>", content_type="text/html")], {}, "malformed_reply", "chat completion"),
    ("empty choices", [Step(body={"id": "x", "object": "chat.completion", "created": 0, "model": "test-model", "choices": []})], {}, "empty_reply", "no choices"),
    ("empty text", [Step(text="   ")], {}, "empty_reply", "empty reply"),
    ("bad request", [Step(status=422, message="messages.0.content: unsupported")], {}, "bad_request", "422"),
    ("unknown model", [], {"model": "llava-nope"}, "model_not_found", "'llava-nope' not found"),
    ("wrong key", [], {"api_key": "sk-wrong-0123456789abcdef"}, "auth", "rejected the API key"),
    ("wrong base URL", [], {"base_url_suffix": "/v2"}, "not_found", "ends in /v1"),
    ("timeout", [Step(sleep_s=2.0)], {"timeout_s": 0.4}, "timeout", "0.4 s"),
    ("server error", [Step(status=500)] * 3, {}, "server", "500"),
    ("rate limit forever", [Step(status=429, message="Rate limit reached")] * 3, {}, "rate_limit", "429"),
]


@pytest.mark.parametrize("name,steps,overrides,kind,words", FAILURES, ids=[f[0] for f in FAILURES])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_failures_become_one_line_llm_errors(llm_server, make_client, name, steps, overrides, kind, words, stream):
    overrides = dict(overrides)
    if "base_url_suffix" in overrides:
        overrides["base_url"] = llm_server.base_url[: -len("/v1")] + overrides.pop("base_url_suffix")
    llm_server.enqueue(*steps)
    client = make_client(**overrides)
    with pytest.raises(LLMError) as info:
        if stream:
            "".join(client.stream(_messages(client)))
        else:
            client.complete(_messages(client))
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.kind == kind, str(err)
    assert words in str(err)
    assert "\n" not in str(err)
    assert err.__context__ is None and err.__cause__ is None  # SDK exceptions (and their text) stay behind


def test_error_event_inside_a_stream(llm_server, make_client):
    """vLLM and others report late failures as an SSE event inside a 200 reply."""
    ctx = b'data: {"error": {"message": "This model\'s maximum context length is 4096 tokens", "code": 400}}\n\n'
    other = b'data: {"error": {"message": "engine crashed", "code": 500}}\n\n'
    client = make_client()
    for raw, kind in ((ctx, "context_length"), (other, "server")):
        llm_server.enqueue(Step(raw=raw, content_type="text/event-stream"))
        with pytest.raises(LLMError) as info:
            "".join(client.stream(_messages(client)))
        assert info.value.kind == kind


def test_retries_honour_retry_after(llm_server, make_client, sleeps):
    llm_server.enqueue(Step(status=429, message="slow down", headers={"Retry-After": "3"}), Step(text="[1] after waiting"))
    client = make_client()
    assert client.complete(_messages(client)) == "[1] after waiting"
    assert sleeps.delays == [3.0]
    assert len(llm_server.requests) == 2


def test_retry_after_ms_and_backoff_growth(llm_server, make_client, sleeps):
    llm_server.enqueue(
        Step(status=503), Step(status=502), Step(status=429, headers={"retry-after-ms": "250"}), Step(text="ok [1]")
    )
    client = make_client(max_retries=3, backoff_s=1.0, backoff_max_s=100)
    assert client.complete(_messages(client)) == "ok [1]"
    first, second, third = sleeps.delays
    assert 0.75 <= first <= 1.25 and 1.5 <= second <= 2.5  # exponential, with jitter
    assert third == 0.25


def test_retries_are_bounded(llm_server, make_client, sleeps):
    llm_server.enqueue(*[Step(status=500)] * 10)
    with pytest.raises(LLMError, match="500"):
        make_client(max_retries=2).complete(_messages(make_client()))
    assert len(llm_server.requests) == 3 and len(sleeps.delays) == 2
    assert all(d <= 16.0 * 1.25 for d in sleeps.delays)


def test_too_long_retry_after_fails_at_once(llm_server, make_client, sleeps):
    llm_server.enqueue(Step(status=429, headers={"Retry-After": "3600"}), Step(text="never"))
    with pytest.raises(LLMError) as info:
        make_client(max_retry_after_s=30).complete(_messages(make_client()))
    assert info.value.kind == "rate_limit" and "3600 s" in str(info.value)
    assert sleeps.delays == [] and len(llm_server.requests) == 1


def test_no_retry_for_client_errors(llm_server, make_client, sleeps):
    llm_server.enqueue(Step(status=400, message="bad image"), Step(text="never"))
    with pytest.raises(LLMError, match="bad image"):
        make_client().complete(_messages(make_client()))
    assert sleeps.delays == []


def test_connection_refused_is_retried_then_reported(make_client, sleeps):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(LLMError) as info:
        client.complete(_messages(client))
    assert info.value.kind == "connection" and f":{port}/v1" in str(info.value)
    assert len(sleeps.delays) == 1


# ---------------------------------------------------------------- configuration


def test_config_from_environment(monkeypatch, llm_server):
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("SOM_MODEL", "other-model")
    monkeypatch.setenv("SOM_TEST_KEY", API_KEY)
    config = LLMConfig.from_env(api_key_env="SOM_TEST_KEY", timeout_s=3)
    assert (config.model, config.base_url, config.api_key, config.timeout_s) == ("other-model", llm_server.base_url, API_KEY, 3)
    assert LLMClient(config).complete(_messages(LLMClient(config)))
    assert llm_server.requests[0].body["model"] == "other-model"
    # arguments beat the environment
    assert LLMConfig.from_env(model="test-model", api_key="k2").model == "test-model"


def test_missing_key(monkeypatch):
    with pytest.raises(LLMError) as info:
        LLMConfig.from_env()
    assert info.value.kind == "config" and "OPENAI_API_KEY" in str(info.value)
    # a local server needs none: the SDK still gets a placeholder
    assert LLMConfig.from_env(base_url="http://localhost:11434/v1").api_key == LOCAL_PLACEHOLDER_KEY


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"image_format": "gif"}, "png"),
        ({"model": " "}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_image_side_px": 4}, "max_image_side_px"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        LLMConfig(api_key="k", **bad)


def test_ready_openai_client_is_accepted(llm_server):
    import openai

    raw = openai.OpenAI(api_key=API_KEY, base_url=llm_server.base_url, max_retries=5)
    client = LLMClient(LLMConfig(model="test-model", base_url=llm_server.base_url, max_retries=0), openai_client=raw)
    llm_server.enqueue(Step(status=500))
    with pytest.raises(LLMError):
        client.complete(_messages(client))
    assert len(llm_server.requests) == 1  # the SDK's own 5 retries are off


# ---------------------------------------------------------------- the key never leaks


def test_api_key_never_in_errors_logs_or_repr(llm_server, make_client, caplog, sleeps):
    caplog.set_level(logging.DEBUG)  # everything: som, openai, httpx, httpcore
    seen: list[str] = []
    # the server echoes the key in every error body it can
    echo = f"Bad things happened with key {API_KEY} (Bearer {API_KEY})"
    scenarios = [
        [Step(status=500, message=echo)] * 3,
        [Step(status=400, message=echo)],
        [Step(status=429, message=echo, headers={"Retry-After": "1"})] * 3,
        [Step(status=404, message=echo + " model")],
        [Step(raw=echo.encode())],
        [Step(text=None, refusal=echo)],
        [Step(text="", refusal=echo)],
    ]
    client = make_client()
    for steps in scenarios:
        for stream in (False, True):
            llm_server.script.clear()
            llm_server.enqueue(*steps)
            with pytest.raises(LLMError) as info:
                if stream:
                    "".join(client.stream(_messages(client)))
                else:
                    client.complete(_messages(client))
            seen += [str(info.value), repr(info.value), str(info.value.args)]
    # a wrong key: the server's 401 body echoes the key that was sent
    wrong = "sk-wrong-key-abcdefghijklmnop"
    with pytest.raises(LLMError) as info:
        make_client(api_key=wrong).complete(_messages(client))
    seen += [str(info.value), repr(info.value)]
    seen += [repr(client.config), str(client.config), repr(client), format(client.config)]
    seen += [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    blob = "\n".join(seen)
    assert API_KEY not in blob and wrong not in blob
    assert API_KEY[-8:] not in blob  # not even a suffix
    assert "Bad things happened" in blob  # the server's message itself is passed on, scrubbed
    assert len(caplog.records) > 0


def test_scrub():
    key = "abc-very-secret-123"
    assert scrub(f"x {key} y", [key]) == "x *** y"
    assert scrub("Authorization: Bearer tok.en-1") == "Authorization: Bearer ***"
    assert scrub("Incorrect API key provided: sk-proj-AbC123xyz987.") == "Incorrect API key provided: ***."
    assert scrub("url?api-key=deadbeef&x=1") == "url?api-key=***&x=1"
    assert scrub("cannot reach https://me:pw@host/v1") == "cannot reach https://***@host/v1"
    assert scrub("line one\nline two") == "line one line two"
    assert len(scrub("x" * 5000)) <= 400
