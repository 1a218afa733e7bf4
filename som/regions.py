"""Regions: the one central data type of som.

Every stage (segment, refine, layout, draw, LLM grounding, dataset) takes a
`Regions` and returns one. Arrays are indexed by region first, like
supervision's `Detections`. Masks live in the pixels of the image they were
computed on (the original image once `som.mark` returns).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def masks_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight boxes, x2/y2 exclusive. Empty mask -> zeros."""
    n, h, w = masks.shape
    out = np.zeros((n, 4), np.float32)
    if n == 0:
        return out
    rows = masks.any(axis=2)  # (N, H): one pass over the stack
    y1 = rows.argmax(axis=1)
    y2 = h - rows[:, ::-1].argmax(axis=1)
    for k in np.flatnonzero(rows.any(axis=1)):
        cols = masks[k, y1[k] : y2[k]].any(axis=0)  # columns only within the mask's rows
        out[k] = (cols.argmax(), y1[k], w - cols[::-1].argmax(), y2[k])
    return out


def _nearest_source(out_px: int, in_px: int) -> np.ndarray:
    """(out_px,) int64 source index of each output pixel under OpenCV's INTER_NEAREST resize
    (floor(i * in/out), computed as OpenCV does; non-decreasing)."""
    scale = 1.0 / (out_px / in_px)
    return np.minimum(np.floor(np.arange(out_px) * scale).astype(np.int64), in_px - 1)


