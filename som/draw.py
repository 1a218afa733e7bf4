"""Drawing marks: annotators in the supervision style and `draw_marks`.

Pure numpy/OpenCV/PIL (no torch). Images are (H, W, 3) uint8 **RGB**; every
annotator returns a new array and never mutates its input. Output is
deterministic: the same image and regions give the same bytes.

Colours come from `color_for(label)` (or the region's index while unlabelled),
so a region keeps its colour in `highlight` and across runs.
"""

from __future__ import annotations

import colorsys
import functools
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from som.cropmask import pad1
from som.layout import LABEL_MODES, ink_bbox, label_box_size, label_font, label_index, mark_texts, visible_parts
from som.regions import Regions

__all__ = [
    "MarkStyle",
    "color_for",
    "text_color_for",
    "contour_px_for",
    "MaskAnnotator",
    "ContourAnnotator",
    "BoxAnnotator",
    "LabelAnnotator",
    "draw_marks",
    "highlight",
]

_GOLDEN = 0.6180339887498949
_BAND_ROWS = 256  # mask fill blends this many rows at a time


@dataclass(frozen=True)
class MarkStyle:
    """Which marks to draw and how.

    mark:        the label (number/letter) in a filled box at `regions.label_xyxy`.
    mask:        fill each region with its colour at opacity `alpha`.
    box:         the region's bounding box.
    contour:     the region's outline.
    alpha:       mask fill opacity in [0, 1].
    label_mode:  "number" or "alphabet" (used by the pipeline when laying out).
    contour_px:  outline / box thickness in px; None = from the image size.
    names:       print each region's class name beside its label ("3: dog") where the segmenter
                 named it (`Regions.categories`); layout sizes the label boxes for it.
    """

    mark: bool = True
    mask: bool = True
    box: bool = False
    contour: bool = True
    alpha: float = 0.4
    label_mode: str = "number"
    contour_px: int | None = None
    names: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.alpha) <= 1.0):
            raise ValueError(f"MarkStyle.alpha must be in [0, 1], got {self.alpha!r}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(
                f"MarkStyle.label_mode must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}"
            )
        if self.contour_px is not None and int(self.contour_px) < 1:
            raise ValueError(f"MarkStyle.contour_px must be >= 1 or None, got {self.contour_px!r}")


# ---------------------------------------------------------------- colours
@functools.lru_cache(maxsize=4096)
def _color_of_index(i: int) -> tuple[int, int, int]:
    hue = (i * _GOLDEN) % 1.0
    # alternate brightness a little so neighbours in hue still differ
    sat, val = (0.85, 0.95) if i % 2 == 0 else (0.7, 0.8)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def color_for(index_or_label: int | str) -> tuple[int, int, int]:
    """Deterministic RGB colour for a region index (0-based) or label.

    Golden-ratio hue stepping gives well-separated neighbours. A label made by
    `make_labels` maps to its index ("1" and "a" -> colour of index 0), so a region
    has the same colour before and after labelling; other strings hash (crc32).
    """
    if isinstance(index_or_label, (int, np.integer)) and not isinstance(index_or_label, bool):
        i = int(index_or_label)
    else:
        i = label_index(str(index_or_label))
        if i is None:
            i = zlib.crc32(str(index_or_label).encode("utf-8"))
    return _color_of_index(i)


