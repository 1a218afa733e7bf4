"""UI marks from element boxes: `Regions` laid out with `som.ui_layout` and drawn with `som.draw`.

Shared by `som.web` (boxes from the DOM) and `som.screen` (boxes from OCR and image analysis).
An element is its box (crop all True); its label sits beside it (see `som.ui_layout`), a box
outline in the label's colour ties the two together, and a label that had to move away from its
element gets a line to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from som.draw import LabelAnnotator, color_for
from som.layout import LABEL_MODES, label_box_size, make_labels
from som.regions import Regions
from som.ui_layout import UILabelPlacement, ink_map, place_ui_labels, ui_font_px

__all__ = ["UIMarkStyle", "layout_ui_marks", "draw_ui_marks", "ui_box_px"]


@dataclass(frozen=True)
class UIMarkStyle:
    """How UI marks look.

    box:        outline each element in its label's colour.
    label_mode: "number" (1, 2, 3…) or "alphabet" (a, b, c…).
    font_px:    label font size; None = `som.ui_layout.ui_font_px` of the image.
    box_px:     outline thickness, drawn outside the element's box; None = from the image size.
    """

    box: bool = True
    label_mode: str = "number"
    font_px: int | None = None
    box_px: int | None = None

    def __post_init__(self) -> None:
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"UIMarkStyle.label_mode must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}")
        if self.font_px is not None and int(self.font_px) < 6:
            raise ValueError(f"UIMarkStyle.font_px must be >= 6 or None, got {self.font_px!r}")
        if self.box_px is not None and int(self.box_px) < 1:
            raise ValueError(f"UIMarkStyle.box_px must be >= 1 or None, got {self.box_px!r}")


def layout_ui_marks(
    boxes_xyxy: np.ndarray,
    image_hw: tuple[int, int],
    style: UIMarkStyle = UIMarkStyle(),
    scores: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> tuple[Regions, UILabelPlacement]:
    """(N, 4) element boxes (image px, x2/y2 exclusive; clipped to the image) -> labelled Regions
    (one all-True crop per box, labels 1..N in box order) and where their labels went.
    image: the screenshot ((H, W, 3) uint8 RGB), so labels avoid hiding its text and icons."""
    h, w = int(image_hw[0]), int(image_hw[1])
    boxes = np.round(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)).astype(np.int64)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    small = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if small.any():
        raise ValueError(f"element boxes {np.nonzero(small)[0].tolist()} are empty inside the {w}x{h} image")
    labels = make_labels(len(boxes), style.label_mode)
    font_px = int(style.font_px) if style.font_px is not None else ui_font_px(h, w)
    sizes = [label_box_size(s, font_px) for s in labels]
    ink = ink_map(image) if image is not None else None
    placement = place_ui_labels(boxes, sizes, (h, w), ink)
    crops = [np.ones((int(y2 - y1), int(x2 - x1)), bool) for x1, y1, x2, y2 in boxes]
    regions = Regions.from_crops(
        boxes,
        crops,
        (h, w),
        scores=scores,
        labels=labels,
        anchors_xy=placement.anchors_xy,
        label_xyxy=placement.label_xyxy.astype(np.float32),
    )
    return regions, placement


def ui_box_px(height: int, width: int) -> int:
    """Outline thickness for UI marks: 1 px up to ~1200 px on the shorter side, then thicker."""
    return max(1, round(min(height, width) / 1200))


def _outline_outside(image: np.ndarray, regions: Regions, t: int) -> np.ndarray:
    """Each element's box outlined just outside it (the outline never covers the element's own
    pixels), in its label's colour; clipped at the image border."""
    out = np.ascontiguousarray(np.array(image, copy=True))
    h, w = regions.image_hw
    for label, (x1, y1, x2, y2) in zip(regions.labels, np.round(regions.xyxy).astype(np.int64)):
        color = color_for(label)
        for i in range(1, t + 1):
            cv2.rectangle(out, (int(x1) - i, int(y1) - i), (int(x2) - 1 + i, int(y2) - 1 + i), color, 1)
    return out


def draw_ui_marks(
    image: np.ndarray, regions: Regions, placement: UILabelPlacement | None = None, style: UIMarkStyle = UIMarkStyle()
) -> np.ndarray:
    """The screenshot ((H, W, 3) uint8 RGB) with element outlines, leader lines for labels that
    sit away from their element, and the labels on top. Returns a new array."""
    out = np.asarray(image)
    t = int(style.box_px) if style.box_px is not None else ui_box_px(*regions.image_hw)
    if style.box:
        out = _outline_outside(out, regions, t)
    if placement is not None and not placement.attached.all():
        out = np.ascontiguousarray(out.copy())
        for k in np.nonzero(~placement.attached)[0]:
            x1, y1, x2, y2 = (int(v) for v in placement.label_xyxy[k])
            ax, ay = (int(v) for v in placement.anchors_xy[k])
            lx, ly = min(max(ax, x1), x2 - 1), min(max(ay, y1), y2 - 1)  # label border point nearest the anchor
            cv2.line(out, (lx, ly), (ax, ay), color_for(regions.labels[k]), max(1, t), cv2.LINE_AA)
    return LabelAnnotator().annotate(out, regions)
