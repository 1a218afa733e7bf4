"""Text on screenshots: rapidocr-onnxruntime (PP-OCRv4 detection + recognition, ONNX models inside
the wheel, Apache-2.0; nothing is downloaded at run time).

The recogniser reads a whole detected line; on UI screenshots a "line" often holds several
controls side by side ("previous | next | modules") and its English output lacks spaces
("TableofContents"). Both are fixed from the pixels: the engine's per-character positions say
which blank column run of the line lies between two characters, a run wider than `split_gap`
line heights (or a separator character such as | or ») starts a new text item, one wider than
`space_gap` line heights is a space.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["TextItem", "OCROptions", "read_text", "ocr_engine"]


@dataclass(frozen=True)
class OCROptions:
    """min_score: drop lines the recogniser is less sure of. split_gap / space_gap: horizontal gaps
    between characters, in line heights, that split a line into items / insert a space.
    split_colour: a change of stroke colour (sum of RGB differences) that splits a line (a link in
    prose); 0 disables it.
    det_side_px: the detector's input size (shorter side, rapidocr's limit_side_len). threads:
    ONNX Runtime threads (-1: all cores)."""

    min_score: float = 0.5
    split_gap: float = 0.9
    space_gap: float = 0.14
    split_colour: float = 90.0
    det_side_px: int = 736
    threads: int = -1


@dataclass(frozen=True)
class TextItem:
    """One piece of text: xyxy (image px, x2/y2 exclusive), text, score (recogniser confidence)."""

    xyxy: tuple[int, int, int, int]
    text: str
    score: float


@functools.lru_cache(maxsize=4)
def ocr_engine(det_side_px: int = 736, threads: int = -1):
    """A cached RapidOCR engine (building one loads three ONNX models: ~0.5 s)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        raise ImportError("marking screenshots needs rapidocr-onnxruntime: pip install 'som[screen]'") from None
    return RapidOCR(
        use_cls=False,  # UI text is upright; the 180-degree classifier only costs time
        det_limit_side_len=int(det_side_px),
        # one line per recogniser run: a batch is padded to its widest line, and UI lines differ
        # a lot in width (6 Python-docs screenshots: 1.5 s per shot at 1, 3.0 s at 6, 10 s at 32)
        rec_batch_num=1,
        intra_op_num_threads=int(threads),
        inter_op_num_threads=int(threads),
    )


_SEPARATORS = set("|»›·•¦》〉")  # drawn between controls ("Home » Docs", "next | index"), never part of one


def _space_fits(prev: str, nxt: str) -> bool:
    """Whether a space may stand between two characters: never after an opening bracket or before
    closing punctuation (monospace glyphs such as "(" leave wide gaps that are no spaces)."""
    return prev not in "([{'\"/" and nxt not in ")]},.:;!?'\"/"


