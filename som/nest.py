"""Nesting: overlapping candidate masks -> a laminar family (wholes containing their parts).

Pure numpy/OpenCV (no torch). Works on (box, crop) pairs (`som.cropmask`), so the same
code runs on the decoder's low-res masks (to choose candidates cheaply) and on the final
full-resolution masks (to make the family exact).

`nest` walks the candidates in preference order and keeps each one that fits:

1. the kept regions that hold at least `contain_frac` of the candidate are its ancestors;
   the deepest is its parent P, and the candidate is clipped to P;
2. P's children (the roots when there is no P) that lie at least `contain_frac` inside the
   candidate become its children (the candidate grows to hold them whole); the others it
   meets are cut out of it;
3. it is dropped when clipping and cutting took more than `max_cut_frac` of it, when it is
   under the minimum area, when it is a near-copy of its parent or of one child
   (`max_dup_frac`), or when its own visible part, or the one it leaves its parent, would
   fall under `min_visible_frac` of that region (no room left for a label).

So any two kept regions are disjoint or nested, every child lies inside its parent, and
visible parts (a region minus its children) are disjoint. `is_laminar` checks this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from som import cropmask

__all__ = ["NestOptions", "nest", "preference_order", "tree_order", "is_laminar", "AREA_BONUS_PER_E_FOLD"]

AREA_BONUS_PER_E_FOLD = 0.01  # preference: predicted IoU + this * ln(area) (a whole wins near-ties)


@dataclass(frozen=True)
class NestOptions:
    """How candidates are nested (fractions of the candidate's or region's own area).

    contain_frac:      a candidate with at least this fraction inside a kept region goes inside it
                       (and a kept region this much inside the candidate becomes its child).
    max_cut_frac:      a candidate losing more than this fraction to clipping and cutting is dropped.
    max_dup_frac:      a child holding more than this fraction of its parent's area (or a parent
                       whose child holds that much of it) repeats it: the candidate is dropped.
    min_visible_frac:  every region keeps at least this fraction of its area visible (not covered
                       by its children), so its label has a place of its own.
    """

    contain_frac: float = 0.8
    max_cut_frac: float = 0.3
    max_dup_frac: float = 0.85
    min_visible_frac: float = 0.15

    def __post_init__(self) -> None:
        for name in ("contain_frac", "max_cut_frac", "max_dup_frac", "min_visible_frac"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"NestOptions.{name} must be a fraction in [0, 1], got {v!r}")
        if self.contain_frac <= 0.5:
            raise ValueError(
                f"NestOptions.contain_frac must be > 0.5 (two containers must overlap), got {self.contain_frac!r}"
            )


def preference_order(areas: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Candidates by preference: predicted IoU + AREA_BONUS_PER_E_FOLD * ln(area), best first
    (no scores: largest first). Stable."""
    areas = np.asarray(areas, np.float64)
    if scores is None:
        return np.argsort(-areas, kind="stable")
    key = np.asarray(scores, np.float64) + AREA_BONUS_PER_E_FOLD * np.log(np.maximum(areas, 1.0))
    return np.argsort(-key, kind="stable")


@dataclass
class _Kept:
    box: np.ndarray
    crop: np.ndarray
    area: int
    visible: int  # area minus its children's areas
    parent: int
    source: int  # index of the candidate it came from
    alive: bool = True  # False once a later whole took its place


def _depth(kept: list[_Kept], j: int) -> int:
    d = 0
    while kept[j].parent >= 0:
        j, d = kept[j].parent, d + 1
    return d


