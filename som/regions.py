"""Regions: the one central data type of som.

Every stage (segment, refine, layout, draw, LLM grounding, dataset) takes a
`Regions` and returns one. Arrays are indexed by region first, like
supervision's `Detections`. Masks live in the pixels of the image they were
computed on (the original image once `som.mark` returns).

Masks are kept as crops: region k's mask is the bool array `crops[k]` inside its
integer box `xyxy[k]`, never a full (H, W) plane, so memory follows the regions'
areas, not N x H x W. Full-frame masks are made only on request (`mask(k)`,
`full_masks()`).

Regions may nest: `parent[k]` is the index of the region that contains region k,
or -1 for a root. Any two regions are disjoint or one contains the other (a
laminar family, a forest). A region's *visible part* is its mask minus its
children's masks; visible parts are disjoint. A flat set of regions is the case
with no parents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from som import cropmask
from som.cropmask import masks_to_xyxy, nearest_source

__all__ = ["Regions", "masks_to_xyxy"]


def take_fields(fields: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """Per-region fields (`Regions.per_region_fields`) of the regions at `index`, in that order."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            out[name] = None
        elif isinstance(value, list):
            out[name] = [value[int(i)] for i in index]
        else:
            out[name] = value[index]
    return out


def _depths(parent: np.ndarray) -> np.ndarray:
    """(N,) int64 depth of each node of a forest given by parent indices (-1: root)."""
    d = np.zeros(len(parent), np.int64)
    for k in range(len(parent)):
        p = parent[k]
        while p >= 0:
            d[k] += 1
            p = parent[p]
    return d


