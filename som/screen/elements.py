"""Icons, controls and pictures on screenshots, from image analysis (OpenCV), at UI granularity.

Pure numpy/OpenCV. A screenshot is mostly flat colour; what a user acts on stands out by its edges:

* controls: closed, axis-aligned rectangles of edges (buttons, text fields, check boxes, tabs),
  between `min_control_px` and `max_control_frac` of the image, holding at most
  `max_texts_in_control` text items and no smaller rectangle (else it is a panel or a card);
* icons: blobs of edge pixels outside text and controls, closed over small gaps, roughly square
  and between `min_icon_px` and `max_icon_px` on a side;
* images: larger blobs with many colours (photos, charts, canvases).

Text items (from OCR) inside a control become the control's text (one mark per button).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from som.ui_layout import boxes_overlap, ink_map

__all__ = ["ElementOptions", "Element", "detect_elements"]


@dataclass(frozen=True)
class ElementOptions:
    min_control_px: int = 10
    max_control_frac: float = 0.35
    max_texts_in_control: int = 2
    min_icon_px: int = 8
    max_icon_px: int = 64
    min_image_px: int = 48
    ink_threshold: int = 40


@dataclass(frozen=True)
class Element:
    """xyxy: image px, x2/y2 exclusive. kind: text, icon, control or image. text: read text or ''."""

    xyxy: tuple[int, int, int, int]
    kind: str
    text: str = ""
    score: float = 1.0


def _area(b) -> int:
    return max(0, int(b[2]) - int(b[0])) * max(0, int(b[3]) - int(b[1]))


def _inside_frac(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(len(inner), len(outer)): fraction of each inner box's area inside each outer box."""
    ov = boxes_overlap(inner, outer).astype(np.float64)
    a = np.maximum(1, (inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1])).astype(np.float64)
    return ov / a[:, None]


