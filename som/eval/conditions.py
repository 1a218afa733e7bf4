"""Conditions: what the model is shown for the same question.

- `none`: the clean picture; the model answers with box coordinates (parsed by
  `som.eval.answers.parse_box`).
- `gt`: marks drawn from the ground-truth masks (the upper bound of marking): every annotated
  object of the image (crowds left out) is a region; objects inside others nest as parts.
- a segmenter condition per chosen segmenter x granularity x mark style: marks from
  `som.pipeline.mark`, exactly what `som mark` draws.

A marked picture is made once per (condition, image) and kept in RUNDIR/images/<condition>/
(PNG + marks JSON); a resumed run reads it back instead of segmenting again, so it sends the
same bytes and its requests hit the response cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from som.eval.data import EvalImage
from som.regions import Regions

KINDS = ("none", "gt", "seg")
DEFAULT_MARKS = "mark,mask,contour"


@dataclass(frozen=True)
class Condition:
    """kind: 'none', 'gt' or 'seg'. segmenter/granularity: for 'seg'. marks: comma list of mark
    types (som mark's --marks). label_mode: 'number' or 'alphabet'."""

    kind: str
    segmenter: str | None = None
    granularity: int | None = None
    marks: str = DEFAULT_MARKS
    label_mode: str = "number"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"condition kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "seg" and (self.segmenter is None or self.granularity is None):
            raise ValueError("a segmenter condition needs a segmenter and a granularity")

    @property
    def marked(self) -> bool:
        return self.kind != "none"

    @property
    def name(self) -> str:
        """'none', 'gt', 'gt/mark+box', 'mobile-sam/nested', 'superpixel/objects/mark+contour'..."""
        from som.segmenters import granularity

        style = "" if self.marks == DEFAULT_MARKS else "/" + self.marks.replace(",", "+")
        mode = "" if self.label_mode == "number" else "/abc"
        if self.kind == "none":
            return "none"
        if self.kind == "gt":
            return f"gt{style}{mode}"
        return f"{self.segmenter}/{granularity(self.granularity).name}{style}{mode}"

    @property
    def slug(self) -> str:
        """The name as a folder/file name."""
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", self.name)

    def style(self):
        from som.cli import parse_mark_types
        from som.draw import MarkStyle

        return MarkStyle(label_mode=self.label_mode, **parse_mark_types(self.marks))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "segmenter": self.segmenter,
            "granularity": self.granularity,
            "marks": self.marks,
            "label_mode": self.label_mode,
        }


def make_conditions(
    kinds: Sequence[str],
    segmenters: Sequence[str] = (),
    granularities: Sequence[str | int] = (),
    marks: Sequence[str] = (),
    label_mode: str = "number",
) -> list[Condition]:
    """Conditions in report order: none, gt (one per mark style), then every segmenter x
    granularity x mark style. Defaults: segmenter mobile-sam, granularity 4 (nested), marks
    mark,mask,contour. ValueError on an unknown kind, segmenter, granularity or mark type."""
    from som.cli import parse_mark_types
    from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, SPECS, granularity

    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"--conditions takes a comma list of {', '.join(KINDS)}; got {','.join(kinds) or 'nothing'}")
    styles = list(dict.fromkeys(marks)) or [DEFAULT_MARKS]
    for s in styles:
        parse_mark_types(s)
    segs = list(dict.fromkeys(segmenters)) or [DEFAULT_SEGMENTER]
    for s in segs:
        if s not in SPECS:
            raise ValueError(f"unknown segmenter {s!r}; registered: {', '.join(SPECS)}")
    levels = list(dict.fromkeys(granularity(g).level for g in granularities)) or [DEFAULT_LEVEL]
    out: list[Condition] = []
    if "none" in kinds:
        out.append(Condition("none", label_mode=label_mode))
    if "gt" in kinds:
        out += [Condition("gt", marks=s, label_mode=label_mode) for s in styles]
    if "seg" in kinds:
        out += [
            Condition("seg", seg, level, s, label_mode) for seg in segs for level in levels for s in styles
        ]
    return out


@dataclass
class Marked:
    """What one condition shows for one image.

    picture:  (H, W, 3) uint8 RGB sent to the model (marked, or the clean image for 'none').
    regions:  the labelled marks (None for 'none'); full masks via regions.mask(k).
    sources:  'gt' only: per mark, the index in the image's objects it was drawn from.
    file:     where the picture is kept in RUNDIR (None for 'none': the dataset file).
    """

    picture: np.ndarray
    regions: Regions | None = None
    sources: list[int] | None = None
    file: Path | None = None


def gt_objects(image: EvalImage) -> list[int]:
    """Indices of the image's objects that become ground-truth marks (crowds left out)."""
    return [i for i, o in enumerate(image.objects) if not o.iscrowd]


