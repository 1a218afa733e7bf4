"""Client for any OpenAI-compatible chat-completions endpoint, through the `openai` SDK.

Works with OpenAI, Azure OpenAI (v1 endpoint: base_url
"https://RESOURCE.openai.azure.com/openai/v1/"), vLLM, Ollama
("http://localhost:11434/v1"), LM Studio ("http://localhost:1234/v1") and
anything else that speaks `POST {base_url}/chat/completions`.

Settings come from arguments, else the environment: `OPENAI_API_KEY` (or the
variable named by `api_key_env`), `OPENAI_BASE_URL`, `SOM_MODEL`. Images go as
base64 data URLs, scaled so the longer side is at most `max_image_side_px`.

Failures become one `LLMError` with a `kind`. Retries (429, 5xx, connection
errors; not timeouts, which would multiply a slow server's wait) back off
exponentially and honour Retry-After up to `max_retry_after_s`. The SDK's own
retries are switched off so that there is one, bounded, tested policy.

The API key is kept out of `repr`, logs and error messages.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import os
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from som.llm.errors import LLMError, scrub

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o"
# local servers (vLLM, Ollama, LM Studio) ignore the key but the SDK insists on one
LOCAL_PLACEHOLDER_KEY = "not-needed"
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "exceeds the model",
    "string_above_max_length",
)
_FILTER_MARKERS = ("content_filter", "content_policy", "content management policy", "responsibleai", "safety system")


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to call the model. `api_key` is never shown by repr/str.

    timeout_s: seconds for one HTTP attempt (connect + reply), streaming included.
    max_retries: extra attempts after a 429/5xx/connection failure (0 = no retry).
    backoff_s / backoff_max_s: first retry delay and its cap; doubles each time, with jitter.
    max_retry_after_s: longest Retry-After honoured; a server asking for more fails at once.
    max_image_side_px: longer image side sent to the model (downscaled, never upscaled).
    image_format: "png" (lossless, sharp marks) or "jpeg" (smaller requests).
    """

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 16.0
    max_retry_after_s: float = 60.0
    max_image_side_px: int = 1024
    image_format: str = "png"
    jpeg_quality: int = 90
    temperature: float | None = None
    max_tokens: int | None = None
    image_detail: str | None = None  # OpenAI's "low" / "high" / "auto"; None sends no hint

    def __post_init__(self) -> None:
        fmt = str(self.image_format).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {self.image_format!r}")
        object.__setattr__(self, "image_format", fmt)
        if not self.model or not str(self.model).strip():
            raise ValueError("model must be a non-empty model name, e.g. 'gpt-4o' or 'qwen2.5-vl'")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.max_image_side_px < 16:
            raise ValueError(f"max_image_side_px must be >= 16, got {self.max_image_side_px}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {self.jpeg_quality}")

    @classmethod
    def from_env(
        cls,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> "LLMConfig":
        """Arguments first, then `SOM_MODEL`, `OPENAI_BASE_URL` and `api_key_env` from the environment.

        With no key but a base URL (a local server), a placeholder key is used; with neither,
        an `LLMError(kind="config")` says which variable to set.
        """
        env = os.environ if environ is None else environ
        model = model or env.get("SOM_MODEL") or DEFAULT_MODEL
        base_url = base_url or env.get("OPENAI_BASE_URL") or None
        api_key = api_key or env.get(api_key_env) or None
        if api_key is None:
            if base_url is None:
                raise LLMError(
                    "config",
                    f"no API key: set {api_key_env} (or pass a key / --api-key-env VAR), "
                    "or point OPENAI_BASE_URL / --base-url at a local server that needs none",
                )
            api_key = LOCAL_PLACEHOLDER_KEY
        return cls(model=model, base_url=base_url, api_key=api_key, **settings)

    def replace(self, **changes: Any) -> "LLMConfig":
        return replace(self, **changes)


def encode_image(image: np.ndarray, config: LLMConfig) -> tuple[str, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> (data URL, (height, width) as sent), downscaled to config.max_image_side_px."""
    from PIL import Image

    from som.imageio import resize_rgb, working_size

    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {arr.shape} dtype {arr.dtype}")
    h, w = working_size(arr.shape[0], arr.shape[1], config.max_image_side_px)
    arr = resize_rgb(arr, h, w)
    buf = io.BytesIO()
    if config.image_format == "jpeg":
        Image.fromarray(arr).save(buf, format="JPEG", quality=config.jpeg_quality)
        mime = "image/jpeg"
    else:
        Image.fromarray(arr).save(buf, format="PNG", optimize=False)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", (h, w)


def build_messages(
    system: str,
    user: str,
    images: Sequence[np.ndarray],
    config: LLMConfig,
    history: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Chat messages: the system text, earlier turns (`history`), then one user turn with the
    text followed by the images in order."""
    content: list[dict[str, Any]] = [{"type": "text", "text": user}]
    for image in images:
        url, _ = encode_image(image, config)
        part: dict[str, Any] = {"url": url}
        if config.image_detail:
            part["detail"] = config.image_detail
        content.append({"type": "image_url", "image_url": part})
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(dict(m) for m in history)
    messages.append({"role": "user", "content": content})
    return messages


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from Retry-After-Ms / Retry-After (seconds or HTTP date); None if absent or unreadable."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


class LLMClient:
    """Calls one model at one endpoint. `complete` returns the reply text; `stream` yields text deltas.

    openai_client: a ready `openai.OpenAI` (e.g. `AzureOpenAI` with Entra ID auth); its own
    retries are still disabled. sleep: the wait function between retries (tests record it).
    """

    def __init__(
        self,
        config: LLMConfig | None = None,
        *,
        openai_client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = LLMConfig.from_env() if config is None else config
        self._sleep = sleep
        if openai_client is not None:
            self._openai = openai_client.with_options(max_retries=0, timeout=self.config.timeout_s)
            return
        try:
            import openai
        except ImportError:
            raise ImportError("talking to an LLM needs the openai SDK: pip install 'som[llm]' (or pip install openai)") from None
        self._openai = openai.OpenAI(
            api_key=self.config.api_key,
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return f"LLMClient({self.config!r})"

    @property
    def where(self) -> str:
        """Model and endpoint, for messages."""
        return self._scrub(f"model {self.config.model!r} at {self.config.base_url or 'api.openai.com'}")

    # ---------------------------------------------------------------- calls

    def _params(self, messages: Sequence[Mapping[str, Any]], stream: bool, extra: Mapping[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.config.model, "messages": list(messages)}
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            params["max_tokens"] = self.config.max_tokens
        if stream:
            params["stream"] = True
        params.update(extra)
        return params

    def complete(self, messages: Sequence[Mapping[str, Any]], **extra: Any) -> str:
        """The reply text of one non-streaming completion (retried as configured)."""
        params = self._params(messages, False, extra)
        completion = self._with_retries(lambda: self._openai.chat.completions.create(**params))
        return self._text_of(completion)

    def stream(self, messages: Sequence[Mapping[str, Any]], **extra: Any) -> Iterator[str]:
        """Text deltas of one streaming completion. Retries happen only before the first delta."""
        params = self._params(messages, True, extra)
        chunks = self._with_retries(lambda: self._openai.chat.completions.create(**params))
        return self._deltas(chunks)

    def _deltas(self, chunks: Any) -> Iterator[str]:
        got_text = False
        n_chunks = n_choices = 0
        finish = None
        failure: LLMError | None = None
        try:
            with chunks:
                for chunk in chunks:
                    n_chunks += 1
                    for choice in getattr(chunk, "choices", None) or []:
                        n_choices += 1
                        delta = getattr(choice, "delta", None)
                        refusal = getattr(delta, "refusal", None) if delta is not None else None
                        if refusal:
                            raise LLMError("content_filter", f"the model refused: {self._scrub(refusal)}")
                        text = getattr(delta, "content", None) if delta is not None else None
                        if text:
                            got_text = got_text or bool(text.strip())
                            yield text
                        finish = getattr(choice, "finish_reason", None) or finish
        except GeneratorExit:
            raise
        except Exception as e:  # noqa: BLE001 - every SDK/transport failure becomes one LLMError
            failure = self._to_error(e)
        if failure is not None:
            raise failure  # outside the except block: no SDK exception as __context__
        if finish == "content_filter":
            raise LLMError("content_filter", f"the reply was cut by the content filter of {self.where}")
        if n_chunks == 0:
            raise LLMError("malformed_reply", f"{self.where} sent a reply that is not a valid chat completion stream (no server-sent events)")
        if n_choices == 0:
            raise LLMError("empty_reply", f"{self.where} returned no choices")
        if not got_text:
            raise LLMError("empty_reply", f"{self.where} returned an empty reply (finish_reason={finish!r})")

    def _text_of(self, completion: Any) -> str:
        if isinstance(completion, (str, bytes)) or not hasattr(completion, "choices"):
            raise LLMError("malformed_reply", f"{self.where} did not return a chat completion (got {type(completion).__name__})")
        choices = completion.choices or []
        if not choices:
            raise LLMError("empty_reply", f"{self.where} returned no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise LLMError("malformed_reply", f"{self.where} returned a choice without a message")
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise LLMError("content_filter", f"the model refused: {self._scrub(refusal)}")
        text = message.content
        if getattr(choice, "finish_reason", None) == "content_filter" and not text:
            raise LLMError("content_filter", f"the reply was blocked by the content filter of {self.where}")
        if not isinstance(text, str) or not text.strip():
            raise LLMError("empty_reply", f"{self.where} returned an empty reply (finish_reason={getattr(choice, 'finish_reason', None)!r})")
        return text

    # ---------------------------------------------------------------- retries and errors

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        cfg = self.config
        attempt = 0
        while True:
            try:
                return call()
            except Exception as e:  # noqa: BLE001 - every SDK/transport failure becomes one LLMError
                error = self._to_error(e)
                asked = _retry_after_s(getattr(getattr(e, "response", None), "headers", None))
            # raised outside the except block: the SDK exception (whose text may hold the key)
            # must not ride along as __context__
            if error.kind not in ("rate_limit", "server", "connection") or attempt >= cfg.max_retries:
                raise error
            delay = min(cfg.backoff_max_s, cfg.backoff_s * 2**attempt) * (0.75 + 0.5 * random.random())
            if asked is not None:
                if asked > cfg.max_retry_after_s:
                    raise LLMError(
                        error.kind,
                        f"{error} (the server asks to wait {asked:.0f} s, more than max_retry_after_s={cfg.max_retry_after_s:g})",
                        status=error.status,
                    )
                delay = asked
            attempt += 1
            log.info("LLM call failed (%s); retry %d of %d in %.2f s", error.kind, attempt, cfg.max_retries, delay)
            self._sleep(delay)

    def _scrub(self, text: object) -> str:
        return scrub(text, [self.config.api_key])

    def _to_error(self, e: Exception) -> LLMError:
        """Map an SDK / transport exception to one LLMError whose text is scrubbed of the key."""
        if isinstance(e, LLMError):
            return e
        error = self._classify(e)
        return LLMError(error.kind, self._scrub(error), status=error.status)

    def _classify(self, e: Exception) -> LLMError:
        import openai

        where = self.where
        status = getattr(e, "status_code", None)
        body = getattr(e, "body", None)
        err = body.get("error", body) if isinstance(body, dict) else None
        code = str(err.get("code") or "") if isinstance(err, dict) else ""
        etype = str(err.get("type") or "") if isinstance(err, dict) else ""
        server_msg = err.get("message") if isinstance(err, dict) else None
        server_msg = self._scrub(server_msg if isinstance(server_msg, str) and server_msg else getattr(e, "message", e))
        low = f"{code} {etype} {server_msg}".lower()

        if isinstance(e, openai.APITimeoutError):
            return LLMError("timeout", f"{where} did not answer within {self.config.timeout_s:g} s (timeout_s)")
        if isinstance(e, openai.APIConnectionError):
            return LLMError("connection", f"cannot reach {self.config.base_url or 'api.openai.com'}: is the server running and the base URL right?")
        if isinstance(e, openai.APIStatusError):
            if status in (401, 403):
                # the server's text often echoes (part of) the key: say only what happened
                return LLMError("auth", f"{where} rejected the API key ({status}); check the key or --api-key-env", status=status)
            if status == 413 or any(m in low for m in _CONTEXT_MARKERS):
                return LLMError("context_length", f"prompt and image are too long for {where}: lower max_image_side_px or shorten the prompt ({server_msg})", status=status)
            if any(m in low for m in _FILTER_MARKERS):
                return LLMError("content_filter", f"{where} refused the content ({server_msg})", status=status)
            if status == 404:
                if "model" in low:
                    return LLMError("model_not_found", f"model {self.config.model!r} not found at {self.config.base_url or 'api.openai.com'}: pass --model or set SOM_MODEL ({server_msg})", status=status)
                return LLMError("not_found", f"nothing at {self.config.base_url or 'api.openai.com'}/chat/completions (404): check the base URL, it usually ends in /v1", status=status)
            if status == 429:
                return LLMError("rate_limit", f"{where} is rate limiting (429): {server_msg}", status=status)
            if status is not None and status >= 500:
                return LLMError("server", f"{where} failed with {status}: {server_msg}", status=status)
            return LLMError("bad_request", f"{where} refused the request ({status}): {server_msg}", status=status)
        if isinstance(e, openai.ContentFilterFinishReasonError):
            return LLMError("content_filter", f"the reply was blocked by the content filter of {where}")
        if isinstance(e, (openai.APIResponseValidationError, ValueError, TypeError, KeyError, AttributeError)):
            # ValueError covers json.JSONDecodeError of a non-JSON body
            return LLMError("malformed_reply", f"{where} sent a reply that is not a valid chat completion ({type(e).__name__}: {self._scrub(e)})")
        if isinstance(e, openai.APIError):  # an error event inside a 200 stream
            if any(m in low for m in _CONTEXT_MARKERS):
                return LLMError("context_length", f"prompt and image are too long for {where} ({server_msg})")
            if any(m in low for m in _FILTER_MARKERS):
                return LLMError("content_filter", f"{where} refused the content ({server_msg})")
            return LLMError("server", f"{where} reported an error while replying: {server_msg}")
        return LLMError("connection", f"calling {where} failed: {type(e).__name__}: {self._scrub(e)}")
