"""som.screen: Set-of-Mark marks on screenshots without a DOM (OCR text + icons/controls/images).

    marks = som.mark_screen("screen.png")

Light at import: rapidocr and ONNX Runtime load on the first call.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "mark_screen": "som.screen.marks",
    "ScreenMarks": "som.screen.marks",
    "ScreenItem": "som.screen.marks",
    "SCREEN_KINDS": "som.screen.marks",
    "read_text": "som.screen.ocr",
    "OCROptions": "som.screen.ocr",
    "detect_elements": "som.screen.elements",
    "ElementOptions": "som.screen.elements",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som.screen' has no attribute {name!r}")


__all__ = sorted(_LAZY)
