"""Masks kept as crops: a region is (box, crop), the bool mask inside its integer box.

A box is x1, y1, x2, y2 in image pixels (x2/y2 exclusive); its crop has shape
(y2 - y1, x2 - x1). Geometry between two regions works on the intersection of
their boxes only, so every operation costs the crops' area, not the image's.
Pure numpy/OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "masks_to_xyxy",
    "nearest_source",
    "tighten",
    "paste_all",
    "box_overlap",
    "intersection_px",
    "subtract",
    "intersect",
    "union",
    "u8",
    "pad1",
    "count_pieces_holes",
    "remove_islands",
    "small_holes",
]


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


def nearest_source(out_px: int, in_px: int) -> np.ndarray:
    """(out_px,) int64 source index of each output pixel under OpenCV's INTER_NEAREST resize
    (floor(i * in/out), computed as OpenCV does; non-decreasing)."""
    scale = 1.0 / (out_px / in_px)
    return np.minimum(np.floor(np.arange(out_px) * scale).astype(np.int64), in_px - 1)


def tighten(box: np.ndarray, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink a (box, crop) pair to the crop's non-empty rows and columns (empty -> zero box, (0, 0) crop)."""
    rows = np.flatnonzero(crop.any(axis=1)) if crop.size else np.zeros(0, np.int64)
    if len(rows) == 0:
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    cols = np.flatnonzero(crop.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = np.asarray(box, np.int64)
    if r0 == 0 and c0 == 0 and r1 == crop.shape[0] and c1 == crop.shape[1]:
        return box, crop
    x1, y1 = box[0], box[1]
    return np.array([x1 + c0, y1 + r0, x1 + c1, y1 + r1], np.int64), crop[r0:r1, c0:c1]


def paste_all(boxes: np.ndarray, crops: list[np.ndarray], image_hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool full-frame masks from crops."""
    out = np.zeros((len(crops), *image_hw), bool)
    for m, (x1, y1, x2, y2), c in zip(out, boxes, crops):
        m[y1:y2, x1:x2] = c
    return out


def box_overlap(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice, slice, slice] | None:
    """Where boxes a and b meet, as (rows, cols) slices into a's crop then into b's crop; None if apart."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    if x2 <= x1 or y2 <= y1:
        return None
    return (
        slice(y1 - a[1], y2 - a[1]), slice(x1 - a[0], x2 - a[0]),
        slice(y1 - b[1], y2 - b[1]), slice(x1 - b[0], x2 - b[0]),
    )


def intersection_px(a: np.ndarray, box_a: np.ndarray, b: np.ndarray, box_b: np.ndarray) -> int:
    """Pixels in both masks."""
    s = box_overlap(box_a, box_b)
    if s is None:
        return 0
    return int(np.count_nonzero(a[s[0], s[1]] & b[s[2], s[3]]))


def subtract(dst: np.ndarray, box_dst: np.ndarray, src: np.ndarray, box_src: np.ndarray) -> None:
    """dst -= src, in place (dst keeps its box)."""
    s = box_overlap(box_dst, box_src)
    if s is not None:
        dst[s[0], s[1]] &= ~src[s[2], s[3]]


def intersect(dst: np.ndarray, box_dst: np.ndarray, src: np.ndarray, box_src: np.ndarray) -> np.ndarray:
    """dst & src on dst's box (a new crop)."""
    out = np.zeros_like(dst)
    s = box_overlap(box_dst, box_src)
    if s is not None:
        out[s[0], s[1]] = dst[s[0], s[1]] & src[s[2], s[3]]
    return out


def union(a: np.ndarray, box_a: np.ndarray, b: np.ndarray, box_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a | b on the box around both: (box, crop)."""
    if a.size == 0:
        return np.asarray(box_b, np.int64), b.copy()
    box = np.array([min(box_a[0], box_b[0]), min(box_a[1], box_b[1]), max(box_a[2], box_b[2]), max(box_a[3], box_b[3])])
    out = np.zeros((box[3] - box[1], box[2] - box[0]), bool)
    out[box_a[1] - box[1] : box_a[3] - box[1], box_a[0] - box[0] : box_a[2] - box[0]] = a
    out[box_b[1] - box[1] : box_b[3] - box[1], box_b[0] - box[0] : box_b[2] - box[0]] |= b
    return box, out


def u8(a: np.ndarray) -> np.ndarray:
    """A bool array as uint8 0/1 for OpenCV (a view when it is contiguous)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8) if a.dtype == bool else a.astype(np.uint8)


def pad1(a: np.ndarray, value: int) -> np.ndarray:
    """uint8 0/1 copy of a bool crop with a 1-pixel border of `value` (faster than np.pad)."""
    return cv2.copyMakeBorder(u8(a), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=value)


def count_pieces_holes(m: np.ndarray) -> tuple[int, int]:
    """(pieces, holes) of a crop: 8-connected pieces of `m` and 4-connected enclosed background
    regions, counted from its borders (OpenCV's border following; far cheaper than labelling)."""
    contours, hierarchy = cv2.findContours(pad1(m, 0), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0, 0
    holes = int(np.count_nonzero(hierarchy[0, :, 3] >= 0))  # a hole's border has a parent
    return len(contours) - holes, holes


def _components(img: np.ndarray, connectivity: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Component labels (H, W) of a uint8 0/1 image and each label's pixel count (label 0 = zeros).

    n_labels: how many labels there are (known from `count_pieces_holes`); when they fit, labels
    are 16-bit and counted by a histogram (5x cheaper than OpenCV's stats; float32 counts exact
    below 2**24).
    """
    if n_labels < 2**16 and img.size < 2**24:
        n, lab = cv2.connectedComponents(img, connectivity=connectivity, ltype=cv2.CV_16U)
        return lab, cv2.calcHist([lab], [0], None, [n], [0, n]).ravel().astype(np.int64)
    n, lab = cv2.connectedComponents(img, connectivity=connectivity)
    return lab, np.bincount(lab.ravel(), minlength=n)


def remove_islands(m: np.ndarray, max_island: int) -> np.ndarray:
    """Drop 8-connected pieces with fewer than `max_island` pixels; keep the largest piece always."""
    pieces, _ = count_pieces_holes(m)
    if pieces <= 1:
        return m
    lab, area = _components(u8(m), 8, pieces + 1)
    keep = area >= max_island
    keep[1 + int(np.argmax(area[1:]))] = True
    keep[0] = False
    if keep[1:].all():
        return m
    return keep[lab]


def small_holes(m: np.ndarray, max_hole: int) -> np.ndarray:
    """Bool map of holes of `m` smaller than `max_hole` (4-connected enclosed background).

    The crop is padded with background so anything touching the crop edge is outside, not a hole.
    """
    _, holes = count_pieces_holes(m)
    if holes == 0:
        return np.zeros_like(m)
    lab, area = _components(pad1(~m, 1), 4, holes + 2)  # mask pixels, outside, holes
    small = area < max_hole
    small[0] = small[lab[0, 0]] = False
    return small[lab[1:-1, 1:-1]]