def _rectangles(gray: np.ndarray, opts: ElementOptions) -> np.ndarray:
    """(M, 4) boxes of closed rectangular edge outlines, duplicates (inner/outer edge) merged."""
    h, w = gray.shape
    edges = cv2.Canny(gray, 20, 60)
    edges = cv2.dilate(edges, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    max_area = opts.max_control_frac * h * w
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        if bw < opts.min_control_px or bh < opts.min_control_px or bw * bh > max_area:
            continue
        if bw > 0.95 * w and bh > 0.95 * h:
            continue
        # a rectangle's outline fills its bounding box's border; its contour encloses ~all of the box
        if cv2.contourArea(c) < 0.85 * bw * bh:
            continue
        approx = cv2.approxPolyDP(c, 0.04 * cv2.arcLength(c, True), True)
        if len(approx) > 8:
            continue
        boxes.append((x, y, x + bw, y + bh))
    if not boxes:
        return np.zeros((0, 4), np.int64)
    boxes = np.array(sorted(set(boxes), key=lambda b: -_area(b)), np.int64)
    keep: list[int] = []
    for i, b in enumerate(boxes):  # largest first (the outer edge of a border); 1-4 px inside is the same control
        if any(np.abs(b - boxes[j]).max() <= 4 for j in keep):
            continue
        keep.append(i)
    return boxes[keep]


def detect_elements(image: np.ndarray, texts: list, options: ElementOptions = ElementOptions()) -> list[Element]:
    """Controls, icons and images of an (H, W, 3) uint8 RGB screenshot, plus the text items
    (`som.screen.ocr.TextItem`) not absorbed by a control, as `Element`s (unordered)."""
    arr = np.ascontiguousarray(image)
    h, w = arr.shape[:2]
    gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    text_boxes = np.array([t.xyxy for t in texts], np.int64).reshape(-1, 4)

    # ---- controls: rectangles that hold little text and no smaller rectangle
    rects = _rectangles(gray, options)
    controls: list[int] = []
    if len(rects):
        contains = _inside_frac(rects, rects) >= 0.9  # [i, j]: rect i inside rect j
        np.fill_diagonal(contains, False)
        n_texts = (_inside_frac(text_boxes, rects) >= 0.8).sum(axis=0) if len(text_boxes) else np.zeros(len(rects), int)
        for j in range(len(rects)):
            if contains[:, j].any() or n_texts[j] > options.max_texts_in_control:
                continue
            controls.append(j)
    rects = rects[controls]
    if len(rects) > 1:
        # two outlines that cross (neither holds the other) are not both controls: keep the smaller
        frac = _inside_frac(rects, rects)
        cross = (boxes_overlap(rects, rects) > 0) & (frac < 0.9) & (frac.T < 0.9)
        np.fill_diagonal(cross, False)
        areas = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
        drop = (cross & (areas[:, None] > areas[None, :])).any(axis=1)
        rects = rects[~drop]

    out: list[Element] = []
    # a framed area full of colours with no text is a picture, not a control
    pictures = np.array([_is_picture(arr, r, options) for r in rects], bool) if len(rects) else np.zeros(0, bool)
    if len(text_boxes) and len(rects):
        pictures &= ~(_inside_frac(text_boxes, rects) >= 0.8).any(axis=0)
    out += [Element(tuple(int(v) for v in r), "image") for r in rects[pictures]]
    rects = rects[~pictures]
    absorbed = np.zeros(len(text_boxes), bool)
    if len(rects) and len(text_boxes):
        inside = _inside_frac(text_boxes, rects) >= 0.8
        for j, r in enumerate(rects):
            idx = np.nonzero(inside[:, j] & ~absorbed)[0]
            absorbed[idx] = True
            txt = " ".join(texts[i].text for i in sorted(idx, key=lambda i: (texts[i].xyxy[1], texts[i].xyxy[0])))
            score = min((texts[i].score for i in idx), default=1.0)
            out.append(Element(tuple(int(v) for v in r), "control", txt, float(score)))
    else:
        out += [Element(tuple(int(v) for v in r), "control") for r in rects]
    out += [Element(tuple(int(v) for v in texts[i].xyxy), "text", texts[i].text, float(texts[i].score)) for i in np.nonzero(~absorbed)[0]]

    # ---- icons and images: edge blobs outside text and controls
    ink = ink_map(arr, options.ink_threshold).astype(np.uint8)
    for x1, y1, x2, y2 in text_boxes:
        ink[max(0, y1 - 2) : y2 + 2, max(0, x1 - 2) : x2 + 2] = 0
    for x1, y1, x2, y2 in rects:
        ink[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = 0
    ink = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    for x, y, bw, bh, area in stats[1:]:
        if bw < options.min_icon_px or bh < options.min_icon_px:
            continue
        aspect = bw / bh
        if options.min_icon_px <= max(bw, bh) <= options.max_icon_px and 0.4 <= aspect <= 2.5 and area >= 0.15 * bw * bh:
            out.append(Element((int(x), int(y), int(x + bw), int(y + bh)), "icon"))
        elif bw * bh <= 0.8 * h * w and _is_picture(arr, (x, y, x + bw, y + bh), options):
            out.append(Element((int(x), int(y), int(x + bw), int(y + bh)), "image"))
    return _drop_inside_pictures(out)


def _drop_inside_pictures(elements: list[Element]) -> list[Element]:
    """A picture is one mark: icons and other pictures inside it (or nearly the same box) go, and
    so does text read inside it unless the recogniser is sure of it (a caption, a chart label)."""
    pics = [e for e in elements if e.kind == "image"]
    if not pics:
        return elements
    pb = np.array([e.xyxy for e in pics], np.int64)
    keep: list[Element] = []
    kept_pics: list[tuple] = []
    for e in sorted(elements, key=lambda e: (e.kind != "image", -_area(e.xyxy))):
        inside = _inside_frac(np.array([e.xyxy], np.int64), pb)[0]
        if e.kind == "image":
            if any(_inside_frac(np.array([e.xyxy], np.int64), np.array([p], np.int64))[0, 0] >= 0.8 for p in kept_pics):
                continue
            kept_pics.append(e.xyxy)
        elif inside.max() >= 0.8 and (e.kind == "icon" or (e.kind == "text" and (e.score < 0.9 or len(e.text) < 3))):
            continue
        keep.append(e)
    return keep


def _is_picture(arr: np.ndarray, box, options: ElementOptions) -> bool:
    """Large enough and many distinct colours (a photo, a chart); a drawn frame has few."""
    x1, y1, x2, y2 = (int(v) for v in box)
    if x2 - x1 < options.min_image_px or y2 - y1 < options.min_image_px:
        return False
    crop = arr[y1:y2:2, x1:x2:2]
    return len(np.unique((crop // 16).reshape(-1, 3), axis=0)) >= 48
