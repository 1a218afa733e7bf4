"""One error type for everything that can go wrong talking to an LLM endpoint.

`LLMError` is a RuntimeError whose message is one readable line and whose
`kind` says what happened, so callers (CLI, web app) can react without parsing
text. Messages never carry the API key: every text that reaches an `LLMError`
goes through `scrub` first.
"""

from __future__ import annotations

import re
from typing import Iterable

# kind -> what it means (also the documented list of kinds)
KINDS = {
    "config": "missing or invalid settings (model, base URL, key, image format)",
    "auth": "the endpoint rejected the API key (401/403)",
    "model_not_found": "the endpoint does not serve the requested model (404)",
    "not_found": "nothing answers at this URL (404); the base URL is probably wrong",
    "bad_request": "the endpoint refused the request as invalid (400/422)",
    "context_length": "image plus prompt are longer than the model's context window",
    "content_filter": "the endpoint or model refused or filtered the content",
    "rate_limit": "too many requests (429), still failing after the allowed retries",
    "server": "the endpoint failed (5xx), still failing after the allowed retries",
    "connection": "the endpoint could not be reached",
    "timeout": "the endpoint did not answer within the timeout",
    "empty_reply": "the reply had no choices or no text",
    "malformed_reply": "the reply was not a valid chat completion",
}

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
# common secret-key shapes: OpenAI-style sk-..., and any value after api-key= / api_key:
_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")
_KEY_PARAM = re.compile(r"(?i)(api[-_]?key[\"']?\s*[=:]\s*[\"']?)[^\s'\",;&]+")
MAX_MESSAGE_CHARS = 400


def scrub(text: object, secrets: Iterable[str | None] = ()) -> str:
    """`text` as one line with every secret, bearer token and key-shaped word replaced by `***`.

    Servers echo keys back ("Incorrect API key provided: sk-...") and SDK errors
    may include headers, so every string headed for a user, a log or an
    exception passes through here.
    """
    s = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            s = s.replace(secret, "***")
    s = _BEARER.sub(r"\1***", s)
    s = _URL_USERINFO.sub(r"\1***@", s)
    s = _SK_KEY.sub("***", s)
    s = _KEY_PARAM.sub(r"\1***", s)
    s = " ".join(s.split())  # one line
    if len(s) > MAX_MESSAGE_CHARS:
        s = s[: MAX_MESSAGE_CHARS - 1] + "…"
    return s


class LLMError(RuntimeError):
    """A failed LLM call, described in one line. `kind` is one of `KINDS`; `status` the HTTP status if any."""

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown LLMError kind {kind!r}; expected one of {sorted(KINDS)}")
        super().__init__(message)
        self.kind = kind
        self.status = status

    def __repr__(self) -> str:
        return f"LLMError(kind={self.kind!r}, status={self.status!r}, message={str(self)!r})"