def _rel_luminance(rgb) -> float:
    def lin(c: float) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_color_for(background_rgb) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio on `background_rgb`."""
    lum = _rel_luminance(background_rgb)
    contrast_black = (lum + 0.05) / 0.05
    contrast_white = 1.05 / (lum + 0.05)
    return (0, 0, 0) if contrast_black >= contrast_white else (255, 255, 255)


def contour_px_for(height: int, width: int) -> int:
    """Outline thickness for an image: 1 px up to ~450 px, growing with the shorter side."""
    return max(1, round(min(height, width) / 300))


# ---------------------------------------------------------------- helpers
def _check_scene(scene: np.ndarray, regions: Regions) -> np.ndarray:
    scene = np.asarray(scene)
    if scene.ndim != 3 or scene.shape[2] != 3 or scene.dtype != np.uint8:
        raise ValueError(
            f"expected an (H, W, 3) uint8 RGB image, got shape {scene.shape} dtype {scene.dtype}; "
            "load images with som.load_image"
        )
    if scene.shape[:2] != regions.image_hw:
        raise ValueError(
            f"image is {scene.shape[1]}x{scene.shape[0]} but regions are "
            f"{regions.image_hw[1]}x{regions.image_hw[0]}; use regions.resized(H, W)"
        )
    return scene


def _colors(regions: Regions) -> list[tuple[int, int, int]]:
    if regions.labels is not None:
        return [color_for(s) for s in regions.labels]
    return [color_for(i) for i in range(len(regions))]


# ---------------------------------------------------------------- annotators
class MaskAnnotator:
    """Fills each region's visible part (its mask minus its children's) with its colour at
    `alpha`. Overlapping flat input: smaller regions paint on top (the de-overlap rule, so the
    picture shows what layout assumed)."""

    def __init__(self, alpha: float = 0.4):
        if not (0.0 <= alpha <= 1.0):
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def annotate(self, scene: np.ndarray, regions: Regions) -> np.ndarray:
        return self.paint(_check_scene(scene, regions).copy(), regions)

    def paint(self, out: np.ndarray, regions: Regions) -> np.ndarray:
        """Fill in place (out: (H, W, 3) uint8 RGB, checked); returns out.

        Works in bands of rows: each band gets a map of which region shows at each pixel, then
        one blend; memory stays at a band, work at the image plus the visible parts."""
        if len(regions) == 0 or self.alpha == 0.0:
            return out
        boxes, crops = visible_parts(regions)
        n = len(crops)
        areas = np.array([np.count_nonzero(c) for c in crops], np.int64)
        order = np.lexsort((np.arange(n), -areas))  # largest first, smaller ones on top
        order = order[areas[order] > 0]
        palette = np.zeros((n + 1, 3), np.uint8)
        palette[1:] = _colors(regions)
        owner_dtype = np.uint8 if n < 256 else np.int32
        h = regions.image_hw[0]
        for r0 in range(0, h, _BAND_ROWS):
            r1 = min(r0 + _BAND_ROWS, h)
            meets = order[(boxes[order, 1] < r1) & (boxes[order, 3] > r0)]
            if len(meets) == 0:
                continue
            owner = np.zeros((r1 - r0, out.shape[1]), owner_dtype)  # 1 + region shown, 0: none
            for k in meets:
                x1, y1, x2, y2 = boxes[k]
                a0, a1 = max(y1, r0), min(y2, r1)
                np.copyto(owner[a0 - r0 : a1 - r0, x1:x2], owner_dtype(k + 1), where=crops[k][a0 - y1 : a1 - y1])
            band = out[r0:r1]
            blend = cv2.addWeighted(band, 1.0 - self.alpha, np.take(palette, owner, axis=0), self.alpha, 0.0)
            np.copyto(band, blend, where=(owner > 0)[..., None])
        return out


class ContourAnnotator:
    """Draws each region's outline around its full mask, in its colour. A whole (a region with
    parts) gets a line twice as thick as the others and is drawn after its parts, so it visibly
    encloses them. thickness None = from the image size."""

    def __init__(self, thickness: int | None = None):
        self.thickness = thickness

    def annotate(self, scene: np.ndarray, regions: Regions) -> np.ndarray:
        return self.paint(_check_scene(scene, regions).copy(), regions)

    def paint(self, out: np.ndarray, regions: Regions) -> np.ndarray:
        """Draw in place (out: contiguous (H, W, 3) uint8 RGB, checked); returns out."""
        t = self.thickness or contour_px_for(*regions.image_hw)
        has_parts = np.zeros(len(regions), bool)
        has_parts[regions.parent[regions.parent >= 0]] = True
        colors, boxes = _colors(regions), regions.boxes_px
        for k in np.argsort(-regions.depth(), kind="stable"):  # parts first, their wholes over them
            x1, y1, x2, y2 = boxes[k]
            if x2 <= x1:
                continue
            contours, _ = cv2.findContours(pad1(regions.crops[k], 0), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            thick = 2 * t if has_parts[k] else t
            cv2.drawContours(out, contours, -1, colors[k], thick, lineType=cv2.LINE_8, offset=(int(x1) - 1, int(y1) - 1))
        return out


class BoxAnnotator:
    """Draws each region's bounding box (xyxy, x2/y2 exclusive) in its colour."""

    def __init__(self, thickness: int | None = None):
        self.thickness = thickness

    def annotate(self, scene: np.ndarray, regions: Regions) -> np.ndarray:
        return self.paint(_check_scene(scene, regions).copy(), regions)

    def paint(self, out: np.ndarray, regions: Regions) -> np.ndarray:
        """Draw in place (out: contiguous (H, W, 3) uint8 RGB, checked); returns out."""
        t = self.thickness or contour_px_for(*regions.image_hw)
        # regions.xyxy: the box the caller (and the JSON report) sees
        for color, (x1, y1, x2, y2) in zip(_colors(regions), np.round(regions.xyxy).astype(np.int64)):
            if x2 <= x1:
                continue
            cv2.rectangle(out, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), color, t)
        return out