def _blank_runs(ink_cols: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of columns without ink."""
    padded = np.concatenate([[True], ink_cols, [True]]).astype(np.int8)
    d = np.diff(padded)
    starts, ends = np.nonzero(d == -1)[0], np.nonzero(d == 1)[0]
    return list(zip(starts.tolist(), ends.tolist()))


def _tight(ink: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> tuple[int, int, int, int]:
    """The box shrunk to its own line of ink plus 1 px. The detector's boxes are padded, so in a
    dense list they reach into the rows above and below; of the runs of inky rows, the one with
    most ink is the line. Tight boxes leave room for labels. Unchanged if it holds no ink."""
    crop = ink[y1:y2, x1:x2]
    per_row = crop.sum(axis=1)
    if not per_row.any():
        return x1, y1, x2, y2
    best, best_ink, start = (0, 0), -1, None
    for r, v in enumerate(list(per_row > 0) + [False]):
        if v and start is None:
            start = r
        elif not v and start is not None:
            total = int(per_row[start:r].sum())
            if total > best_ink:
                best, best_ink = (start, r), total
            start = None
    r0, r1 = best
    cols = np.nonzero(crop[r0:r1].any(axis=0))[0]
    h, w = ink.shape
    return (max(0, x1 + int(cols[0]) - 1), max(0, y1 + r0 - 1), min(w, x1 + int(cols[-1]) + 2), min(h, y1 + r1 + 1))


def _char_colours(rgb: np.ndarray, y1: int, y2: int, lefts, rights) -> np.ndarray:
    """(n, 3) float colour of each character's strokes: the mean of the pixels of its columns that
    differ most from the line's background (its median colour); NaN where it shows none."""
    band = rgb[y1:y2].astype(np.float32)
    bg = np.median(band.reshape(-1, 3), axis=0)
    dist = np.abs(band - bg).sum(axis=2)
    stroke = dist > max(60.0, 0.5 * float(dist.max(initial=0)))
    out = np.full((len(lefts), 3), np.nan, np.float32)
    for i, (lo, hi) in enumerate(zip(lefts, rights)):
        lo, hi = int(lo), max(int(lo) + 1, int(np.ceil(hi)))
        m = stroke[:, lo:hi]
        if m.sum() >= 4:  # a dot or a comma has a few pixels: enough; a stray antialiased one is not
            out[i] = band[:, lo:hi][m].mean(axis=0)
    return out


def _split_line(
    quad, text: str, score: float, char_quads, chars, ink: np.ndarray, opts: OCROptions, rgb: np.ndarray | None = None
) -> list[TextItem]:
    """One recognised line -> text items: split where the picture shows a gap wider than
    `split_gap` line heights or a separator character, or where the text changes colour for at
    least two characters (a blue link inside black prose is its own item); a space where the
    picture shows a gap wider than `space_gap` (the recogniser's character positions only say
    which gap lies between two characters; the gap's width comes from the pixels)."""
    q = np.asarray(quad, np.float64)
    h_img, w_img = ink.shape
    x1 = int(max(0, np.floor(q[:, 0].min())))
    x2 = int(min(w_img, np.ceil(q[:, 0].max())))
    y1 = int(max(0, np.floor(q[:, 1].min())))
    y2 = int(min(h_img, np.ceil(q[:, 1].max())))
    height = max(1, y2 - y1)
    if not chars or not char_quads or len(chars) != len(char_quads) or x2 <= x1:
        return [TextItem(_tight(ink, x1, y1, x2, y2), text.strip(), score)]
    # columns of the line (inside its vertical band, trimmed by 5% to skip neighbours' descenders;
    # more would cut the feet of letters such as L and open false gaps)
    band = ink[y1 + height * 5 // 100 : y2 - height * 5 // 100 or y2, x1:x2]
    # an underline (a link) bridges every gap: leave out horizontal runs of ink twice as long as the
    # line is high in the band's lower part (letters' crossbars sit higher and are shorter)
    lines = cv2.morphologyEx(band.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, max(6, 2 * height)), np.uint8))
    lines[: band.shape[0] * 6 // 10] = 0
    band = band & (lines == 0)
    runs = [(a + x1, b + x1) for a, b in _blank_runs(band.any(axis=0)) if a > 0 and b < x2 - x1]
    centres = [float(np.mean(np.asarray(b)[:, 0])) for b in char_quads]
    lefts = [float(np.min(np.asarray(b)[:, 0])) for b in char_quads]
    rights = [float(np.max(np.asarray(b)[:, 0])) for b in char_quads]

    colours = _char_colours(rgb, y1, y2, lefts, rights) if rgb is not None and opts.split_colour > 0 else None
    line_colour = None
    if colours is not None and not np.isnan(colours[:, 0]).all():
        line_colour = np.nanmedian(colours, axis=0)
    solid = [ch.isalnum() for ch in chars]  # thin punctuation and antialiased dots are no colour evidence

    def colour_changes(i: int, mean: np.ndarray | None) -> bool:
        """Whether characters i and the next solid one both differ from the item's colour so far."""
        if colours is None or mean is None or not solid[i] or np.isnan(colours[i, 0]):
            return False
        if np.abs(colours[i] - mean).sum() <= opts.split_colour:
            return False
        nxt = next((j for j in range(i + 1, len(chars)) if solid[j] and not np.isnan(colours[j, 0])), None)
        return nxt is not None and np.abs(colours[nxt] - mean).sum() > opts.split_colour

    def gap_between(ca: float, cb: float) -> int:
        return max((b - a for a, b in runs if ca <= a and b <= cb), default=0)

    items: list[TextItem] = []
    cur: list[str] = []
    start = end = None
    prev_c = None
    mean = None  # stroke colour of the item so far
    n_mean = 0

    def flush() -> None:
        nonlocal cur, start, end, mean, n_mean
        # list markers misread as punctuation ("· name", ": bin()") are no part of the item
        t = re.sub(r"^[：:=·•*>\-–]+\s+", "", "".join(cur).strip())
        # a link in prose (its colour is not the line's) keeps no sentence punctuation after it
        if mean is not None and line_colour is not None and np.abs(mean - line_colour).sum() > opts.split_colour:
            t = t.rstrip(".,;:")
        # a link's underline read as "_" beside a space or at an end ("privacy_ policy")
        t = re.sub(r"_+(?=\s)|(?<=\s)_+|^_+(?=\w)(?![^_]*_$)|(?<=\w)_+$(?<!__)", "", t).strip()
        if t and start is not None and not re.fullmatch(r"[.,;:!?'\"]+", t):  # a full stop alone is no item
            items.append(TextItem(_tight(ink, int(np.floor(start)), y1, int(np.ceil(end)), y2), t, score))
        cur, start, end, mean, n_mean = [], None, None, None, 0

    for i, (ch, c, lo, hi) in enumerate(zip(chars, centres, lefts, rights)):
        if ch.isspace():
            if cur and cur[-1] != " ":
                cur.append(" ")
            continue
        if prev_c is not None:
            gap = gap_between(prev_c, c)
            if gap > opts.split_gap * height or colour_changes(i, mean):
                flush()
            elif cur and cur[-1] != " " and _space_fits(cur[-1], ch) and gap > opts.space_gap * height * (2 if cur[-1] in ".,:;" else 1):
                cur.append(" ")
        if colours is not None and ch in ".,;:" and i == len(chars) - 1 and np.isnan(colours[i, 0]):
            continue  # a full stop at the end of the line with no ink under it: read into an underline's end
        if ch in _SEPARATORS or (ch in "><" and cur and cur[-1] == " "):  # "Docs > Library": a breadcrumb
            flush()
            prev_c = None
            continue
        start = lo if start is None else start
        end = hi
        cur.append(ch)
        prev_c = c
        if colours is not None and solid[i] and not np.isnan(colours[i, 0]):
            mean = colours[i].copy() if mean is None else (mean * n_mean + colours[i]) / (n_mean + 1)
            n_mean += 1
    flush()
    return items


def read_text(image: np.ndarray, options: OCROptions = OCROptions()) -> list[TextItem]:
    """Text items of an (H, W, 3) uint8 RGB screenshot, split at wide gaps, with spaces restored."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    from som.ui_layout import ink_map

    engine = ocr_engine(options.det_side_px, options.threads)
    ink = ink_map(arr)
    result, _ = engine(np.ascontiguousarray(arr[:, :, ::-1]), use_cls=False, return_word_box=True)
    h, w = arr.shape[:2]
    out: list[TextItem] = []
    for line in result or []:
        quad, text, score = line[0], str(line[1]), float(line[2])
        if score < options.min_score or not text.strip():
            continue
        char_quads = line[3] if len(line) > 3 else None
        chars = line[4] if len(line) > 4 else None
        for it in _split_line(quad, text, score, char_quads, chars, ink, options, arr):
            x1, y1, x2, y2 = it.xyxy
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            if x2 > x1 and y2 > y1:
                out.append(TextItem((x1, y1, x2, y2), it.text, it.score))
    return out
