"""The toolbox's Larger / Smaller on Semantic-SAM: a click has up to 6 mask choices, one per
granularity level, and the toolbox walks all of them.

The small configuration of the same model code with seeded random weights (written to a real
checkpoint file): the masks mean nothing, the stepping is what is checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from som.app.state import NothingAdded, ToolboxSession
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


@pytest.fixture
def session():
    s = ToolboxSession()
    s.load(str(COFFEE), name="coffee.jpg")
    yield s
    s.close()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_toolbox_steps_through_all_six_choices(semantic_sam, session):
    choices = semantic_sam.segment_prompt_choices(session.source, np.array([CLICK])).full_masks()
    n = len(choices)
    assert n == 6
    start = middle_choice(n)  # the third of six
    line = session.add_point(semantic_sam, *CLICK)
    assert f"mask {start + 1} of {n}" in line
    assert _iou(session.regions().mask(0), choices[start]) > 0.97
    for index in range(start + 1, n):  # Larger up to the largest
        session.step_choice(1)
        assert session.gestures[-1].choice == index
        assert _iou(session.regions().mask(0), choices[index]) > 0.97
    with pytest.raises(NothingAdded, match=f"largest of its {n}"):
        session.step_choice(1)
    for index in range(n - 2, -1, -1):  # Smaller down to the smallest
        session.step_choice(-1)
        assert _iou(session.regions().mask(0), choices[index]) > 0.97
    with pytest.raises(NothingAdded, match="smallest"):
        session.step_choice(-1)
    assert session.n_regions == 1 and session.gestures[-1].n_choices == n
