"""Class names in the toolbox (table column, marks JSON, Names mark type) and the clear refusals of
class vocabularies and text prompts by segmenters without them (CLI, Python, toolbox, tools)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from som.app.state import (
    CLASS_HEADER,
    TABLE_HEADERS,
    NothingAdded,
    UserError,
    make_style,
)
from som.marksfile import read_marks
from som.refine import RefineOptions, refine
from som.regions import Regions

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "assets" / "coffee.jpg"


def _named_regions(seg, image) -> Regions:
    """MobileSAM's masks of two clicks, nested, named as a segmenter that knows classes would."""
    parts = [seg.segment_prompt_choices(image, np.array([xy])) for xy in [(300, 100), (100, 330)]]
    r = Regions([c for p in parts for c in p.crops], np.concatenate([p.boxes_px for p in parts]), image.shape[:2])
    r = refine(r, RefineOptions(nested=True, min_area_frac=0.001))
    names = ["saucer", "cup", "coffee", "spoon", "table", "rim"][: len(r)]
    return r.replace(categories=names, category_scores=np.linspace(0.9, 0.5, len(r)))


def test_names_mark_type():
    assert make_style(["Mark", "Names"]).names and not make_style(["Mark"]).names
    with pytest.raises(UserError, match="at least one mark type"):
        make_style(["Names"])


def test_class_column_json_and_clicks_among_named_marks(mobile_sam, coffee_session):
    style = make_style(["Mark", "Mask", "Names"])
    plain = coffee_session.render(style)
    assert plain.headers == TABLE_HEADERS  # no classes: the table as before
    named = _named_regions(mobile_sam, coffee_session.source)
    coffee_session.set_automatic(named, {"segmenter": "mobile-sam"})
    r = coffee_session.render(style)
    assert r.headers == [*TABLE_HEADERS, CLASS_HEADER]  # the class column comes last
    assert [row[-1] for row in r.rows] == named.categories
    assert [row[:-1][-1] for row in r.rows] == ["auto"] * len(named)
    back = read_marks(r.marks_json)
    assert back.categories == named.categories
    doc = json.loads(Path(r.marks_json).read_text())
    assert [m["category"] for m in doc["marks"]] == named.categories

    # a click on background adds an unnamed mark: "" in the table, null in the JSON
    free = np.argwhere(coffee_session.label_map == 0)
    y, x = free[len(free) // 2]
    try:
        coffee_session.add_point(mobile_sam, float(x), float(y))
    except NothingAdded:
        pytest.skip("no free object at that pixel")
    r = coffee_session.render(style)
    assert r.rows[-1][-1] == "" and r.rows[-1][-2] == "point"
    assert json.loads(Path(r.marks_json).read_text())["marks"][-1]["category"] is None
    coffee_session.undo()
    assert coffee_session.regions().categories == named.categories


def test_segmenters_without_classes_or_text_say_so(mobile_sam, coffee_session, tmp_path, capsys):
    from som.cli import main
    from som.pipeline import mark

    with pytest.raises(UserError, match="'mobile-sam' takes no text prompts"):
        coffee_session.add_text(mobile_sam, "the red mug")
    with pytest.raises(UserError, match="type what to find"):
        coffee_session.add_text(mobile_sam, "  ")
    with pytest.raises(ValueError, match="'superpixel' has no class vocabulary; use the 'seem' segmenter"):
        mark(COFFEE, segmenter="superpixel", classes="mug, saucer")
    assert mark(COFFEE, segmenter="superpixel", classes=" , ").settings.get("classes") is None  # empty: none
    code = main(["mark", str(COFFEE), "-o", str(tmp_path), "--segmenter", "superpixel", "--classes", "mug,laptop"])
    assert code == 1 and "has no class vocabulary" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before any image was marked


def test_toolbox_endpoints_refuse_classes_and_text(client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client.predict(handle_file(str(COFFEE)), "superpixel", api_name="/load_image")
    with pytest.raises(AppError, match="has no class vocabulary"):
        client.predict(segmenter="superpixel", classes="mug, laptop", api_name="/segment_auto")
    with pytest.raises(AppError, match="takes no text prompts"):
        client.predict(text="the red mug", segmenter="superpixel", api_name="/add_text")
    out = client.predict(segmenter="superpixel", granularity=3, api_name="/segment_auto")  # no classes: as before
    assert out[1]["headers"][-1] == "made by"
