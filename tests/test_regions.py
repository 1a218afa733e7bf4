"""Regions keeps masks as crops: construction, selection with parents, visible parts, resizing."""

import cv2
import numpy as np
import pytest

from som.regions import Regions


def nested_family():
    """A whole (0) with two parts (1, 2), part 2 with a part of its own (3), and a separate root (4)."""
    h, w = 60, 80
    m = np.zeros((5, h, w), bool)
    m[0, 5:55, 5:50] = True
    m[1, 10:20, 10:30] = True
    m[2, 30:50, 10:45] = True
    m[3, 35:45, 15:25] = True
    m[4, 20:40, 60:75] = True
    return Regions.from_masks(m, scores=np.linspace(0.9, 0.5, 5), parent=np.array([-1, 0, 0, 2, -1])), m


def test_from_masks_keeps_tight_crops_and_full_masks_come_back():
    r, m = nested_family()
    assert r.image_hw == (60, 80)
    assert r.xyxy.tolist()[0] == [5, 5, 50, 55]
    assert [c.shape for c in r.crops][:2] == [(50, 45), (10, 20)]
    assert np.array_equal(r.full_masks(), m)
    assert np.array_equal(r.mask(3), m[3])
    assert r.areas.tolist() == m.sum(axis=(1, 2)).tolist()
    assert r.depth().tolist() == [0, 1, 1, 2, 0]
    assert r.children(0).tolist() == [1, 2]


def test_visible_parts_are_the_mask_minus_the_children():
    r, m = nested_family()
    vis = Regions.from_crops(r.boxes_px, r.visible_crops(), r.image_hw).full_masks()
    assert np.array_equal(vis[0], m[0] & ~m[1] & ~m[2])
    assert np.array_equal(vis[2], m[2] & ~m[3])
    assert np.array_equal(vis[3], m[3])
    assert vis.sum(axis=0).max() == 1
    lm = r.label_map()
    assert lm[40, 20] == 4 and lm[40, 40] == 3 and lm[7, 7] == 1 and lm[0, 0] == 0
    back = Regions.from_visible_map(lm, r.parent)
    assert np.array_equal(back.full_masks(), m) and back.xyxy.tolist() == r.xyxy.tolist()


def test_selecting_regions_links_each_to_its_nearest_selected_ancestor():
    r, _ = nested_family()
    assert r[[0, 3]].parent.tolist() == [-1, 0]
    assert r[[3, 2]].parent.tolist() == [1, -1]
    assert r[[3]].parent.tolist() == [-1]
    whole = r[0]
    assert whole.visible_crops()[0].sum() == r.areas[0], "a whole alone shows its parts too"
    labelled = r.replace(labels=list("abcde"))
    assert labelled.select_labels(["c", "x", "a"]).labels == ["c", "a"]


@pytest.mark.parametrize("hw", [(120, 160), (31, 43), (600, 800)])
def test_resized_masks_equal_opencv_nearest_resize(hw):
    r, m = nested_family()
    out = r.resized(*hw)
    expect = np.stack([cv2.resize(x.astype(np.uint8), hw[::-1], interpolation=cv2.INTER_NEAREST) > 0 for x in m])
    assert np.array_equal(out.full_masks(), expect)
    assert out.parent.tolist() == r.parent.tolist() and out.image_hw == hw
    assert out.xyxy.tolist() == Regions.from_masks(expect).xyxy.tolist()


def test_from_crops_tightens_and_bad_input_says_what_is_wrong():
    r = Regions.from_crops(np.array([[2, 3, 12, 13]]), [np.pad(np.ones((4, 4), bool), 3)], (20, 20))
    assert r.xyxy.tolist() == [[5, 6, 9, 10]]
    with pytest.raises(ValueError, match="crop 0 has shape"):
        Regions([np.ones((3, 3), bool)], np.array([[0, 0, 4, 4]]), (10, 10))
    with pytest.raises(ValueError, match="inside the image"):
        Regions([np.ones((4, 4), bool)], np.array([[8, 8, 12, 12]]), (10, 10))
    with pytest.raises(ValueError, match="parent"):
        Regions([np.ones((4, 4), bool)], np.array([[0, 0, 4, 4]]), (10, 10), parent=np.array([0]))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        Regions.from_masks(np.ones((4, 4), bool))
    empty = Regions.empty(10, 12)
    assert len(empty) == 0 and empty.full_masks().shape == (0, 10, 12)


def test_from_label_map_one_region_per_label():
    lm = np.zeros((10, 10), np.int32)
    lm[1:3, 1:4] = 1
    lm[5:9, 5:6] = 3
    r = Regions.from_label_map(lm)
    assert len(r) == 2 and r.xyxy.tolist() == [[1, 1, 4, 3], [5, 5, 6, 9]]
