"""A rule-based model for the OpenAI-protocol double: it answers from the ground truth, wrong
exactly where a test tells it to, so every score the harness reports can be checked exactly.

It reads what a real model gets, the prompt and the picture: it recognises the picture by its
pixels (among the pictures the run kept in RUNDIR/images and the data's own images), reads that
picture's marks JSON, and answers like a model that sees the truth: the mark whose full mask
best overlaps the object, the object's box, the category of each mark. It never calls
som.eval; its IoUs are its own numpy.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from som.marksfile import decode_rle, read_marks

REFER_STYLES = (
    "[{l}]",
    "The object is mark {l}.",
    "**[{l}]** matches the description.",
    "Answer: region {l}. It fits the description.",
    "I think it is [{l}], because of where it is.",
)


def pixels_hash(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 0.0


def box_of(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass
class Oracle:
    """responder for FakeOpenAIServer. rundir: the run's folder; smoke: build_smoke's paths.
    wrong(kind, image stem, key) -> True where the answer must be wrong; kinds: 'refer'
    (key: expression), 'ground' (key: phrase), 'label' and 'list' (key: mark label).
    skip(stem, label): list items left out; ghosts: made-up list items per picture."""

    rundir: Path
    smoke: dict
    wrong: Callable[[str, str, str], bool] = lambda kind, stem, key: False
    skip: Callable[[str, str], bool] = lambda stem, label: False
    ghosts: int = 0
    log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        root = Path(self.smoke["instances"]).parent
        coco = json.loads(Path(self.smoke["instances"]).read_text())
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        self.vocab = sorted(cats.values())
        self.objects: dict[str, list[tuple[str, np.ndarray]]] = {}
        self.sources: dict[str, str] = {}
        for im in coco["images"]:
            stem = Path(im["file_name"]).stem
            rgb = np.asarray(Image.open(root / "images" / im["file_name"]).convert("RGB"))
            self.sources[pixels_hash(rgb)] = stem
            self.objects[stem] = [
                (cats[a["category_id"]], decode_rle(a["segmentation"])) for a in coco["annotations"] if a["image_id"] == im["id"]
            ]
        self.expressions = {}
        for line in Path(self.smoke["refer"]).read_text().splitlines():
            r = json.loads(line)
            self.expressions[(Path(r["image"]).stem, r["expression"])] = decode_rle(r["mask"])
        self.phrases = {}
        for line in Path(self.smoke["ground"]).read_text().splitlines():
            g = json.loads(line)
            for p in g["phrases"]:
                self.phrases[(Path(g["image"]).stem, p["phrase"])] = decode_rle(p["mask"])
        self.pictures: dict[str, tuple[str, Path]] = {}

    # ------------------------------------------------------------ what was sent
    def _index(self) -> None:
        for png in (Path(self.rundir) / "images").glob("*/*.png"):
            if png.name.endswith(".tmp.png"):
                continue
            h = pixels_hash(np.asarray(Image.open(png).convert("RGB")))
            marks = png.parent / (png.name[: -len(".png")] + ".marks.json")
            self.pictures[h] = (png, marks)

    def _picture(self, data: bytes) -> tuple[str, list[str] | None, np.ndarray | None]:
        """(image stem, mark labels, (N, H, W) full masks) of the picture sent (labels None: unmarked)."""
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        h = pixels_hash(rgb)
        if h in self.sources:
            return self.sources[h], None, None
        if h not in self.pictures:
            self._index()
        png, marks = self.pictures[h]
        regions = read_marks(marks)
        doc = json.loads(marks.read_text())
        stem = Path(doc["image"]["file"]).name
        stem = next(s for s in self.objects if s in stem)
        return stem, list(regions.labels), regions.full_masks()

    # ------------------------------------------------------------ answers
    def _best(self, masks: np.ndarray, labels: list[str], target: np.ndarray, wrong: bool) -> tuple[str, float]:
        ious = [iou(m, target) for m in masks]
        k = int(np.argmin(ious)) if wrong else int(np.argmax(ious))
        return labels[k], ious[k]

    def _category(self, stem: str, mask: np.ndarray) -> str | None:
        best, best_iou = None, 0.5
        for cat, m in self.objects[stem]:
            v = iou(mask, m)
            if v >= best_iou:
                best, best_iou = cat, v
        return best

    def __call__(self, received) -> str:
        user = received.texts[-1]
        stem, labels, masks = self._picture(received.image_bytes[0])
        sent_h, sent_w = received.images[0][1]
        if user.startswith("Which mark is"):
            expr = re.match(r'Which mark is "(.*)"\?', user).group(1)
            wrong = self.wrong("refer", stem, expr)
            label, v = self._best(masks, labels, self.expressions[(stem, expr)], wrong)
            self.log.append({"kind": "refer", "stem": stem, "key": expr, "label": label, "iou": v, "wrong": wrong})
            style = REFER_STYLES[int(hashlib.md5(expr.encode()).hexdigest(), 16) % len(REFER_STYLES)]
            return style.format(l=label)
        if user.startswith("Where is"):
            expr = re.match(r'Where is "(.*)"\?', user).group(1)
            wrong = self.wrong("refer", stem, expr)
            x1, y1, x2, y2 = (0, 0, 2, 2) if wrong else box_of(self.expressions[(stem, expr)])
            self.log.append({"kind": "refer-box", "stem": stem, "key": expr, "wrong": wrong})
            return f"The box is [{x1}, {y1}, {x2}, {y2}]."
        if user.startswith("Sentence:"):
            phrases = [ln[2:] for ln in user.split("Phrases:\n", 1)[1].splitlines() if ln.startswith("- ")]
            lines = []
            for p in phrases:
                wrong = self.wrong("ground", stem, p)
                target = self.phrases[(stem, p)]
                if labels is None:
                    x1, y1, x2, y2 = (0, 0, 2, 2) if wrong else box_of(target)
                    lines.append(f"{p}: [{x1}, {y1}, {x2}, {y2}]")
                    self.log.append({"kind": "ground-box", "stem": stem, "key": p, "wrong": wrong})
                else:
                    label, v = self._best(masks, labels, target, wrong)
                    lines.append(f"{p}: [{label}]")
                    self.log.append({"kind": "ground", "stem": stem, "key": p, "label": label, "iou": v, "wrong": wrong})
            return "\n".join(reversed(lines))  # any order: lines are matched by phrase
        if "class name" in user:
            out = []
            for label, m in zip(labels, masks):
                cat = self._category(stem, m)
                wrong = self.wrong("label", stem, label)
                if wrong:
                    cat = next(v for v in self.vocab if v != cat)
                self.log.append({"kind": "label", "stem": stem, "key": label, "category": cat, "wrong": wrong})
                out.append(f"[{label}] {cat if cat else 'unknown'}")
            return "\n".join(out)
        if "one by one" in user:
            out = []
            for label, m in zip(labels, masks):
                if self.skip(stem, label):
                    self.log.append({"kind": "list", "stem": stem, "key": label, "skipped": True})
                    continue
                cat = self._category(stem, m)
                wrong = self.wrong("list", stem, label)
                if wrong:
                    cat = next(v for v in self.vocab if v != cat)
                self.log.append({"kind": "list", "stem": stem, "key": label, "category": cat, "wrong": wrong})
                out.append(f"{len(out) + 1}. [{label}] a {cat.replace('_', ' ') if cat else 'thing'} in the picture")
            for g in range(self.ghosts):
                out.append(f"[{900 + g}] a ghost")
            return "\n".join(out)
        return "I cannot tell."