@dataclass
class Regions:
    """A set of image regions.

    masks:       (N, H, W) bool.
    xyxy:        (N, 4) float32 boxes (x1, y1, x2, y2), x2/y2 exclusive.
    scores:      (N,) float32 predicted quality (SAM IoU) or None.
    labels:      N strings ("1".."N" or "a"..) once marked, else None.
    anchors_xy:  (N, 2) int32 pixel (x, y) each label is centred on, else None.
    label_xyxy:  (N, 4) float32 box of each drawn label, else None.
    """

    masks: np.ndarray
    xyxy: np.ndarray
    scores: np.ndarray | None = None
    labels: list[str] | None = None
    anchors_xy: np.ndarray | None = None
    label_xyxy: np.ndarray | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3:
            raise ValueError(f"Regions.masks must be (N, H, W) bool, got shape {masks.shape}")
        self.masks = masks.astype(bool, copy=False)
        n = len(self.masks)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(n, 4)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, np.float32).reshape(n)
        if self.labels is not None:
            self.labels = [str(s) for s in self.labels]
            if len(self.labels) != n:
                raise ValueError(f"Regions.labels has {len(self.labels)} entries for {n} masks")
        if self.anchors_xy is not None:
            self.anchors_xy = np.asarray(self.anchors_xy, np.int32).reshape(n, 2)
        if self.label_xyxy is not None:
            self.label_xyxy = np.asarray(self.label_xyxy, np.float32).reshape(n, 4)

    # ---- construction -------------------------------------------------
    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: np.ndarray | None = None) -> "Regions":
        masks = np.asarray(masks, bool)
        return cls(masks=masks, xyxy=masks_to_xyxy(masks), scores=scores)

    @classmethod
    def from_crops(
        cls, boxes_xyxy: np.ndarray, crops: Sequence[np.ndarray], image_hw: tuple[int, int], **fields: Any
    ) -> "Regions":
        """Regions from masks given as crops: crop k is the bool mask inside integer box k
        (x1, y1, x2, y2, exclusive), shape (y2 - y1, x2 - x1); `image_hw` is (H, W)."""
        h, w = image_hw
        boxes = np.asarray(boxes_xyxy, np.int64).reshape(-1, 4)
        masks = np.zeros((len(boxes), h, w), bool)
        for m, (x1, y1, x2, y2), c in zip(masks, boxes, crops):
            m[y1:y2, x1:x2] = c
        return cls(masks=masks, xyxy=masks_to_xyxy(masks), **fields)

    @classmethod
    def empty(cls, height: int, width: int) -> "Regions":
        return cls(masks=np.zeros((0, height, width), bool), xyxy=np.zeros((0, 4), np.float32))

    # ---- basic protocol -----------------------------------------------
    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def mask(self, k: int) -> np.ndarray:
        """(H, W) bool full-frame mask of region k (made on request)."""
        return self.masks[int(k)].copy()

    def full_masks(self) -> np.ndarray:
        """(N, H, W) bool full-frame masks (made on request: N x H x W bytes)."""
        return self.masks.copy()

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 pixel counts."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def __getitem__(self, index: Any) -> "Regions":
        """Select regions by int, slice, index array or bool array (keeps order given)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        index = np.arange(len(self))[index]
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Regions(
            masks=self.masks[index],
            xyxy=self.xyxy[index],
            scores=pick(self.scores),
            labels=None if self.labels is None else [self.labels[i] for i in index],
            anchors_xy=pick(self.anchors_xy),
            label_xyxy=pick(self.label_xyxy),
        )

    def replace(self, **changes: Any) -> "Regions":
        return dataclasses.replace(self, **changes)

    def index_of(self, label: str) -> int:
        """Position of the region carrying `label`; ValueError if absent."""
        if self.labels is None:
            raise ValueError("these regions are not labelled yet; run som.layout first")
        try:
            return self.labels.index(str(label))
        except ValueError:
            raise ValueError(f"no region labelled {label!r}; labels are {self.labels}") from None

    def select_labels(self, labels: Sequence[str]) -> "Regions":
        """Regions named by `labels`, in that order; unknown labels are ignored."""
        known = [] if self.labels is None else self.labels
        idx = [known.index(str(s)) for s in labels if str(s) in known]
        return self[np.asarray(idx, np.int64)]

    def label_map(self) -> np.ndarray:
        """(H, W) int32: 0 for background, k+1 for pixels of region k (later regions win ties)."""
        out = np.zeros(self.image_hw, np.int32)
        for k, m in enumerate(self.masks):
            out[m] = k + 1
        return out

    def resized(self, height: int, width: int) -> "Regions":
        """The same regions in an image of another size (nearest-neighbour masks, scaled points)."""
        h0, w0 = self.image_hw
        if (h0, w0) == (height, width):
            return self
        # OpenCV's INTER_NEAREST, pixel for pixel, but only inside each mask's box: the rest of
        # the new stack stays untouched zero pages (at 4000 x 3000 a full plane is 12 MB)
        ys, xs = _nearest_source(height, h0), _nearest_source(width, w0)
        masks = np.zeros((len(self), height, width), bool)
        xyxy = np.zeros((len(self), 4), np.float32)  # tight boxes, from the crops (no pass over the stack)
        for k, (x1, y1, x2, y2) in enumerate(masks_to_xyxy(self.masks).astype(np.int64)):
            r0, r1 = np.searchsorted(ys, [y1, y2])  # output rows whose source row is in [y1, y2)
            c0, c1 = np.searchsorted(xs, [x1, x2])
            crop = self.masks[k][ys[r0:r1, None], xs[None, c0:c1]]
            masks[k, r0:r1, c0:c1] = crop
            if crop.any():
                xyxy[k] = masks_to_xyxy(crop[None])[0] + np.array([c0, r0, c0, r0], np.float32)
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
        return Regions(
            masks=masks,
            xyxy=xyxy,
            scores=self.scores,
            labels=self.labels,
            anchors_xy=anchors,
            label_xyxy=label_xyxy,
        )

    # ---- interop ------------------------------------------------------
    def to_detections(self):
        """A `supervision.Detections` with the same masks, boxes and scores (needs supervision)."""
        try:
            import supervision as sv
        except ImportError as e:  # pragma: no cover - optional
            raise ImportError("to_detections needs supervision: pip install supervision") from e
        data = {} if self.labels is None else {"class_name": np.array(self.labels)}
        return sv.Detections(xyxy=self.xyxy.copy(), mask=self.masks.copy(), confidence=self.scores, data=data)
