"""som.threads: per-region work on threads keeps order and survives fork."""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

from som.threads import map_ordered


def _square_sums(n: int) -> list[int]:
    return map_ordered(lambda k: int(np.square(np.arange(k)).sum()), range(n))


def test_map_ordered_keeps_input_order():
    assert _square_sums(50) == [int(np.square(np.arange(k)).sum()) for k in range(50)]
    assert map_ordered(str, []) == []


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_map_ordered_in_a_forked_child_after_the_parent_used_threads():
    """Dataset workers fork from a parent that may have run refine already: a child must
    not wait on its parent's pool threads (which do not exist in the child)."""
    _square_sums(20)  # the parent's pool now has threads
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_square_sums, (20,)).get(timeout=60)
    assert got == _square_sums(20)
