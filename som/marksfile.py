"""The marks JSON: what `som mark` writes beside each marked image.

Masks are COCO RLE (pycocotools), so any COCO tool reads them. Mark k in the
JSON (id k, label L) is region k-1 of the Python `Regions` and the region
drawn with label L in the PNG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from som.regions import Regions

FORMAT_VERSION = 2  # 2: marks carry "parent" (the id of the mark that contains them, or null)
READABLE_VERSIONS = (1, 2)
# Marks may also carry "category" (a class name) and "category_score" (its confidence), null when
# the segmenter names no classes. They are optional additions within version 2: a reader that does
# not know them ignores them, and files without them read as before (categories None).


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO RLE with `counts` as str (JSON-safe)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (compressed str/bytes counts, or uncompressed list counts) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def crop_to_rle(box: np.ndarray, crop: np.ndarray, image_hw: tuple[int, int]) -> dict:
    """A mask kept as (box, crop) -> the COCO RLE of its full (H, W) frame, without making the
    frame: run boundaries come from the crop's columns (COCO counts run down columns)."""
    from pycocotools import mask as mask_utils

    h, w = (int(v) for v in image_hw)
    pos = np.zeros(0, np.int64)
    if crop.size and crop.any():
        x1, y1 = int(box[0]), int(box[1])
        padded = np.zeros((crop.shape[1], crop.shape[0] + 2), np.int8)  # one column per row
        padded[:, 1:-1] = crop.T
        cols, rows = np.nonzero(np.diff(padded, axis=1))  # sorted: column, then row
        pos = (x1 + cols.astype(np.int64)) * h + y1 + rows
        # a run that ends at the bottom of one column and goes on at the top of the next
        uniq, times = np.unique(pos, return_counts=True)
        pos = uniq[times % 2 == 1]
    bounds = np.concatenate([[0], pos, [] if len(pos) and pos[-1] == h * w else [h * w]])
    counts = np.diff(bounds).astype(np.int64).tolist()
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _string_counts(s: bytes) -> list[int]:
    """COCO's compressed counts string -> run lengths (each count in 5-bit groups with a
    continuation bit, sign-extended, and from the third on as a difference to the one two back)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, shift, more = 0, 0, True
        while more:
            c = s[p] - 48
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_crop(rle: dict) -> tuple[np.ndarray, np.ndarray]:
    """COCO RLE -> (box (4,) int64 tight, crop), making only the columns the mask spans."""
    from som.cropmask import tighten

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    counts = _string_counts(counts) if isinstance(counts, bytes) else [int(c) for c in counts]
    bounds = np.cumsum(counts)
    starts, ends = bounds[0::2][: len(counts) // 2], bounds[1::2]  # runs of ones: [start, end)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        return np.zeros(4, np.int64), np.zeros((0, 0), bool)
    c0, c1 = int(starts[0] // h), int((ends[-1] - 1) // h) + 1
    flat = np.zeros((c1 - c0) * h, bool)
    delta = np.zeros(len(flat) + 1, np.int32)
    np.add.at(delta, starts - c0 * h, 1)
    np.add.at(delta, ends - c0 * h, -1)
    flat[:] = np.cumsum(delta[:-1]) > 0
    crop = flat.reshape(c1 - c0, h).T  # (H, columns)
    return tighten(np.array([c0, 0, c1, h], np.int64), crop)


def _round(values: np.ndarray, ndigits: int = 2) -> list:
    return [round(float(v), ndigits) for v in values]


def regions_to_dict(regions: Regions, settings: dict[str, Any] | None = None, image_file: str | None = None) -> dict:
    """Regions (laid out) -> the marks document (a JSON-ready dict). Mark k has id k + 1;
    `parent` is the id of the mark containing it (null for a root); `category` and
    `category_score` its class name and confidence (null when unknown)."""
    h, w = regions.image_hw
    areas = regions.areas
    boxes = regions.boxes_px
    marks = []
    for k in range(len(regions)):
        p = int(regions.parent[k])
        marks.append(
            {
                "id": k + 1,
                "label": None if regions.labels is None else regions.labels[k],
                "parent": p + 1 if p >= 0 else None,
                "xyxy": _round(regions.xyxy[k]),
                "area": int(areas[k]),
                "anchor_xy": None if regions.anchors_xy is None else [int(v) for v in regions.anchors_xy[k]],
                "label_xyxy": None if regions.label_xyxy is None else _round(regions.label_xyxy[k]),
                "score": None if regions.scores is None else round(float(regions.scores[k]), 4),
                "category": _category(regions, k),
                "category_score": _category_score(regions, k),
                "rle": crop_to_rle(boxes[k], regions.crops[k], (h, w)),
            }
        )
    return {
        "format": "som.marks",
        "version": FORMAT_VERSION,
        "image": {"file": image_file, "width": w, "height": h},
        "settings": settings or {},
        "marks": marks,
    }


def _category(regions: Regions, k: int) -> str | None:
    return regions.categories[k] or None if regions.categories is not None else None


def _category_score(regions: Regions, k: int) -> float | None:
    if regions.category_scores is None or not np.isfinite(regions.category_scores[k]):
        return None
    return round(float(regions.category_scores[k]), 4)


def regions_from_dict(doc: dict) -> Regions:
    """The marks document (version 1 or 2) -> Regions (masks as crops, parents, labels, anchors,
    label boxes and class names restored)."""
    if doc.get("format") != "som.marks":
        raise ValueError("not a som marks document (expected \"format\": \"som.marks\")")
    version = doc.get("version", 1)
    if version not in READABLE_VERSIONS:
        raise ValueError(f"marks document version {version!r} is not supported; this som reads {READABLE_VERSIONS}")
    h, w = doc["image"]["height"], doc["image"]["width"]
    marks = doc["marks"]
    if not marks:
        return Regions.empty(h, w)
    pieces = [rle_to_crop(m["rle"]) for m in marks]
    ids = {m.get("id", k + 1): k for k, m in enumerate(marks)}
    parent = [ids[m["parent"]] if m.get("parent") is not None else -1 for m in marks]
    has = lambda key: all(m.get(key) is not None for m in marks)  # noqa: E731
    named = any(m.get("category") is not None for m in marks)  # unnamed marks among named ones: ""
    scored = any(m.get("category_score") is not None for m in marks)
    return Regions(
        crops=[c for _, c in pieces],
        xyxy=np.stack([b for b, _ in pieces]),
        image_hw=(h, w),
        parent=np.array(parent, np.int32),
        scores=np.array([m["score"] for m in marks], np.float32) if has("score") else None,
        labels=[m["label"] for m in marks] if has("label") else None,
        anchors_xy=np.array([m["anchor_xy"] for m in marks]) if has("anchor_xy") else None,
        label_xyxy=np.array([m["label_xyxy"] for m in marks]) if has("label_xyxy") else None,
        categories=[str(m.get("category") or "") for m in marks] if named else None,
        category_scores=(
            np.array([np.nan if m.get("category_score") is None else m["category_score"] for m in marks], np.float32)
            if scored else None
        ),
    )


def write_marks(path: str | Path, regions: Regions, settings: dict | None = None, image_file: str | None = None) -> Path:
    path = Path(path)
    path.write_text(json.dumps(regions_to_dict(regions, settings, image_file)))
    return path


def read_marks(path: str | Path) -> Regions:
    return regions_from_dict(json.loads(Path(path).read_text()))
