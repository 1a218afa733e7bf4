"""SEEM on this machine: a full-size model (SoM's seem_focall_unicl_lang_v1 configuration: Focal-L,
512-wide pixel decoder and decoder, 12-layer text encoder) with seeded random weights, since the
real checkpoint cannot be downloaded here. Speed does not depend on the weights' values, except
in the panoptic merge, whose work grows with the segments kept (reported beside the times).

Timed, in this order, on one real photo resized as SoM does (short side 640):
- load: build the model and fill it with seeded weights;
- class embeddings (133 COCO classes + background, each averaged over the prompt templates):
  first call (nothing cached; the disk cache is a fresh temporary folder), again (memory), and
  from the disk cache in a new segmenter (as a new process would find them);
- automatic panoptic: first call on the image (image features + decoder + merge; class
  embeddings cached), on new images of the same size (the photo flipped or rotated: nothing of
  the image cached) and on the same image again (whatever the segmenter caches per image);
- one text prompt and one click on the image (features cached).
Each warm figure is the median of --repeats runs; wall and process CPU time are both reported
(this machine is shared: CPU time is the steadier figure).

    python benchmarks/seem.py                 # writes benchmarks/results/seem-cpu-<date>.json
    python benchmarks/seem.py --repeats 1 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model

from som.segmenters.seeded import seeded_state_dict
from som.segmenters.seem.classes import COCO_PANOPTIC_CLASSES
from som.segmenters.seem.model import SeemModel
from som.segmenters.seem.segmenter import SeemSegmenter

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    """(result, wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def median_of(fn, repeats: int) -> dict:
    runs = [timed(fn)[1:] for _ in range(repeats)]
    return {
        "wall_s": round(statistics.median(r[0] for r in runs), 3),
        "cpu_s": round(statistics.median(r[1] for r in runs), 3),
        "runs": repeats,
    }


def once(fn) -> tuple[object, dict]:
    result, wall, cpu = timed(fn)
    return result, {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "runs": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=REPO_ROOT / "assets/coffee.jpg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--text", default="the cup")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/results")
    args = parser.parse_args()
    os.environ["SOM_CACHE_DIR"] = tempfile.mkdtemp(prefix="seem-bench-cache-")
    if args.threads:
        torch.set_num_threads(args.threads)
    image = np.asarray(Image.open(args.image).convert("RGB"))
    click_xy = np.array([[image.shape[1] / 2, image.shape[0] / 2]], np.float32)
    load_avg = os.getloadavg()

    def load() -> SeemSegmenter:
        model = SeemModel().eval()
        model.load_state_dict(seeded_state_dict(model.state_dict(), args.seed), strict=True)
        return SeemSegmenter("seem", model, "cpu")

    # new images of the same size: flips and rotation of the photo (distinct pixels, same work)
    variants = [np.ascontiguousarray(v) for v in (image[:, ::-1], image[::-1], image[::-1, ::-1])]
    results = {}
    seg, results["load"] = once(load)
    classes = tuple(COCO_PANOPTIC_CLASSES)
    _, results["class_embeddings_first"] = once(lambda: seg.class_embeddings(classes))
    results["class_embeddings_cached"] = median_of(lambda: seg.class_embeddings(classes), args.repeats)
    fresh = SeemSegmenter("seem", seg.model, "cpu")
    _, results["class_embeddings_disk_cache"] = once(lambda: fresh.class_embeddings(classes))
    regions, results["automatic_first_call"] = once(lambda: seg.segment_everything(image))
    new_images = iter(variants * args.repeats)
    results["automatic_new_image"] = median_of(lambda: seg.segment_everything(next(new_images)), args.repeats)
    seg.segment_everything(image)  # the new images may have pushed it out of the per-image caches
    results["automatic_same_image_again"] = median_of(lambda: seg.segment_everything(image), args.repeats)
    results["text_prompt"] = median_of(lambda: seg.segment_text(image, args.text), args.repeats)
    results["click"] = median_of(lambda: seg.segment_prompts(image, click_xy, np.ones(1, np.int64)), args.repeats)

    out = {
        "command": "python benchmarks/seem.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg_at_start": [round(v, 2) for v in load_avg],
        },
        "model": "SoM's seem_focall_unicl_lang_v1 (full size), seeded random weights, fp32, CPU",
        "image": {"path": str(args.image.relative_to(REPO_ROOT)), "hw": list(image.shape[:2]),
                  "model_input_hw": list(seg.input_size(image.shape[:2]))},
        "segments_kept_at_reference_thresholds": len(regions),
        "parameters_millions": round(sum(p.numel() for p in seg.model.parameters()) / 1e6, 1),
        "seconds": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"seem-cpu-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    print(f"wrote {path}")
    shutil.rmtree(os.environ["SOM_CACHE_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