def _mark_gt(source: np.ndarray, image: EvalImage, cond: Condition) -> tuple[Regions, list[int], Any]:
    from som.pipeline import mark_regions
    from som.refine import RefineOptions

    idx = gt_objects(image)
    h, w = source.shape[:2]
    if (h, w) != (image.height, image.width):
        raise ValueError(
            f"{image.path}: image is {w}x{h} but the annotations say {image.width}x{image.height}"
        )
    boxes, crops, drawn = [], [], []
    for i in idx:
        try:
            m = image.objects[i].mask()
        except ValueError:  # a broken annotation is not drawn; samples naming it fail on their own
            continue
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            continue
        drawn.append(i)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        boxes.append((x1, y1, x2, y2))
        crops.append(m[y1:y2, x1:x2])
    candidates = Regions.from_crops(np.array(boxes, np.int64).reshape(-1, 4), crops, (h, w), scores=np.arange(len(drawn), dtype=np.float32))
    # exact pieces of the annotations: no hole filling, no island removal; tiny objects stay
    options = RefineOptions(min_area_px=4, fill_holes_frac=0.0, remove_islands_frac=0.0, nested=True)
    result = mark_regions(source, candidates, style=cond.style(), refine_options=options)
    sources = [drawn[int(s)] for s in result.regions.scores] if len(result.regions) else []
    return result.regions.replace(scores=None), sources, result


class Marker:
    """Makes (or reads back) the picture of each (condition, image), kept under `root`."""

    def __init__(self, root: Path, *, device: str = "auto", checkpoint: str | None = None, max_side_px: int = 2048) -> None:
        self.root = Path(root)
        self.device = device
        self.checkpoint = checkpoint
        self.max_side_px = max_side_px

    def paths(self, cond: Condition, image: EvalImage) -> tuple[Path, Path]:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", image.key)
        folder = self.root / cond.slug
        return folder / f"{stem}.png", folder / f"{stem}.marks.json"

    def fingerprint(self, cond: Condition, image: EvalImage) -> str:
        """What a kept picture depends on: the condition, the image file (size, time), the working
        size, and for 'gt' the annotations drawn. A kept picture with another fingerprint is redrawn."""
        import hashlib

        try:
            st = image.path.stat()
            file = [str(image.path), st.st_size, st.st_mtime_ns]
        except OSError:
            file = [str(image.path)]
        what: dict[str, Any] = {"condition": cond.to_json(), "file": file, "max_side_px": self.max_side_px}
        if cond.kind == "gt":
            what["objects"] = [[o.segmentation, o.box_xyxy, o.iscrowd] for o in image.objects]
            what.pop("max_side_px")
        text = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, cond: Condition, image: EvalImage) -> Marked:
        from PIL import Image

        from som.imageio import load_image
        from som.marksfile import regions_from_dict, regions_to_dict

        if cond.kind == "none":
            return Marked(load_image(image.path))
        png, marks_json = self.paths(cond, image)
        fingerprint = self.fingerprint(cond, image)
        if png.is_file() and marks_json.is_file():
            try:
                doc = json.loads(marks_json.read_text())
                if doc["settings"].get("fingerprint") == fingerprint:  # else: other settings or annotations
                    picture = np.asarray(Image.open(png).convert("RGB"))
                    return Marked(picture, regions_from_dict(doc), doc["settings"].get("sources"), png)
            except (OSError, ValueError, KeyError):
                pass  # half-written by a killed run: make it again
        source = load_image(image.path)
        if cond.kind == "gt":
            regions, sources, result = _mark_gt(source, image, cond)
            settings = {"condition": cond.to_json(), "sources": sources, "fingerprint": fingerprint}
        else:
            from som.pipeline import cached_segmenter, mark

            seg = cached_segmenter(cond.segmenter, self.device, self.checkpoint)
            result = mark(source, segmenter=seg, granularity_level=cond.granularity, style=cond.style(), max_side_px=self.max_side_px)
            regions, sources = result.regions, None
            settings = {"condition": cond.to_json(), "fingerprint": fingerprint, **result.settings}
        png.parent.mkdir(parents=True, exist_ok=True)
        tmp = png.with_suffix(".tmp.png")
        Image.fromarray(result.image).save(tmp)
        tmp.replace(png)
        doc = regions_to_dict(regions, settings, image_file=png.name)
        tmp_json = marks_json.with_suffix(".tmp")
        tmp_json.write_text(json.dumps(doc))
        tmp_json.replace(marks_json)
        return Marked(result.image, regions, sources, png)


__all__ = ["Condition", "KINDS", "Marked", "Marker", "gt_objects", "make_conditions"]
