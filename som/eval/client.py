"""The eval's LLM client: `som.llm.LLMClient` (same endpoint handling, errors and 429/5xx
retries) that also returns the token usage of each reply and counts the requests it sends.

Sampling is pinned for repeatable runs: temperature 0 and a seed. A server that refuses the
`seed` parameter (400 naming it) is asked again without it, and from then on never sent it.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

from som.llm.client import LLMClient
from som.llm.errors import LLMError


class EvalClient(LLMClient):
    """`complete_usage(messages, params)` -> (reply text, {"prompt_tokens", "completion_tokens"})."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self.requests_sent = 0  # HTTP requests that got a reply or a final error, retries included once
        self.seed_refused = False

    def complete_usage(self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> tuple[str, dict[str, int]]:
        extra = dict(params)
        if self.seed_refused:
            extra.pop("seed", None)
        try:
            return self._call(messages, extra)
        except LLMError as e:
            if e.kind == "bad_request" and "seed" in extra and "seed" in str(e).lower():
                self.seed_refused = True
                extra.pop("seed")
                return self._call(messages, extra)
            raise

    def _call(self, messages: Sequence[Mapping[str, Any]], extra: dict[str, Any]) -> tuple[str, dict[str, int]]:
        request = self._params(messages, False, extra)

        def once() -> Any:
            with self._lock:
                self.requests_sent += 1
            return self._openai.chat.completions.create(**request)

        completion = self._with_retries(once)
        text = self._text_of(completion)
        usage = getattr(completion, "usage", None)
        tokens = {
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        }
        return text, tokens


__all__ = ["EvalClient"]
