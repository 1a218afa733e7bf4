"""Automatic marks exactly as SoM makes them with Semantic-SAM (the parity mode).

SoM resizes the image's short side to 640 (PIL bicubic), then runs Semantic-SAM's automatic
generator: a 32x32 grid of clicks (each a 0.005-wide box prompt), decoded 200 at a time (the
decoder has no attention mask, so a click's masks depend on the other clicks of its batch), the
masks of the chosen levels only, filters predicted IoU > 0.88 then stability >= 0.92 (full
resolution logits, offset 1), box NMS 0.7 over all batches, then holes and islands under 10 px
removed (8-connected) with a second NMS that prefers untouched masks. This module reproduces
those steps, batches and orders, so its masks equal the reference's; it is slow by design
(every candidate is upsampled to full resolution; masks are kept bit-packed until NMS). The segmenter's default path is
som.segmenters.semantic_sam.fast_amg.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from som.segmenters.base import ProgressFn
from som.segmenters.semantic_sam.config import SHORT_SIDE_PX
from som.segmenters.semantic_sam.model import CLICK_BOX_SIZE, ImageFeatures, SemanticSam, upsample_logits

# SoM's level numbers (its slider, 1 finest .. 6 coarsest) -> the decoder's mask token
SOM_LEVEL_TO_TOKEN = {1: 3, 2: 2, 3: 0, 4: 4, 5: 1, 6: 5}
SOM_ALL_LEVELS = (6, 1, 2, 3, 4, 5)  # SoM's order when its slider asks for every level
CHUNK_MASKS = 32  # masks upsampled to full resolution at once (bounds memory; same results)


def check_levels(levels) -> tuple[int, ...]:
    levels = tuple(int(v) for v in levels)
    if not levels or any(v not in SOM_LEVEL_TO_TOKEN for v in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"Semantic-SAM levels must be distinct numbers from 1 (finest) to 6 (coarsest), got {levels}")
    return levels


@dataclass(frozen=True)
class ReferenceAmgOptions:
    """SoM's settings for Semantic-SAM's automatic generator (task_adapter/semantic_sam)."""

    levels: tuple[int, ...] = SOM_ALL_LEVELS
    points_per_side: int = 32
    points_per_batch: int = 200
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.92
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", check_levels(self.levels))


@dataclass
class ReferenceMasks:
    """The generator's records in its output order (before SoM's sort by area).

    masks (K, H, W) bool at model resolution; iou, stability (K,) float32; boxes_xyxy (K, 4)
    int64 with INCLUSIVE max (the reference's convention); points_xy (K, 2) float32 click as a
    fraction of the image; level (K,) SoM level.
    """

    masks: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    boxes_xyxy: np.ndarray
    points_xy: np.ndarray
    level: np.ndarray

    def take(self, idx) -> ReferenceMasks:
        idx = np.asarray(idx, np.int64)
        return ReferenceMasks(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def by_area(self) -> np.ndarray:
        """SoM's drawing order: largest area first (stable)."""
        areas = self.masks.reshape(len(self.masks), -1).sum(1)
        return np.argsort(-areas, kind="stable")


def resize_short_side(image: np.ndarray, short_px: int = SHORT_SIDE_PX) -> np.ndarray:
    """(H, W, 3) uint8 -> short side `short_px`, long side truncated, PIL bicubic (as torchvision's
    Resize(int) on a PIL image, which SoM applies)."""
    h, w = image.shape[:2]
    if h <= w:
        size = (int(short_px * w / h), short_px)
    else:
        size = (short_px, int(short_px * h / w))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def reference_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) float64 x, y in 0..1: cell centres, row by row (SAM's point grid)."""
    t = np.linspace(1 / (2 * n_per_side), 1 - 1 / (2 * n_per_side), n_per_side)
    return np.stack([np.tile(t[None, :], (n_per_side, 1)), np.tile(t[:, None], (1, n_per_side))], -1).reshape(-1, 2)


def stability(logits: torch.Tensor, offset: float) -> torch.Tensor:
    """(K, H, W) -> (K,) IoU of the masks at +offset and -offset (threshold 0), counted as the reference."""
    inter = (logits > offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    union = (logits > -offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inter / union


def inclusive_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool -> (K, 4) int64 x1, y1, x2, y2 with inclusive max; empty masks give zeros."""
    if len(masks) == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    h, w = masks.shape[1:]
    rows, cols = masks.any(2), masks.any(1)
    ys, xs = torch.arange(h), torch.arange(w)
    y2 = torch.where(rows, ys, -1).amax(1)
    y1 = torch.where(rows, ys, h).amin(1)
    x2 = torch.where(cols, xs, -1).amax(1)
    x1 = torch.where(cols, xs, w).amin(1)
    boxes = torch.stack([x1, y1, x2, y2], 1)
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") under min_area px (8-connected).
    Returns the mask and whether it changed; an all-small mask keeps its largest island."""
    holes = mode == "holes"
    n, labels, stats, _ = cv2.connectedComponentsWithStats((holes ^ mask).astype(np.uint8), 8)
    sizes = stats[1:, -1]
    small = [i + 1 for i, s in enumerate(sizes) if s < min_area]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


@torch.no_grad()
def reference_masks(
    model: SemanticSam,
    image: np.ndarray,
    opts: ReferenceAmgOptions = ReferenceAmgOptions(),
    features: ImageFeatures | None = None,
    progress: ProgressFn | None = None,
) -> ReferenceMasks:
    """(H, W, 3) uint8 RGB at model resolution (see resize_short_side) -> the reference's masks.
    features: model.encode(image) when the caller has it (the generator encodes once anyway).
    progress: called after each batch with (fraction of clicks decoded, what happens)."""
    from torchvision.ops import batched_nms

    feats = features if features is not None else model.encode(image)
    h, w = feats.image_hw
    tokens = [SOM_LEVEL_TO_TOKEN[v] for v in opts.levels]
    grid = reference_grid(opts.points_per_side)
    packed, iou_l, stab_l, box_l, pts_l, level_l = [np.zeros((0, (h * w + 7) // 8), np.uint8)], [], [], [], [], []
    for start in range(0, len(grid), opts.points_per_batch):
        points = torch.tensor(grid[start : start + opts.points_per_batch], dtype=torch.float32)
        boxes = torch.cat([points, torch.full_like(points, CLICK_BOX_SIZE)], 1)
        logits, iou = model.decode(feats, boxes.to(feats.mask_features.device))
        logits, iou = logits[:, tokens].flatten(0, 1), iou[:, tokens].flatten().float().cpu()
        level = torch.tensor(opts.levels).repeat(len(points))
        pts = points.repeat_interleave(len(tokens), 0)
        passed = torch.nonzero(iou > opts.pred_iou_thresh).flatten()
        for at in range(0, len(passed), CHUNK_MASKS):  # full-resolution logits a few at a time
            idx = passed[at : at + CHUNK_MASKS]
            up = upsample_logits(logits[idx.to(logits.device)], feats).float().cpu()
            stab = stability(up, opts.stability_score_offset)
            ok = stab >= opts.stability_score_thresh
            masks, idx = up[ok] > 0.0, idx[ok]
            packed.append(np.packbits(masks.flatten(1).numpy(), axis=1))
            iou_l.append(iou[idx])
            stab_l.append(stab[ok])
            box_l.append(inclusive_boxes(masks))
            pts_l.append(pts[idx])
            level_l.append(level[idx])
        if progress is not None:
            done = start + len(points)
            progress(done / len(grid), f"decoded {done} of {len(grid)} clicks (SoM's generator)")
    iou, stab = torch.cat(iou_l or [torch.zeros(0)]), torch.cat(stab_l or [torch.zeros(0)])
    boxes = torch.cat(box_l or [torch.zeros((0, 4), dtype=torch.int64)])
    keep = batched_nms(boxes.float(), iou, torch.zeros(len(boxes)), opts.box_nms_thresh).numpy()
    masks = np.unpackbits(np.concatenate(packed)[keep], axis=1, count=h * w).reshape(len(keep), h, w).view(bool)
    out = ReferenceMasks(
        masks, iou.numpy()[keep], stab.numpy()[keep], boxes.numpy()[keep],
        torch.cat(pts_l or [torch.zeros((0, 2))]).numpy()[keep], torch.cat(level_l or [torch.zeros(0, dtype=torch.int64)]).numpy()[keep],
    )
    if opts.min_mask_region_area > 0 and len(out.masks):
        out = _clean_small_regions(out, opts.min_mask_region_area, opts.box_nms_thresh)
    return out


def _clean_small_regions(data: ReferenceMasks, min_area: int, nms_thresh: float) -> ReferenceMasks:
    """Holes then islands under min_area removed; NMS again preferring masks that did not change."""
    from torchvision.ops import batched_nms

    cleaned, unchanged = [], []
    for mask in data.masks:
        mask, changed_holes = remove_small_regions(mask, min_area, "holes")
        mask, changed_islands = remove_small_regions(mask, min_area, "islands")
        cleaned.append(mask)
        unchanged.append(float(not (changed_holes or changed_islands)))
    masks = torch.as_tensor(np.stack(cleaned))
    boxes = inclusive_boxes(masks)
    keep = batched_nms(boxes.float(), torch.as_tensor(unchanged), torch.zeros(len(boxes)), nms_thresh).numpy()
    data.masks = np.where(np.asarray(unchanged)[:, None, None] == 0.0, masks.numpy(), data.masks)
    data.boxes_xyxy = np.where(np.asarray(unchanged)[:, None] == 0.0, boxes.numpy(), data.boxes_xyxy)
    return data.take(keep)
