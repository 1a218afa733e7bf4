"""Label placement for UI marks (screenshots and web pages): beside the element, not on it.

Pure numpy (no torch, no browser). A photo region gets its label inside (the distance-transform
peak, `som.layout`); a button or a line of text would then be hidden by its own label, so a UI
label goes *outside* its element's box, touching one of its corners or sides:

    candidates, in order of preference: above the top-left corner, left of the box, above the
    top-right corner, right of the box, below the bottom-left corner, below the bottom-right
    corner, the four diagonal corners; inside corners only as a last resort (a large element,
    such as an image or a card, may take its label inside).

Each candidate is scored: it must lie inside the image and overlap no label placed so far
(hard rules); among those, the one covering the least of any element box wins (its own box
counts 8x: its text must stay readable) plus a penalty for every other element it touches
(a label touching two elements is ambiguous) plus, given the screenshot's ink map, the edge
pixels it would hide (page text that is no element), ties broken by the order above. Elements choose
most-constrained first (the fewest candidates that cover nothing), so a crowded element is not
left without room by a roomy neighbour. When all candidates are taken, the label goes to the
nearest free position around the box (searched outwards ring by ring); `anchors_xy` then says
which point of the box it belongs to, and drawing connects the two with a line.

Boxes are integer, half-open (x2, y2 exclusive); touching boxes do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UILabelPlacement", "ui_font_px", "place_ui_labels", "boxes_overlap", "ink_map"]

_OWN_WEIGHT = 8  # covering one's own element costs this much more than covering a neighbour
_NEAR_PX = 1  # a label this close to another element's box could be taken for its label


def ui_font_px(height: int, width: int) -> int:
    """Label font size for a UI screenshot: 1.6% of the shorter side, at least 11 px.

    Smaller than `som.layout.font_size_px` (3%): UI elements are small and dense; 800 px -> 13.
    """
    return max(11, round(0.016 * min(int(height), int(width))))


@dataclass(frozen=True)
class UILabelPlacement:
    """label_xyxy: (N, 4) int64 label boxes; anchors_xy: (N, 2) int64, the point of each element's
    box its label touches (a corner or a side's middle); attached: (N,) bool, False where the label
    had to go elsewhere (drawn with a leader line to the anchor)."""

    label_xyxy: np.ndarray
    anchors_xy: np.ndarray
    attached: np.ndarray


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) int64 overlap area of integer half-open boxes."""
    a = np.asarray(a, np.int64).reshape(-1, 4)
    b = np.asarray(b, np.int64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _candidates(box: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, 4) label boxes around `box` in order of preference, and (C, 2) anchors they touch."""
    x1, y1, x2, y2 = (int(v) for v in box)
    cy = (y1 + y2) // 2
    top = (y1 + y2 - h) // 2  # a label beside the box, centred on it vertically
    starts = [
        ((x1, y1 - h), (x1, y1)),  # above, left-aligned
        ((x1 - w, top), (x1, cy)),  # left of
        ((x2 - w, y1 - h), (x2, y1)),  # above, right-aligned
        ((x2, top), (x2, cy)),  # right of
        ((x1, y2), (x1, y2)),  # below, left-aligned
        ((x2 - w, y2), (x2, y2)),  # below, right-aligned
        ((x1 - w, y1 - h), (x1, y1)),  # diagonal corners
        ((x2, y1 - h), (x2, y1)),
        ((x1 - w, y2), (x1, y2)),
        ((x2, y2), (x2, y2)),
        ((x1, y1), (x1, y1)),  # inside corners: last resort
        ((x2 - w, y1), (x2, y1)),
        ((x1, y2 - h), (x1, y2)),
        ((x2 - w, y2 - h), (x2, y2)),
    ]
    s = np.array([p for p, _ in starts], np.int64)
    anchors = np.array([a for _, a in starts], np.int64)
    return np.concatenate([s, s + [w, h]], axis=1), anchors


def _inside(cands: np.ndarray, img_w: int, img_h: int) -> np.ndarray:
    return (cands[:, 0] >= 0) & (cands[:, 1] >= 0) & (cands[:, 2] <= img_w) & (cands[:, 3] <= img_h)


def ink_map(image: np.ndarray, threshold: int = 40) -> np.ndarray:
    """(H, W) bool: pixels on an edge of the picture (text strokes, icons, borders) of an (H, W, 3)
    uint8 image: the grey morphological gradient (3x3) above `threshold`. A label on plain
    background hides nothing; on ink it hides page text that belongs to no element."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > threshold


def _summed(ink: np.ndarray) -> np.ndarray:
    """(H+1, W+1) int32 summed-area table of a bool map."""
    import cv2

    return cv2.integral(np.ascontiguousarray(ink, np.uint8))


def _ink_under(sat: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """Ink pixels inside each candidate box (clipped to the image)."""
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x1, x2 = np.clip(cands[:, 0], 0, w), np.clip(cands[:, 2], 0, w)
    y1, y2 = np.clip(cands[:, 1], 0, h), np.clip(cands[:, 3], 0, h)
    return sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1]


def _costs(cands: np.ndarray, k: int, boxes: np.ndarray, sat: np.ndarray | None = None) -> np.ndarray:
    """Cost of each candidate label box for element k: the area of element boxes it covers (its
    own box weighted by _OWN_WEIGHT), plus half a label's area for every other element it touches
    or nearly touches (within _NEAR_PX): such a label could be read as that element's."""
    cover = boxes_overlap(cands, boxes)
    cost = cover.sum(axis=1) + (_OWN_WEIGHT - 1) * cover[:, k]
    c = cands[:, None, :]
    b = boxes[None, :, :]
    gap = np.maximum(
        np.maximum(0, np.maximum(b[..., 0] - c[..., 2], c[..., 0] - b[..., 2])),
        np.maximum(0, np.maximum(b[..., 1] - c[..., 3], c[..., 1] - b[..., 3])),
    )
    near = (gap <= _NEAR_PX) & (cover == 0)
    near[:, k] = False
    label_area = (cands[:, 2] - cands[:, 0]) * (cands[:, 3] - cands[:, 1])
    cost = cost + near.sum(axis=1) * (label_area // 2)
    return cost if sat is None else cost + _ink_under(sat, cands)


def _nearest_free(box, w, h, img_w, img_h, placed, boxes, k, sat=None):
    """Label box nearest to `box` that is inside the image and hits no placed label: rings of
    growing distance around the box (2 px apart near it), cheapest cover first within a ring."""
    x1, y1, x2, y2 = (int(v) for v in box)
    p = np.asarray(placed, np.int64).reshape(-1, 4)
    max_d = max(img_w, img_h)
    prev, d = -1, 0
    while prev < max_d:
        xs = np.arange(max(0, x1 - w - d), min(img_w - w, x2 + d) + 1)
        ys = np.arange(max(0, y1 - h - d), min(img_h - h, y2 + d) + 1)
        if len(xs) and len(ys):
            gx, gy = np.meshgrid(xs, ys)
            gx, gy = gx.ravel(), gy.ravel()
            # distance from the label box to the element box (0 when touching or overlapping)
            dx = np.maximum(0, np.maximum(x1 - (gx + w), gx - x2))
            dy = np.maximum(0, np.maximum(y1 - (gy + h), gy - y2))
            ring = np.maximum(dx, dy)
            keep = (ring <= d) & (ring > prev)
            gx, gy = gx[keep], gy[keep]
            if len(gx):
                cands = np.stack([gx, gy, gx + w, gy + h], axis=1)
                free = ~(boxes_overlap(cands, p) > 0).any(axis=1) if len(p) else np.ones(len(cands), bool)
                if free.any():
                    cands = cands[free]
                    c = _costs(cands, k, boxes, sat)
                    j = int(np.lexsort((cands[:, 0], cands[:, 1], c))[0])  # cheapest, then raster order
                    return cands[j]
        prev, d = d, d + max(2, d // 4)  # 2 px rings near the box, wider ones far away
    return None


def place_ui_labels(
    boxes_xyxy: np.ndarray,
    label_sizes: list[tuple[int, int]],
    image_hw: tuple[int, int],
    ink: np.ndarray | None = None,
) -> UILabelPlacement:
    """Place one label of size label_sizes[k] = (w, h) beside each element box (N, 4) int.

    ink: optional (H, W) bool map of picture content (`ink_map(screenshot)`); each ink pixel a
    label would hide adds one to its cost, so labels prefer plain background.

    Guarantees: every label box lies inside the image; no two label boxes overlap. Prefers
    positions that cover no element box, never its own unless nothing else is free.
    Raises ValueError when a label is larger than the image or the image has no room left.
    """
    boxes = np.asarray(boxes_xyxy, np.int64).reshape(-1, 4)
    n = len(boxes)
    img_h, img_w = int(image_hw[0]), int(image_hw[1])
    if len(label_sizes) != n:
        raise ValueError(f"got {len(label_sizes)} label sizes for {n} boxes; pass one (w, h) per box")
    label_xyxy = np.zeros((n, 4), np.int64)
    anchors = np.zeros((n, 2), np.int64)
    attached = np.ones(n, bool)
    if n == 0:
        return UILabelPlacement(label_xyxy, anchors, attached)
    boxes = np.clip(boxes, 0, [img_w, img_h, img_w, img_h])
    for k, (w, h) in enumerate(label_sizes):
        if w > img_w or h > img_h:
            raise ValueError(f"label {k + 1} is {w}x{h} px, larger than the {img_w}x{img_h} image; use a smaller font")

    sat = None
    if ink is not None:
        if np.shape(ink) != (img_h, img_w):
            raise ValueError(f"ink map is {np.shape(ink)}, expected (H, W) = {(img_h, img_w)}")
        # the elements' own pixels and outlines are priced by the element cost; counting their edge
        # ink again would push labels off the corner they belong to
        ink = np.array(ink, bool)
        for x1, y1, x2, y2 in boxes:
            ink[max(0, y1 - 3) : y2 + 3, max(0, x1 - 3) : x2 + 3] = False
        sat = _summed(ink)
    all_cands, all_anchors, all_costs = [], [], []
    for k in range(n):
        c, a = _candidates(boxes[k], *label_sizes[k])
        ok = _inside(c, img_w, img_h)
        cost = _costs(c, k, boxes, sat).astype(np.float64)
        cost[~ok] = np.inf
        all_cands.append(c)
        all_anchors.append(a)
        all_costs.append(cost)
    # most constrained first: fewest candidates covering nothing (no element; little ink), then
    # fewest usable at all
    n_clear = np.array([int((c <= 0.1 * sz[0] * sz[1]).sum()) for c, sz in zip(all_costs, label_sizes)])
    n_usable = np.array([int(np.isfinite(c).sum()) for c in all_costs])
    order = np.lexsort((np.arange(n), n_usable, n_clear))

    placed = np.zeros((0, 4), np.int64)
    for k in order:
        c, cost = all_cands[k], all_costs[k].copy()
        if len(placed):
            cost[(boxes_overlap(c, placed) > 0).any(axis=1)] = np.inf
        j = int(np.argmin(cost))  # argmin returns the first of equal costs: the preferred one
        if np.isfinite(cost[j]):
            label_xyxy[k], anchors[k] = c[j], all_anchors[k][j]
        else:
            got = _nearest_free(boxes[k], *label_sizes[k], img_w, img_h, placed, boxes, k, sat)
            if got is None:
                raise ValueError(
                    f"no room left for label {k + 1} ({label_sizes[k][0]}x{label_sizes[k][1]} px) among {n} "
                    f"labels on a {img_w}x{img_h} image; use a smaller font or fewer marks"
                )
            label_xyxy[k] = got
            anchors[k] = _touch_point(boxes[k], got)
            attached[k] = _gap(boxes[k], got) <= 0
        placed = np.concatenate([placed, label_xyxy[k][None]])
    return UILabelPlacement(label_xyxy, anchors, attached)


def _gap(box: np.ndarray, label: np.ndarray) -> int:
    """Chebyshev gap in px between two boxes (0 when they touch or overlap)."""
    dx = max(0, int(box[0]) - int(label[2]), int(label[0]) - int(box[2]))
    dy = max(0, int(box[1]) - int(label[3]), int(label[1]) - int(box[3]))
    return max(dx, dy)


def _touch_point(box: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    """Point of `box`'s border nearest to the centre of `label`."""
    cx, cy = (label[0] + label[2]) / 2, (label[1] + label[3]) / 2
    return int(np.clip(cx, box[0], max(box[0], box[2] - 1))), int(np.clip(cy, box[1], max(box[1], box[3] - 1)))