def nest(
    boxes: np.ndarray,
    crops: list[np.ndarray],
    order: np.ndarray,
    min_area_px: int,
    options: NestOptions = NestOptions(),
    max_island_px: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Keep candidates, in `order`, as a laminar family (see the module doc).

    boxes: (N, 4) int x1, y1, x2, y2 (exclusive); crops: N bool crops. max_island_px: pieces
    smaller than this that clipping or cutting leaves are removed (the largest piece stays).
    Returns (source (M,) int64: the candidate each kept region came from, parent (M,) int32:
    index among the kept, -1 for a root, boxes (M, 4) int64 tight, crops), in keeping order.
    """
    o = options
    min_area_px = max(1, int(min_area_px))
    kept: list[_Kept] = []
    kept_boxes = np.zeros((0, 4), np.int64)
    for i in order:
        box, crop = np.asarray(boxes[i], np.int64), crops[i]
        area = int(np.count_nonzero(crop))
        if area < min_area_px:
            continue
        near = np.flatnonzero(
            (kept_boxes[:, 0] < box[2]) & (box[0] < kept_boxes[:, 2])
            & (kept_boxes[:, 1] < box[3]) & (box[1] < kept_boxes[:, 3])
        )
        inter = {int(j): cropmask.intersection_px(crop, box, kept[j].crop, kept[j].box) for j in near}
        inter = {j: v for j, v in inter.items() if v}
        holders = [j for j, v in inter.items() if v >= o.contain_frac * area]
        parent = max(holders, key=lambda j: _depth(kept, j)) if holders else -1
        crop = crop.copy()
        if parent >= 0:
            if inter[parent] > o.max_dup_frac * kept[parent].area:
                continue  # a near-copy of its parent
            crop = cropmask.intersect(crop, box, kept[parent].crop, kept[parent].box)
        siblings = [j for j in inter if kept[j].parent == parent]
        adopt = [j for j in siblings if inter[j] >= o.contain_frac * kept[j].area]
        for j in siblings:
            if j not in adopt:
                cropmask.subtract(crop, box, kept[j].crop, kept[j].box)
        if max_island_px > 0 and (parent >= 0 or len(adopt) < len(siblings)):
            crop = cropmask.remove_islands(crop, max_island_px)
        own = int(np.count_nonzero(crop))  # what is left of the candidate itself
        if area - own > o.max_cut_frac * area:
            continue
        for j in adopt:
            box, crop = cropmask.union(crop, box, kept[j].crop, kept[j].box)
        box, crop = cropmask.tighten(box, crop)
        total = int(np.count_nonzero(crop))
        if total < min_area_px or any(kept[j].area > o.max_dup_frac * total for j in adopt):
            continue  # too small, or a near-copy of one of its children
        visible = total - sum(kept[j].area for j in adopt)
        floor = max(min_area_px, o.min_visible_frac * total)
        evict = _evictions(kept, adopt, floor - visible)
        if evict is None:
            continue
        for j in evict:  # parts that left the whole no room of its own: the whole wins
            adopt.remove(j)
            adopt.extend(c for c, k in enumerate(kept) if k.alive and k.parent == j)
            visible += kept[j].visible
            kept[j].alive = False
            kept_boxes[j] = 0
        if parent >= 0:
            p = kept[parent]
            if p.visible - visible < max(min_area_px, o.min_visible_frac * p.area):
                for j in evict:
                    kept[j].alive = True  # undo: this candidate goes instead
                    kept_boxes[j] = kept[j].box
                continue  # would leave its parent no room of its own
            p.visible -= visible
        new = len(kept)
        for j in adopt:
            kept[j].parent = new
        kept.append(_Kept(box, crop, total, visible, parent, int(i)))
        kept_boxes = np.concatenate([kept_boxes, box[None]])
    alive = [j for j, k in enumerate(kept) if k.alive]
    where = {j: n for n, j in enumerate(alive)}
    return (
        np.array([kept[j].source for j in alive], np.int64),
        np.array([where[kept[j].parent] if kept[j].parent >= 0 else -1 for j in alive], np.int32),
        np.array([kept[j].box for j in alive], np.int64).reshape(-1, 4),
        [kept[j].crop for j in alive],
    )


def _evictions(kept: list[_Kept], adopt: list[int], deficit: float) -> list[int] | None:
    """Which of the children-to-be to drop so that their new whole shows `deficit` more pixels
    of its own (each dropped child gives back its visible part): the smallest that is enough
    alone, else the largest, repeated. [] when nothing is missing; None when dropping every
    child is still not enough."""
    out: list[int] = []
    left = sorted(adopt, key=lambda j: kept[j].visible)
    while deficit > 0:
        if not left:
            return None
        enough = [j for j in left if kept[j].visible >= deficit]
        j = enough[0] if enough else left[-1]
        left.remove(j)
        out.append(j)
        deficit -= kept[j].visible
    return out


def tree_order(parent: np.ndarray, sibling_rank: np.ndarray) -> np.ndarray:
    """Depth-first pre-order of a forest: each region right before its children, siblings (and
    roots) by `sibling_rank` ascending. Returns the index array (a parent precedes its children)."""
    parent = np.asarray(parent)
    n = len(parent)
    rank = np.empty(n, np.int64)
    rank[np.asarray(sibling_rank)] = np.arange(n)  # position of each region in the sibling order
    kids: dict[int, list[int]] = {}
    for k in np.argsort(rank, kind="stable"):
        kids.setdefault(int(parent[k]), []).append(int(k))
    out: list[int] = []
    stack = list(reversed(kids.get(-1, [])))
    while stack:
        k = stack.pop()
        out.append(k)
        stack.extend(reversed(kids.get(k, [])))
    if len(out) != n:
        raise ValueError("parent links form a cycle; expected a forest")
    return np.array(out, np.int64)


def is_laminar(boxes: np.ndarray, crops: list[np.ndarray], parent: np.ndarray) -> bool:
    """True when every region lies inside its parent and any two regions that are not ancestor
    and descendant are disjoint (so visible parts are disjoint)."""
    n = len(crops)
    boxes = np.asarray(boxes, np.int64)
    anc = [set() for _ in range(n)]
    for k in range(n):
        p = int(parent[k])
        seen = 0
        while p >= 0:
            anc[k].add(p)
            p, seen = int(parent[p]), seen + 1
            if seen > n:
                return False  # a cycle
    areas = [int(np.count_nonzero(c)) for c in crops]
    for k in range(n):
        p = int(parent[k])
        if p >= 0 and cropmask.intersection_px(crops[k], boxes[k], crops[p], boxes[p]) != areas[k]:
            return False
        for j in range(k + 1, n):
            if j in anc[k] or k in anc[j]:
                continue
            if cropmask.intersection_px(crops[k], boxes[k], crops[j], boxes[j]):
                return False
    return True

