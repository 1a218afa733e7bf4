"""Class names on regions (`Regions.categories`, `category_scores`): every operation keeps them
with their regions, the marks JSON carries them, and old files without them still read.

The regions are MobileSAM's masks of clicks on coffee.jpg (overlapping, nested: a part, its
object, the object with its saucer); the names are given here, as a segmenter that knows
classes (SEEM) would give them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from som.marksfile import regions_from_dict, regions_to_dict
from som.pipeline import mark_regions
from som.refine import RefineOptions, refine
from som.regions import Regions

COFFEE = Path(__file__).resolve().parents[1] / "assets" / "coffee.jpg"
CLICKS = [(300, 100), (300, 200), (100, 330), (480, 300)]  # cup, cup front, saucer, spoon side


@pytest.fixture(scope="module")
def image():
    from som.imageio import load_image

    return load_image(COFFEE)


@pytest.fixture(scope="module")
def named(image) -> Regions:
    """Every mask choice of four clicks, each named c<k> with score k/10; scores = k track sources."""
    from som.pipeline import cached_segmenter

    seg = cached_segmenter("mobile-sam", "cpu")
    parts = [seg.segment_prompt_choices(image, np.array([xy])) for xy in CLICKS]
    boxes = np.concatenate([p.boxes_px for p in parts])
    crops = [c for p in parts for c in p.crops]
    n = len(crops)
    assert n >= 8
    return Regions(crops, boxes, image.shape[:2], scores=np.arange(n, dtype=np.float32),
                   categories=[f"c{k}" for k in range(n)], category_scores=np.arange(n, dtype=np.float32) / 10)


def _follow(r: Regions) -> None:
    """Each region's name is the one of the input region it came from (scores = source index)."""
    src = r.scores.astype(int)
    assert r.categories == [f"c{k}" for k in src]
    np.testing.assert_allclose(r.category_scores, src / 10, rtol=1e-6)


def test_selection_resize_and_visible_keep_names(named):
    pick = named[[5, 0, 3]]
    assert pick.categories == ["c5", "c0", "c3"]
    _follow(pick)
    _follow(named[named.areas > np.median(named.areas)])
    small = named.resized(200, 300)
    assert small.image_hw == (200, 300)
    _follow(small)
    nested = refine(named, RefineOptions(nested=True, min_area_frac=0.001))
    assert nested.nested
    _follow(nested.visible())
    assert "categories=" in repr(pick)


@pytest.mark.parametrize("nested", [False, True])
def test_refine_and_marking_keep_names_with_their_regions(image, named, nested):
    r = refine(named, RefineOptions(nested=nested, min_area_frac=0.001))
    assert 2 <= len(r) < len(named)  # de-overlap / nesting dropped and reordered regions
    _follow(r)
    result = mark_regions(image, named, refine_options=RefineOptions(nested=nested, min_area_frac=0.001))
    _follow(result.regions)
    assert result.regions.labels == [str(k) for k in range(1, len(result.regions) + 1)]


def test_marks_json_round_trip_and_old_files(image, named):
    result = mark_regions(image, named, refine_options=RefineOptions(nested=True, min_area_frac=0.001))
    doc = json.loads(json.dumps(regions_to_dict(result.regions)))
    assert doc["version"] == 2
    assert [m["category"] for m in doc["marks"]] == result.regions.categories
    back = regions_from_dict(doc)
    assert back.categories == result.regions.categories
    np.testing.assert_allclose(back.category_scores, result.regions.category_scores, atol=1e-4)
    assert back.parent.tolist() == result.regions.parent.tolist()

    # a file written before class names (no keys) and one of a segmenter without classes (nulls)
    for m in doc["marks"]:
        del m["category"], m["category_score"]
    assert regions_from_dict(doc).categories is None
    plain = regions_to_dict(result.regions.replace(categories=None, category_scores=None))
    assert all(m["category"] is None and m["category_score"] is None for m in plain["marks"])
    old = regions_from_dict(plain)
    assert old.categories is None and old.category_scores is None

    # a mark without a name among named ones (a click in the toolbox): null in JSON, "" in Python
    mixed = result.regions.replace(categories=["", *result.regions.categories[1:]],
                                   category_scores=np.r_[np.nan, result.regions.category_scores[1:]])
    doc = regions_to_dict(mixed)
    assert doc["marks"][0]["category"] is None and doc["marks"][0]["category_score"] is None
    back = regions_from_dict(doc)
    assert back.categories == mixed.categories and np.isnan(back.category_scores[0])


def test_wrong_lengths_say_what_is_wrong(named):
    with pytest.raises(ValueError, match="categories has 2 entries for"):
        named.replace(categories=["a", "b"])
    with pytest.raises(ValueError, match="category_scores has 1 entries"):
        named.replace(category_scores=np.ones(1))


