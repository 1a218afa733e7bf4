"""Per-session state of the toolbox app, and every action on it, without Gradio.

A `ToolboxSession` holds one user's image, regions and downloads. The Gradio layer
(`som.app.toolbox`) keeps one per browser session in a `gr.State` and only converts
widgets to arguments; everything here is testable without a server.

Regions are stored as one (H, W) int32 label map of their *visible parts* (0 is
background, k is region k, 1-based, in label order) plus each region's parent (0 for a
root). A region's full mask is its visible part plus its descendants'. Laminarity (any two
regions disjoint or nested) therefore holds by construction, and memory does not grow
with the number of regions.

Rules of interactive editing:
* a gesture (point, box, stroke) on background makes one new root region with the next
  label; existing regions keep their labels and their pixels: a new region only gets
  pixels nobody owns (documented rule: **first come keeps its pixels**);
* a gesture inside a mark whose segment lies (mostly) inside that mark adds it as a
  **part** of that mark (it takes the mark's visible pixels); a segment that repeats the
  mark adds nothing and names the mark (clicking a part names the part, not its whole);
* "+/- point to last region" re-decodes the last gesture's prompts with the
  extra point, so a region can be grown or trimmed;
* with a segmenter that has mask choices (`segment_prompt_choices`: SAM's 3, Semantic-SAM's
  6, small to large), a click or box adds the middle choice (`middle_choice`: 3 -> the 2nd,
  6 -> the 3rd) and "Larger" / "Smaller" replace the last region with the next choice, by
  the same rules as a new gesture (as if the last region were undone and the choice added);
  any other change ends the stepping;
* undo removes the last region, clear removes all;
* a gesture whose free part is below the minimum area adds nothing and says why.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from som.draw import MarkStyle
from som.imageio import ImageError, ImageLike, load_image, resize_rgb, working_size
from som.refine import RefineOptions, clean_masks
from som.regions import Regions

MAX_SIDE_PX = 2048  # larger uploads are worked on (and downloaded) at this size
MIN_SIDE_PX = 16
MARK_TYPES = ("Mark", "Mask", "Box", "Contour", "Names")  # Names: class names beside the labels, where known
LABEL_MODES = {"Number": "number", "Alphabet": "alphabet"}
STROKE_POINTS = 8  # prompts sampled along a painted stroke

GetSegmenter = Callable[[str], Any]


class UserError(ValueError):
    """A mistake the user can fix; its message is shown as is in the page."""


class NothingAdded(UserError):
    """A valid gesture that changed nothing (e.g. a click inside an existing region)."""


def app_temp_root() -> Path:
    """Folder of every session's downloads: <system temp>/som-app (created on demand)."""
    root = Path(tempfile.gettempdir()) / "som-app"
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_style(marks: list[str] | tuple[str, ...], label_mode: str = "Number", alpha: float = 0.4) -> MarkStyle:
    """UI choices -> MarkStyle. marks: subset of MARK_TYPES (case-insensitive)."""
    chosen = {str(m).strip().lower() for m in (marks or [])}
    unknown = chosen - {m.lower() for m in MARK_TYPES}
    if unknown:
        raise UserError(f"unknown mark type(s) {sorted(unknown)}; choose from {', '.join(MARK_TYPES)}")
    if not chosen - {"names"}:
        raise UserError("choose at least one mark type (Mark, Mask, Box or Contour)")
    mode = LABEL_MODES.get(str(label_mode).capitalize(), str(label_mode).lower())
    if mode not in LABEL_MODES.values():
        raise UserError(f"label mode must be Number or Alphabet, got {label_mode!r}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be between 0 and 1, got {alpha}")
    return MarkStyle(
        mark="mark" in chosen, mask="mask" in chosen, box="box" in chosen, contour="contour" in chosen,
        alpha=alpha, label_mode=mode, names="names" in chosen,
    )


