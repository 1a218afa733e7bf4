"""Independent per-region work on a thread pool.

OpenCV and most numpy array operations release the GIL, so the per-region steps of
refine and layout (labelling, distance transforms) run in parallel on threads. On this
project's 2-core CPU that is 1.2-1.4x on those steps alone and little inside the whole
pipeline; it is meant for many-core hosts, where the GPU path's host stages run (not yet
measured there). Results keep the input order, so output is identical to a serial loop.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 8  # per-region work is short; more threads mostly add hand-off cost
MIN_ITEMS = 4  # below this a plain loop is cheaper than handing work to threads


def _cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all CPUs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _pool(pid: int) -> ThreadPoolExecutor:
    """One pool per process (keyed by pid: a forked child must not reuse its parent's threads)."""
    return ThreadPoolExecutor(max_workers=min(MAX_THREADS, _cores()), thread_name_prefix="som")


def map_ordered(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """[fn(x) for x in items], on threads when there are several cores and enough items.

    fn must not call map_ordered itself (pool threads waiting on the same pool can deadlock)."""
    if len(items) < MIN_ITEMS or _cores() < 2:
        return [fn(x) for x in items]
    return list(_pool(os.getpid()).map(fn, items))
