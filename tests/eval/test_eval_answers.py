"""Answers written the way real models write them, read and scored: tables of cases on
hand-made nested marks (a whole holding two parts), boxes in every common notation, phrase and
vocabulary matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from som.eval.answers import match_phrases, match_vocabulary, parse_box
from som.eval.conditions import Condition, Marked
from som.eval.data import EvalData, EvalImage, GTObject, Phrase, Sample
from som.eval.tasks import TASK_SPECS, ScoreContext
from som.marksfile import encode_rle
from som.regions import Regions

H = W = 100


def _rect(y1, y2, x1, x2) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


WHOLE = _rect(10, 90, 10, 90)  # 6400 px
PART_A = _rect(20, 80, 15, 45)  # 1800 px: the two parts cover 56% of the whole, its visible part 44%
PART_B = _rect(20, 80, 55, 85)
OTHER = _rect(92, 99, 0, 100)


def _marked(labels=("1", "2", "3", "4")) -> Marked:
    regions = Regions.from_masks(np.stack([WHOLE, PART_A, PART_B, OTHER]), parent=[-1, 0, 0, -1], labels=list(labels))
    return Marked(np.zeros((H, W, 3), np.uint8), regions)


def _ctx(targets, task="refer", vocabulary=(), objects=None, marked=None) -> tuple[Sample, ScoreContext]:
    image = EvalImage("x.png", Path("x.png"), H, W, objects=list(objects or targets))
    sample = Sample("s", "x.png", "the thing", targets=list(targets))
    data = EvalData(task, {"x.png": image}, [sample], vocabulary=list(vocabulary))
    return sample, ScoreContext(data, image, marked or _marked(), (H, W))


def _obj(mask, category=None) -> GTObject:
    return GTObject(category, H, W, segmentation=encode_rle(mask))


@pytest.mark.parametrize(
    "answer, parsed, hit",
    [
        ("[1]", ["1"], 1),  # the whole: its FULL mask (parts included) is scored
        ("**[1]** is the box with both handles.", ["1"], 1),
        ("Mark 1.", ["1"], 1),
        ("The answer is region 1: the whole object.", ["1"], 1),
        ("I would say it's #1.", ["1"], 1),
        ("[2]", ["2"], 0),  # one part is not the whole
        ("[2, 3]", ["2", "3"], 1),  # both parts together: 3600 of the whole's 6400 px, IoU 0.56
        ("[1, 2]", ["1", "2"], 1),  # a part inside the named whole adds nothing
        ("[none]", [], 0),
        ("Nothing matches.", [], 0),
        ("[7]", [], 0),  # not on the picture
        ("[4]", ["4"], 0),
    ],
)
def test_refer_answers_on_nested_marks(answer, parsed, hit):
    sample, ctx = _ctx([_obj(WHOLE)])
    out = TASK_SPECS["refer"].score(sample, Condition("gt"), answer, ctx)
    assert out["parsed"] == parsed
    assert out["counts"] == {"hit": hit, "n": 1}


def test_whole_scored_with_full_mask_not_visible_part():
    sample, ctx = _ctx([_obj(WHOLE)])
    assert TASK_SPECS["refer"].score(sample, Condition("gt"), "[1]", ctx)["iou"] == 1.0
    visible = WHOLE & ~PART_A & ~PART_B
    assert np.count_nonzero(visible) / np.count_nonzero(WHOLE) < 0.5  # the visible part alone would miss


def test_letter_marks():
    sample, ctx = _ctx([_obj(PART_B)], marked=_marked(("a", "b", "c", "d")))
    out = TASK_SPECS["refer"].score(sample, Condition("gt", label_mode="alphabet"), "It is mark c.", ctx)
    assert out["parsed"] == ["c"] and out["counts"]["hit"] == 1


def test_box_ground_truth_compares_boxes():
    target = GTObject(None, H, W, box_xyxy=(15, 20, 45, 80))
    sample, ctx = _ctx([target])
    assert TASK_SPECS["refer"].score(sample, Condition("gt"), "[2]", ctx)["iou"] == 1.0


@pytest.mark.parametrize(
    "text, sent_hw, units, box",
    [
        ("[10, 20, 110, 220]", (500, 1000), "px", (10, 20, 110, 220)),
        ("The box is [12.5, 30, 40.5, 70].", (500, 1000), "px", (12.5, 30, 40.5, 70)),
        ("[[10, 20, 110, 220]]", (500, 1000), "px", (10, 20, 110, 220)),
        ("(10, 20), (110, 220)", (500, 1000), "px", (10, 20, 110, 220)),
        ('{"x1": 10, "y1": 20, "x2": 110, "y2": 220}', (500, 1000), "px", (10, 20, 110, 220)),
        ("xmin=10, ymin=20, xmax=110, ymax=220", (500, 1000), "px", (10, 20, 110, 220)),
        ("[110, 220, 10, 20]", (500, 1000), "px", (10, 20, 110, 220)),  # corners in any order
        ("[10, 20, 110, 220]", (250, 500), "px", (20, 40, 220, 440)),  # the model saw a half-size picture
        ("[0.1, 0.2, 0.5, 0.6]", (500, 1000), "px", (100, 100, 500, 300)),  # fractions
        ("[100, 200, 500, 600]", (500, 1000), "norm1000", (100, 100, 500, 300)),  # Qwen-VL 0-1000
        ("<box>(100,200),(500,600)</box>", (500, 1000), "norm1000", (100, 100, 500, 300)),
        ("[0.1, 0.2, 0.5, 0.6]", (500, 1000), "norm1", (100, 100, 500, 300)),
        ("I cannot find it.", (500, 1000), "px", None),
        ("It is mark [3].", (500, 1000), "px", None),
    ],
)
def test_parse_box(text, sent_hw, units, box):
    got = parse_box(text, sent_hw, (500, 1000), units)
    assert got == (None if box is None else pytest.approx(box))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("person", "person"),
        ("A person", "person"),
        ("people", None),
        ("persons", "person"),
        ("a red coffee mug", "mug"),
        ("Bottles", "bottle"),
        ("dining table", "dining table"),
        ("diningtable", "dining table"),
        ("avery_binder", "avery binder"),
        ("the Avery binder on the left", "avery binder"),
        ("pottedplant", None),
        ("unknown", None),
        ("bottel", "bottle"),
        ("", None),
    ],
)
def test_match_vocabulary(text, expected):
    vocab = ["person", "mug", "coffee", "bottle", "dining table", "avery binder", "cup"]
    assert match_vocabulary(text, vocab) == expected


def test_match_phrases():
    asked = ["A man", "a bottle", "two women"]
    answered = {"two women": ["5", "6"], "man": ["1"], "a botle": ["3"], "the street": ["9"]}
    assert match_phrases(asked, answered) == {0: ["1"], 1: ["3"], 2: ["5", "6"]}
    assert match_phrases(asked, {}) == {0: None, 1: None, 2: None}


def test_ground_answer_lines():
    a, b = _obj(WHOLE), _obj(OTHER)
    image = EvalImage("x.png", Path("x.png"), H, W, objects=[a, b])
    sample = Sample("s", "x.png", "A box and a shelf.", phrases=[Phrase("A box", [a]), Phrase("a shelf", [b])])
    data = EvalData("ground", {"x.png": image}, [sample])
    ctx = ScoreContext(data, image, _marked(), (H, W))
    answer = "Here you go:\n- **a shelf**: [4]\n- A box: [2]\n"
    out = TASK_SPECS["ground"].score(sample, Condition("gt"), answer, ctx)
    assert [p["parsed"] for p in out["parsed"]] == [["2"], ["4"]]
    assert out["counts"] == {"hit": 1, "n": 2}
    boxes = "A box: [10, 10, 90, 90]\na shelf: none"
    out = TASK_SPECS["ground"].score(sample, Condition("none"), boxes, ctx)
    assert out["counts"] == {"hit": 1, "n": 2}


def test_label_part_takes_its_wholes_category():
    objs = [_obj(WHOLE, "cabinet"), _obj(OTHER, "shelf")]
    sample, ctx = _ctx(objs, task="label", vocabulary=["cabinet", "shelf", "handle"], objects=objs)
    out = TASK_SPECS["label"].score(sample, Condition("gt"), "[1] cabinet\n[2] unknown\n[3] handle\n[4] shelf", ctx)
    assert out["parsed"] == {"1": "cabinet", "2": None, "3": "handle", "4": "shelf"}
    c = out["counts"]
    # part 2 inherits "cabinet"; part 3 is painted "handle", which is not in the ground truth
    assert c["I:cabinet"] == 6400 - 1800 and c["U:cabinet"] == 6400
    assert c["I:shelf"] == c["U:shelf"] == 700 and c["U:handle"] == 1800 and c["I:handle"] == 0
    m = TASK_SPECS["label"].metrics(c)
    assert m["mIoU"] == pytest.approx(((6400 - 1800) / 6400 + 1.0 + 0.0) / 3)
