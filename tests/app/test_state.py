"""ToolboxSession without a server: the rules of interactive editing (fake and superpixel segmenters)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from som.app.state import (
    Gesture,
    ToolboxSession,
    UserError,
    make_refine_options,
    make_style,
    polyline_mask,
    stroke_to_points,
)
from som.imageio import ImageError
from som.marksfile import read_marks
from som.regions import Regions

from pathlib import Path

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"


class DiscSegmenter:
    """A fake promptable segmenter: a disc of radius r around the first positive point, minus
    discs around negative points; a box gives the box. Counts its calls."""

    name = "disc"
    device = "cpu"

    def __init__(self, r: int = 40):
        self.r, self.calls = r, 0

    def segment_prompts(self, image, points_xy=None, point_labels=None, box_xyxy=None):
        self.calls += 1
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        m = np.zeros((h, w), bool)
        if box_xyxy is not None:
            x1, y1, x2, y2 = np.asarray(box_xyxy, int)
            m[y1:y2, x1:x2] = True
        if points_xy is not None:
            for (x, y), lab in zip(points_xy, point_labels):
                disc = (xx - x) ** 2 + (yy - y) ** 2 <= self.r**2
                m = m | disc if lab else m & ~disc
        return Regions.from_masks(m[None], scores=np.ones(1, np.float32))


@pytest.fixture
def session():
    s = ToolboxSession()
    s.load(str(COFFEE), name="coffee.jpg")
    yield s
    s.close()


STYLE = make_style(["Mark", "Mask", "Contour"])


def test_load_sets_image_and_clean_copy(session):
    assert session.source.shape == (400, 600, 3)
    r = session.render(STYLE)
    assert r.rows == [] and r.clean_png.endswith("coffee.png")
    assert np.array_equal(np.asarray(__import__("PIL.Image").Image.open(r.clean_png)), session.source)


@pytest.mark.parametrize("data, msg", [(b"hello, not an image", "not an image"), (b"", "empty")])
def test_load_bad_bytes_is_readable(data, msg):
    s = ToolboxSession()
    with pytest.raises(ImageError, match=msg):
        s.load(data, name="fake.png")


def test_regions_disjoint_labels_stable_and_undo(session):
    seg = DiscSegmenter(r=50)
    session.add_point(seg, 200, 200)
    first = session.regions().full_masks()[0].copy()
    session.add_point(seg, 260, 200)  # overlaps region 1: must not steal its pixels
    regions = session.regions()
    assert len(regions) == 2
    assert np.array_equal(regions.full_masks()[0], first), "an existing region lost pixels"
    assert not (regions.full_masks()[0] & regions.full_masks()[1]).any()
    rows = session.render(STYLE).rows
    assert [r[0] for r in rows] == ["1", "2"] and [r[-1] for r in rows] == ["point", "point"]
    assert session.undo() and session.n_regions == 1
    assert np.array_equal(session.regions().full_masks()[0], first)
    session.clear()
    assert session.n_regions == 0 and not session.undo()


def test_click_repeating_an_existing_region_adds_nothing(session):
    seg = DiscSegmenter(r=30)
    session.add_point(seg, 300, 200)
    with pytest.raises(UserError, match="inside region 1"):
        session.add_point(DiscSegmenter(r=29), 301, 200, min_area_px=50)
    assert session.n_regions == 1


def test_click_inside_a_region_adds_a_part_and_undo_gives_its_pixels_back(session):
    session.add_point(DiscSegmenter(r=40), 300, 200)
    whole = session.regions().mask(0)
    status = session.add_point(DiscSegmenter(r=12), 310, 200, min_area_px=50)
    assert "part of region 1" in status
    r = session.regions()
    assert r.parent.tolist() == [-1, 0]
    assert np.array_equal(r.mask(0), whole), "the whole keeps its full mask, part included"
    assert not (r.visible_crops()[0].sum() + r.areas[1] - r.areas[0]), "visible parts tile the whole"
    # a click inside the part names the part, not its whole
    with pytest.raises(UserError, match=r"inside region 2 \(a part of region 1\)"):
        session.add_point(DiscSegmenter(r=12), 310, 200, min_area_px=50)
    assert session.undo()
    assert session.regions().parent.tolist() == [-1]
    assert np.array_equal(session.regions().mask(0), whole)


def test_refine_last_with_negative_point(session):
    seg = DiscSegmenter(r=50)
    session.add_point(seg, 300, 200)
    before = int(session.regions().areas[0])
    session.refine_last(seg, 340, 200, positive=False)
    after = session.regions()
    assert int(after.areas[0]) < before
    assert session.gestures[-1].point_labels == [1, 0]


def test_refine_auto_region_is_refused(session):
    masks = np.zeros((1, 400, 600), bool)
    masks[0, 10:100, 10:100] = True
    session.set_automatic(Regions.from_masks(masks), {"segmenter": "x"})
    with pytest.raises(UserError, match="automatic"):
        session.refine_last(DiscSegmenter(), 50, 50, positive=True)


def test_box_as_two_clicks(session):
    seg = DiscSegmenter()
    msg = session.box_click(seg, 100, 100)
    assert "first corner" in msg and session.n_regions == 0 and seg.calls == 0
    session.box_click(seg, 50, 60)
    assert session.n_regions == 1
    assert session.regions().xyxy[0].tolist() == [50, 60, 100, 100]


def test_points_outside_and_tiny_box_are_readable(session):
    with pytest.raises(UserError, match="outside"):
        session.add_point(DiscSegmenter(), 700, 10)
    with pytest.raises(UserError, match="too small"):
        session.add_box(DiscSegmenter(), 10, 10, 11, 11)


def test_stroke_points_spread_along_the_stroke():
    stroke = polyline_mask(np.array([[20, 50], [180, 50]]), 100, 200, thickness=5)
    pts = stroke_to_points(stroke, max_points=5)
    assert 2 <= len(pts) <= 5
    assert pts[:, 0].min() < 40 and pts[:, 0].max() > 160  # covers both ends
    assert np.all(stroke[pts[:, 1].astype(int), pts[:, 0].astype(int)])  # every prompt on the stroke
    dab = polyline_mask(np.array([[50, 50]]), 100, 200)
    assert len(stroke_to_points(dab)) == 1
    with pytest.raises(UserError):
        stroke_to_points(np.zeros((10, 10), bool))


def test_stroke_scaled_from_editor_size(session):
    seg = DiscSegmenter(r=20)
    small = np.zeros((200, 300), bool)  # editor canvas at half size
    small[98:102, 140:160] = True
    session.add_stroke(seg, small)
    x, y = session.gestures[-1].points_xy[0]
    assert 280 <= x <= 320 and 196 <= y <= 204


def test_superpixel_click_and_automatic(session):
    from som.segmenters import build_segmenter

    seg = build_segmenter("superpixel")
    session.add_point(seg, 300, 150)
    assert session.n_regions == 1
    msg = session.run_automatic(seg, 2, STYLE, make_refine_options(0.0005))
    assert "automatic" in msg and session.n_regions > 10
    assert set(np.unique(session.label_map)) - {0} == set(range(1, session.n_regions + 1))


def test_downloads_match_the_picture(session, tmp_path):
    seg = DiscSegmenter(r=40)
    session.add_point(seg, 150, 150)
    session.add_box(seg, 300, 100, 450, 300)
    r = session.render(make_style(["Mark", "Box"], "Alphabet", 0.5))
    regions = read_marks(r.marks_json)
    assert regions.labels == ["a", "b"] == [row[0] for row in r.rows]
    assert np.array_equal(regions.full_masks(), session.regions().full_masks())
    doc = json.loads(open(r.marks_json).read())
    assert doc["format"] == "som.marks" and doc["settings"]["mode"] == "interactive"
    assert [m["made_by"] for m in doc["settings"]["regions"]] == ["point", "box"]


@pytest.mark.parametrize(
    "marks, mode, alpha, ok",
    [(["Mark"], "Number", 0.4, True), (["mask", "BOX"], "alphabet", 1.0, True), ([], "Number", 0.4, False),
     (["Glow"], "Number", 0.4, False), (["Mark"], "Roman", 0.4, False), (["Mark"], "Number", 1.5, False)],
)
def test_make_style(marks, mode, alpha, ok):
    if ok:
        make_style(marks, mode, alpha)
    else:
        with pytest.raises(UserError):
            make_style(marks, mode, alpha)


def test_session_close_removes_files(session):
    d = session._dir()
    assert d.is_dir()
    session.close()
    assert not d.exists()
