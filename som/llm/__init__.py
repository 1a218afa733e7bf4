"""som.llm: ask a multimodal LLM about marked images and map its answer back to regions.

    from som.llm import ask
    answer = ask("photo.jpg", "which mark is the red cup?", template="refer")

Light at import: the openai SDK is imported only when a client is built. (`ask` is imported
eagerly on purpose: a lazily imported submodule named like the function would shadow it.)

Modules: `client` (OpenAI-compatible endpoint, retries, errors), `templates`
(named prompt library), `parse` (answer text -> marks), `ask` (the glue),
`cli` (`som ask`).
"""

from __future__ import annotations

from typing import Any

from som.llm.ask import Answer, AnswerStream, ask, ask_stream
from som.llm.errors import LLMError
from som.llm.parse import find_mentions, parse_grounding, parse_mark_lines, parse_marks, parse_pairs

_LAZY = {
    "LLMClient": "som.llm.client",
    "LLMConfig": "som.llm.client",
    "PromptTemplate": "som.llm.templates",
    "TemplateLibrary": "som.llm.templates",
    "load_templates": "som.llm.templates",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som.llm' has no attribute {name!r}")


__all__ = sorted(
    [*_LAZY, "Answer", "AnswerStream", "ask", "ask_stream", "LLMError", "find_mentions", "parse_grounding", "parse_mark_lines", "parse_marks", "parse_pairs"]
)
