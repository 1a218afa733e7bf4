"""Reading answers for scoring: boxes written as coordinates, phrases matched to the ones asked
for, free-text names matched to a vocabulary; and the overlap measures scores rest on.

Pure functions of text and arrays (no model, no I/O). Mark mentions themselves are parsed by
`som.llm.parse`; this module covers what the eval needs beyond it.
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

import numpy as np

BOX_UNITS = ("px", "norm1000", "norm1")

_NUM = r"[-+]?\d+(?:\.\d+)?"
_SEP = r"\s*[,;\s]\s*"
# four numbers in brackets or parentheses: [x1, y1, x2, y2], (x1,y1,x2,y2), [[x1, y1, x2, y2]]
_BOX_BRACKETED = re.compile(rf"[\[(]\s*({_NUM}){_SEP}({_NUM}){_SEP}({_NUM}){_SEP}({_NUM})\s*[\])]")
# Qwen-VL style: <box>(x1,y1),(x2,y2)</box> or (x1,y1),(x2,y2)
_BOX_PAIRS = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*(?:to\s*)?\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
# JSON-ish: "x1": 10, "y1": 20, "x2": ..., "y2": ...
_BOX_KEYS = re.compile(
    rf"x_?(?:1|min)\W+({_NUM})\W+y_?(?:1|min)\W+({_NUM})\W+x_?(?:2|max)\W+({_NUM})\W+y_?(?:2|max)\W+({_NUM})",
    re.IGNORECASE,
)


def parse_box(text: str, sent_hw: tuple[int, int], image_hw: tuple[int, int], units: str = "px") -> tuple[float, float, float, float] | None:
    """The first box written in `text`, as (x1, y1, x2, y2) pixels of the original image.

    sent_hw: (height, width) of the picture the model saw (it may be downscaled);
    image_hw: the original image's. units: "px" (pixels of the picture sent), "norm1000"
    (0-1000 of each side, Qwen-VL style) or "norm1" (fractions). In "px", a box whose four
    numbers are all within 0-1 with a decimal point is read as fractions. Corners in either
    order are sorted. None when no box is written.
    """
    if units not in BOX_UNITS:
        raise ValueError(f"box units must be one of {', '.join(BOX_UNITS)}, got {units!r}")
    candidates = []
    for pattern in (_BOX_BRACKETED, _BOX_PAIRS, _BOX_KEYS):
        m = pattern.search(text)
        if m:
            candidates.append((m.start(), m))
    if not candidates:
        return None
    m = min(candidates, key=lambda c: c[0])[1]
    raw = [float(v) for v in m.groups()]
    sh, sw = sent_hw
    ih, iw = image_hw
    if units == "norm1000":
        sx, sy = iw / 1000.0, ih / 1000.0
    elif units == "norm1" or (all(0.0 <= v <= 1.0 for v in raw) and "." in m.group(0)):
        sx, sy = float(iw), float(ih)
    else:
        sx, sy = iw / sw, ih / sh
    x1, y1, x2, y2 = raw[0] * sx, raw[1] * sy, raw[2] * sx, raw[3] * sy
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return (x1, y1, x2, y2)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes (x2/y2 exclusive); 0 when either is empty."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 0 when both are empty."""
    inter = np.count_nonzero(a & b)
    union = np.count_nonzero(a | b)
    return inter / union if union else 0.0


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight (x1, y1, x2, y2) box of an (H, W) bool mask, x2/y2 exclusive (zeros when empty)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))


def union_box(boxes: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


# ---------------------------------------------------------------- words

_ARTICLES = re.compile(r"^(?:the|a|an|some|two|three|several)\s+")


def normalize(text: str) -> str:
    """Lower case, underscores and punctuation to spaces, leading article dropped, one space."""
    t = re.sub(r"[_\W]+", " ", str(text).lower()).strip()
    t = _ARTICLES.sub("", t)
    return " ".join(t.split())


def _singular(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("ses", "s"), ("ches", "ch"), ("shes", "sh"), ("s", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: -len(suffix)] + repl
    return word


def _words(text: str) -> str:
    return " ".join(_singular(w) for w in normalize(text).split())


def match_vocabulary(text: str, vocabulary: Sequence[str]) -> str | None:
    """The vocabulary entry `text` names: the same words (plurals folded), else the longest entry
    written in it as whole words, the one ending last ('a red coffee mug' -> 'mug' when 'coffee'
    and 'mug' are listed), else a close spelling (difflib ratio >= 0.8). None for 'unknown', 'other' or no match."""
    t = _words(text)
    if not t or t in ("unknown", "other", "none", "nothing", "background"):
        return None
    table = {_words(v): v for v in vocabulary}
    if t in table:
        return table[t]
    padded = f" {t} "
    inside = [k for k in table if k and f" {k} " in padded]
    if inside:  # English puts the head noun last: 'coffee mug' is a mug
        return table[max(inside, key=lambda k: (padded.rfind(f" {k} ") + len(k), len(k)))]
    close = difflib.get_close_matches(t, list(table), n=1, cutoff=0.8)
    return table[close[0]] if close else None


def match_phrases(asked: Sequence[str], answered: dict[str, list[str]]) -> dict[int, list[str] | None]:
    """Phrase index -> the marks the model gave it (None: it gave none). Answered phrases match
    asked ones by their words, then by one containing the other, then by close spelling; each
    answered line is used once."""
    keys = list(answered)
    norm = {k: _words(k) for k in keys}
    used: set[str] = set()
    out: dict[int, list[str] | None] = {i: None for i in range(len(asked))}
    passes = (
        lambda a, b: a == b,
        lambda a, b: bool(a) and bool(b) and (f" {a} " in f" {b} " or f" {b} " in f" {a} "),
        lambda a, b: difflib.SequenceMatcher(None, a, b).ratio() >= 0.8,
    )
    for same in passes:
        for i, phrase in enumerate(asked):
            if out[i] is not None:
                continue
            p = _words(phrase)
            for k in keys:
                if k not in used and same(p, norm[k]):
                    out[i] = answered[k]
                    used.add(k)
                    break
    return out


def parse_box_lines(text: str) -> dict[str, str]:
    """'phrase: [x1, y1, x2, y2]' per line -> {phrase: the rest of the line} (first line wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        phrase, _, rest = line.partition(":")
        phrase = phrase.strip().strip("-*•\"'` ").strip()
        if phrase and len(phrase) <= 200:
            out.setdefault(phrase, rest)
    return out


__all__ = [
    "BOX_UNITS",
    "box_iou",
    "mask_box",
    "mask_iou",
    "match_phrases",
    "match_vocabulary",
    "normalize",
    "parse_box",
    "parse_box_lines",
    "union_box",
]
