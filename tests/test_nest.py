"""Nested regions: som.nest and refine(nested=True) on hand-made and random masks."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from som.layout import place_labels
from som.nest import NestOptions, is_laminar, nest, preference_order, tree_order
from som.refine import RefineOptions, refine
from som.regions import Regions

H, W = 80, 100


def rect(x1, y1, x2, y2, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def nested(masks, scores=None, min_area_px=10, **opts):
    r = Regions.from_masks(np.stack(masks), scores=scores)
    return refine(r, RefineOptions(nested=True, min_area_px=min_area_px, fill_holes_frac=0, remove_islands_frac=0, **opts))


def test_whole_keeps_its_full_mask_and_parts_nest_inside():
    person, sweater, head = rect(10, 10, 60, 75), rect(15, 30, 55, 60), rect(25, 12, 45, 28)
    r = nested([sweater, person, head], scores=[0.99, 0.95, 0.97])
    assert len(r) == 3
    assert np.array_equal(r.mask(0), person), "the whole is first and keeps its full mask"
    assert r.parent.tolist() == [-1, 0, 0]
    assert {tuple(r.xyxy[k]) for k in (1, 2)} == {(15, 30, 55, 60), (25, 12, 45, 28)}
    vis = r.visible_crops()[0]
    assert vis.sum() == person.sum() - sweater.sum() - head.sum()


@pytest.mark.parametrize(
    "name, masks, scores, expect",
    [
        # a candidate half inside a kept region is cut out of it; it lost too much: dropped
        ("partial overlap, large loss", [rect(0, 0, 50, 50), rect(25, 0, 75, 50)], [0.99, 0.9], 1),
        # a small overlap is cut off and the rest kept beside it (disjoint)
        ("partial overlap, small loss", [rect(0, 0, 50, 50), rect(45, 0, 95, 50)], [0.99, 0.9], 2),
        # a near-copy of its would-be parent is dropped
        ("duplicate of parent", [rect(0, 0, 50, 50), rect(1, 1, 50, 50)], [0.99, 0.9], 1),
        # parts that tile their whole: one part goes so the whole keeps a visible part
        ("whole tiled by parts", [rect(0, 0, 30, 40), rect(30, 0, 60, 40), rect(0, 0, 60, 40)], [0.99, 0.98, 0.9], 2),
        # a part sticking out of its whole a little is clipped to it
        ("part clipped", [rect(0, 0, 60, 60), rect(40, 10, 64, 30)], [0.99, 0.9], 2),
    ],
)
def test_nesting_rules(name, masks, scores, expect):
    r = nested(masks, scores=scores)
    assert len(r) == expect, name
    assert is_laminar(r.boxes_px, r.crops, r.parent)
    if name == "part clipped":
        assert r.parent.tolist() == [-1, 0] and tuple(r.xyxy[1]) == (40, 10, 60, 30)
    if name == "whole tiled by parts":
        assert r.parent.tolist() == [-1, 0] and tuple(r.xyxy[0]) == (0, 0, 60, 40)


def test_contained_region_adopted_by_a_later_whole():
    """A part kept first becomes the child of a whole that arrives later (lower score)."""
    r = nested([rect(20, 20, 40, 40), rect(10, 10, 70, 70)], scores=[0.99, 0.5])
    assert r.parent.tolist() == [-1, 0] and tuple(r.xyxy[0]) == (10, 10, 70, 70)


def test_dropping_for_max_regions_moves_children_to_their_grandparent():
    masks = [rect(0, 0, 90, 70), rect(5, 5, 60, 60), rect(10, 10, 30, 30)]
    r = nested(masks, scores=[0.9, 0.9, 0.9], max_regions=2)
    assert len(r) == 2 and r.parent.tolist() == [-1, 0]
    assert tuple(r.xyxy[1]) == (5, 5, 60, 60)  # the smallest went


def test_tree_order_puts_each_region_before_its_children():
    parent = np.array([2, -1, -1, 1, 2])
    order = tree_order(parent, np.array([1, 2, 0, 3, 4]))  # sibling rank: 1 first, then 2
    assert order.tolist() == [1, 3, 2, 0, 4]
    with pytest.raises(ValueError, match="cycle"):
        tree_order(np.array([1, 0]), np.array([0, 1]))


def test_nest_options_are_checked():
    with pytest.raises(ValueError, match="contain_frac"):
        NestOptions(contain_frac=0.4)
    with pytest.raises(ValueError, match="max_cut_frac"):
        NestOptions(max_cut_frac=1.5)


@st.composite
def random_rects(draw):
    """Random candidates: some nested by construction, others overlapping at random."""
    n = draw(st.integers(1, 12))
    masks, scores = [], []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, W - 8)), draw(st.integers(0, H - 8))
        x2, y2 = draw(st.integers(x1 + 4, W)), draw(st.integers(y1 + 4, H))
        m = rect(x1, y1, x2, y2)
        if draw(st.booleans()):  # a blob, not a box
            yy, xx = np.mgrid[:H, :W]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            m &= ((xx - cx) / max(x2 - x1, 1)) ** 2 + ((yy - cy) / max(y2 - y1, 1)) ** 2 <= 0.3
        masks.append(m)
        scores.append(draw(st.floats(0.5, 1.0)))
    return np.stack(masks), np.array(scores, np.float32)


@settings(max_examples=60, deadline=None, derandomize=True)  # the same 60 cases on every run
@given(random_rects())
def test_property_output_is_a_laminar_family_with_labels_in_visible_parts(data):
    masks, scores = data
    r = refine(Regions.from_masks(masks, scores=scores), RefineOptions(nested=True, min_area_px=12))
    assert is_laminar(r.boxes_px, r.crops, r.parent)
    full = r.full_masks()
    for k, p in enumerate(r.parent):
        assert p < k, "a parent is numbered before its children"
        if p >= 0:
            assert not (full[k] & ~full[p]).any(), "every pixel of a child lies in its parent"
    vis = Regions.from_crops(r.boxes_px, r.visible_crops(), r.image_hw).full_masks()
    assert vis.sum(axis=0).max(initial=0) <= 1, "visible parts are disjoint"
    assert (vis.sum(axis=(1, 2)) > 0).all(), "every region shows a part of its own"
    assert np.array_equal(vis.any(axis=0), full.any(axis=0))
    laid = place_labels(r, font_px=6)
    for k, (x, y) in enumerate(laid.anchors_xy):
        assert vis[k, y, x], "a label sits inside its region's visible part"
    boxes = laid.label_xyxy
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), "labels collide"


def test_nest_works_on_crops_in_the_given_order():
    boxes = np.array([[0, 0, 10, 10], [2, 2, 6, 6]])
    crops = [np.ones((10, 10), bool), np.ones((4, 4), bool)]
    source, parent, out_boxes, out_crops = nest(boxes, crops, np.array([1, 0]), 1)
    assert source.tolist() == [1, 0] and parent.tolist() == [1, -1]
    assert preference_order(np.array([10, 1000]), None).tolist() == [1, 0]
    assert preference_order(np.array([10, 1000]), np.array([0.99, 0.9])).tolist() == [0, 1]
