"""Checks shared by the tool tests: marks as data against the picture they were drawn on."""

from __future__ import annotations

import numpy as np

from som.marksfile import decode_rle


def decode_masks(marks: list[dict], image_hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool from the marks' COCO RLE, checked against each mark's area and box."""
    masks = []
    for m in marks:
        mask = decode_rle(m["rle"])
        assert mask.shape == image_hw, (m["label"], mask.shape)
        assert int(mask.sum()) == m["area"], m["label"]
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [round(v) for v in m["xyxy"]], m["label"]
        masks.append(mask)
    return np.stack(masks)


def check_drawn(source: np.ndarray, marked: np.ndarray, marks: list[dict], alpha: float = 0.4) -> None:
    """The masks are where the marks were drawn: inside each region's visible part (its mask minus
    regions nested in it) the picture is the photo blended with one colour, every label sits in its
    own region, and pixels outside every region are (nearly all) untouched."""
    masks = decode_masks(marks, source.shape[:2])
    n = len(masks)
    for i in range(n):  # any two regions are disjoint or nested
        for j in range(i + 1, n):
            both = np.logical_and(masks[i], masks[j]).sum()
            assert both == 0 or both == min(masks[i].sum(), masks[j].sum()), (marks[i]["label"], marks[j]["label"])
    src = source.astype(np.float32)
    implied = (marked.astype(np.float32) - (1 - alpha) * src) / alpha  # the fill colour where a region is
    for k, m in enumerate(marks):
        inner = [j for j in range(n) if j != k and masks[j].sum() < masks[k].sum() and not (masks[j] & ~masks[k]).any()]
        visible = masks[k] & ~np.any(masks[inner], axis=0) if inner else masks[k]
        colours = implied[visible]
        colour = np.median(colours, axis=0)
        same = np.all(np.abs(colours - colour) <= 6, axis=1).mean()
        assert same > 0.6, f"mark {m['label']}: only {same:.0%} of its pixels carry one fill colour"
        x, y = m["anchor_xy"]
        assert masks[k][y, x], f"label {m['label']} at {(x, y)} is not inside its region"
    outside = ~masks.any(axis=0)
    if outside.sum() > 1000:
        untouched = np.all(marked[outside] == source[outside], axis=1).mean()
        assert untouched > 0.9, f"only {untouched:.0%} of the pixels outside every region are untouched"


def check_highlight(source: np.ndarray, picture: np.ndarray, masks: np.ndarray, dim: float = 0.55) -> None:
    """Outside the chosen regions the highlight picture is the photo dimmed; inside it is not."""
    chosen = masks.any(axis=0)
    dimmed = np.rint(source.astype(np.float32) * (1 - dim)).astype(np.uint8)
    assert np.all(picture[~chosen] == dimmed[~chosen], axis=1).mean() > 0.98
    assert np.all(picture[chosen] == dimmed[chosen], axis=1).mean() < 0.1
