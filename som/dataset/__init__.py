"""som.dataset: Set-of-Mark training data ("list items one by one" listing and QA records).

    from som.dataset import BuildConfig, build_dataset
    build_dataset("images/", "out/", BuildConfig(tasks=("listing", "qa")), coco="instances.json")

Same as `som dataset build`. Engines: a local process pool (default) or Ray Data
(`engine="ray"`); both give byte-identical records. Light at import: nothing heavy loads
until a build starts.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "BuildConfig": "som.dataset.core",
    "ImageJob": "som.dataset.core",
    "BuildReport": "som.dataset.build",
    "build_dataset": "som.dataset.build",
    "plan_jobs": "som.dataset.build",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'som.dataset' has no attribute {name!r}")


__all__ = ["BuildConfig", "BuildReport", "ImageJob", "build_dataset", "plan_jobs"]