@dataclass
class Regions:
    """A set of image regions, possibly nested.

    crops:       N bool arrays: crop k is region k's mask inside box k, shape (y2 - y1, x2 - x1).
    xyxy:        (N, 4) float32 boxes (x1, y1, x2, y2), integer-valued, x2/y2 exclusive, tight
                 around the mask (an empty region has a zero box and a (0, 0) crop).
    image_hw:    (H, W) of the image the regions live in.
    parent:      (N,) int32 index of each region's parent, -1 for a root (all -1: flat).
    scores:      (N,) float32 predicted quality (SAM IoU) or None.
    labels:      N strings ("1".."N" or "a"..) once marked, else None.
    anchors_xy:  (N, 2) int32 pixel (x, y) each label is centred on, else None.
    label_xyxy:  (N, 4) float32 box of each drawn label, else None.
    categories:  N class names ("dog") from a segmenter that names what it finds (SEEM), else None;
                 "" for a region it did not name (e.g. one added by a click among named ones).
    category_scores: (N,) float32 confidence of each class name (NaN where none), else None.

    Build with `from_masks` (full-frame masks) or `from_crops` (any crops; tightened).
    """

    crops: list[np.ndarray]
    xyxy: np.ndarray
    image_hw: tuple[int, int]
    parent: np.ndarray | None = None
    scores: np.ndarray | None = None
    labels: list[str] | None = None
    anchors_xy: np.ndarray | None = None
    label_xyxy: np.ndarray | None = None
    categories: list[str] | None = None
    category_scores: np.ndarray | None = None
    _areas: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.crops = [np.asarray(c).astype(bool, copy=False) for c in self.crops]
        n = len(self.crops)
        h, w = (int(v) for v in self.image_hw)
        self.image_hw = (h, w)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(n, 4)
        boxes = self.xyxy.astype(np.int64)
        for k, (c, (x1, y1, x2, y2)) in enumerate(zip(self.crops, boxes)):
            if c.ndim != 2 or c.shape != (y2 - y1, x2 - x1) or x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                raise ValueError(
                    f"Regions crop {k} has shape {c.shape} for box {[int(v) for v in (x1, y1, x2, y2)]} in a "
                    f"{w}x{h} image; expected shape (y2 - y1, x2 - x1) inside the image (use Regions.from_crops)"
                )
        if self.parent is None:
            self.parent = np.full(n, -1, np.int32)
        self.parent = np.asarray(self.parent, np.int32).reshape(n)
        if n and (((self.parent < -1) | (self.parent >= n)).any() or (self.parent == np.arange(n)).any()):
            raise ValueError(f"Regions.parent must hold -1 or another region's index, got {self.parent.tolist()}")
        if self.scores is not None:
            self.scores = np.asarray(self.scores, np.float32).reshape(n)
        if self.labels is not None:
            self.labels = [str(s) for s in self.labels]
            if len(self.labels) != n:
                raise ValueError(f"Regions.labels has {len(self.labels)} entries for {n} regions")
        if self.anchors_xy is not None:
            self.anchors_xy = np.asarray(self.anchors_xy, np.int32).reshape(n, 2)
        if self.label_xyxy is not None:
            self.label_xyxy = np.asarray(self.label_xyxy, np.float32).reshape(n, 4)
        if self.categories is not None:
            self.categories = ["" if c is None else str(c) for c in self.categories]
            if len(self.categories) != n:
                raise ValueError(f"Regions.categories has {len(self.categories)} entries for {n} regions")
        if self.category_scores is not None:
            self.category_scores = np.asarray(self.category_scores, np.float32).reshape(-1)
            if len(self.category_scores) != n:
                raise ValueError(f"Regions.category_scores has {len(self.category_scores)} entries for {n} regions")

    # ---- construction -------------------------------------------------
    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: np.ndarray | None = None, **fields: Any) -> "Regions":
        """Regions from full-frame (N, H, W) bool masks (each kept as its tight crop)."""
        masks = np.asarray(masks, bool)
        if masks.ndim != 3:
            raise ValueError(f"Regions.from_masks expects (N, H, W) bool masks, got shape {masks.shape}")
        boxes = masks_to_xyxy(masks).astype(np.int64)
        crops = [masks[k, y1:y2, x1:x2].copy() for k, (x1, y1, x2, y2) in enumerate(boxes)]
        return cls(crops, boxes, masks.shape[1:], scores=scores, **fields)

    @classmethod
    def from_crops(
        cls, boxes_xyxy: np.ndarray, crops: Sequence[np.ndarray], image_hw: tuple[int, int], **fields: Any
    ) -> "Regions":
        """Regions from masks given as crops: crop k is the bool mask inside integer box k
        (x1, y1, x2, y2, exclusive), shape (y2 - y1, x2 - x1); `image_hw` is (H, W).
        Boxes are tightened to the masks."""
        boxes = np.asarray(boxes_xyxy, np.int64).reshape(-1, 4)
        if len(boxes) != len(crops):
            raise ValueError(f"from_crops got {len(boxes)} boxes for {len(crops)} crops")
        out_boxes, out_crops = np.zeros_like(boxes), []
        for k, (box, c) in enumerate(zip(boxes, crops)):
            out_boxes[k], c = cropmask.tighten(box, np.asarray(c, bool))
            out_crops.append(c)
        return cls(out_crops, out_boxes, image_hw, **fields)

    @classmethod
    def from_label_map(cls, label_map: np.ndarray, **fields: Any) -> "Regions":
        """Regions from an (H, W) int label image: one region per label > 0, in label order."""
        from scipy import ndimage

        label_map = np.asarray(label_map)
        if label_map.ndim != 2:
            raise ValueError(f"Regions.from_label_map expects an (H, W) label image, got shape {label_map.shape}")
        boxes, crops = [], []
        for value, sl in enumerate(ndimage.find_objects(label_map), start=1):
            if sl is None:
                continue
            boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
            crops.append(label_map[sl] == value)
        return cls.from_crops(np.array(boxes, np.int64).reshape(-1, 4), crops, label_map.shape, **fields)

    @classmethod
    def from_visible_map(cls, label_map: np.ndarray, parent: np.ndarray, **fields: Any) -> "Regions":
        """Regions from an (H, W) int map of visible parts (k + 1 marks region k's visible pixels,
        0 none) and parents (N,) (-1 for a root): a region's full mask is its visible part plus
        its descendants'. The inverse of `label_map()` for a laminar family."""
        from scipy import ndimage

        parent = np.asarray(parent, np.int32).reshape(-1)
        n = len(parent)
        boxes = np.zeros((n, 4), np.int64)
        crops = [np.zeros((0, 0), bool)] * n
        for k, sl in enumerate(ndimage.find_objects(np.asarray(label_map), max_label=n)):
            if sl is not None:
                boxes[k] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
                crops[k] = label_map[sl] == k + 1
        for k in np.argsort(-_depths(parent), kind="stable"):  # deepest first: parts into their wholes
            p = int(parent[k])
            if p >= 0 and crops[k].size:
                boxes[p], crops[p] = cropmask.union(crops[p], boxes[p], crops[k], boxes[k])
        return cls(crops, boxes, np.asarray(label_map).shape, parent=parent, **fields)

    @classmethod
    def empty(cls, height: int, width: int) -> "Regions":
        return cls([], np.zeros((0, 4), np.float32), (height, width))

    # ---- basic protocol -----------------------------------------------
    def __repr__(self) -> str:
        h, w = self.image_hw
        nested = int((self.parent >= 0).sum())
        named = "" if self.categories is None else f", categories={self.categories}"
        return f"Regions(n={len(self)}, image_hw=({h}, {w}), parts={nested}, labels={self.labels}{named})"

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def boxes_px(self) -> np.ndarray:
        """(N, 4) int64 crop boxes x1, y1, x2, y2 (exclusive)."""
        return self.xyxy.astype(np.int64)

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 pixel counts of the full masks."""
        if self._areas is None:
            self._areas = np.array([np.count_nonzero(c) for c in self.crops], np.int64)
        return self._areas

    @property
    def nested(self) -> bool:
        """True when some region has a parent."""
        return bool((self.parent >= 0).any())

    def mask(self, k: int) -> np.ndarray:
        """(H, W) bool full-frame mask of region k (made on request)."""
        out = np.zeros(self.image_hw, bool)
        x1, y1, x2, y2 = self.boxes_px[int(k)]
        out[y1:y2, x1:x2] = self.crops[int(k)]
        return out

    def full_masks(self) -> np.ndarray:
        """(N, H, W) bool full-frame masks (made on request: N x H x W bytes)."""
        return cropmask.paste_all(self.boxes_px, self.crops, self.image_hw)

    def children(self, k: int) -> np.ndarray:
        """Indices of region k's children (in region order)."""
        return np.flatnonzero(self.parent == int(k))

    def depth(self) -> np.ndarray:
        """(N,) int: 0 for roots, 1 for their children, ..."""
        return _depths(self.parent)

    def visible_crops(self) -> list[np.ndarray]:
        """Each region's visible part (its mask minus its children's masks) on its own box.
        Visible parts of a laminar family are disjoint; for a flat set they are the masks."""
        if not self.nested:
            return self.crops
        boxes = self.boxes_px
        out = list(self.crops)
        for k in np.flatnonzero(self.parent >= 0):
            p = int(self.parent[k])
            if out[p] is self.crops[p]:
                out[p] = self.crops[p].copy()
            cropmask.subtract(out[p], boxes[p], self.crops[k], boxes[k])
        return out

    def per_region_fields(self) -> dict[str, Any]:
        """The fields that follow their regions through any selection or resampling (scores,
        labels, anchors, label boxes, class names), as keyword arguments for a new Regions."""
        return {
            "scores": self.scores, "labels": self.labels, "anchors_xy": self.anchors_xy,
            "label_xyxy": self.label_xyxy, "categories": self.categories, "category_scores": self.category_scores,
        }

    def visible(self) -> "Regions":
        """The visible parts as a flat Regions (same order, boxes tightened; labels, anchors,
        scores and class names kept): what fills and labels use."""
        if not self.nested:
            return self
        return Regions.from_crops(self.boxes_px, self.visible_crops(), self.image_hw, **self.per_region_fields())

    def __getitem__(self, index: Any) -> "Regions":
        """Select regions by int, slice, index array or bool array (keeps the order given).

        A selected region's parent becomes its nearest selected ancestor (-1 if none)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        index = np.arange(len(self))[index]
        where = {int(i): j for j, i in enumerate(index)}
        parent = np.full(len(index), -1, np.int32)
        for j, i in enumerate(index):
            p = int(self.parent[i])
            while p >= 0 and p not in where:
                p = int(self.parent[p])
            parent[j] = where.get(p, -1)
        return Regions(
            crops=[self.crops[i] for i in index],
            xyxy=self.xyxy[index],
            image_hw=self.image_hw,
            parent=parent,
            **take_fields(self.per_region_fields(), index),
        )

    def replace(self, **changes: Any) -> "Regions":
        keep_areas = "crops" not in changes
        out = dataclasses.replace(self, **changes)
        out._areas = self._areas if keep_areas else None
        return out

    def index_of(self, label: str) -> int:
        """Position of the region carrying `label`; ValueError if absent."""
        if self.labels is None:
            raise ValueError("these regions are not labelled yet; run som.layout first")
        try:
            return self.labels.index(str(label))
        except ValueError:
            raise ValueError(f"no region labelled {label!r}; labels are {self.labels}") from None

    def select_labels(self, labels: Sequence[str]) -> "Regions":
        """Regions named by `labels`, in that order; unknown labels are ignored. A whole comes with
        its full mask (its parts included)."""
        known = [] if self.labels is None else self.labels
        idx = [known.index(str(s)) for s in labels if str(s) in known]
        return self[np.asarray(idx, np.int64)]

    def label_map(self) -> np.ndarray:
        """(H, W) int32: 0 for background, k+1 for the pixels of region k's visible part
        (for overlapping flat input, later regions win ties)."""
        out = np.zeros(self.image_hw, np.int32)
        for k, ((x1, y1, x2, y2), c) in enumerate(zip(self.boxes_px, self.visible_crops())):
            out[y1:y2, x1:x2][c] = k + 1
        return out

    def resized(self, height: int, width: int) -> "Regions":
        """The same regions in an image of another size (OpenCV nearest-neighbour masks, scaled points)."""
        h0, w0 = self.image_hw
        if (h0, w0) == (height, width):
            return self
        ys, xs = nearest_source(height, h0), nearest_source(width, w0)
        boxes = np.zeros((len(self), 4), np.int64)
        crops = []
        for k, ((x1, y1, x2, y2), c) in enumerate(zip(self.boxes_px, self.crops)):
            r0, r1 = np.searchsorted(ys, [y1, y2])  # output rows whose source row is in [y1, y2)
            c0, c1 = np.searchsorted(xs, [x1, x2])
            crop = c[ys[r0:r1, None] - y1, xs[None, c0:c1] - x1] if c.size else np.zeros((0, 0), bool)
            boxes[k], crop = cropmask.tighten(np.array([c0, r0, c1, r1], np.int64), crop)
            crops.append(crop)
        sx, sy = width / w0, height / h0
        anchors = None
        if self.anchors_xy is not None:
            # centre of the source pixel, mapped: stays inside the region under nearest resize
            anchors = np.stack(
                [
                    np.clip(((self.anchors_xy[:, 0] + 0.5) * sx).astype(np.int64), 0, width - 1),
                    np.clip(((self.anchors_xy[:, 1] + 0.5) * sy).astype(np.int64), 0, height - 1),
                ],
                axis=1,
            )
        label_xyxy = None
        if self.label_xyxy is not None:
            label_xyxy = self.label_xyxy * np.array([sx, sy, sx, sy], np.float32)
        fields = {**self.per_region_fields(), "anchors_xy": anchors, "label_xyxy": label_xyxy}
        return Regions(crops, boxes, (height, width), parent=self.parent, **fields)

    # ---- interop ------------------------------------------------------
    def to_detections(self):
        """A `supervision.Detections` with the full masks, boxes and scores (needs supervision).

        data: "parent"; "label" (the marks) once labelled; "class_name" the class names when the
        segmenter named the regions (else the marks, so supervision's annotators print them),
        with `class_id` numbering the distinct names and "category_score" their confidences."""
        try:
            import supervision as sv
        except ImportError as e:  # pragma: no cover - optional
            raise ImportError("to_detections needs supervision: pip install supervision") from e
        data: dict[str, np.ndarray] = {"parent": self.parent.copy()}
        class_id = None
        if self.labels is not None:
            data["label"] = np.array(self.labels)
            data["class_name"] = np.array(self.labels)
        if self.categories is not None:
            names = np.array(self.categories)
            data["class_name"] = names
            class_id = np.unique(names, return_inverse=True)[1].astype(int) if len(names) else np.zeros(0, int)
        if self.category_scores is not None:
            data["category_score"] = self.category_scores.copy()
        return sv.Detections(xyxy=self.xyxy.copy(), mask=self.full_masks(), confidence=self.scores,
                             class_id=class_id, data=data)
