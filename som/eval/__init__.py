"""som.eval: does Set-of-Mark help this model? `som eval run` / `som eval report`.

Tasks (`som.eval.tasks`): refer (expression -> mark), ground (phrases -> marks), label
(category per mark, mIoU) and list (items one by one on ground-truth marks). Conditions
(`som.eval.conditions`): no marks (boxes), ground-truth marks, and marks from each segmenter,
granularity and style, in one run. Data (`som.eval.data`): RefCOCO, Flickr30k Entities, COCO
and plain JSONL layouts, plus a built-in smoke set (`som.eval.smoke`). Replies are cached on
disk (`som.eval.cache`), requests run in parallel (`som.eval.runner`), and reports compare
conditions and runs with bootstrap intervals (`som.eval.report`).

Light at import: nothing below is imported until used.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "run_eval": "som.eval.runner",
    "RunOptions": "som.eval.runner",
    "Condition": "som.eval.conditions",
    "make_conditions": "som.eval.conditions",
    "load_data": "som.eval.data",
    "EvalClient": "som.eval.client",
    "write_report": "som.eval.report",
    "build_smoke": "som.eval.smoke",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som.eval' has no attribute {name!r}")


__all__ = sorted(_LAZY)