def make_refine_options(min_area: float) -> RefineOptions:
    """Minimum area as the CLI reads it: below 1 a fraction of the image, from 1 up pixels."""
    min_area = float(min_area)
    if min_area < 0:
        raise UserError(f"minimum area must be >= 0, got {min_area}")
    return RefineOptions(min_area_frac=min_area) if min_area < 1 else RefineOptions(min_area_px=int(min_area))


def stroke_to_points(stroke: np.ndarray, max_points: int = STROKE_POINTS) -> np.ndarray:
    """(H, W) bool painted pixels -> (K, 2) float32 x,y prompts spread along the stroke.

    Farthest-point sampling from the pixel nearest the stroke's centroid: the first point
    is central, the next ones cover the stroke's extent, so a long stroke across an object
    prompts all of it and a dab gives one point.
    """
    ys, xs = np.nonzero(stroke)
    if len(xs) == 0:
        raise UserError("the stroke is empty: paint over an object first")
    pts = np.stack([xs, ys], axis=1).astype(np.float32)
    if len(pts) > 4000:  # sampling a subset keeps this O(K * 4000)
        pts = pts[np.linspace(0, len(pts) - 1, 4000).astype(np.int64)]
    centre = pts.mean(axis=0)
    chosen = [int(np.argmin(((pts - centre) ** 2).sum(axis=1)))]
    dist = ((pts - pts[chosen[0]]) ** 2).sum(axis=1)
    # stop when the stroke is covered to within ~a brush width: no duplicate prompts
    min_gap = max(4.0, 0.02 * float(max(stroke.shape)))
    while len(chosen) < max_points:
        k = int(np.argmax(dist))
        if dist[k] < min_gap**2:
            break
        chosen.append(k)
        dist = np.minimum(dist, ((pts - pts[k]) ** 2).sum(axis=1))
    return pts[chosen] + 0.5  # pixel centres


def polyline_mask(points_xy: np.ndarray, height: int, width: int, thickness: int = 3) -> np.ndarray:
    """(K, 2) x,y vertices -> (H, W) bool stroke drawn through them."""
    import cv2

    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    canvas = np.zeros((height, width), np.uint8)
    ipts = np.round(pts).astype(np.int32)
    if len(ipts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in ipts[0]), thickness, 1, -1)
    else:
        cv2.polylines(canvas, [ipts.reshape(-1, 1, 2)], False, 1, thickness)
    return canvas > 0


@dataclass
class Gesture:
    """What made a region: 'auto', the prompts of 'point' / 'box' / 'stroke', or a 'text' prompt."""

    kind: str
    points_xy: list[list[float]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)
    box_xyxy: list[float] | None = None
    choice: int | None = None  # which of the segmenter's mask choices (0 = smallest), if it has them
    n_choices: int | None = None
    text: str | None = None  # the words of a text prompt

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Rendered:
    """What the page shows after an action."""

    canvas_path: str | None  # marked image with gesture hints (points, box corner)
    rows: list[list]  # mark table, columns `headers`
    status: str
    marked_png: str | None
    marks_json: str | None
    clean_png: str | None
    warning: str | None = None
    headers: list[str] = field(default_factory=lambda: list(TABLE_HEADERS))


@dataclass
class ChoiceLadder:
    """The mask choices of the last added region (small to large) and which one it shows.
    Valid while the session's `version` is still `version` (any other change ends it)."""

    choices: Regions
    index: int
    label: int
    version: int


TABLE_HEADERS = ["label", "part of", "area", "x1", "y1", "x2", "y2", "score", "made by"]
CLASS_HEADER = "class"  # one more column, last (clients read columns by position), when some mark has a class


