"""The four tasks: what is asked for a sample under a condition, and how the answer is scored.

Each score is a dict of counts (summed over samples, then turned into metrics), so the same
numbers give the report's value and its bootstrap interval:

- refer: `hit` of `n`. The model names marks; the union of their FULL masks (a whole comes
  with its parts) is compared with the ground truth: a hit is IoU >= 0.5 (box IoU of the
  region's box when the ground truth is a box). Without marks the model writes a box, compared
  with the ground truth's box. Metric: accuracy.
- ground: `hit` of `n` phrases, each scored like refer against the union of its objects
  (Flickr30k Entities' merged boxes). Metric: recall@1.
- label: per category, intersection and union pixels of the labelled segmentation (each mark's
  visible part painted with the category it was given; a part given none takes its whole's)
  against the ground truth (crowd pixels ignored). Metric: mIoU over the categories present in
  either, summed over the data set first. Also the share of marks labelled right.
- list: the model lists the marks one by one; a mark counts as right when its line names its
  object's category. Metrics: accuracy over the marks with a known category, hallucination rate
  (listed items for marks that are not in the picture, of all listed items), skip rate (marks
  without an item, of all marks).

'none' suits refer and ground only; label and list need marks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from som.eval.answers import (
    box_iou,
    mask_box,
    mask_iou,
    match_phrases,
    match_vocabulary,
    parse_box,
    parse_box_lines,
    union_box,
)
from som.eval.conditions import Condition, Marked
from som.eval.data import EvalData, EvalImage, GTObject, Sample
from som.eval.prompts import render_box_prompt
from som.llm.parse import parse_grounding, parse_mark_lines, parse_marks
from som.llm.templates import TemplateLibrary

IOU_HIT = 0.5


@dataclass(frozen=True)
class Question:
    system: str
    user: str


@dataclass(frozen=True)
class ScoreContext:
    """What scoring needs beside the answer: the data, the image, what was shown, and the size
    of the picture as sent (box answers are in its pixels)."""

    data: EvalData
    image: EvalImage
    marked: Marked
    sent_hw: tuple[int, int]
    box_units: str = "px"


def _mode(cond: Condition) -> str:
    return "letter" if cond.label_mode == "alphabet" else "number"


def _labels(marked: Marked) -> list[str]:
    return list(marked.regions.labels or []) if marked.regions is not None else []


def union_mask_of(marked: Marked, labels: list[str]) -> np.ndarray:
    """(H, W) bool union of the FULL masks of the named marks (a whole includes its parts)."""
    regions = marked.regions
    out = np.zeros(regions.image_hw, bool)
    chosen = regions.select_labels(labels)
    for (x1, y1, x2, y2), c in zip(chosen.boxes_px, chosen.crops):
        out[y1:y2, x1:x2] |= c
    return out


def region_vs_objects(pred: np.ndarray, targets: list[GTObject]) -> float:
    """IoU of a predicted (H, W) mask with the union of the targets: mask IoU when every target
    has a mask, else box IoU of the two boxes."""
    if not targets:
        return 0.0
    if all(t.has_mask for t in targets):
        gt = np.zeros_like(pred)
        for t in targets:
            gt |= t.mask()
        return mask_iou(pred, gt)
    if not pred.any():
        return 0.0
    return box_iou(mask_box(pred), union_box([t.box() for t in targets]))


def box_vs_objects(box: tuple[float, float, float, float] | None, targets: list[GTObject]) -> float:
    if box is None or not targets:
        return 0.0
    return box_iou(box, union_box([t.box() for t in targets]))


# ---------------------------------------------------------------- refer


def refer_question(sample: Sample, cond: Condition, marked: Marked, lib: TemplateLibrary, sent_hw, data: EvalData) -> Question:
    if not cond.marked:
        s, u = render_box_prompt(lib.get("refer-box"), sample.text, sent_hw[1], sent_hw[0])
        return Question(s, u)
    r = lib.get("refer").render(sample.text, _labels(marked), _mode(cond))
    return Question(r.system, r.user)


def refer_score(sample: Sample, cond: Condition, answer: str, ctx: ScoreContext) -> dict[str, Any]:
    if not cond.marked:
        box = parse_box(answer, ctx.sent_hw, (ctx.image.height, ctx.image.width), ctx.box_units)
        iou = box_vs_objects(box, sample.targets)
        parsed: Any = None if box is None else [round(v, 2) for v in box]
    else:
        labels = parse_marks(answer, _labels(ctx.marked), _mode(cond))
        iou = region_vs_objects(union_mask_of(ctx.marked, labels), sample.targets) if labels else 0.0
        parsed = labels
    return {"parsed": parsed, "iou": round(iou, 4), "counts": {"hit": int(iou >= IOU_HIT), "n": 1}}


def refer_metrics(s: dict[str, float]) -> dict[str, float]:
    return {"accuracy": s.get("hit", 0) / s["n"] if s.get("n") else float("nan")}


# ---------------------------------------------------------------- ground


def _phrase_list(sample: Sample) -> str:
    return "\n".join(f"- {p.text}" for p in sample.phrases)


def ground_question(sample: Sample, cond: Condition, marked: Marked, lib: TemplateLibrary, sent_hw, data: EvalData) -> Question:
    if not cond.marked:
        s, u = render_box_prompt(lib.get("ground-box"), sample.text, sent_hw[1], sent_hw[0])
        return Question(s, f"{u}\nPhrases:\n{_phrase_list(sample)}")
    r = lib.get("ground-phrases").render(sample.text, _labels(marked), _mode(cond))
    return Question(r.system, f"{r.user}\nPhrases:\n{_phrase_list(sample)}")


def ground_score(sample: Sample, cond: Condition, answer: str, ctx: ScoreContext) -> dict[str, Any]:
    asked = [p.text for p in sample.phrases]
    per_phrase = []
    hits = 0
    if not cond.marked:
        lines = match_phrases(asked, parse_box_lines(answer))
        for i, p in enumerate(sample.phrases):
            box = None if lines[i] is None else parse_box(lines[i], ctx.sent_hw, (ctx.image.height, ctx.image.width), ctx.box_units)
            iou = box_vs_objects(box, p.targets)
            hits += iou >= IOU_HIT
            per_phrase.append({"phrase": p.text, "parsed": None if box is None else [round(v, 2) for v in box], "iou": round(iou, 4)})
    else:
        given = match_phrases(asked, parse_grounding(answer, _labels(ctx.marked), _mode(cond)))
        for i, p in enumerate(sample.phrases):
            labels = given[i] or []
            iou = region_vs_objects(union_mask_of(ctx.marked, labels), p.targets) if labels else 0.0
            hits += iou >= IOU_HIT
            per_phrase.append({"phrase": p.text, "parsed": labels, "iou": round(iou, 4)})
    return {"parsed": per_phrase, "counts": {"hit": int(hits), "n": len(sample.phrases)}}


def ground_metrics(s: dict[str, float]) -> dict[str, float]:
    return {"recall@1": s.get("hit", 0) / s["n"] if s.get("n") else float("nan")}


# ---------------------------------------------------------------- label and list: marks vs objects


def mark_categories(ctx: ScoreContext) -> list[str | None]:
    """The ground-truth category of each mark: its source object ('gt'), else the object whose
    mask has IoU >= 0.5 with the mark's full mask (None when no object does)."""
    regions, marked = ctx.marked.regions, ctx.marked
    objects = ctx.image.objects
    if marked.sources is not None:
        return [objects[i].category for i in marked.sources]
    out: list[str | None] = []
    masks = [(o, o.mask()) for o in objects if not o.iscrowd and o.category]
    for k in range(len(regions)):
        m = regions.mask(k)
        best, best_iou = None, IOU_HIT
        for o, om in masks:
            iou = mask_iou(m, om)
            if iou >= best_iou:
                best, best_iou = o.category, iou
        out.append(best)
    return out


