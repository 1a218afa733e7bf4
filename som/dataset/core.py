"""Building a SoM dataset, one image at a time: the stages every engine runs.

Stages (each a plain function of picklable values, so a process pool or Ray runs them):

1. `segment_job` (segmenter datasets only; the GPU stage): load, segment at the working
   size, `refine`; returns a compact label map (disjoint regions) instead of N masks.
2. `finish_job` (CPU): ground-truth masks from COCO, or the label map scaled back to the
   image; `som.pipeline.mark_regions` numbers and draws them exactly as `som.mark` would
   (so mark k in the picture is region k in the record); then the records.
3. `write_output` (wherever files are written): image, marks JSON, then the part file, each
   atomically (temp file + rename). The part file is the commit: an image is done iff its
   part exists, so a killed run never leaves a half record and resumes where it stopped.
4. `merge`: parts in image order -> the records file and summary.json, byte-identical for
   the same inputs and seed whatever the engine, worker count or number of restarts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from som.dataset.tasks import (
    ImageFacts,
    MarkInfo,
    conversation,
    listing_answer,
    listing_instruction,
    position_phrase,
    qa_turns,
    rng_for,
)
from som.draw import MarkStyle
from som.refine import RefineOptions
from som.segmenters.base import DEFAULT_LEVEL

FORMAT = "som.dataset"
VERSION = 1
IMAGES, MARKS, PARTS, LLM_DIR = "images", "marks", "parts", "llm"


@dataclass(frozen=True)
class BuildConfig:
    """Settings that decide the output bytes (engine and worker counts do not).

    categories: COCO category id -> name as sorted pairs (empty: segmenter dataset).
    crowd: "skip" crowd annotations (their category is then not counted) or "mark" them.
    refine: used as given for segmenter output; for ground truth its holes/islands
    cleaning is switched off so every region stays an exact piece of its object.
    """

    use_coco: bool = False
    categories: tuple[tuple[int, str], ...] = ()
    tasks: tuple[str, ...] = ("listing", "qa")
    seed: int = 0
    qa_per_image: int = 3
    crowd: str = "skip"
    image_format: str = "png"
    segmenter: str = "mobile-sam"
    granularity: str = str(DEFAULT_LEVEL)
    style: MarkStyle = MarkStyle()
    refine: RefineOptions = RefineOptions()
    max_side_px: int = 2048
    device: str = "auto"
    checkpoint: str | None = None

    @property
    def gt_refine(self) -> RefineOptions:
        return dataclasses.replace(self.refine, fill_holes_frac=0.0, remove_islands_frac=0.0)

    def fingerprint(self, extra: dict | None = None) -> dict:
        """What the output depends on (device excluded: stored in no output)."""
        d = dataclasses.asdict(self)
        d.pop("device")
        d["categories"] = [list(c) for c in self.categories]
        if not self.use_coco:
            d.pop("crowd")
        else:
            for k in ("segmenter", "granularity", "max_side_px", "checkpoint"):
                d.pop(k)
        d.update(extra or {})
        return d


@dataclass(frozen=True)
class ImageJob:
    """One image to build. annotations: its COCO annotations (None: segmenter dataset)."""

    index: int
    name: str
    path: str
    image_id: Any = None
    height: int | None = None
    width: int | None = None
    annotations: tuple | None = None

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["annotations"] = None if self.annotations is None else list(self.annotations)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ImageJob":
        d = json.loads(text)
        if d["annotations"] is not None:
            d["annotations"] = tuple(d["annotations"])
        return cls(**d)


class SkipImage(Exception):
    """The image cannot be built; the message is the reason shown in the summary."""


# ---------------------------------------------------------------- stage 1: segment
def _pack_label_map(label_map: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, label_map, allow_pickle=False)
    return zlib.compress(buf.getvalue(), 1)


def _unpack_label_map(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False)


def _load(job: ImageJob) -> np.ndarray:
    from som.imageio import ImageError, load_image
    from som.pipeline import MIN_SIDE_PX

    try:
        source = load_image(job.path, name=job.name)
    except ImageError as e:
        raise SkipImage(str(e).removeprefix(f"{job.name}: ")) from None
    h, w = source.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise SkipImage(f"image is {w}x{h} pixels; marks need at least {MIN_SIDE_PX}x{MIN_SIDE_PX}")
    return source


def segment_job(job: ImageJob, cfg: BuildConfig, segmenter: Any) -> dict:
    """Segment + refine at the working size, as `som.pipeline.mark` does. Returns
    {"labels": packed (h, w) uint16 label map (0 = none, k+1 = region k), "scores": bytes,
    "parents": bytes, "categories": JSON list of class names ("" when the segmenter names none)}."""
    from som.imageio import resize_rgb, working_size
    from som.pipeline import refine_options_for
    from som.refine import refine

    source = _load(job)
    h, w = source.shape[:2]
    wh, ww = working_size(h, w, cfg.max_side_px)
    candidates = segmenter.segment_everything(resize_rgb(source, wh, ww), cfg.granularity)
    regions = refine(candidates, refine_options_for(cfg.granularity, cfg.refine))
    if len(regions) >= 65535:
        raise SkipImage(f"{len(regions)} regions; at most 65534 fit a mark map")
    label_map = regions.label_map().astype(np.uint16)  # visible parts: disjoint, wholes via parents
    scores = np.zeros(len(regions), np.float32) if regions.scores is None else regions.scores
    return {
        "labels": _pack_label_map(label_map),
        "scores": scores.astype(np.float32).tobytes(),
        "parents": regions.parent.astype(np.int32).tobytes(),
        "categories": "" if regions.categories is None else json.dumps(regions.categories),
    }


# ---------------------------------------------------------------- stage 2: finish
def _gt_regions(job: ImageJob, cfg: BuildConfig, source: np.ndarray):
    """COCO annotations -> candidate Regions (score = position in `meta`), meta, issues."""
    from som.dataset.coco import AnnotationError, annotation_mask
    from som.regions import Regions

    h, w = source.shape[:2]
    if (job.height, job.width) != (None, None) and (job.height, job.width) != (h, w):
        raise SkipImage(
            f"image is {w}x{h} but the annotations say {job.width}x{job.height} "
            "(EXIF rotation or a different file?)"
        )
    names = dict(cfg.categories)
    masks, meta, issues = [], [], []
    for ann in job.annotations or ():
        aid = ann.get("id") if isinstance(ann, dict) else None
        cat_id = ann.get("category_id") if isinstance(ann, dict) else None
        cat = names.get(cat_id)
        crowd = bool(ann.get("iscrowd", 0)) if isinstance(ann, dict) else False
        if cat is None:
            issues.append({"annotation_id": aid, "category": None, "reason": f"unknown category_id {cat_id!r}"})
            continue
        if crowd and cfg.crowd == "skip":
            issues.append({"annotation_id": aid, "category": cat, "reason": "crowd"})
            continue
        try:
            masks.append(annotation_mask(ann, h, w))
        except (AnnotationError, ValueError, TypeError, OverflowError) as e:
            issues.append({"annotation_id": aid, "category": cat, "reason": f"broken: {e}"})
            continue
        meta.append({"annotation_id": aid, "category_id": cat_id, "category": cat + (" (crowd)" if crowd else ""), "iscrowd": crowd})
    stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    regions = Regions.from_masks(stack, scores=np.arange(len(meta), dtype=np.float32))
    return regions, meta, issues


def _facts(regions, meta_by_mark: list[dict] | None, label_mode: str, complete: frozenset) -> ImageFacts:
    h, w = regions.image_hw
    infos = []
    for k, label in enumerate(regions.labels or []):
        x, y = regions.anchors_xy[k]
        if meta_by_mark is not None:  # ground truth
            cat = meta_by_mark[k]["category"]
        else:  # a segmenter's class name (seem), when it gave one
            cat = (regions.categories[k] or None) if regions.categories is not None else None
        p = int(regions.parent[k])
        whole = regions.labels[p] if p >= 0 else None
        infos.append(MarkInfo(label=label, category=cat, position=position_phrase(x + 0.5, y + 0.5, w, h), part_of=whole))
    return ImageFacts(marks=tuple(infos), label_mode=label_mode, complete=complete)


def build_records(name: str, image_rel: str, marks_rel: str, facts: ImageFacts, cfg: BuildConfig) -> list[dict]:
    records = []
    if not facts.marks:
        return records
    for task in cfg.tasks:
        rng = rng_for(cfg.seed, task, name)
        if task == "listing":
            turns = [(listing_instruction(facts, rng), listing_answer(facts))]
        elif task == "qa":
            turns = qa_turns(facts, rng, cfg.qa_per_image)
        else:  # validated by the CLI
            raise ValueError(f"unknown task {task!r}")
        if turns:
            records.append(
                {"id": f"{name}-{task}", "image": image_rel, "conversations": conversation(turns), "task": task, "marks": marks_rel}
            )
    return records


def _encode_image(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buf, format="PNG")
    else:
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def finish_job(job: ImageJob, cfg: BuildConfig, segmented: dict | None = None) -> dict:
    """Mark one image and make its records. Returns {"image": bytes, "marks": str, "part": str}."""
    from som.cropmask import intersection_px
    from som.marksfile import regions_to_dict
    from som.pipeline import mark_regions
    from som.regions import Regions

    source = _load(job)
    h, w = source.shape[:2]
    issues: list[dict] = []
    if cfg.use_coco:
        candidates, meta, issues = _gt_regions(job, cfg, source)
        result = mark_regions(source, candidates, style=cfg.style, refine_options=cfg.gt_refine)
        regions = result.regions
        src = [int(s) for s in regions.scores] if len(regions) else []
        for k, i in enumerate(src):  # refine keeps scores with their regions: the source annotation
            inside = intersection_px(regions.crops[k], regions.boxes_px[k], candidates.crops[i], candidates.boxes_px[i])
            if inside != regions.areas[k]:
                raise RuntimeError("a refined region is not part of its annotation; refine's score contract changed")
        meta_by_mark = [meta[i] for i in src]
        dropped = sorted(set(range(len(meta))) - set(src))
        for i in dropped:
            issues.append({"annotation_id": meta[i]["annotation_id"], "category": meta[i]["category"], "reason": "dropped: under the minimum area once de-overlapped"})
        incomplete = {x["category"] for x in issues}
        if None in incomplete:  # an annotation of unknown category could be of any category
            complete = frozenset()
        else:
            complete = frozenset(m["category"] for m in meta if m["category"] not in incomplete and not m["iscrowd"])
        regions = regions.replace(scores=None)
        settings = {"source": "coco", "style": dataclasses.asdict(cfg.style), "refine": dataclasses.asdict(cfg.gt_refine)}
    else:
        if segmented is None:
            raise ValueError("finish_job needs the segment stage's output for a segmenter dataset")
        label_map = _unpack_label_map(segmented["labels"])
        scores = np.frombuffer(segmented["scores"], np.float32)
        parents = np.frombuffer(segmented.get("parents") or b"", np.int32)
        parents = parents.copy() if len(parents) == len(scores) else np.full(len(scores), -1, np.int32)
        categories = json.loads(segmented["categories"]) if segmented.get("categories") else None
        regions = Regions.from_visible_map(label_map, parents, scores=scores.copy(), categories=categories).resized(h, w)
        result = mark_regions(source, regions, style=cfg.style, refine_options=None)
        regions = result.regions
        meta_by_mark, complete = None, frozenset()
        settings = {
            "source": "segmenter",
            "segmenter": cfg.segmenter,
            "granularity": cfg.granularity,
            "max_side_px": cfg.max_side_px,
            "style": dataclasses.asdict(cfg.style),
            "refine": dataclasses.asdict(cfg.refine),
        }
    ext = "png" if cfg.image_format == "png" else "jpg"
    image_rel, marks_rel = f"{IMAGES}/{job.name}.{ext}", f"{MARKS}/{job.name}.marks.json"
    doc = regions_to_dict(regions, settings, image_file=os.path.basename(image_rel))
    if meta_by_mark is not None:
        for mark, m in zip(doc["marks"], meta_by_mark):
            mark.update(m)
    facts = _facts(regions, meta_by_mark, cfg.style.label_mode, complete)
    records = build_records(job.name, image_rel, marks_rel, facts, cfg)
    part = {
        "name": job.name,
        "index": job.index,
        "image": image_rel,
        "marks_file": marks_rel,
        "n_marks": len(regions),
        "marks": [dataclasses.asdict(m) for m in facts.marks],
        "annotation_issues": issues,
        "records": records,
    }
    return {"image": _encode_image(result.image, cfg.image_format), "marks": json.dumps(doc), "part": json.dumps(part)}


# ---------------------------------------------------------------- stage 3: write
def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temp file in the same folder + rename: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_output(out_dir: Path, name: str, output: dict, image_format: str) -> None:
    ext = "png" if image_format == "png" else "jpg"
    atomic_write(out_dir / IMAGES / f"{name}.{ext}", output["image"])
    atomic_write(out_dir / MARKS / f"{name}.marks.json", output["marks"])
    atomic_write(out_dir / PARTS / f"{name}.json", output["part"])  # last: the commit


def run_one(job: ImageJob, cfg: BuildConfig, segmenter: Any = None) -> dict:
    """Both stages in one call (the local engine). Returns {"output": ...} or {"skip": reason}."""
    try:
        segmented = None if cfg.use_coco else segment_job(job, cfg, segmenter)
        return {"output": finish_job(job, cfg, segmented)}
    except SkipImage as e:
        return {"skip": str(e)}
    except MemoryError:
        return {"skip": "out of memory; try a smaller --max-side"}
    except (ValueError, RuntimeError, OSError) as e:  # torch errors arrive as RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"skip": f"{type(e).__name__}: {first}"}


# ---------------------------------------------------------------- planning and merging
def prepare_out_dir(out_dir: Path, manifest: dict, overwrite: bool = False) -> None:
    """Create the folders; refuse to resume into a folder built with other settings."""
    import shutil

    path = out_dir / "manifest.json"
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as read back
    if path.exists():
        old = json.loads(path.read_text())
        if old != manifest:
            if not overwrite:
                a, b = old.get("config", {}), manifest.get("config", {})
                changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["format"]
                raise ValueError(
                    f"{out_dir} was built with other settings ({', '.join(changed)} differ); "
                    "use another --out, or --overwrite to start again"
                )
            for sub in (IMAGES, MARKS, PARTS, LLM_DIR):
                shutil.rmtree(out_dir / sub, ignore_errors=True)
    for sub in (IMAGES, MARKS, PARTS):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for sub in (IMAGES, MARKS, PARTS, LLM_DIR, "."):
        if (out_dir / sub).is_dir():
            for tmp in (out_dir / sub).glob(".*.tmp-*"):  # left by a killed run
                tmp.unlink(missing_ok=True)
    atomic_write(path, json.dumps(manifest, indent=1, sort_keys=True))


def done_names(out_dir: Path) -> set[str]:
    return {p.name[: -len(".json")] for p in (out_dir / PARTS).glob("*.json")}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def merge(
    out_dir: Path,
    jobs: Iterable[ImageJob],
    skipped: list[dict],
    cfg: BuildConfig,
    record_format: str = "json",
    llm_descriptions: dict[str, dict[str, str]] | None = None,
) -> dict:
    """Parts in job order -> records file + summary.json (both deterministic). Returns the summary."""
    from som.dataset.tasks import listing_answer as _listing

    records: list[dict] = []
    n_images = n_marks = 0
    issues: list[dict] = []
    for job in sorted(jobs, key=lambda j: j.index):
        path = out_dir / PARTS / f"{job.name}.json"
        if not path.exists():
            continue
        part = json.loads(path.read_text())
        n_images += 1
        n_marks += part["n_marks"]
        issues.extend({"image": job.name, **x} for x in part["annotation_issues"])
        descriptions = (llm_descriptions or {}).get(job.name)
        for rec in part["records"]:
            if descriptions and rec["task"] == "listing":
                facts = ImageFacts(marks=tuple(MarkInfo(**m) for m in part["marks"]), label_mode=cfg.style.label_mode)
                rec["conversations"][1]["value"] = _listing(facts, descriptions)
            records.append(rec)
    if record_format == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        atomic_write(out_dir / "records.jsonl", text)
    else:
        atomic_write(out_dir / "records.json", json.dumps(records, ensure_ascii=False, indent=1))
    reasons: dict[str, int] = {}
    for x in issues:
        key = x["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = {
        "format": FORMAT,
        "version": VERSION,
        "images": n_images + len(skipped),
        "written": n_images,
        "marks": n_marks,
        "records": len(records),
        "records_by_task": {t: sum(r["task"] == t for r in records) for t in cfg.tasks},
        "skipped": sorted(skipped, key=lambda s: s["image"]),
        "annotations_not_marked": dict(sorted(reasons.items())),
        "annotation_issues": issues,
        "llm_described": len(llm_descriptions or {}),
    }
    atomic_write(out_dir / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
    return summary
