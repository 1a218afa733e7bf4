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

FORMAT_VERSION = 1


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


def _round(values: np.ndarray, ndigits: int = 2) -> list:
    return [round(float(v), ndigits) for v in values]


def regions_to_dict(regions: Regions, settings: dict[str, Any] | None = None, image_file: str | None = None) -> dict:
    """Regions (laid out) -> the marks document (a JSON-ready dict)."""
    h, w = regions.image_hw
    areas = regions.areas
    marks = []
    for k in range(len(regions)):
        marks.append(
            {
                "id": k + 1,
                "label": None if regions.labels is None else regions.labels[k],
                "xyxy": _round(regions.xyxy[k]),
                "area": int(areas[k]),
                "anchor_xy": None if regions.anchors_xy is None else [int(v) for v in regions.anchors_xy[k]],
                "label_xyxy": None if regions.label_xyxy is None else _round(regions.label_xyxy[k]),
                "score": None if regions.scores is None else round(float(regions.scores[k]), 4),
                "rle": encode_rle(regions.masks[k]),
            }
        )
    return {
        "format": "som.marks",
        "version": FORMAT_VERSION,
        "image": {"file": image_file, "width": w, "height": h},
        "settings": settings or {},
        "marks": marks,
    }


def regions_from_dict(doc: dict) -> Regions:
    """The marks document -> Regions (masks decoded, labels/anchors/label boxes restored)."""
    if doc.get("format") != "som.marks":
        raise ValueError("not a som marks document (expected \"format\": \"som.marks\")")
    h, w = doc["image"]["height"], doc["image"]["width"]
    marks = doc["marks"]
    if not marks:
        return Regions.empty(h, w)
    masks = np.stack([decode_rle(m["rle"]) for m in marks])
    has = lambda key: all(m.get(key) is not None for m in marks)  # noqa: E731
    return Regions(
        masks=masks,
        xyxy=np.array([m["xyxy"] for m in marks], np.float32),
        scores=np.array([m["score"] for m in marks], np.float32) if has("score") else None,
        labels=[m["label"] for m in marks] if has("label") else None,
        anchors_xy=np.array([m["anchor_xy"] for m in marks]) if has("anchor_xy") else None,
        label_xyxy=np.array([m["label_xyxy"] for m in marks]) if has("label_xyxy") else None,
    )


def write_marks(path: str | Path, regions: Regions, settings: dict | None = None, image_file: str | None = None) -> Path:
    path = Path(path)
    path.write_text(json.dumps(regions_to_dict(regions, settings, image_file)))
    return path


def read_marks(path: str | Path) -> Regions:
    return regions_from_dict(json.loads(Path(path).read_text()))
