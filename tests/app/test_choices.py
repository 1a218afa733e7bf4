"""Mask choices of a click (MobileSAM's three masks, small to large) and the toolbox's Larger / Smaller."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from som.app.state import NothingAdded, UserError, make_style
from som.eval.answers import mask_iou
from som.nest import is_laminar
from som.segmenters.base import middle_choice
from som.segmenters.sam import distinct_choices

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"
CUP_RIM = (300, 100)  # coffee.jpg: a point on the cup (choices: inside of the cup, cup, cup + saucer)
SAUCER = (300, 200)  # a point on the cup's front, whose largest choice is cup and saucer


def test_middle_choice():
    assert [middle_choice(n) for n in (1, 2, 3, 4, 5, 6)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="at least one"):
        middle_choice(0)


def test_sam_choices_small_to_large_and_distinct(mobile_sam, coffee_session):
    image = coffee_session.source
    choices = mobile_sam.segment_prompt_choices(image, np.array([CUP_RIM]))
    assert len(choices) == 3 and choices.scores is not None
    assert (np.diff(choices.areas) > 0).all()
    masks = choices.full_masks()
    assert all(m[CUP_RIM[1], CUP_RIM[0]] for m in masks)  # each contains the click
    assert max(mask_iou(masks[i], masks[j]) for i, j in ((0, 1), (0, 2), (1, 2))) < 0.95
    # one of them is the mask segment_prompts picks (the best predicted IoU)
    best = mobile_sam.segment_prompts(image, np.array([CUP_RIM])).mask(0)
    assert max(mask_iou(best, m) for m in masks) == 1.0
    # a box has choices too
    box = mobile_sam.segment_prompt_choices(image, box_xyxy=np.array([150, 20, 450, 250]))
    assert 1 <= len(box) <= 3 and (np.diff(box.areas) > 0).all()
    # near-duplicates go: the same mask twice leaves one, the higher score's
    twice = choices[[1, 1]].replace(scores=np.array([0.5, 0.9], np.float32))
    once = distinct_choices(twice)
    assert len(once) == 1 and once.scores[0] == np.float32(0.9)


def test_click_adds_middle_choice_then_larger_and_smaller(mobile_sam, coffee_session):
    style = make_style(["Mark", "Mask"])
    choices = mobile_sam.segment_prompt_choices(coffee_session.source, np.array([CUP_RIM])).full_masks()
    line = coffee_session.add_point(mobile_sam, *CUP_RIM)
    assert "mask 2 of 3" in line
    assert mask_iou(coffee_session.regions().mask(0), choices[1]) > 0.97
    assert coffee_session.gestures[-1].choice == 1 and coffee_session.gestures[-1].n_choices == 3

    assert "replaced region 1" in coffee_session.step_choice(1)
    assert mask_iou(coffee_session.regions().mask(0), choices[2]) > 0.97
    before = coffee_session.label_map.copy()
    with pytest.raises(NothingAdded, match="largest of its 3"):
        coffee_session.step_choice(1)
    assert np.array_equal(coffee_session.label_map, before)  # nothing changed at the end
    coffee_session.step_choice(-1)
    coffee_session.step_choice(-1)
    assert mask_iou(coffee_session.regions().mask(0), choices[0]) > 0.97
    with pytest.raises(NothingAdded, match="smallest"):
        coffee_session.step_choice(-1)
    assert coffee_session.n_regions == 1 and coffee_session.gestures[-1].choice == 0
    assert coffee_session.settings(style)["regions"][0]["choice"] == 0

    assert coffee_session.undo() and coffee_session.n_regions == 0  # undo removes the stepped region
    with pytest.raises(UserError, match="right after a click"):
        coffee_session.step_choice(1)


def test_stepping_a_part_keeps_the_family_nested(mobile_sam, coffee_session):
    coffee_session.add_point(mobile_sam, *SAUCER)
    coffee_session.step_choice(1)  # cup and saucer: the whole
    whole_px = int((coffee_session.label_map == 1).sum())
    assert "as a part of region 1" in coffee_session.add_point(mobile_sam, *CUP_RIM)
    for step in (1, -1, -1):
        line = coffee_session.step_choice(step)
        assert "as a part of region 1" in line and coffee_session.parents == [0, 1]
        r = coffee_session.regions()
        assert is_laminar(r.boxes_px, r.crops, r.parent)
        assert int(r.areas[0]) == whole_px  # the whole's full mask never changes
    part = coffee_session.label_map == 2
    coffee_session.undo()
    assert (coffee_session.label_map[part] == 1).all()  # its pixels go back to the whole
    with pytest.raises(UserError):
        coffee_session.step_choice(1)


def test_segmenter_without_choices_adds_one_mask(coffee_session):
    from som.segmenters.superpixel import SuperpixelSegmenter

    line = coffee_session.add_point(SuperpixelSegmenter(), 300, 200)
    assert "added region 1" in line and "Larger" not in line
    assert coffee_session.gestures[-1].choice is None
    with pytest.raises(UserError, match="mask choices"):
        coffee_session.step_choice(1)
