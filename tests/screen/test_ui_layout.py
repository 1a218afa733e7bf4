"""som.ui_layout / som.ui_marks: labels beside their elements, inside the image, never colliding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from som.layout import label_box_size
from som.ui_layout import boxes_overlap, ink_map, place_ui_labels, ui_font_px
from som.ui_marks import UIMarkStyle, draw_ui_marks, layout_ui_marks


def sizes(n, font=13):
    return [label_box_size(str(i + 1), font) for i in range(n)]


def check(p, boxes, hw, own_free=True):
    lab = p.label_xyxy
    h, w = hw
    assert (lab[:, :2] >= 0).all() and (lab[:, 2] <= w).all() and (lab[:, 3] <= h).all()
    ov = boxes_overlap(lab, lab)
    np.fill_diagonal(ov, 0)
    assert ov.max(initial=0) == 0
    if own_free:
        assert (boxes_overlap(lab, boxes).diagonal() == 0).all()


def test_label_sits_at_the_top_left_corner_outside():
    boxes = np.array([[100, 100, 200, 130]])
    p = place_ui_labels(boxes, sizes(1), (400, 600))
    w, h = sizes(1)[0]
    assert p.label_xyxy[0].tolist() == [100, 100 - h, 100 + w, 100] and p.attached.all()
    assert p.anchors_xy[0].tolist() == [100, 100]


@pytest.mark.parametrize(
    "box,where",
    [([0, 0, 50, 20], "right"), ([550, 380, 600, 400], "above"), ([0, 380, 40, 400], "above")],
)
def test_elements_at_the_image_border(box, where):
    p = place_ui_labels(np.array([box]), sizes(1), (400, 600))
    check(p, np.array([box]), (400, 600))
    lx1, ly1, lx2, ly2 = p.label_xyxy[0]
    if where == "right":
        assert lx1 == box[2]
    else:
        assert ly2 == box[1]


def test_dense_list_labels_go_beside_each_row_unambiguously():
    # a sidebar: 30 rows of 16 px, 1 px apart, with room on the left
    boxes = np.array([[60, 20 + 17 * i, 160, 36 + 17 * i] for i in range(30)])
    p = place_ui_labels(boxes, sizes(30), (600, 400))
    check(p, boxes, (600, 400))
    assert p.attached.all()
    # each label touches its own row and no other row
    for k, lab in enumerate(p.label_xyxy):
        near = [j for j, b in enumerate(boxes) if max(b[0] - lab[2], lab[0] - b[2], b[1] - lab[3], lab[1] - b[3]) <= 0]
        assert near == [k], f"label {k + 1} touches rows {near}"


def test_ink_steers_labels_off_page_text():
    boxes = np.array([[100, 100, 180, 120]])
    ink = np.zeros((300, 400), bool)
    ink[80:100, 100:140] = True  # text right above the element's top-left corner
    p = place_ui_labels(boxes, sizes(1), (300, 400), ink)
    assert not ink[p.label_xyxy[0, 1] : p.label_xyxy[0, 3], p.label_xyxy[0, 0] : p.label_xyxy[0, 2]].any()


def test_crowded_image_falls_back_to_free_space_with_a_leader():
    boxes = np.array([[0, 0, 120, 60]] + [[130, 0, 200, 60]])  # fill the top, the labels need the bottom
    p = place_ui_labels(boxes, sizes(2, 20), (90, 200))
    check(p, boxes, (90, 200), own_free=False)
    with pytest.raises(ValueError, match="no room left"):
        place_ui_labels(np.array([[0, 0, 20, 10]] * 40), sizes(40, 20), (40, 60))
    with pytest.raises(ValueError, match="larger than"):
        place_ui_labels(np.array([[0, 0, 5, 5]]), [(50, 50)], (20, 20))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 560), st.integers(0, 360), st.integers(4, 120), st.integers(4, 40)), min_size=1, max_size=40))
def test_random_layouts_keep_the_invariants(rects):
    boxes = np.array([[x, y, min(600, x + w), min(400, y + h)] for x, y, w, h in rects])
    p = place_ui_labels(boxes, sizes(len(boxes)), (400, 600))
    check(p, boxes, (400, 600), own_free=False)
    assert p.attached.sum() >= 0.5 * len(boxes)


def test_layout_and_draw_ui_marks():
    img = np.full((200, 300, 3), 255, np.uint8)
    img[50:70, 40:120] = 0
    boxes = np.array([[40, 50, 120, 70], [150, 100, 200, 130]])
    regions, p = layout_ui_marks(boxes, (200, 300), UIMarkStyle(), image=img)
    assert regions.labels == ["1", "2"] and np.allclose(regions.xyxy, boxes)
    assert regions.mask(0)[50:70, 40:120].all() and regions.mask(0).sum() == 80 * 20
    out = draw_ui_marks(img, regions, p)
    assert out.shape == img.shape and not np.array_equal(out, img)
    # the element's own pixels are untouched (the outline is drawn outside the box)
    assert np.array_equal(out[50:70, 40:120], img[50:70, 40:120])
    assert np.array_equal(out, draw_ui_marks(img, regions, p)), "deterministic"
    assert ui_font_px(800, 1280) == 13 and ink_map(img)[49:51, 60].any()
    with pytest.raises(ValueError, match="empty"):
        layout_ui_marks(np.array([[10, 10, 10, 20]]), (100, 100))