@dataclass
class ToolboxSession:
    """One user's image, regions and files. Create with `ToolboxSession()`, then `load`."""

    source: np.ndarray | None = None
    image_name: str = "image"
    label_map: np.ndarray | None = None  # (H, W) int32 visible parts: 0 = background, k = region k
    parents: list[int] = field(default_factory=list)  # region k's parent label, 0 for a root
    scores: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # region k's class name, "" when none
    category_scores: list[float] = field(default_factory=list)  # its confidence, NaN when none
    gestures: list[Gesture] = field(default_factory=list)
    segmenters_used: list[str] = field(default_factory=list)
    auto_settings: dict | None = None
    box_corner: tuple[float, float] | None = None
    workdir: str | None = None
    temp_root: str | None = None  # parent of workdir (the app instance's folder); None: app_temp_root()
    version: int = 0  # bumps on every change: names of written files
    _drawn: tuple | None = field(default=None, repr=False)  # (MarkResult, MarkStyle) of the last render
    _ladder: ChoiceLadder | None = field(default=None, repr=False)  # mask choices of the last region
    # one user's quick clicks may run at once (page clicks bypass the queue): one change at a time
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    # ---- lifecycle ----------------------------------------------------
    def _dir(self) -> Path:
        if self.workdir is None or not Path(self.workdir).is_dir():
            root = Path(self.temp_root) if self.temp_root else app_temp_root()
            root.mkdir(parents=True, exist_ok=True)
            self.workdir = tempfile.mkdtemp(prefix="session-", dir=root)
        return Path(self.workdir)

    def close(self) -> None:
        """Delete this session's files and let go of its image and regions (called when Gradio
        drops the session: an expired session may still be referenced for a moment)."""
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.source, self.label_map, self._drawn = None, None, None

    @property
    def n_regions(self) -> int:
        return len(self.gestures)

    def require_image(self) -> np.ndarray:
        if self.source is None:
            raise UserError("upload an image first (or pick an example)")
        return self.source

    def load(self, image: ImageLike, name: str | None = None, max_side_px: int = MAX_SIDE_PX) -> None:
        """Read an upload (any format som.load_image takes); large images are scaled down."""
        label = Path(name).name if name else "image"
        source = load_image(image, name=label)
        h, w = source.shape[:2]
        if min(h, w) < MIN_SIDE_PX:
            raise ImageError(f"{label}: image is {w}x{h} pixels; marks need at least {MIN_SIDE_PX}x{MIN_SIDE_PX}")
        wh, ww = working_size(h, w, max_side_px)
        self.source = np.ascontiguousarray(resize_rgb(source, wh, ww))
        stem = Path(label).stem or "image"
        self.image_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "image"
        self.clear()
        from PIL import Image

        Image.fromarray(self.source).save(self._dir() / f"{self.image_name}.png", compress_level=1)

    def clear(self) -> None:
        h, w = self.require_image().shape[:2]
        self.label_map = np.zeros((h, w), np.int32)
        self.scores, self.gestures, self.segmenters_used, self.parents = [], [], [], []
        self.categories, self.category_scores = [], []
        self.auto_settings, self.box_corner = None, None
        self.version += 1

    def undo(self) -> bool:
        """Remove the last region; False when there was none."""
        self.require_image()
        self.box_corner = None
        if not self.gestures:
            return False
        k = len(self.gestures)
        parent = self.parents.pop()
        self.label_map[self.label_map == k] = parent  # its pixels go back to its whole
        self.parents = [parent if p == k else p for p in self.parents]
        self.gestures.pop()
        self.scores.pop()
        self.categories.pop()
        self.category_scores.pop()
        self.segmenters_used.pop()
        self.version += 1
        return True

    # ---- regions --------------------------------------------------------
    def _full_crop(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(box, crop) of region `label`'s full mask: its visible part and its descendants'."""
        from som.cropmask import tighten

        members = {label}
        for k in range(label + 1, self.n_regions + 1):  # a part is added after its whole
            if self.parents[k - 1] in members:
                members.add(k)
        mask = np.isin(self.label_map, sorted(members))
        h, w = mask.shape
        return tighten(np.array([0, 0, w, h]), mask)

    def regions(self) -> Regions:
        """The current regions in label order (visible parts disjoint, parents set)."""
        self.require_image()
        parent = np.array([p - 1 for p in self.parents], np.int32)
        named = any(self.categories)
        return Regions.from_visible_map(
            self.label_map, parent, scores=np.asarray(self.scores, np.float32),
            categories=list(self.categories) if named else None,
            category_scores=np.asarray(self.category_scores, np.float32) if named else None,
        )

    def set_automatic(self, regions: Regions, settings: dict) -> None:
        """Replace all regions with an automatic result (flat or nested, in label order)."""
        h, w = self.require_image().shape[:2]
        if regions.image_hw != (h, w):
            regions = regions.resized(h, w)
        self.label_map = regions.label_map()
        self.parents = [int(p) + 1 for p in regions.parent]
        n = len(regions)
        self.scores = [1.0] * n if regions.scores is None else [float(s) for s in regions.scores]
        self.categories = [""] * n if regions.categories is None else list(regions.categories)
        self.category_scores = (
            [float("nan")] * n if regions.category_scores is None else [float(s) for s in regions.category_scores]
        )
        self.gestures = [Gesture("auto") for _ in range(n)]
        self.segmenters_used = [settings.get("segmenter") or "?"] * n
        self.auto_settings = settings
        self.box_corner = None
        self.version += 1

    def _free_part(self, mask: np.ndarray, min_area_px: int, own_label: int | None = None, within: int = 0) -> np.ndarray:
        """Clean the new mask, keep only pixels nobody else owns (or, for a part, the visible
        pixels of its whole `within`), drop crumbs."""
        h, w = mask.shape
        crumbs = max(1, int(0.0005 * h * w))
        mask = clean_masks(mask[None], crumbs, crumbs)[0]
        free = self.label_map == within
        if own_label is not None:
            free |= self.label_map == own_label
        mask = mask & free
        if mask.any():
            mask = clean_masks(mask[None], 0, min(crumbs, max(1, min_area_px - 1)))[0]
        return mask

    @staticmethod
    def _prompts(gesture: Gesture) -> dict:
        pts = np.asarray(gesture.points_xy, np.float32).reshape(-1, 2) if gesture.points_xy else None
        lbl = np.asarray(gesture.point_labels, np.int64) if gesture.points_xy else None
        box = np.asarray(gesture.box_xyxy, np.float32) if gesture.box_xyxy is not None else None
        return {"points_xy": pts, "point_labels": lbl, "box_xyxy": box}

    @staticmethod
    def _about(regions: Regions, k: int) -> dict:
        """Score and class name of region k of a segmenter's answer, as `_add_mask` takes them."""
        return {
            "score": 1.0 if regions.scores is None else float(regions.scores[k]),
            "category": "" if regions.categories is None else regions.categories[k],
            "category_score": float("nan") if regions.category_scores is None else float(regions.category_scores[k]),
        }

    def _segment(self, segmenter, gesture: Gesture) -> tuple[np.ndarray, dict]:
        """(H, W) mask of a gesture and what `_about` says of it."""
        out = segmenter.segment_prompts(self.source, **self._prompts(gesture))
        if not len(out):
            return np.zeros(self.source.shape[:2], bool), {"score": 1.0}
        return out.mask(0), self._about(out, 0)

    def _choices(self, segmenter, gesture: Gesture) -> Regions | None:
        """The segmenter's mask choices for a click or box, small to large (None: it has none)."""
        if gesture.kind not in ("point", "box") or not hasattr(segmenter, "segment_prompt_choices"):
            return None
        out = segmenter.segment_prompt_choices(self.source, **self._prompts(gesture))
        return out if len(out) else None

    def _check_xy(self, x: float, y: float) -> tuple[float, float]:
        h, w = self.require_image().shape[:2]
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise UserError(f"a point needs numbers x, y; got {x!r}, {y!r}") from None
        if not (0 <= x < w and 0 <= y < h):
            raise UserError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")
        return x, y

    def add_gesture(self, segmenter, gesture: Gesture, min_area_px: int = 1) -> str:
        """Segment one gesture into a new region with the next label; returns a status line.
        With mask choices (see the module docstring) the middle one is added."""
        from som.segmenters.base import middle_choice

        self.require_image()
        self.box_corner = None
        choices = self._choices(segmenter, gesture)
        if choices is None:
            mask, about = self._segment(segmenter, gesture)
            return self._add_mask(mask, gesture, segmenter.name, min_area_px, **about)
        index = middle_choice(len(choices))
        gesture = dataclasses.replace(gesture, choice=index, n_choices=len(choices))
        line = self._add_mask(choices.mask(index), gesture, segmenter.name, min_area_px, **self._about(choices, index))
        self._ladder = ChoiceLadder(choices, index, self.n_regions, self.version)
        return line + self._choice_note(index, len(choices))

    @staticmethod
    def _choice_note(index: int, n: int) -> str:
        if n == 1:
            return "; the segmenter gave a single mask here"
        return f"; mask {index + 1} of {n}, small to large (Larger / Smaller to change)"

    def step_choice(self, step: int, min_area_px: int = 1) -> str:
        """Replace the last region with its next larger (step +1) or smaller (-1) mask choice.

        As if the last region were undone and that choice added by the same gesture: it may
        become a part of another region or stop being one. At either end, or when the choice
        would add nothing, UserError/NothingAdded and nothing changes."""
        self.require_image()
        self.box_corner = None
        ladder = self._ladder
        if ladder is None or ladder.version != self.version or ladder.label != self.n_regions:
            raise UserError(
                "Larger / Smaller work right after a click or box that gave mask choices "
                "(with a segmenter such as mobile-sam); click an object first"
            )
        n, new = len(ladder.choices), ladder.index + int(step)
        if not 0 <= new < n:
            end = "largest" if step > 0 else "smallest"
            raise NothingAdded(f"region {ladder.label} already shows the {end} of its {n} mask choices")
        snapshot = (self.label_map.copy(), list(self.parents), list(self.gestures), list(self.scores),
                    list(self.segmenters_used), list(self.categories), list(self.category_scores))
        gesture, segmenter_name = self.gestures[-1], self.segmenters_used[-1]
        self.undo()
        try:
            line = self._add_mask(ladder.choices.mask(new), dataclasses.replace(gesture, choice=new), segmenter_name,
                                  min_area_px, **self._about(ladder.choices, new))
        except NothingAdded as e:
            (self.label_map, self.parents, self.gestures, self.scores, self.segmenters_used, self.categories,
             self.category_scores) = snapshot
            self.version += 1
            self._ladder = dataclasses.replace(ladder, version=self.version)
            raise NothingAdded(f"mask {new + 1} of {n} cannot replace region {ladder.label}: {e}") from None
        self._ladder = ChoiceLadder(ladder.choices, new, self.n_regions, self.version)
        return line.replace("added region", "replaced region", 1) + self._choice_note(new, n)

    def _add_mask(self, mask: np.ndarray, gesture: Gesture, segmenter_name: str, min_area_px: int,
                  score: float = 1.0, category: str = "", category_score: float = float("nan")) -> str:
        """Add a segmented (H, W) mask as the next region by the editing rules; a status line.
        score, category, category_score: what the segmenter said of it ("" / NaN: no class)."""
        whole = self._whole_for(mask, gesture)
        mask = self._free_part(mask, min_area_px, within=whole)
        area = int(mask.sum())
        if area < max(1, min_area_px):
            owner = self._owner_at(gesture)
            why = f"it falls inside {self._describe(owner)}" if owner else "the segmenter found no region there"
            raise NothingAdded(
                f"nothing added: {why} (free part {area} px, minimum {min_area_px} px). "
                "Undo or clear to redo a region, or lower the minimum area."
            )
        if whole and int(np.count_nonzero(self.label_map == whole)) - area < max(1, min_area_px):
            raise NothingAdded(
                f"nothing added: it falls inside {self._describe(whole)}, and as a part it would cover all "
                "that is left of it; undo a part first, or lower the minimum area"
            )
        k = self.n_regions + 1
        self.label_map[mask] = k
        self.parents.append(whole)
        self.gestures.append(gesture)
        self.scores.append(score)
        self.categories.append(category)
        self.category_scores.append(category_score)
        self.segmenters_used.append(segmenter_name)
        self.version += 1
        part = f" as a part of region {whole}" if whole else ""
        return f"added region {k} ({area} px) from a {gesture.kind}{part}"

    def _describe(self, label: int) -> str:
        whole = self.parents[label - 1]
        return f"region {label}" + (f" (a part of region {whole})" if whole else "")

    def _whole_for(self, mask: np.ndarray, gesture: Gesture, contain_frac: float = 0.8, dup_iou: float = 0.85) -> int:
        """The region a new segment is a part of: the one under the gesture's first positive
        point, when the segment lies mostly inside it without repeating it (0: none)."""
        owner = self._owner_at(gesture)
        area = int(mask.sum())
        if not owner or area == 0:
            return 0
        box, crop = self._full_crop(owner)
        from som.cropmask import intersection_px

        h, w = mask.shape
        inter = intersection_px(mask, np.array([0, 0, w, h]), crop, box)
        union = area + int(crop.sum()) - inter
        if inter >= contain_frac * area and inter < dup_iou * union:
            return owner
        return 0

    def _owner_at(self, gesture: Gesture) -> int:
        for (x, y), lab in zip(gesture.points_xy, gesture.point_labels):
            if lab == 1:
                return int(self.label_map[int(y), int(x)])
        return 0

    def add_text(self, segmenter, text: str, min_area_px: int = 1) -> str:
        """A text prompt ("the red mug") -> one new region: what the segmenter's `segment_text`
        finds (several masks become one region), by the same rules as a gesture."""
        self.require_image()
        self.box_corner = None
        text = " ".join(str(text or "").split())
        if not text:
            raise UserError("type what to find, e.g. 'the red mug'")
        if not hasattr(segmenter, "segment_text"):
            raise UserError(
                f"segmenter {segmenter.name!r} takes no text prompts; choose one that does (seem)"
            )
        found = segmenter.segment_text(self.source, text)
        if len(found) == 0 or not found.areas.any():
            raise NothingAdded(f"nothing added: {segmenter.name} found nothing for {text!r}")
        mask = found.full_masks().any(axis=0)
        best = int(np.argmax(found.scores)) if found.scores is not None else 0
        return self._add_mask(mask, Gesture("text", text=text), segmenter.name, min_area_px, **self._about(found, best))

    def add_point(self, segmenter, x: float, y: float, min_area_px: int = 1) -> str:
        x, y = self._check_xy(x, y)
        return self.add_gesture(segmenter, Gesture("point", [[x, y]], [1]), min_area_px)

    def add_box(self, segmenter, x1: float, y1: float, x2: float, y2: float, min_area_px: int = 1) -> str:
        h, w = self.require_image().shape[:2]
        try:
            x1, y1, x2, y2 = (float(v) for v in (x1, y1, x2, y2))
        except (TypeError, ValueError):
            raise UserError("a box needs four numbers x1, y1, x2, y2") from None
        x1, x2 = sorted((min(max(x1, 0), w), min(max(x2, 0), w)))
        y1, y2 = sorted((min(max(y1, 0), h), min(max(y2, 0), h)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise UserError(f"the box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is too small: drag across the object")
        return self.add_gesture(segmenter, Gesture("box", box_xyxy=[x1, y1, x2, y2]), min_area_px)

    def box_click(self, segmenter, x: float, y: float, min_area_px: int = 1) -> str:
        """Box as two clicks: the first sets a corner, the second adds the region."""
        x, y = self._check_xy(x, y)
        if self.box_corner is None:
            self.box_corner = (x, y)
            return f"box: first corner at ({x:.0f}, {y:.0f}); click the opposite corner"
        (x0, y0), self.box_corner = self.box_corner, None
        return self.add_box(segmenter, x0, y0, x, y, min_area_px)

    def add_stroke(self, segmenter, stroke: np.ndarray, min_area_px: int = 1) -> str:
        """(H, W) bool painted pixels (any size: rescaled to the image) -> one region."""
        h, w = self.require_image().shape[:2]
        stroke = np.asarray(stroke, bool)
        if stroke.ndim != 2:
            raise UserError(f"a stroke is an (H, W) mask, got shape {stroke.shape}")
        pts = stroke_to_points(stroke)
        pts = pts * np.array([w / stroke.shape[1], h / stroke.shape[0]], np.float32)
        pts = np.clip(pts, 0, [w - 1e-3, h - 1e-3])
        gesture = Gesture("stroke", pts.round(1).tolist(), [1] * len(pts))
        return self.add_gesture(segmenter, gesture, min_area_px)

    def add_polyline(self, segmenter, points_xy, min_area_px: int = 1) -> str:
        """A stroke given as its vertices [[x, y], ...] in image pixels (the API form)."""
        h, w = self.require_image().shape[:2]
        pts = np.asarray(points_xy, np.float64)
        if pts.size == 0 or pts.ndim != 2 or pts.shape[1] != 2:
            raise UserError('a stroke is a list of [x, y] points, e.g. [[10, 20], [40, 25]]')
        return self.add_stroke(segmenter, polyline_mask(pts, h, w), min_area_px)

    def refine_last(self, segmenter, x: float, y: float, positive: bool, min_area_px: int = 1) -> str:
        """Add a positive or negative point to the last interactive region and re-segment it."""
        x, y = self._check_xy(x, y)
        self.box_corner = None
        if not self.gestures:
            raise UserError("there is no region to refine yet: add one first")
        k = self.n_regions
        last = self.gestures[-1]
        if last.kind == "auto":
            raise UserError(f"region {k} came from automatic mode; refine works on regions you added by hand")
        if last.kind == "text":
            raise UserError(f"region {k} came from a text prompt; refine works on regions you added by clicks")
        trial = Gesture(last.kind, [*last.points_xy, [x, y]], [*last.point_labels, int(bool(positive))], last.box_xyxy)
        mask, about = self._segment(segmenter, trial)
        mask = self._free_part(mask, min_area_px, own_label=k, within=self.parents[-1])
        area = int(mask.sum())
        if area < max(1, min_area_px):
            raise NothingAdded(f"region {k} would be empty with that point ({area} px); nothing changed")
        self.label_map[self.label_map == k] = 0
        self.label_map[mask] = k
        self.gestures[-1], self.scores[-1] = trial, about["score"]
        self.categories[-1] = about.get("category", "")
        self.category_scores[-1] = about.get("category_score", float("nan"))
        self.version += 1
        sign = "+" if positive else "-"
        return f"region {k}: {sign} point at ({x:.0f}, {y:.0f}), now {area} px"

    def run_automatic(self, segmenter, granularity_level, style: MarkStyle, refine_options: RefineOptions,
                      progress=None, classes: str | list[str] | None = None) -> str:
        """Segment everything (replaces all regions); returns a status line. classes: an open
        vocabulary for a segmenter that names classes (som.mark's `classes`)."""
        from som.pipeline import mark

        source = self.require_image()
        t = time.perf_counter()
        result = mark(source, segmenter=segmenter, granularity_level=granularity_level, style=style,
                      refine_options=refine_options, max_side_px=MAX_SIDE_PX, progress=progress, classes=classes)
        self.set_automatic(result.regions, result.settings)
        secs = time.perf_counter() - t
        return f"automatic: {len(result.regions)} marks with {segmenter.name} in {secs:.1f} s"

    # ---- output ---------------------------------------------------------
    def settings(self, style: MarkStyle) -> dict:
        kinds = {g.kind for g in self.gestures}
        mode = "empty" if not kinds else "automatic" if kinds == {"auto"} else "interactive" if "auto" not in kinds else "mixed"
        out = dict(self.auto_settings or {})
        out.update({
            "app": "som toolbox",
            "mode": mode,
            "segmenter": out.get("segmenter") or (self.segmenters_used[-1] if self.segmenters_used else None),
            "style": dataclasses.asdict(style),
            "regions": [{"made_by": g.kind, "segmenter": s, **({} if g.kind == "auto" else g.to_dict())}
                        for g, s in zip(self.gestures, self.segmenters_used)],
        })
        return out

    def render(self, style: MarkStyle, status: str = "", warning: str | None = None,
               downloads: bool = True) -> Rendered:
        """Draw the regions (labels stay in creation order); with `downloads`, also write the three
        downloads, else leave that to `write_downloads` (a click shows its picture sooner)."""
        from PIL import Image

        from som.pipeline import mark_regions

        source = self.require_image()
        out_dir = self._dir()
        result = mark_regions(source, self.regions(), style=style, refine_options=None)
        self._drawn = (result, style)
        # what the page shows: the marks plus prompt hints, as JPEG (10x faster to encode than
        # PNG, which matters per click); the lossless picture is the Marked PNG download
        canvas_path = out_dir / f"canvas-{self.version}.jpg"
        for old in out_dir.glob("canvas-*.jpg"):
            old.unlink(missing_ok=True)
        Image.fromarray(self._hints(result.image)).save(canvas_path, quality=92)
        regions = result.regions
        labels = regions.labels or []
        rows = [
            [lab, labels[p] if p >= 0 else "", int(a), *[int(round(v)) for v in box], round(float(s), 3), g.kind]
            for lab, p, a, box, s, g in zip(labels, regions.parent, regions.areas, regions.xyxy, self.scores, self.gestures)
        ]
        headers = list(TABLE_HEADERS)
        if any(self.categories):  # the class column only when some mark has a class, and last
            headers.append(CLASS_HEADER)
            rows = [[*row, cat] for row, cat in zip(rows, self.categories)]
        files = self.write_downloads() if downloads else (None, None, None)
        return Rendered(str(canvas_path), rows, status, *files, warning, headers)

    def write_downloads(self) -> tuple[str, str, str]:
        """Write the last drawing as the marked PNG and the marks JSON -> (png, json, clean image) paths."""
        from PIL import Image

        from som.marksfile import write_marks

        if self._drawn is None:
            raise UserError("nothing drawn yet")
        result, style = self._drawn
        out_dir, stem = self._dir(), self.image_name
        marked_png = out_dir / f"{stem}.marked.png"
        Image.fromarray(result.image).save(marked_png, compress_level=1)
        marks_json = write_marks(out_dir / f"{stem}.marks.json", result.regions, self.settings(style),
                                 image_file=f"{stem}.png")
        clean = out_dir / f"{stem}.png"
        if not clean.exists():  # the folder was swept away meanwhile: write the clean image again
            Image.fromarray(self.source).save(clean, compress_level=1)
        return str(marked_png), str(marks_json), str(clean)

    def _hints(self, image: np.ndarray) -> np.ndarray:
        """Show the prompts of the last hand-made region (green +, red -) and a pending box corner."""
        import cv2

        pts: list[tuple[float, float, int]] = []
        if self.gestures and self.gestures[-1].kind in ("point", "stroke", "box"):
            g = self.gestures[-1]
            pts = [(x, y, lab) for (x, y), lab in zip(g.points_xy, g.point_labels)]
        if not pts and self.box_corner is None:
            return image
        out = np.ascontiguousarray(image.copy())
        r = max(3, round(min(image.shape[:2]) / 100))
        for x, y, lab in pts:
            color = (40, 220, 40) if lab else (235, 40, 40)
            cv2.circle(out, (int(x), int(y)), r + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(out, (int(x), int(y)), r, color, -1, cv2.LINE_AA)
        if self.box_corner is not None:
            x, y = (int(v) for v in self.box_corner)
            cv2.drawMarker(out, (x, y), (255, 255, 255), cv2.MARKER_CROSS, 6 * r, max(3, r // 2 + 2))
            cv2.drawMarker(out, (x, y), (255, 0, 200), cv2.MARKER_CROSS, 6 * r, max(1, r // 2))
        return out

