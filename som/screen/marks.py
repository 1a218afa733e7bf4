"""`mark_screen(image)`: Set-of-Mark marks on a screenshot alone (no DOM): text read by OCR plus
icons, controls and pictures found by image analysis, each with a label beside it.

    marks = som.mark_screen("screenshot.png")
    marks.items[0].kind, marks.items[0].text, marks.items[0].xyxy
    Image.fromarray(marks.image).save("screenshot.marked.png")
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from som.screen.elements import ElementOptions, detect_elements
from som.screen.ocr import OCROptions, read_text
from som.ui_marks import UIMarkStyle, draw_ui_marks, layout_ui_marks

__all__ = ["SCREEN_KINDS", "ScreenItem", "ScreenMarks", "mark_screen", "reading_order"]

SCREEN_KINDS = ("text", "icon", "control", "image")


@dataclass(frozen=True)
class ScreenItem:
    """One mark: its label, box (image px, x2/y2 exclusive), kind (text/icon/control/image) and the
    text read in it ('' where none), with the recogniser's score (1.0 for shapes)."""

    label: str
    kind: str
    text: str
    score: float
    xyxy: tuple[int, int, int, int]


@dataclass
class ScreenMarks:
    """image: the marked screenshot; screenshot: the input (RGB); regions: one box region per item,
    labels 1..N in reading order; items[k]: what region k is."""

    image: np.ndarray
    screenshot: np.ndarray
    regions: Any
    items: list[ScreenItem]
    settings: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def item(self, mark: int | str) -> ScreenItem:
        label = str(mark).strip().strip("[]")
        for it in self.items:
            if it.label == label:
                return it
        raise ValueError(f"no mark {mark!r}; marks are 1 to {len(self.items)}" if self.items else "there are no marks")

    def to_dict(self, image_file: str | None = None) -> dict[str, Any]:
        """The marks JSON (format som.marks) with kind, text and score beside each mark's standard keys."""
        from som.marksfile import regions_to_dict

        doc = regions_to_dict(self.regions, self.settings, image_file)
        for mark, it in zip(doc["marks"], self.items):
            mark.update({"kind": it.kind, "text": it.text, "text_score": round(it.score, 4)})
        return doc

    def save(self, out_dir: str | Path, name: str) -> tuple[Path, Path]:
        from PIL import Image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png, js = out / f"{name}.marked.png", out / f"{name}.marks.json"
        Image.fromarray(self.image).save(png)
        js.write_text(json.dumps(self.to_dict(image_file=png.name), ensure_ascii=False))
        return png, js


def reading_order(boxes: np.ndarray) -> np.ndarray:
    """Indices of (N, 4) boxes top to bottom, left to right: boxes whose vertical centres lie within
    half a typical line height of each other form a row."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    heights = boxes[:, 3] - boxes[:, 1]
    line = max(4.0, float(np.median(heights)))
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    by_y = np.argsort(cy, kind="stable")
    row = np.zeros(len(boxes), np.int64)
    r, top = 0, cy[by_y[0]]
    for i in by_y:
        if cy[i] - top > line / 2:
            r, top = r + 1, cy[i]
        row[i] = r
    return np.lexsort((boxes[:, 0], row))


def mark_screen(
    image: Any,
    *,
    kinds: Iterable[str] | None = None,
    style: UIMarkStyle = UIMarkStyle(),
    ocr: OCROptions = OCROptions(),
    elements: ElementOptions = ElementOptions(),
) -> ScreenMarks:
    """Mark what a user could act on in a screenshot: text (read), icons, controls, images.

    image: a path or anything `som.load_image` takes, or an (H, W, 3) uint8 RGB array.
    kinds: which of SCREEN_KINDS to keep (None: all).
    """
    from som.imageio import load_image

    kinds_t = tuple(SCREEN_KINDS if kinds is None else kinds)
    unknown = sorted(set(kinds_t) - set(SCREEN_KINDS))
    if unknown:
        raise ValueError(f"unknown mark kinds {unknown}; choose from {', '.join(SCREEN_KINDS)}")
    shot = load_image(image)
    t0 = time.perf_counter()
    texts = read_text(shot, ocr)
    t1 = time.perf_counter()
    found = [e for e in detect_elements(shot, texts, elements) if e.kind in kinds_t]
    t2 = time.perf_counter()
    boxes = np.array([e.xyxy for e in found], np.int64).reshape(-1, 4)
    order = reading_order(boxes)
    found = [found[i] for i in order]
    boxes = boxes[order]
    scores = np.array([e.score for e in found], np.float32)
    regions, placement = layout_ui_marks(boxes, shot.shape[:2], style, scores=scores, image=shot)
    marked = draw_ui_marks(shot, regions, placement, style)
    t3 = time.perf_counter()
    items = [
        ScreenItem(label, e.kind, e.text, float(e.score), tuple(int(v) for v in e.xyxy))
        for label, e in zip(regions.labels, found)
    ]
    settings = {"source": "screen", "kinds": list(kinds_t), "label_mode": style.label_mode,
                "ocr": asdict(ocr), "elements": asdict(elements)}
    timings = {"ocr": (t1 - t0) * 1000, "elements": (t2 - t1) * 1000, "layout_draw": (t3 - t2) * 1000}
    return ScreenMarks(marked, shot, regions, items, settings, timings)