def _vocabulary_text(vocab: list[str]) -> str:
    return ", ".join(v.replace("_", " ") for v in vocab)


def label_question(sample: Sample, cond: Condition, marked: Marked, lib: TemplateLibrary, sent_hw, data: EvalData) -> Question:
    q = f"Choose every class name from this list: {_vocabulary_text(data.vocabulary)}."
    r = lib.get("label").render(q, _labels(marked), _mode(cond))
    return Question(r.system, r.user)


def _semantic_gt(image: EvalImage, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) int32 category index map (0 background; larger objects painted first, so a small
    one on top of a large one keeps its pixels) and (H, W) bool pixels to ignore (crowds)."""
    gt = np.zeros((image.height, image.width), np.int32)
    ignore = np.zeros((image.height, image.width), bool)
    objs = [o for o in image.objects if o.category in index]
    masks = [o.mask() for o in objs]
    for o, m in sorted(zip(objs, masks), key=lambda om: -int(np.count_nonzero(om[1]))):
        if o.iscrowd:
            ignore |= m
        else:
            gt[m] = index[o.category]
    return gt, ignore & (gt == 0)


def label_score(sample: Sample, cond: Condition, answer: str, ctx: ScoreContext) -> dict[str, Any]:
    vocab = ctx.data.vocabulary
    regions = ctx.marked.regions
    labels = _labels(ctx.marked)
    lines = parse_mark_lines(answer, labels, _mode(cond))
    given = [match_vocabulary(lines[lab], vocab) if lab in lines else None for lab in labels]
    # a part the model gave no category takes its whole's (the whole's label covers it)
    effective = list(given)
    for k in range(len(labels)):  # marks are numbered depth first: parents before their parts
        p = int(regions.parent[k])
        if effective[k] is None and p >= 0:
            effective[k] = effective[p]
    index = {c: i + 1 for i, c in enumerate(vocab)}
    gt, ignore = _semantic_gt(ctx.image, index)
    pred = np.zeros_like(gt)
    for k, (box, crop) in enumerate(zip(regions.boxes_px, regions.visible_crops())):
        if effective[k] is not None:
            x1, y1, x2, y2 = box
            pred[y1:y2, x1:x2][crop] = index[effective[k]]
    keep = ~ignore
    n = len(vocab) + 1
    inter = np.bincount(gt[keep & (gt == pred)], minlength=n)
    area_gt = np.bincount(gt[keep], minlength=n)
    area_pred = np.bincount(pred[keep], minlength=n)
    counts: dict[str, int] = {}
    for c, i in index.items():
        union = int(area_gt[i] + area_pred[i] - inter[i])
        if union:
            counts[f"I:{c}"] = int(inter[i])
            counts[f"U:{c}"] = union
    truth = mark_categories(ctx)
    scored = [(g, t) for g, t in zip(given, truth) if t is not None]
    counts["marks_right"] = sum(g == t for g, t in scored)
    counts["marks_scored"] = len(scored)
    return {"parsed": dict(zip(labels, given)), "truth": dict(zip(labels, truth)), "counts": counts}


def label_metrics(s: dict[str, float]) -> dict[str, float]:
    cats = [k[2:] for k in s if k.startswith("U:") and s[k] > 0]
    miou = float(np.mean([s.get(f"I:{c}", 0) / s[f"U:{c}"] for c in cats])) if cats else float("nan")
    acc = s["marks_right"] / s["marks_scored"] if s.get("marks_scored") else float("nan")
    return {"mIoU": miou, "mark_accuracy": acc}


# ---------------------------------------------------------------- list


def list_question(sample: Sample, cond: Condition, marked: Marked, lib: TemplateLibrary, sent_hw, data: EvalData) -> Question:
    r = lib.get("list").render("", _labels(marked), _mode(cond))
    return Question(r.system, r.user)


def list_score(sample: Sample, cond: Condition, answer: str, ctx: ScoreContext) -> dict[str, Any]:
    labels = _labels(ctx.marked)
    valid = set(labels)
    items = parse_mark_lines(answer, None, _mode(cond))  # every listed mark, drawn or not
    named = {lab: match_vocabulary(text, ctx.data.vocabulary) for lab, text in items.items()}
    truth = mark_categories(ctx)
    right = scored = 0
    for lab, t in zip(labels, truth):
        if t is not None:
            scored += 1
            right += named.get(lab) == t
    counts = {
        "right": right,
        "scored": scored,
        "items": len(items),
        "invalid_items": sum(1 for lab in items if lab not in valid),
        "skipped": sum(1 for lab in labels if lab not in items),
        "marks": len(labels),
    }
    return {"parsed": named, "truth": dict(zip(labels, truth)), "counts": counts}


def list_metrics(s: dict[str, float]) -> dict[str, float]:
    nan = float("nan")
    return {
        "accuracy": s["right"] / s["scored"] if s.get("scored") else nan,
        "hallucination_rate": s["invalid_items"] / s["items"] if s.get("items") else (0.0 if "items" in s else nan),
        "skip_rate": s["skipped"] / s["marks"] if s.get("marks") else nan,
    }


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    question: Callable[..., Question]
    score: Callable[..., dict[str, Any]]
    metrics: Callable[[dict[str, float]], dict[str, float]]
    primary: str
    kinds: tuple[str, ...]  # condition kinds it runs under


TASK_SPECS: dict[str, TaskSpec] = {
    "refer": TaskSpec("refer", refer_question, refer_score, refer_metrics, "accuracy", ("none", "gt", "seg")),
    "ground": TaskSpec("ground", ground_question, ground_score, ground_metrics, "recall@1", ("none", "gt", "seg")),
    "label": TaskSpec("label", label_question, label_score, label_metrics, "mIoU", ("gt", "seg")),
    "list": TaskSpec("list", list_question, list_score, list_metrics, "accuracy", ("gt", "seg")),
}


def sum_counts(rows: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    return out


__all__ = ["IOU_HIT", "Question", "ScoreContext", "TASK_SPECS", "TaskSpec", "sum_counts", "union_mask_of"]
