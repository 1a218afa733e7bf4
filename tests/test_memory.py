"""Masks are kept as crops: marking a large photo never allocates N full-size mask planes."""

import tracemalloc

import cv2
import numpy as np
import pytest

from som.pipeline import cached_segmenter, mark


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A gradient with 30 filled shapes, each with a shape of another colour inside (wholes and parts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = np.stack([xx * 120 / w, yy * 120 / h, np.full_like(xx, 60)], -1).astype(np.uint8)
    for _ in range(30):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(min(h, w) // 20, min(h, w) // 6))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, c, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r // 2), c, -1)
        cv2.circle(img, (cx, cy), r // 3, tuple(255 - v for v in c), -1)
    return img


@pytest.mark.slow
def test_marking_a_large_photo_allocates_no_full_mask_stack():
    h, w = 3000, 4000
    photo = synthetic_photo(h, w)
    seg = cached_segmenter("mobile-sam", "cpu")
    mark(photo[:600, :800], segmenter=seg, max_side_px=512)  # model warm-up outside the measurement
    tracemalloc.start()
    try:
        result = mark(photo, segmenter=seg, max_side_px=512)  # segmented small, marked at 12 MP
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = len(result.regions)
    stack_bytes = n * h * w  # one (N, H, W) bool array
    bound = 8 * h * w  # source, marked copy and crops fit in this; a full stack does not
    print(f"{n} regions ({int((result.regions.parent >= 0).sum())} parts): peak {peak / 1e6:.0f} MB, "
          f"an (N, H, W) stack would be {stack_bytes / 1e6:.0f} MB")
    assert n >= 12 and result.regions.nested, "the photo must give many regions, wholes with parts"
    assert stack_bytes > 1.5 * bound, "the test must be able to see a full stack"
    assert peak < bound, f"peak {peak / 1e6:.0f} MB: something allocated full-size masks"
    assert result.image.shape == (h, w, 3) and result.regions.image_hw == (h, w)
