"""A test double for a hosted LLM: a real local HTTP server speaking the OpenAI chat-completions protocol.

It exists only because a hosted multimodal model cannot run in this sandbox
(no internet, no GPU model). It listens on 127.0.0.1 (port chosen by the OS),
serves `POST /v1/chat/completions` as JSON or, with `"stream": true`, as
server-sent events (`data: {...}` chunks, then `data: [DONE]`), and is driven by
the real `openai` SDK through `som.llm.LLMClient`.

Like a real endpoint it checks what it receives and refuses what is wrong:
a missing/wrong `Authorization: Bearer <key>` gets 401 (echoing the key it got,
as some servers do, so tests can prove the client scrubs it); an unknown model
gets 404 `model_not_found`; a request without a user message holding a text part
and a base64 image that decodes to a PNG/JPEG gets 400. Every accepted request is
recorded with its decoded images for the tests to inspect.

Replies are scripted: `server.enqueue(Step(...), ...)`; with no script it asks
`responder(received)` when one is set (a scripted model that reads the prompt and the image,
e.g. picks the mark of a named element, or answers from the ground truth: a text or a Step),
else answers `default_text`. Steps cover failures: any status with an OpenAI-style error body
(401, 404, 429 with Retry-After, 500, context length exceeded), sleeping past the
client's timeout, malformed JSON, empty choices, content-filter finishes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from PIL import Image


@dataclass
class Step:
    """One scripted answer.

    text: reply text (JSON completion, or SSE chunks when the request streams).
    status: HTTP status; != 200 sends an OpenAI error body built from message/code/type.
    raw: bytes sent verbatim as the body (malformed replies), with content_type.
    body: a JSON object sent verbatim (e.g. empty choices).
    sleep_s: wait before answering (timeouts).
    finish_reason / refusal: fields of the single choice.
    """

    text: str | None = "OK"
    status: int = 200
    message: str = ""
    code: str | None = None
    type: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"
    body: Any = None
    sleep_s: float = 0.0
    finish_reason: str = "stop"
    refusal: str | None = None
    chunk_chars: int = 4
    usage: dict[str, int] | None = None  # the reply's token counts (default 10 + 5)


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    texts: list[str]  # every text part and system/user string, in order
    images: list[tuple[str, tuple[int, int]]]  # (PIL format, (height, width)) per image part
    image_bytes: list[bytes] = field(default_factory=list)  # each image part's decoded file bytes

    @property
    def all_text(self) -> str:
        return "\n".join(self.texts)


class _Handler(BaseHTTPRequestHandler):
    server: "FakeOpenAIServer"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------ helpers
    def _send(self, status: int, payload: bytes, content_type: str = "application/json", headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _error(self, status: int, message: str, code: str | None, etype: str, headers: dict | None = None) -> None:
        body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        self._send(status, json.dumps(body).encode(), headers=headers)

    # ------------------------------------------------------------ protocol
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        with srv.lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.delay_s:
                time.sleep(srv.delay_s)
            self._post()
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _post(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"Unknown request URL: POST {self.path}", "unknown_url", "invalid_request_error")
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {srv.api_key}":
            got = auth.removeprefix("Bearer ")
            # like a hosted API, echo what was sent: the client must scrub it
            return self._error(401, f"Incorrect API key provided: {got}.", "invalid_api_key", "invalid_request_error")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._error(400, "We could not parse the JSON body of your request.", None, "invalid_request_error")
        model = body.get("model")
        if model not in srv.models:
            return self._error(
                404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found", "invalid_request_error"
            )
        problem, texts, images = _inspect_messages(body.get("messages"))
        if problem:
            srv.rejected.append(problem)
            return self._error(400, f"Invalid request: {problem}", None, "invalid_request_error")
        refused = [p for p in srv.refuse_params if p in body]
        if refused:
            return self._error(400, f"Unrecognized request argument supplied: {refused[0]}", None, "invalid_request_error")
        received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, texts, images, _image_bytes(body["messages"]))
        srv.requests.append(received)
        with srv.lock:
            step = srv.script.popleft() if srv.script else None
        if step is None:
            answer = srv.responder(received) if srv.responder is not None else srv.default_text
            step = answer if isinstance(answer, Step) else Step(text=answer)
        if step.sleep_s:
            time.sleep(step.sleep_s)
        if step.status != 200:
            return self._error(step.status, step.message or f"scripted error {step.status}", step.code, step.type, step.headers)
        if step.raw is not None:
            return self._send(200, step.raw, step.content_type, step.headers)
        if step.body is not None:
            if body.get("stream"):
                events = b"data: " + json.dumps(step.body).encode() + b"\n\ndata: [DONE]\n\n"
                return self._send(200, events, "text/event-stream", step.headers)
            return self._send(200, json.dumps(step.body).encode(), headers=step.headers)
        if body.get("stream"):
            return self._stream(step, model)
        message: dict[str, Any] = {"role": "assistant", "content": step.text, "refusal": step.refusal}
        completion = {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": step.finish_reason, "logprobs": None}],
            "usage": step.usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        self._send(200, json.dumps(completion).encode(), headers=step.headers)

    def _stream(self, step: Step, model: str) -> None:
        def chunk(delta: dict, finish: str | None) -> bytes:
            obj = {
                "id": "chatcmpl-double",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        text = step.text or ""
        parts = [chunk({"role": "assistant", "content": ""}, None)]
        if step.refusal:
            parts.append(chunk({"refusal": step.refusal}, None))
        for i in range(0, len(text), step.chunk_chars):
            parts.append(chunk({"content": text[i : i + step.chunk_chars]}, None))
        parts.append(chunk({}, step.finish_reason))
        parts.append(b"data: [DONE]\n\n")
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for p in parts:
                self.wfile.write(p)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def _inspect_messages(messages: Any) -> tuple[str | None, list[str], list[tuple[str, tuple[int, int]]]]:
    """(problem or None, texts, images): the checks a vision endpoint makes on `messages`."""
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list", [], []
    texts: list[str] = []
    images: list[tuple[str, tuple[int, int]]] = []
    user_has_text = False
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return f"bad message {m!r:.80}", [], []
        content = m.get("content")
        if isinstance(content, str):
            texts.append(content)
            user_has_text |= m["role"] == "user"
            continue
        if not isinstance(content, list):
            return "content must be a string or a list of parts", [], []
        for part in content:
            if part.get("type") == "text":
                texts.append(part["text"])
                user_has_text |= m["role"] == "user"
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                head, _, data = url.partition(",")
                if not head.startswith("data:image/") or not head.endswith(";base64"):
                    return f"image_url is not a base64 data URL: {url[:40]!r}", [], []
                try:
                    img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
                    img.load()
                except (binascii.Error, OSError, ValueError) as e:
                    return f"image does not decode: {e}", [], []
                if img.format not in ("PNG", "JPEG"):
                    return f"unsupported image format {img.format}", [], []
                if head != f"data:image/{img.format.lower()};base64":
                    return f"data URL says {head} but the bytes are {img.format}", [], []
                images.append((img.format, (img.height, img.width)))
            else:
                return f"unknown content part type {part.get('type')!r}", [], []
    if not user_has_text:
        return "no user text", [], []
    return None, texts, images


def _image_bytes(messages: list) -> list[bytes]:
    """The decoded file bytes of every image part (messages already checked by _inspect_messages)."""
    out = []
    for m in messages:
        content = m.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                out.append(base64.b64decode(part["image_url"]["url"].partition(",")[2]))
    return out


class FakeOpenAIServer(ThreadingHTTPServer):
    """Start with `start()`, stop with `stop()`; `base_url` is what the client needs."""

    daemon_threads = True

    def __init__(self, api_key: str = "sk-test-double-key-0123456789", models: tuple[str, ...] = ("test-model",)) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api_key = api_key
        self.models = set(models)
        self.script: deque[Step] = deque()
        self.requests: list[Received] = []
        self.rejected: list[str] = []
        self.default_text = "The cup is [2]."
        self.lock = threading.Lock()
        # rule-based replies when the script is empty: responder(Received) -> text or Step
        self.responder: Callable[[Received], str | Step] | None = None
        self.delay_s = 0.0  # wait before handling every request (concurrency tests)
        self.in_flight = 0  # requests being handled now, and the most at once
        self.max_in_flight = 0
        self.refuse_params: set[str] = set()  # body keys answered with 400 "Unrecognized request argument"
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def enqueue(self, *steps: Step) -> None:
        with self.lock:
            self.script.extend(steps)

    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
