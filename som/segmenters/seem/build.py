"""Registry builder for `seem` (imported only when the segmenter is built)."""

from __future__ import annotations

from pathlib import Path

from som.segmenters.base import resolve_device

OPTIONS = ("precision", "input_short_side", "object_mask_threshold", "overlap_threshold", "config", "disk_cache")


def build_seem_segmenter(name: str, device: str, checkpoint: Path | None, **options):
    """SEEM from a checkpoint file. options: precision (auto|fp32|fp16|bf16), input_short_side
    (px, default 640 as SoM), object_mask_threshold / overlap_threshold (panoptic; default the
    config's TEST.OBJECT_MASK_THRESHOLD / OVERLAP_THRESHOLD, 0.8 / 0.8), config (dict of
    yaml-named overrides, for other model sizes), disk_cache (keep class text embeddings in
    $SOM_CACHE_DIR, default True)."""
    from som.segmenters.seem.inference import PanopticOptions
    from som.segmenters.seem.model import load_model
    from som.segmenters.seem.segmenter import INPUT_SHORT_SIDE, SeemSegmenter

    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown seem options {sorted(unknown)}; expected {list(OPTIONS)}")
    device = resolve_device(device)
    model = load_model(checkpoint, options.get("config"))
    test = model.cfg["MODEL"]["DECODER"]["TEST"]
    panoptic = PanopticOptions(
        float(options.get("object_mask_threshold", test["OBJECT_MASK_THRESHOLD"])),
        float(options.get("overlap_threshold", test["OVERLAP_THRESHOLD"])),
    )
    return SeemSegmenter(
        name, model, device, precision=options.get("precision", "auto"),
        input_short_side=int(options.get("input_short_side", INPUT_SHORT_SIDE)), panoptic=panoptic,
        disk_cache=bool(options.get("disk_cache", True)),
    )
