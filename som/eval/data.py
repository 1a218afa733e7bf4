"""Evaluation data: ground-truth objects, samples, and the loaders of each published layout.

Every loader returns an `EvalData`: the images (path, size, every annotated object, used to
draw ground-truth marks) and the samples of one task. Masks are decoded on request
(`GTObject.mask()`), never held for a whole dataset.

Layouts read:

- refer: the RefCOCO / RefCOCO+ / RefCOCOg download (a folder with `refs(*).p` and
  `instances.json`, images from COCO train2014) and a plain JSONL of
  `{"image", "expression", "mask" | "box"}`;
- ground: Flickr30k Entities (`Sentences/*.txt`, `Annotations/*.xml`) and a JSONL of
  `{"image", "caption", "phrases": [{"phrase", "mask" | "box" | "boxes"}]}`;
- label, list: a COCO instances file.

Boxes are `[x1, y1, x2, y2]` in pixels (x2/y2 exclusive) unless a key says otherwise
(`box_xywh`, COCO's `bbox`). A mask is COCO RLE (`{"size", "counts"}`), COCO polygons (a list
of flat x,y lists) or the path of a PNG whose non-zero pixels are the object.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

TASKS = ("refer", "ground", "label", "list")


@dataclass(eq=False)
class GTObject:
    """One annotated object of an image.

    category:     its class name, or None where the layout has none (a JSONL expression).
    box_xyxy:     (x1, y1, x2, y2) float pixels, x2/y2 exclusive; from the mask when not given.
    segmentation: COCO polygons or RLE, a path to a mask PNG, or None (a box-only object).
    height/width: the image size the object lives in.
    """

    category: str | None
    height: int
    width: int
    box_xyxy: tuple[float, float, float, float] | None = None
    segmentation: Any = None
    iscrowd: bool = False
    source_id: Any = None

    @property
    def has_mask(self) -> bool:
        return self.segmentation is not None

    @functools.cached_property
    def _mask(self) -> np.ndarray:
        return decode_mask(self.segmentation, self.height, self.width)

    def mask(self) -> np.ndarray:
        """(H, W) bool: the mask, or the filled box for a box-only object."""
        if self.segmentation is not None:
            return self._mask
        m = np.zeros((self.height, self.width), bool)
        x1, y1, x2, y2 = _int_box(self.box(), self.height, self.width)
        m[y1:y2, x1:x2] = True
        return m

    def box(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2), x2/y2 exclusive."""
        if self.box_xyxy is not None:
            return tuple(float(v) for v in self.box_xyxy)  # type: ignore[return-value]
        ys, xs = np.nonzero(self._mask)
        if len(xs) == 0:
            return (0.0, 0.0, 0.0, 0.0)
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))

    def release(self) -> None:
        """Forget the decoded mask (memory on large datasets)."""
        self.__dict__.pop("_mask", None)


