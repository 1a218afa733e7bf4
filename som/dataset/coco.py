"""COCO annotations -> per-image jobs and ground-truth masks.

Only what `som dataset build` needs: images, categories, instance annotations with
polygon or RLE (compressed or uncompressed) segmentations. Every annotation is
validated before pycocotools sees it (a malformed RLE can make the C decoder write
past its buffer), and a broken one becomes an `AnnotationError` with one readable
reason, so the image is still built without it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class AnnotationError(ValueError):
    """One annotation that cannot be turned into a mask; the message says why."""


@dataclass(frozen=True)
class CocoIndex:
    """The parts of a COCO file the builder uses, indexed.

    images:      image id -> the COCO image entry (file_name, height, width).
    annotations: image id -> its annotations, sorted by annotation id (deterministic order).
    categories:  category id -> name.
    orphans:     annotations whose image_id is not among the images (reported, not used).
    """

    images: dict[int, dict]
    annotations: dict[int, list[dict]]
    categories: dict[int, str]
    orphans: list[dict] = field(default_factory=list)


def _ann_key(ann: Any) -> tuple:
    aid = ann.get("id") if isinstance(ann, dict) else None
    return (0, aid, "") if isinstance(aid, (int, float)) else (1, 0, json.dumps(ann, sort_keys=True, default=str))


def load_coco(path: str | Path) -> CocoIndex:
    """Read a COCO instances file. ValueError (one line) if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such annotations file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{path}: not a COCO annotations file (expected an object with an \"images\" list)")
    images: dict[int, dict] = {}
    for im in doc["images"]:
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise ValueError(f"{path}: image entry without id/file_name: {str(im)[:120]}")
        images[im["id"]] = im
    categories = {}
    for c in doc.get("categories", []) or []:
        if isinstance(c, dict) and "id" in c and isinstance(c.get("name"), str):
            categories[c["id"]] = c["name"]
    annotations: dict[int, list[dict]] = {i: [] for i in images}
    orphans = []
    for ann in doc.get("annotations", []) or []:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if image_id in annotations:
            annotations[image_id].append(ann)
        else:
            orphans.append(ann)
    for anns in annotations.values():
        anns.sort(key=_ann_key)
    return CocoIndex(images=images, annotations=annotations, categories=categories, orphans=orphans)


def _counts_from_string(s: str) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools' rleFrString) in Python, to validate it."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise AnnotationError("compressed RLE string ends in the middle of a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise AnnotationError(f"compressed RLE string has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def annotation_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """One COCO annotation -> (H, W) bool. AnnotationError when it is malformed or empty."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not seg:
            raise AnnotationError("empty polygon list")
        polys = []
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise AnnotationError("each polygon needs at least 3 x,y pairs as a flat list")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in poly):
                raise AnnotationError("polygon has a non-numeric or non-finite coordinate")
            polys.append([float(v) for v in poly])
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not isinstance(size, (list, tuple)) or [int(v) for v in size] != [height, width]:
            raise AnnotationError(f"RLE size {size} does not match the image ({height}x{width})")
        if isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
                raise AnnotationError("uncompressed RLE counts must be non-negative integers")
            cs = counts
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, (str, bytes)):
            text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
            cs = _counts_from_string(text)
            rle = {"size": [height, width], "counts": text.encode("ascii")}
        else:
            raise AnnotationError("RLE counts must be a list or a string")
        if any(v < 0 for v in cs) or sum(cs) != height * width:
            raise AnnotationError(f"RLE counts cover {sum(cs)} pixels, the image has {height * width}")
    else:
        raise AnnotationError("no segmentation (expected polygons or RLE)")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.ndim == 3:  # merge of one polygon can still come back stacked
        mask = mask.any(axis=2)
    if mask.shape != (height, width):
        raise AnnotationError(f"mask is {mask.shape}, the image is {(height, width)}")
    if not mask.any():
        raise AnnotationError("empty mask (covers no pixel)")
    return mask
