"""Builders for the SAM-family specs in the registry (imported only when a segmenter is built)."""

from __future__ import annotations

import pickle
from pathlib import Path

from som.segmenters.amg import AmgOptions
from som.segmenters.base import resolve_device
from som.segmenters.sam import SamSegmenter


def _amg_options(options: dict) -> AmgOptions:
    unknown = set(options) - set(AmgOptions.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown segmenter options {sorted(unknown)}; expected {sorted(AmgOptions.__dataclass_fields__)}")
    return AmgOptions(**options)


def build_mobile_sam_segmenter(name: str, device: str, checkpoint: Path | None, **options) -> SamSegmenter:
    from som.segmenters.mobile_sam_model import build_mobile_sam

    device = resolve_device(device)
    return SamSegmenter(name, build_mobile_sam(checkpoint, device=device), device, _amg_options(options))


def build_sam_segmenter(name: str, device: str, checkpoint: Path | None, model_type: str, **options) -> SamSegmenter:
    import torch
    from segment_anything import sam_model_registry

    device = resolve_device(device)
    model = sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError, pickle.UnpicklingError, EOFError) as e:
        raise ValueError(f"{checkpoint} is not a usable {model_type} SAM checkpoint: {str(e).splitlines()[0]}") from None
    return SamSegmenter(name, model, device, _amg_options(options))