def _int_box(box: Iterable[float], height: int, width: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    x2, y2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    return x1, y1, max(x1, x2), max(y1, y2)


def decode_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO polygons / RLE, or a mask PNG path -> (H, W) bool. ValueError saying what was wrong."""
    if isinstance(segmentation, (str, Path)):
        from PIL import Image

        path = Path(segmentation)
        try:
            arr = np.asarray(Image.open(path))
        except OSError as e:
            raise ValueError(f"{path}: cannot read the mask image ({e})") from None
        if arr.ndim == 3:
            arr = arr[..., :3].max(axis=2)
        if arr.shape != (height, width):
            raise ValueError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, the image is {width}x{height}")
        return arr > 0
    from som.dataset.coco import annotation_mask

    return annotation_mask({"segmentation": segmentation}, height, width)


@dataclass
class EvalImage:
    """One image: where it is, its size, and every annotated object (for ground-truth marks)."""

    key: str
    path: Path
    height: int
    width: int
    objects: list[GTObject] = field(default_factory=list)


@dataclass
class Phrase:
    """A phrase of a caption and the objects it names (their union is its ground truth)."""

    text: str
    targets: list[GTObject]


@dataclass
class Sample:
    """One question to the model.

    refer: `text` the expression, `targets` the one object.
    ground: `text` the caption, `phrases` its groundable phrases.
    label, list: one sample per image; the image's objects are the ground truth.
    """

    id: str
    image: str
    text: str = ""
    targets: list[GTObject] = field(default_factory=list)
    phrases: list[Phrase] = field(default_factory=list)


@dataclass
class EvalData:
    task: str
    images: dict[str, EvalImage]
    samples: list[Sample]
    vocabulary: list[str] = field(default_factory=list)
    source: str = ""

    def limited(self, limit: int | None) -> "EvalData":
        """The first `limit` samples (and only their images)."""
        if limit is None or limit >= len(self.samples):
            return self
        samples = self.samples[:limit]
        keys = {s.image for s in samples}
        images = {k: v for k, v in self.images.items() if k in keys}
        return EvalData(self.task, images, samples, self.vocabulary, self.source)


# ---------------------------------------------------------------- helpers


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object per line")
        rows.append(row)
    return rows


@functools.lru_cache(maxsize=4096)
def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, EXIF rotation applied (as som.imageio loads it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the image ({e})") from None
    # EXIF orientations 5-8 turn the picture by 90 degrees: its sides swap
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _resolve(image: str, base: Path, images_dir: Path | None) -> Path:
    p = Path(image)
    if p.is_absolute():
        return p
    return (images_dir or base) / p


def _box_of(row: dict, where: str) -> tuple[float, float, float, float] | None:
    if "box" in row and row["box"] is not None:
        b = row["box"]
        if not (isinstance(b, (list, tuple)) and len(b) == 4):
            raise ValueError(f"{where}: box must be [x1, y1, x2, y2], got {b!r}")
        return tuple(float(v) for v in b)  # type: ignore[return-value]
    for key in ("box_xywh", "bbox"):
        if key in row and row[key] is not None:
            x, y, w, h = (float(v) for v in row[key])
            return (x, y, x + w, y + h)
    return None


def _object_of(row: dict, height: int, width: int, base: Path, where: str) -> GTObject:
    seg = row.get("mask", row.get("segmentation"))
    if isinstance(seg, str):
        seg = _resolve(seg, base, None)
    box = _box_of(row, where)
    if seg is None and box is None:
        raise ValueError(f"{where}: needs a \"mask\" (RLE, polygons or PNG path) or a \"box\" [x1, y1, x2, y2]")
    return GTObject(category=row.get("category"), height=height, width=width, box_xyxy=box, segmentation=seg)


def _same_object(a: GTObject, b: GTObject) -> bool:
    if (a.segmentation is None) != (b.segmentation is None):
        return False
    if a.segmentation is not None:
        return json.dumps(a.segmentation, sort_keys=True, default=str) == json.dumps(
            b.segmentation, sort_keys=True, default=str
        )
    return a.box() == b.box()


def _add_object(image: EvalImage, obj: GTObject) -> GTObject:
    """The image's object equal to `obj` (added when new): records naming one object share it."""
    for o in image.objects:
        if _same_object(o, obj):
            if o.category is None and obj.category is not None:
                o.category = obj.category
            return o
    image.objects.append(obj)
    return obj


# ---------------------------------------------------------------- COCO


def load_coco_images(instances: str | Path, images_dir: str | Path, *, crowd: bool = True) -> tuple[dict[str, EvalImage], list[str], dict, dict]:
    """COCO instances -> ({key: EvalImage with its objects}, category names in id order,
    {annotation id: GTObject}, {image id: key})."""
    from som.dataset.coco import load_coco

    index = load_coco(instances)
    images_dir = Path(images_dir)
    names = [index.categories[k] for k in sorted(index.categories)]
    images: dict[str, EvalImage] = {}
    by_ann: dict[Any, GTObject] = {}
    key_of: dict[Any, str] = {}
    for image_id in sorted(index.images, key=lambda i: (str(type(i)), i)):
        entry = index.images[image_id]
        path = images_dir / entry["file_name"]
        h, w = entry.get("height"), entry.get("width")
        if not (isinstance(h, int) and isinstance(w, int)):
            h, w = _image_size(path)
        image = EvalImage(key=str(entry["file_name"]), path=path, height=h, width=w)
        for ann in index.annotations.get(image_id, []):
            cat = index.categories.get(ann.get("category_id"))
            if cat is None or ann.get("segmentation") is None and ann.get("bbox") is None:
                continue
            is_crowd = bool(ann.get("iscrowd", 0))
            box = None
            if ann.get("bbox") is not None:
                x, y, bw, bh = (float(v) for v in ann["bbox"])
                box = (x, y, x + bw, y + bh)
            obj = GTObject(cat, h, w, box, ann.get("segmentation") or None, is_crowd, ann.get("id"))
            by_ann[ann.get("id")] = obj
            if crowd or not is_crowd:
                image.objects.append(obj)
        images[image.key] = image
        key_of[image_id] = image.key
    return images, names, by_ann, key_of


def load_coco_task(task: str, instances: str | Path, images_dir: str | Path) -> EvalData:
    """label / list: one sample per image with at least one non-crowd object."""
    images, names, _, _ = load_coco_images(instances, images_dir)
    samples = [
        Sample(id=Path(k).stem, image=k, targets=[o for o in im.objects if not o.iscrowd])
        for k, im in images.items()
        if any(not o.iscrowd for o in im.objects)
    ]
    images = {s.image: images[s.image] for s in samples}
    return EvalData(task, images, samples, vocabulary=names, source=str(instances))


# ---------------------------------------------------------------- refer


class _SafeUnpickler(pickle.Unpickler):
    """RefCOCO's refs file holds only lists, dicts, strings and numbers: refuse anything else,
    so a tampered pickle cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refs pickle refers to {module}.{name}; only plain data is allowed")


def load_refs_pickle(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            refs = _SafeUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a readable refs pickle ({e})") from None
    if not isinstance(refs, list):
        raise ValueError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def load_refcoco(folder: str | Path, images_dir: str | Path, *, split: str | None = None, refs_file: str | None = None) -> EvalData:
    """The RefCOCO layout: FOLDER/refs(unc).p (or refs(umd).p, refs(google).p) and FOLDER/instances.json.

    One sample per sentence (how RefCOCO accuracy is counted); `split` keeps refs of that split
    (val, testA, testB, test). The target is the referred annotation's mask."""
    folder = Path(folder)
    if refs_file is not None:
        refs_path = folder / refs_file
    else:
        found = sorted(folder.glob("refs*.p"))
        if not found:
            raise ValueError(f"{folder}: no refs(*).p file (the RefCOCO layout has refs(unc).p and instances.json)")
        refs_path = found[0]
    instances = folder / "instances.json"
    if not instances.is_file():
        raise ValueError(f"{folder}: no instances.json next to {refs_path.name}")
    images, names, by_ann, key_of = load_coco_images(instances, images_dir)
    samples = []
    for ref in load_refs_pickle(refs_path):
        if split is not None and ref.get("split") != split:
            continue
        obj = by_ann.get(ref.get("ann_id"))
        key = key_of.get(ref.get("image_id"))
        if obj is None or key is None:
            continue
        for n, sent in enumerate(ref.get("sentences", [])):
            text = sent.get("sent") or sent.get("raw") or ""
            sid = sent.get("sent_id", f"{ref.get('ref_id')}-{n}")
            if text.strip():
                samples.append(Sample(id=f"ref{ref.get('ref_id')}-s{sid}", image=key, text=text.strip(), targets=[obj]))
    used = {s.image for s in samples}
    images = {k: v for k, v in images.items() if k in used}
    return EvalData("refer", images, samples, vocabulary=names, source=str(refs_path))


def _add_image(images: dict[str, "EvalImage"], key: str, base: Path, images_dir: str | Path | None) -> None:
    """Register a JSONL row's image once (its file looked up beside the JSONL or in images_dir)."""
    if key not in images:
        p = _resolve(key, base, Path(images_dir) if images_dir else None)
        h, w = _image_size(p)
        images[key] = EvalImage(key, p, h, w)


def load_refer_jsonl(path: str | Path, images_dir: str | Path | None = None) -> EvalData:
    """JSONL, one expression per line: {"image", "expression", "mask" or "box"[, "id", "category"]}.
    Ground-truth marks of an image are every distinct object its lines name."""
    path = Path(path)
    base = path.parent
    images: dict[str, EvalImage] = {}
    samples = []
    for n, row in enumerate(_read_jsonl(path), 1):
        where = f"{path}:{n}"
        if not isinstance(row.get("image"), str) or not isinstance(row.get("expression"), str):
            raise ValueError(f"{where}: needs \"image\" (path) and \"expression\" (text)")
        key = row["image"]
        _add_image(images, key, base, images_dir)
        im = images[key]
        obj = _add_object(im, _object_of(row, im.height, im.width, base, where))
        samples.append(Sample(id=str(row.get("id", f"line{n}")), image=key, text=row["expression"].strip(), targets=[obj]))
    cats = sorted({o.category for im in images.values() for o in im.objects if o.category})
    return EvalData("refer", images, samples, vocabulary=cats, source=str(path))


# ---------------------------------------------------------------- ground

_ENTITY = re.compile(r"\[/EN#(\d+)/([^\s\]]+)\s+([^\]]*)\]")


def parse_flickr_sentence(line: str) -> tuple[str, list[tuple[str, str, str]]]:
    """'[/EN#1/people A man] in [/EN#2/clothing a hat]' -> ('A man in a hat', [(phrase, entity id, type)])."""
    phrases = [(m.group(3).strip(), m.group(1), m.group(2)) for m in _ENTITY.finditer(line)]
    caption = _ENTITY.sub(lambda m: m.group(3).strip(), line)
    return " ".join(caption.split()), phrases


def parse_flickr_annotation(path: Path) -> tuple[int, int, dict[str, list[tuple[float, float, float, float]]]]:
    """Annotations/ID.xml -> (height, width, {entity id: boxes as x1, y1, x2, y2 exclusive})."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise ValueError(f"{path}: not a readable annotation XML ({e})") from None
    size = root.find("size")
    w = int(size.findtext("width")) if size is not None else 0
    h = int(size.findtext("height")) if size is not None else 0
    boxes: dict[str, list] = {}
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        # VOC-style boxes are inclusive 1-based pixel indices
        x1, y1 = float(bb.findtext("xmin")) - 1, float(bb.findtext("ymin")) - 1
        x2, y2 = float(bb.findtext("xmax")), float(bb.findtext("ymax"))
        for name in obj.findall("name"):
            boxes.setdefault(name.text.strip(), []).append((x1, y1, x2, y2))
    return h, w, boxes


def load_flickr30k(folder: str | Path, images_dir: str | Path | None = None, *, ids: Iterable[str] | None = None) -> EvalData:
    """Flickr30k Entities: FOLDER/Sentences/ID.txt (five annotated captions) and FOLDER/Annotations/ID.xml.

    One sample per caption; each phrase with boxes is scored against the union of its boxes
    ("merged boxes"); phrases without a box (scene, not visual) are left out. `ids`: only
    these image ids (e.g. the lines of test.txt)."""
    folder = Path(folder)
    sent_dir, ann_dir = folder / "Sentences", folder / "Annotations"
    if not sent_dir.is_dir() or not ann_dir.is_dir():
        raise ValueError(f"{folder}: expected the Flickr30k Entities layout (Sentences/ and Annotations/)")
    images_dir = Path(images_dir) if images_dir else folder / "flickr30k-images"
    wanted = None if ids is None else {str(i) for i in ids}
    images: dict[str, EvalImage] = {}
    samples = []
    for sent_path in sorted(sent_dir.glob("*.txt")):
        image_id = sent_path.stem
        if wanted is not None and image_id not in wanted:
            continue
        ann_path = ann_dir / f"{image_id}.xml"
        if not ann_path.is_file():
            continue
        h, w, boxes = parse_flickr_annotation(ann_path)
        path = images_dir / f"{image_id}.jpg"
        if not (h and w):
            h, w = _image_size(path)
        key = f"{image_id}.jpg"
        image = EvalImage(key, path, h, w)
        entity_objs = {
            eid: [GTObject(None, h, w, box_xyxy=b, source_id=eid) for b in bs] for eid, bs in boxes.items()
        }
        for eid, objs in entity_objs.items():
            image.objects.extend(objs)
        before = len(samples)
        for n, line in enumerate(sent_path.read_text(encoding="utf-8").splitlines()):
            caption, found = parse_flickr_sentence(line)
            phrases = []
            for text, eid, etype in found:
                if eid in entity_objs:
                    for o in entity_objs[eid]:
                        o.category = o.category or etype
                    phrases.append(Phrase(text, entity_objs[eid]))
            if phrases:
                samples.append(Sample(id=f"{image_id}-{n}", image=key, text=caption, phrases=phrases))
        if len(samples) > before:
            images[key] = image
    return EvalData("ground", images, samples, source=str(folder))


def load_ground_jsonl(path: str | Path, images_dir: str | Path | None = None) -> EvalData:
    """JSONL, one caption per line: {"image", "caption", "phrases": [{"phrase", "mask" | "box" | "boxes"}]}."""
    path = Path(path)
    base = path.parent
    images: dict[str, EvalImage] = {}
    samples = []
    for n, row in enumerate(_read_jsonl(path), 1):
        where = f"{path}:{n}"
        if not isinstance(row.get("image"), str) or not isinstance(row.get("caption"), str):
            raise ValueError(f"{where}: needs \"image\" (path) and \"caption\" (text)")
        if not isinstance(row.get("phrases"), list) or not row["phrases"]:
            raise ValueError(f"{where}: needs \"phrases\": a list of {{\"phrase\", \"mask\" or \"box\"}}")
        key = row["image"]
        _add_image(images, key, base, images_dir)
        im = images[key]
        phrases = []
        for i, ph in enumerate(row["phrases"]):
            pw = f"{where} phrase {i + 1}"
            if not isinstance(ph, dict) or not isinstance(ph.get("phrase"), str):
                raise ValueError(f"{pw}: expected {{\"phrase\": text, \"mask\" or \"box\"}}")
            if isinstance(ph.get("boxes"), list):
                objs = [_add_object(im, GTObject(ph.get("category"), im.height, im.width, tuple(float(v) for v in b))) for b in ph["boxes"]]
            else:
                objs = [_add_object(im, _object_of(ph, im.height, im.width, base, pw))]
            phrases.append(Phrase(ph["phrase"].strip(), objs))
        samples.append(Sample(id=str(row.get("id", f"line{n}")), image=key, text=row["caption"].strip(), phrases=phrases))
    return EvalData("ground", images, samples, source=str(path))


# ---------------------------------------------------------------- dispatch


def load_data(
    task: str,
    data: str | Path,
    *,
    images_dir: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    coco: str | Path | None = None,
) -> EvalData:
    """The loader for `task` chosen by what `data` is (a .jsonl file, a COCO .json, a RefCOCO or
    Flickr30k Entities folder). ValueError saying which layouts the task reads.

    coco: a COCO instances file whose objects join those of the JSONL records with the same image
    file name (refer, ground), so ground-truth marks show every annotated object, not only the
    ones the records name."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    path = Path(data)
    if not path.exists():
        raise ValueError(f"--data {path}: no such file or folder")
    if task == "refer":
        if path.suffix == ".jsonl":
            out = load_refer_jsonl(path, images_dir)
        elif path.is_dir():
            if images_dir is None:
                raise ValueError("RefCOCO data needs --images DIR (the COCO train2014 images)")
            out = load_refcoco(path, images_dir, split=split)
        else:
            raise ValueError(f"refer reads a .jsonl file or a RefCOCO folder (refs(*).p + instances.json), got {path}")
    elif task == "ground":
        if path.suffix == ".jsonl":
            out = load_ground_jsonl(path, images_dir)
        elif path.is_dir():
            ids = None
            if split is not None and (path / f"{split}.txt").is_file():
                ids = (path / f"{split}.txt").read_text().split()
            out = load_flickr30k(path, images_dir, ids=ids)
        else:
            raise ValueError(f"ground reads a .jsonl file or a Flickr30k Entities folder, got {path}")
    else:
        if path.suffix != ".json":
            raise ValueError(f"{task} reads a COCO instances .json file (with --images DIR), got {path}")
        out = load_coco_task(task, path, images_dir if images_dir is not None else path.parent)
    if not out.samples:
        raise ValueError(f"--data {path}: no {task} samples found" + (f" in split {split!r}" if split else ""))
    if coco is not None:
        if task not in ("refer", "ground") or path.suffix != ".jsonl":
            raise ValueError("--coco adds ground-truth objects to JSONL refer/ground data; the other layouts carry their own")
        add_coco_objects(out, coco)
    return out.limited(limit)


def add_coco_objects(data: EvalData, instances: str | Path) -> None:
    """Every object of `instances` joins the image of `data` with the same file name (an object
    equal to one the records name is that one, not a second mark)."""
    coco_images, _, _, _ = load_coco_images(instances, Path(instances).parent)
    by_name = {Path(k).name: im for k, im in coco_images.items()}
    matched = 0
    for image in data.images.values():
        src = by_name.get(image.path.name)
        if src is None:
            continue
        if (src.height, src.width) != (image.height, image.width):
            raise ValueError(
                f"{instances}: {image.path.name} is {src.width}x{src.height} there, {image.width}x{image.height} on disk"
            )
        matched += 1
        for obj in src.objects:
            _add_object(image, obj)
    if not matched:
        raise ValueError(f"{instances}: none of its images is an image of --data (matched by file name)")


__all__ = [
    "TASKS",
    "EvalData",
    "EvalImage",
    "GTObject",
    "Phrase",
    "Sample",
    "decode_mask",
    "load_coco_task",
    "load_data",
    "load_flickr30k",
    "load_ground_jsonl",
    "load_refcoco",
    "load_refer_jsonl",
    "load_refs_pickle",
    "parse_flickr_sentence",
]
