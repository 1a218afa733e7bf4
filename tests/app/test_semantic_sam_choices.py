"""The toolbox's Larger / Smaller on Semantic-SAM: a click has up to 6 mask choices, one per
granularity level, and the toolbox walks all of them.

The small configuration of the same model code with seeded random weights (written to a real
checkpoint file): the masks mean nothing, the stepping is what is checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from som.app.state import NothingAdded
from som.eval.answers import mask_iou
from som.segmenters.base import middle_choice

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"
CLICK = (300, 100)  # coffee.jpg, 600x400; with seed 5 this click gives 6 distinct choices


@pytest.fixture(scope="module")
def semantic_sam(tmp_path_factory):
    from som.segmenters import build_segmenter
    from som.segmenters.semantic_sam.config import SMALL_OVERRIDES
    from som.segmenters.semantic_sam.random_checkpoint import write_random_checkpoint

    path = tmp_path_factory.mktemp("ssam") / "small.pth"
    write_random_checkpoint(path, seed=5, config=SMALL_OVERRIDES)
    return build_segmenter("semantic-sam", device="cpu", checkpoint=path, config=SMALL_OVERRIDES, short_side_px=128)


def test_toolbox_steps_through_all_six_choices(semantic_sam, coffee_session):
    choices = semantic_sam.segment_prompt_choices(coffee_session.source, np.array([CLICK])).full_masks()
    n = len(choices)
    assert n == 6
    start = middle_choice(n)  # the third of six
    line = coffee_session.add_point(semantic_sam, *CLICK)
    assert f"mask {start + 1} of {n}" in line
    assert mask_iou(coffee_session.regions().mask(0), choices[start]) > 0.97
    for index in range(start + 1, n):  # Larger up to the largest
        coffee_session.step_choice(1)
        assert coffee_session.gestures[-1].choice == index
        assert mask_iou(coffee_session.regions().mask(0), choices[index]) > 0.97
    with pytest.raises(NothingAdded, match=f"largest of its {n}"):
        coffee_session.step_choice(1)
    for index in range(n - 2, -1, -1):  # Smaller down to the smallest
        coffee_session.step_choice(-1)
        assert mask_iou(coffee_session.regions().mask(0), choices[index]) > 0.97
    with pytest.raises(NothingAdded, match="smallest"):
        coffee_session.step_choice(-1)
    assert coffee_session.n_regions == 1 and coffee_session.gestures[-1].n_choices == n
