"""Semantic-SAM speed on this machine: SoM's full-size model (Swin-L) at SoM's resolution.

Timing does not depend on weight values, so the model has seeded random weights
(som.segmenters.seeded; the official checkpoint cannot be had here). The image is resized to a
640 short side as SoM does. Measured, each after one warm-up, medians over --repeats:

- encode: backbone + pixel decoder for one image (SemanticSamSegmenter.embed, cache cleared);
- click: one click on the encoded image, the best of its masks at image size (segment_prompts);
- ours: automatic marks per granularity level with our defaults (fast_amg: quarter-resolution
  filtering, survivors upsampled), encoding excluded, candidate cache cleared before each. Random
  weights' masks fail the quality filters, which would leave the later steps (NMS, selection,
  upsampling of survivors) untimed: "ours_filters_open" times the default level again with the
  IoU and stability filters open, so every candidate goes on (an upper bound of those steps);
- som: what SoM's own settings cost (32x32 clicks, 200 per batch, the chosen levels): per batch
  the reference decodes the 200 clicks and upsamples EVERY mask of the chosen levels to image
  size before filtering (evaluate_demo), then computes stability on those passing the IoU
  filter. Timed here: decode + upsample of all masks + stability of all masks (an upper bound of
  the filtering's share) for --som-batches batches, extrapolated to the grid's 1024 clicks
  (ceil(1024/200) = 6 batches, the last of 24 clicks counted pro rata). Left out, because they
  depend on how many masks pass the filters (with random weights: none): box NMS, the
  small-region clean-up (two OpenCV connected-component passes per surviving mask) and RLE.
  The decode is ours, which projects the image levels once per image; the reference does it
  again for every batch, so SoM's real cost is higher (by hand on 2026-12-02, same machine,
  reference at full size on this image: 3.2-4.7 s per batch of 200 for one level, 6.9-13.7 s
  for all six, against 1.4 and 5.7-6.6 s here).

    python benchmarks/semantic_sam.py                 # writes benchmarks/results/semantic-sam-cpu-<date>.json
    python benchmarks/semantic_sam.py --repeats 1 --som-batches 1
    python benchmarks/semantic_sam.py --small --out /tmp/x.json   # the tests' small model: checks the script in seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

from som.segmenters.seeded import seeded_state_dict  # noqa: E402
from som.segmenters.semantic_sam.config import SMALL_OVERRIDES, model_config  # noqa: E402
from som.segmenters.semantic_sam.model import CLICK_BOX_SIZE, SemanticSam, upsample_logits  # noqa: E402
from som.segmenters.semantic_sam.reference_amg import (  # noqa: E402
    SOM_ALL_LEVELS,
    SOM_LEVEL_TO_TOKEN,
    ReferenceAmgOptions,
    reference_grid,
    resize_short_side,
    stability,
)
from som.segmenters.base import DEFAULT_LEVEL  # noqa: E402
from som.segmenters.semantic_sam.fast_amg import FastAmgOptions  # noqa: E402
from som.segmenters.semantic_sam.segmenter import SemanticSamSegmenter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def timed(fn, repeats: int) -> dict:
    """Wall seconds of fn() over repeats runs after one warm-up run: median, min and all runs, and
    the median process CPU seconds (this machine is shared: min and CPU time show what other
    processes' load added to the wall time)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"seconds": statistics.median(wall), "min_seconds": min(wall), "runs": wall, "cpu_seconds": statistics.median(cpu)}


def som_batch_seconds(model: SemanticSam, feats, levels: tuple[int, ...], batch: int, n_batches: int, opts: ReferenceAmgOptions) -> list[float]:
    """Seconds of the reference's per-batch work for the first n_batches batches of SoM's grid."""
    tokens = [SOM_LEVEL_TO_TOKEN[v] for v in levels]
    grid = reference_grid(opts.points_per_side)
    out = []
    for start in range(0, batch * n_batches, batch):
        points = torch.tensor(grid[start : start + batch], dtype=torch.float32)
        boxes = torch.cat([points, torch.full_like(points, CLICK_BOX_SIZE)], 1)
        t0 = time.perf_counter()
        with torch.no_grad():
            logits, iou = model.decode(feats, boxes)
            up = upsample_logits(logits[:, tokens].flatten(0, 1), feats)
            stab = stability(up, opts.stability_score_offset)
            _ = (iou[:, tokens].flatten() > opts.pred_iou_thresh) & (stab >= opts.stability_score_thresh)
        out.append(time.perf_counter() - t0)
        del up
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(ROOT / "assets/coffee.jpg"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--som-batches", type=int, default=1, help="SoM batches of 200 clicks actually timed per level set")
    parser.add_argument("--granularities", default="1,2,3,4", help="our granularity levels to time (4: nested, the default)")
    parser.add_argument("--small", action="store_true", help="the tests' small configuration (checks the script; figures say nothing)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    image = np.asarray(Image.open(args.image).convert("RGB"))
    t0 = time.perf_counter()
    model = SemanticSam(model_config(SMALL_OVERRIDES if args.small else None)).eval()
    model.load_state_dict(seeded_state_dict(model.state_dict(), SEED), strict=True)
    build_s = time.perf_counter() - t0
    seg = SemanticSamSegmenter("semantic-sam", model, "cpu")
    load_before = os.getloadavg()

    def encode():
        seg.forget_images()
        return seg.embed(image)

    encode_t = timed(encode, args.repeats)
    enc = seg.embed(image)
    h, w = image.shape[:2]
    click_t = timed(lambda: seg.segment_prompts(image, np.array([[w * 0.5, h * 0.5]]), np.array([1])), args.repeats)

    def automatic(segmenter: SemanticSamSegmenter, level) -> dict:
        def marks():
            segmenter._candidates.clear()
            return segmenter.segment_everything(image, level=level)

        return {**timed(marks, args.repeats), "levels": list(segmenter.levels_for(level)), "marks": len(marks())}

    ours = {str(g): automatic(seg, int(g)) for g in args.granularities.split(",")}
    open_filters = SemanticSamSegmenter("semantic-sam", model, "cpu", amg=FastAmgOptions(pred_iou_thresh=-math.inf, stability_thresh=-math.inf))
    open_filters._cache = seg._cache  # the same encoding
    ours_open = {str(DEFAULT_LEVEL): automatic(open_filters, DEFAULT_LEVEL)}

    opts = ReferenceAmgOptions()
    n_points = opts.points_per_side**2
    full_batches = n_points / opts.points_per_batch  # 5.12: five of 200 and one of 24, counted pro rata
    som = {}
    for levels in [(1,), SOM_ALL_LEVELS]:
        som_batch_seconds(model, enc.features, levels, opts.points_per_batch, 1, opts)  # warm-up
        runs = som_batch_seconds(model, enc.features, levels, opts.points_per_batch, args.som_batches, opts)
        per_batch = statistics.median(runs)
        som["-".join(map(str, levels))] = {
            "batch_seconds": runs,
            "batches_timed": len(runs),
            "extrapolated_seconds": per_batch * full_batches,
            "extrapolated_with_encode_seconds": per_batch * full_batches + encode_t["seconds"],
        }

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "model": ("the tests' small configuration" if args.small else
                  "SoM's configuration (semantic_sam_only_sa-1b_swinL.yaml)") + ", seeded random weights, fp32",
        "parameters_million": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "build_and_seed_seconds": round(build_s, 1),
        "image": {"file": Path(args.image).name, "original_hw": [h, w], "model_hw": list(enc.features.image_hw)},
        "encode": encode_t,
        "click": click_t,
        "ours_defaults": {**dataclasses.asdict(seg.options), **dataclasses.asdict(seg.amg)},
        "ours_per_granularity": ours,
        "ours_filters_open": ours_open,
        "som_settings": {"points_per_side": opts.points_per_side, "points_per_batch": opts.points_per_batch,
                         "batches_in_grid": math.ceil(n_points / opts.points_per_batch), "per_levels": som,
                         "note": "decode + upsample of every mask + stability, timed on the first batches and "
                                 "extrapolated to 1024 clicks; NMS, small-region clean-up and RLE not included"},
    }
    out = Path(args.out or ROOT / f"benchmarks/results/semantic-sam-cpu-{datetime.date.today().isoformat()}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
