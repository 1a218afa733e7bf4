"""som: Set-of-Mark visual prompting.

Nothing heavy (torch, gradio, openai) is imported here; `som.mark` and friends
load their backends on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Regions": "som.regions",
    "load_image": "som.imageio",
    "ImageError": "som.imageio",
    "mark": "som.pipeline",
    "mark_many": "som.pipeline",
    "mark_regions": "som.pipeline",
    "MarkResult": "som.pipeline",
    "MarkStyle": "som.draw",
    "build_segmenter": "som.segmenters",
    "list_segmenters": "som.segmenters",
    "ask": "som.llm",
    "mark_page": "som.web.page",
    "mark_screen": "som.screen.marks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som' has no attribute {name!r}")


__all__ = sorted(_LAZY)