@functools.lru_cache(maxsize=4096)
def _fit_font_px(text: str, w: int, h: int) -> int:
    """Largest font size whose label box for `text` fits a w x h box (place_labels sized it
    with `label_box_size`, so this recovers its font; also fits boxes scaled by resized())."""

    def fits(f: int) -> bool:
        bw, bh = label_box_size(text, f)
        return bw <= w and bh <= h

    ref = label_box_size("0", 100)[1] / 100.0
    f = max(1, int(h / ref))
    while f > 1 and not fits(f):
        f -= 1
    while fits(f + 1):
        f += 1
    return f


class LabelAnnotator:
    """Draws each label: a box filled with the region's colour exactly at `label_xyxy`,
    the text centred in it, black or white by WCAG contrast. names: the text is "label: class
    name" where the region has one (lay out with `place_labels(..., names=True)` to match)."""

    def __init__(self, names: bool = False):
        self.names = bool(names)

    def annotate(self, scene: np.ndarray, regions: Regions) -> np.ndarray:
        return self.paint(_check_scene(scene, regions).copy(), regions)

    def paint(self, out: np.ndarray, regions: Regions) -> np.ndarray:
        """Draw in place (out: (H, W, 3) uint8 RGB, checked); returns out. Each label is drawn
        on its own box's pixels only, so a huge image is never copied for the text."""
        if len(regions) and (regions.labels is None or regions.label_xyxy is None):
            raise ValueError("regions have no labels/label boxes; run som.layout.place_labels first")
        h, w = regions.image_hw
        boxes = np.round(regions.label_xyxy).astype(np.int64) if len(regions) else np.zeros((0, 4), np.int64)
        for text, color, (x1, y1, x2, y2) in zip(mark_texts(regions, self.names), _colors(regions), boxes):
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            if x2 <= x1 or y2 <= y1:
                continue
            patch = Image.new("RGB", (int(x2 - x1), int(y2 - y1)), color)
            f = _fit_font_px(text, int(x2 - x1), int(y2 - y1))
            l, t, r, b = ink_bbox(text, f)
            # put the ink box's centre on the label box's centre (positions rounded in image pixels)
            ox = round((x1 + x2) / 2 - (l + r) / 2) - x1
            oy = round((y1 + y2) / 2 - (t + b) / 2) - y1
            ImageDraw.Draw(patch).text((ox, oy), text, fill=text_color_for(color), font=label_font(f))
            out[y1:y2, x1:x2] = np.asarray(patch)
        return out


# ---------------------------------------------------------------- entry points
def draw_marks(image: np.ndarray, regions: Regions, style: MarkStyle = MarkStyle()) -> np.ndarray:
    """Draw the selected marks on a copy of `image` ((H, W, 3) uint8 RGB).

    Order: mask fill, contour, box, label (labels on top). With `style.mark` the regions
    must be laid out (`som.layout.place_labels`), else ValueError.
    """
    image = _check_scene(image, regions)
    if style.mark and len(regions) and (regions.labels is None or regions.label_xyxy is None):
        raise ValueError(
            "draw_marks with mark=True needs labelled regions (labels, label_xyxy); "
            "run som.layout.place_labels(regions) first or pass MarkStyle(mark=False)"
        )
    out = np.ascontiguousarray(image.copy())  # the one copy: every annotator paints into it
    if style.mask:
        MaskAnnotator(style.alpha).paint(out, regions)
    if style.contour:
        ContourAnnotator(style.contour_px).paint(out, regions)
    if style.box:
        BoxAnnotator(style.contour_px).paint(out, regions)
    if style.mark:
        LabelAnnotator(style.names).paint(out, regions)
    return out


def highlight(
    image: np.ndarray,
    regions: Regions,
    labels,
    style: MarkStyle = MarkStyle(),
    dim: float = 0.55,
) -> np.ndarray:
    """Show the regions named by `labels` (e.g. an LLM's answer): those keep their pixels and
    get their marks (fill, contour, label as in `style`, same colours as in `draw_marks`);
    every other pixel is darkened by `dim` (0 = unchanged, 1 = black) and unmarked.
    Unknown labels are ignored. Returns a new (H, W, 3) uint8 RGB array."""
    image = _check_scene(image, regions)
    if not (0.0 <= dim <= 1.0):
        raise ValueError(f"dim must be in [0, 1], got {dim!r}")
    if isinstance(labels, (str, int)):
        labels = [labels]
    wanted = list(dict.fromkeys(str(s) for s in labels))  # dedupe, keep order
    chosen = regions.select_labels(wanted)
    out = np.rint(image.astype(np.float32) * np.float32(1.0 - dim)).astype(np.uint8)
    for (x1, y1, x2, y2), c in zip(chosen.boxes_px, chosen.crops):  # a whole comes with its parts
        np.copyto(out[y1:y2, x1:x2], image[y1:y2, x1:x2], where=c[..., None])
    if len(chosen):
        out = draw_marks(out, chosen, style)
    return out