def test_to_detections_carries_class_names(named):
    pytest.importorskip("supervision")
    det = named[[0, 1, 2]].replace(categories=["cup", "cup", "saucer"]).to_detections()
    assert det.data["class_name"].tolist() == ["cup", "cup", "saucer"]
    assert det.class_id.tolist() == [0, 0, 1]


CLASS_NAMES = ["cup", "coffee", "saucer", "spoon", "table", "dining table with a very long name indeed"]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_drawing_names_beside_the_numbers(image, named, artifacts):
    from PIL import Image

    from som.draw import MarkStyle
    from som.layout import font_size_px, label_box_size, mark_text

    nested = refine(named, RefineOptions(nested=True, min_area_frac=0.001))
    cats = [CLASS_NAMES[k % len(CLASS_NAMES)] for k in range(len(nested))]
    cats[-1] = ""  # one unnamed region: its mark is the number alone
    regions = nested.replace(categories=cats)
    plain = mark_regions(image, regions, refine_options=None)
    shown = mark_regions(image, regions, style=MarkStyle(names=True), refine_options=None)
    Image.fromarray(shown.image).save(artifacts / "names_coffee.png")
    r = shown.regions
    assert r.labels == plain.regions.labels and r.categories == cats
    h, w = r.image_hw
    boxes = r.label_xyxy.astype(int)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        text = mark_text(r.labels[k], cats[k])
        assert (x2 - x1, y2 - y1) == label_box_size(text, font_size_px(h, w))  # sized for its text
        for j in range(k):
            assert not _overlap(boxes[k], boxes[j]), (k, j)
    widths = boxes[:, 2] - boxes[:, 0]
    plain_widths = plain.regions.label_xyxy[:, 2] - plain.regions.label_xyxy[:, 0]
    assert (widths[:-1] > plain_widths[:-1]).all() and widths[-1] == plain_widths[-1]
    assert mark_text("3", CLASS_NAMES[-1]).endswith("…") and len(mark_text("3", CLASS_NAMES[-1])) == 3 + 24
    # the label boxes are drawn: filled with the region's colour, text inside
    from som.draw import color_for

    x1, y1, x2, y2 = boxes[0]
    patch = shown.image[y1:y2, x1:x2].reshape(-1, 3)
    assert (patch == color_for(r.labels[0])).all(axis=1).mean() > 0.5
    assert not (patch == color_for(r.labels[0])).all(axis=1).all()
    # no categories: names=True draws the same picture as before
    unnamed = nested.replace(categories=None, category_scores=None)
    assert np.array_equal(mark_regions(image, unnamed, style=MarkStyle(names=True), refine_options=None).image,
                          mark_regions(image, unnamed, refine_options=None).image)


def test_dataset_records_and_marks_carry_a_segmenters_class_names(tmp_path):
    """The dataset's segmenter path keeps class names from segmentation to the marks JSON and the
    listing answer (superpixel regions of a real photo, named here as seem would name them)."""
    from PIL import Image

    from som.dataset.core import BuildConfig, ImageJob, finish_job, segment_job
    from som.segmenters.superpixel import SuperpixelSegmenter

    path = tmp_path / "coffee.png"
    Image.open(COFFEE).save(path)
    cfg = BuildConfig(segmenter="superpixel", granularity="3", tasks=("listing",))
    job = ImageJob(0, "coffee", str(path))
    segmented = segment_job(job, cfg, SuperpixelSegmenter())
    assert segmented["categories"] == ""  # superpixel names nothing
    n = len(np.frombuffer(segmented["scores"], np.float32))
    names = ["cup", *[""] * (n - 1)]
    segmented["categories"] = json.dumps(names)
    out = finish_job(job, cfg, segmented)
    marks = json.loads(out["marks"])["marks"]
    assert [m["category"] for m in marks].count("cup") == 1 and sum(m["category"] is None for m in marks) == n - 1
    listing = json.loads(out["part"])["records"][0]["conversations"][1]["value"].splitlines()
    cup = next(m["label"] for m in marks if m["category"] == "cup")
    assert f"[{cup}] cup" in listing and sum(" a region at the " in line for line in listing) == n - 1


def test_names_that_leave_no_room_fall_back_to_numbers(image, named):
    from som.draw import MarkStyle

    small = refine(named, RefineOptions(min_area_frac=0.001)).resized(60, 90)
    small = small.replace(categories=["a rather long class name"] * len(small))
    tiny = np.ascontiguousarray(image[::400 // 60, ::600 // 90][:60, :90])
    result = mark_regions(tiny, small, style=MarkStyle(names=True), refine_options=None)
    assert not result.style.names and "names_dropped" in result.settings
    plain = mark_regions(tiny, small, refine_options=None)
    assert np.array_equal(result.image, plain.image)
