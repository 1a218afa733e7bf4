"""som.web: Set-of-Mark marks on live web pages (DOM through Playwright + Chromium), acting on
them, and the agent loop.

    marks = som.mark_page("https://example.org")      # or a Playwright Page
    marks.elements[0].describe(), marks.click(1)

Light at import: Playwright is imported only when a page is opened.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "mark_page": "som.web.page",
    "PageMarks": "som.web.page",
    "ElementRecord": "som.web.page",
    "ElementGone": "som.web.page",
    "KINDS": "som.web.page",
    "Action": "som.web.actions",
    "parse_action": "som.web.actions",
    "run_agent": "som.web.agent",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som.web' has no attribute {name!r}")


__all__ = sorted(_LAZY)
