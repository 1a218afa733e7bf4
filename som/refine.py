"""Refine raw segmenter masks into cleaned, ordered regions: flat (disjoint) or nested.

Pure numpy/OpenCV (no torch). Every per-mask operation works on the mask's
bounding-box crop, never on a full-image copy per mask, so 200 masks on a
2048 px image stay cheap.

Pipeline of `refine`:

1. clean each mask on its own: fill small holes, drop small islands
   (the largest component is always kept, so cleaning never empties a mask);
2. drop masks under the minimum area (de-overlap only shrinks, so they would
   be dropped anyway, and they must not steal pixels from larger regions);
3. `deoverlap`: the smallest region keeps contested pixels;
4. clean again without breaking disjointness: drop islands cut off by the
   subtraction, fill small holes with pixels nobody owns;
5. drop regions under the minimum area and beyond `max_regions`; if any went,
   their pixels are free again, so repeat 4-5.

The result is a fixed point: `refine(refine(r)) == refine(r)` (tested).

Nested (`RefineOptions(nested=True)`): steps 1-2, then `som.nest` keeps the candidates,
in preference order, as a laminar family (wholes keep their full masks, parts lie inside
them, nothing else overlaps), then `max_regions` drops the smallest (their children move
up to the dropped region's parent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from som import cropmask
from som.nest import NestOptions, nest, preference_order, tree_order
from som.regions import Regions, take_fields
from som.threads import map_ordered

__all__ = ["RefineOptions", "refine", "deoverlap", "clean_masks", "order_regions"]


@dataclass(frozen=True)
class RefineOptions:
    """How `refine` cleans regions. Fractions are of the image area (H * W).

    min_area_frac:        regions smaller than this are dropped.
    min_area_px:          absolute minimum area in pixels; overrides min_area_frac.
    fill_holes_frac:      holes (enclosed background) smaller than this are filled.
    remove_islands_frac:  disconnected pieces of a mask smaller than this are removed
                          (a mask's largest piece is always kept).
    max_regions:          keep at most this many regions (the largest), None = all.
    nested:               keep wholes and their parts as a laminar family (som.nest) instead of
                          de-overlapping them into a flat partition.
    nest:                 how candidates nest (used when nested).
    """

    min_area_frac: float = 0.0005
    min_area_px: int | None = None
    fill_holes_frac: float = 0.0005
    remove_islands_frac: float = 0.0005
    max_regions: int | None = None
    nested: bool = False
    nest: NestOptions = field(default_factory=NestOptions)

    def __post_init__(self) -> None:
        for name in ("min_area_frac", "fill_holes_frac", "remove_islands_frac"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"RefineOptions.{name} must be a fraction in [0, 1], got {v!r}")
        if self.min_area_px is not None and self.min_area_px < 0:
            raise ValueError(f"RefineOptions.min_area_px must be >= 0 or None, got {self.min_area_px!r}")
        if self.max_regions is not None and self.max_regions < 0:
            raise ValueError(f"RefineOptions.max_regions must be >= 0 or None, got {self.max_regions!r}")

    def min_area(self, height: int, width: int) -> int:
        """Minimum region area in pixels for an image of this size (at least 1: empty regions always go)."""
        if self.min_area_px is not None:
            return max(1, int(self.min_area_px))
        return max(1, math.ceil(self.min_area_frac * height * width))

    def _px(self, frac: float, height: int, width: int) -> int:
        return int(frac * height * width)


# ---------------------------------------------------------------- crops
# A region is (box, crop): its tight box x1, y1, x2, y2 (exclusive) and the bool mask inside
# that box (som.cropmask). All work is proportional to the crops' total area.
def _to_crops(masks: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    r = Regions.from_masks(masks)
    return r.boxes_px, r.crops


def _areas(crops: list[np.ndarray]) -> np.ndarray:
    return np.array([int(np.count_nonzero(c)) for c in crops], np.int64)


def _clean_crop(c: np.ndarray, max_hole_px: int, max_island_px: int) -> np.ndarray:
    """Fill small holes, then remove small islands, of one crop."""
    if max_hole_px > 0:
        c = c | cropmask.small_holes(c, max_hole_px)
    if max_island_px > 0:
        c = cropmask.remove_islands(c, max_island_px)
    return c


def _clean_crops(boxes, crops, max_hole_px: int, max_island_px: int, only=None):
    """Fill small holes, then remove small islands, of each crop on its own (on threads).

    only: optional bool (N,) of the crops to visit (the others are known to be clean)."""
    boxes = boxes.copy()
    crops = list(crops)
    if max_hole_px <= 0 and max_island_px <= 0:
        return boxes, crops
    visit = [k for k, c in enumerate(crops) if c.size and (only is None or only[k])]
    cleaned = map_ordered(lambda k: _clean_crop(crops[k], max_hole_px, max_island_px), visit)
    for k, c in zip(visit, cleaned):
        boxes[k], crops[k] = cropmask.tighten(boxes[k], c)
    return boxes, crops


def deoverlap_crops(boxes, crops, height: int, width: int):
    """Smallest keeps contested pixels. Returns boxes, crops and a bool (N,): which crops lost pixels."""
    order = np.argsort(_areas(crops), kind="stable")
    owner = np.zeros((height, width), bool)  # taken by a smaller region already
    boxes = boxes.copy()
    crops = list(crops)
    changed = np.zeros(len(crops), bool)
    for k in order:
        c = crops[k]
        if c.size == 0:
            continue
        x1, y1, x2, y2 = boxes[k]
        taken = owner[y1:y2, x1:x2]
        lost = c & taken
        if lost.any():
            changed[k] = True
            keep = c & ~taken
            taken |= keep
            boxes[k], crops[k] = cropmask.tighten(boxes[k], keep)
        else:
            taken |= c
    return boxes, crops, changed


def _fill_unclaimed_holes(boxes, crops, max_hole_px: int, height: int, width: int, only=None):
    """Fill small holes of disjoint regions, but only with pixels no region owns (keeps disjointness).

    only: optional bool (N,) of the regions to visit (the others cannot have changed)."""
    if max_hole_px <= 0 or len(crops) == 0:
        return boxes, crops
    claimed = np.zeros((height, width), bool)
    for (x1, y1, x2, y2), c in zip(boxes, crops):
        claimed[y1:y2, x1:x2] |= c
    crops = list(crops)
    for k in np.argsort(_areas(crops), kind="stable"):
        c = crops[k]
        if c.size == 0 or (only is not None and not only[k]):
            continue
        x1, y1, x2, y2 = boxes[k]
        add = cropmask.small_holes(c, max_hole_px) & ~claimed[y1:y2, x1:x2]
        if add.any():  # holes lie inside the box, so the box stays tight
            crops[k] = c | add
            claimed[y1:y2, x1:x2] |= add
    return boxes, crops


def _touching(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(N,) bool: box k intersects any of `others` (M, 4)."""
    if len(others) == 0:
        return np.zeros(len(boxes), bool)
    b, o = boxes[:, None, :], others[None, :, :]
    hit = (b[..., 0] < o[..., 2]) & (o[..., 0] < b[..., 2]) & (b[..., 1] < o[..., 3]) & (o[..., 1] < b[..., 3])
    return hit.any(axis=1)


def _order(boxes: np.ndarray, crops: list[np.ndarray]) -> np.ndarray:
    idx = np.arange(len(crops))
    # lexsort: the last key is the primary one
    return np.lexsort((idx, boxes[:, 0], boxes[:, 1], -_areas(crops)))


# ---------------------------------------------------------------- public
def clean_masks(masks: np.ndarray, max_hole_px: int, max_island_px: int) -> np.ndarray:
    """Each mask on its own: fill holes < max_hole_px, remove islands < max_island_px
    (the largest island always stays). (N, H, W) bool -> new (N, H, W) bool."""
    masks = np.asarray(masks, bool)
    boxes, crops = _clean_crops(*_to_crops(masks), max_hole_px, max_island_px)
    return cropmask.paste_all(boxes, crops, masks.shape[1:])


def deoverlap(masks: np.ndarray) -> np.ndarray:
    """Make masks disjoint: the smaller region keeps contested pixels.

    masks: (N, H, W) bool. Regions are visited by area ascending (stable: ties go to the
    lower index); each keeps only the pixels no earlier (smaller) region took.
    Returns the *subtracted* masks, a new (N, H, W) bool array, in the original order.
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"deoverlap expects (N, H, W) bool masks, got shape {masks.shape}")
    h, w = masks.shape[1:]
    boxes, crops, _ = deoverlap_crops(*_to_crops(masks), h, w)
    return cropmask.paste_all(boxes, crops, (h, w))


def order_regions(masks: np.ndarray) -> np.ndarray:
    """The documented region order as an index array: area descending, then box top (y1),
    then box left (x1), then original index."""
    return _order(*_to_crops(np.asarray(masks, bool)))


def _tree_rank(boxes: np.ndarray, crops: list[np.ndarray], parent: np.ndarray) -> np.ndarray:
    """The documented order of a nested family: depth first, each region right before its
    children; siblings (and roots) by area descending, then box top, box left."""
    return tree_order(parent, _order(boxes, crops))


def _drop_nested(parent: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Parents after dropping regions (keep: sorted kept indices): a dropped region's children
    go to its parent (they lie inside it too). Returns parent indices among the kept."""
    where = np.full(len(parent), -1, np.int64)
    where[keep] = np.arange(len(keep))
    out = np.empty(len(keep), np.int32)
    for j, k in enumerate(keep):
        p = int(parent[k])
        while p >= 0 and where[p] < 0:
            p = int(parent[p])
        out[j] = where[p] if p >= 0 else -1
    return out


def _refine_nested(regions: Regions, options: RefineOptions, boxes, crops, index, min_area: int, max_island: int):
    """Nest the cleaned candidates (som.nest), cap the count, order parent-before-children."""
    scores = None if regions.scores is None else regions.scores[index]
    order = preference_order(_areas(crops), scores)
    source, parent, boxes, crops = nest(boxes, crops, order, min_area, options.nest, max_island)
    index = index[source]
    if options.max_regions is not None and len(crops) > options.max_regions:
        keep = np.sort(np.argsort(-_areas(crops), kind="stable")[: options.max_regions])
        parent = _drop_nested(parent, keep)
        boxes, crops, index = boxes[keep], [crops[i] for i in keep], index[keep]
    order = _tree_rank(boxes, crops, parent)
    where = np.empty(len(order), np.int64)
    where[order] = np.arange(len(order))
    parent = np.array([where[p] if p >= 0 else -1 for p in parent[order]], np.int32)
    return boxes[order], [crops[i] for i in order], index[order], parent


def refine(regions: Regions, options: RefineOptions = RefineOptions()) -> Regions:
    """Clean, de-overlap (or nest), filter and order regions.

    Flat (default): the masks come back pairwise disjoint, each at least the minimum area,
    ordered by `order_regions` (area descending, then box top, box left, original index).
    Nested (`options.nested`): wholes keep their full masks and contain their parts
    (`som.nest`: a laminar family, `parent` set); the order is depth first, each region right
    before its children, siblings by area descending, then box top, box left.
    Scores and class names follow their regions; xyxy is recomputed from the final masks;
    labels/anchors/label boxes are cleared (`som.layout.place_labels` sets them).
    """
    if not isinstance(regions, Regions):
        raise ValueError(f"refine expects som.Regions, got {type(regions).__name__}")
    h, w = regions.image_hw
    max_hole = options._px(options.fill_holes_frac, h, w)
    max_island = options._px(options.remove_islands_frac, h, w)
    min_area = options.min_area(h, w)

    boxes, crops = _clean_crops(regions.boxes_px, regions.crops, max_hole, max_island)
    index = np.flatnonzero(_areas(crops) >= min_area)  # positions in the input, for scores
    boxes, crops = boxes[index], [crops[i] for i in index]
    if options.nested:
        boxes, crops, index, parent = _refine_nested(regions, options, boxes, crops, index, min_area, max_island)
        return Regions(crops, boxes, (h, w), parent=parent, **_kept_fields(regions, index))

    boxes, crops, changed = deoverlap_crops(boxes, crops, h, w)

    # Pieces cut off by smaller regions go; holes nobody owns are filled. Only regions that
    # lost pixels can have new islands or holes (the others were cleaned above).
    boxes, crops = _clean_crops(boxes, crops, 0, max_island, only=changed)
    boxes, crops = _fill_unclaimed_holes(boxes, crops, max_hole, h, w, only=changed)
    while True:
        order = _order(boxes, crops)
        areas = _areas(crops)
        order = order[areas[order] >= min_area]
        if options.max_regions is not None:
            order = order[: options.max_regions]
        dropped = np.setdiff1d(np.arange(len(crops)), order)
        freed = boxes[dropped]
        boxes, crops, index = boxes[order], [crops[i] for i in order], index[order]
        if len(dropped) == 0:
            break
        # Dropped regions free their pixels, which may now be small holes of a neighbour:
        # only regions whose box meets a dropped one can change (filling never splits a mask).
        boxes, crops = _fill_unclaimed_holes(boxes, crops, max_hole, h, w, only=_touching(boxes, freed))

    return Regions(crops, boxes, (h, w), **_kept_fields(regions, index))


def _kept_fields(regions: Regions, index: np.ndarray) -> dict:
    """Scores and class names of the input regions at `index` (what refine keeps; labels,
    anchors and label boxes are made again by layout)."""
    fields = regions.per_region_fields()
    return take_fields({k: fields[k] for k in ("scores", "categories", "category_scores")}, index)
