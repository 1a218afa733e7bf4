"""Masks are kept as crops: marking a large photo never allocates N full-size mask planes."""

import sys
import tracemalloc
from pathlib import Path

import pytest

from som.pipeline import cached_segmenter, mark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from memory import synthetic_photo  # noqa: E402  (the benchmark's photo: one generator for both)


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
