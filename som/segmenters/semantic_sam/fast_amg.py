"""Automatic marks from Semantic-SAM, the fast way (the segmenter's default).

Same idea as the reference generator (a grid of clicks, every click decoded at several
granularity levels, quality filters, NMS) but, like som.segmenters.amg for MobileSAM, every
candidate is scored, filtered and de-duplicated on the decoder's quarter-resolution logits, and
only the survivors are upsampled, inside their boxes, to image resolution. A granularity level
(som.segmenters.base) picks Semantic-SAM levels, an area window and a preference; several levels
at once give overlapping candidates that som.nest turns into nested marks.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from som.regions import Regions
from som.segmenters.amg import Candidates, preference_order, select_near_partition, select_nested, stability_score
from som.segmenters.base import Granularity, ProgressFn
from som.segmenters.semantic_sam.model import CLICK_BOX_SIZE, ImageFeatures, SemanticSam
from som.segmenters.semantic_sam.reference_amg import SOM_LEVEL_TO_TOKEN, check_levels, reference_grid
from som.segmenters.upsample import Upsampler

# som granularity level -> Semantic-SAM levels (1 finest .. 6 coarsest) it draws candidates from;
# like SAM's mask indices, parts leave out the coarsest outputs and wholes the finest
LEVELS_BY_GRANULARITY = {1: (1, 2, 3, 4), 2: (1, 2, 3, 4, 5, 6), 3: (3, 4, 5, 6), 4: (1, 2, 3, 4, 5, 6)}


@dataclass(frozen=True)
class FastAmgOptions:
    """Automatic generation settings.

    points_per_side: clicks on a regular grid (points_per_side**2); each yields 6 masks, so a
        coarser grid than SAM's does.
    points_per_batch: clicks decoded together; 0: 64 on a CPU, 200 (SoM's) on a GPU.
    isolate_clicks: decode every click as if it were alone (its six tokens attend only to each
        other, as in training), so marks do not depend on the batch size or the device. False:
        as SoM's generator, the clicks of a batch attend to each other.
    pred_iou_thresh: the reference's predicted-IoU filter.
    stability_thresh / stability_offset: stability filter, on quarter-resolution logits (lower
        than the reference's 0.92 at full resolution, where edges are smoother).
    box_nms_thresh: box IoU above which the lower-scoring candidate is dropped.
    max_overlap_frac: flat levels reject a candidate more than this much covered by preferred ones.
    """

    points_per_side: int = 16
    points_per_batch: int = 0
    isolate_clicks: bool = True
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.85
    stability_offset: float = 1.0
    box_nms_thresh: float = 0.7
    max_overlap_frac: float = 0.3

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 0:
            raise ValueError("points_per_side must be >= 1 and points_per_batch >= 0 (0: by device)")

    def batch_size(self, device: str) -> int:
        if self.points_per_batch:
            return self.points_per_batch
        return 200 if str(device).startswith("cuda") else 64


def image_low_hw(feats: ImageFeatures) -> tuple[int, int]:
    """The quarter-resolution logits' rows and columns that cover the image (not its padding)."""
    return math.ceil(feats.image_hw[0] / 4), math.ceil(feats.image_hw[1] / 4)


@torch.no_grad()
def decode_grid(model: SemanticSam, feats: ImageFeatures, opts: FastAmgOptions, device: str,
                progress: ProgressFn | None = None, autocast=contextlib.nullcontext) -> Candidates:
    """Every click of the grid at all 6 levels -> the candidates passing the quality filters.
    Candidates.mask_index holds the Semantic-SAM level (1..6) of each. autocast: a context
    factory wrapped around each decoder call (the filters run outside it, in float32)."""
    token_level = torch.zeros(len(SOM_LEVEL_TO_TOKEN), dtype=torch.int64)
    for level, token in SOM_LEVEL_TO_TOKEN.items():
        token_level[token] = level
    low_h, low_w = image_low_hw(feats)
    grid = torch.tensor(reference_grid(opts.points_per_side), dtype=torch.float32)
    bs = opts.batch_size(device)
    logits_kept, scores, levels = [], [], []
    for start in range(0, len(grid), bs):
        points = grid[start : start + bs].to(device)
        boxes = torch.cat([points, torch.full_like(points, CLICK_BOX_SIZE)], 1)
        with autocast():
            logits, iou = model.decode(feats, boxes, isolate=opts.isolate_clicks)
        logits = logits[:, :, :low_h, :low_w].flatten(0, 1).float()
        iou = iou.flatten().float()
        stab = stability_score(logits, 0.0, opts.stability_offset)
        ok = (iou > opts.pred_iou_thresh) & (stab >= opts.stability_thresh)
        logits_kept.append(logits[ok].half())
        scores.append(iou[ok])
        levels.append(token_level.to(iou.device).repeat(len(points))[ok])
        if progress is not None:
            progress(min((start + len(points)) / len(grid), 1.0), f"decoded {start + len(points)} of {len(grid)} clicks")
    return Candidates(torch.cat(logits_kept), torch.cat(scores), torch.cat(levels), len(grid), 0.0)


def _supports(m: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a resize matrix: first and one-past-last column with a non-zero weight."""
    nz = (m != 0).cpu().numpy()
    return nz.argmax(axis=1), m.shape[1] - nz[:, ::-1].argmax(axis=1)


def _axis_matrix(low_px: int, padded_px: int, image_px: int, out_px: int, device: str) -> torch.Tensor:
    """(out_px, low_px): bilinear low -> padded frame, crop to the image, bilinear -> out size."""
    frame_low = padded_px // 4
    eye = torch.eye(frame_low, device=device)[None, None]
    m = F.interpolate(eye, (padded_px, frame_low), mode="bilinear", align_corners=False)[..., :image_px, :]
    if out_px != image_px:
        m = F.interpolate(m, (out_px, frame_low), mode="bilinear", align_corners=False)
    return m[0, 0, :, :low_px].contiguous()


def upsampler(feats: ImageFeatures, original_hw: tuple[int, int], device: str) -> Upsampler:
    """Maps the image part of quarter-resolution logits to masks at the original image size."""
    low_h, low_w = image_low_hw(feats)
    ry = _axis_matrix(low_h, feats.padded_hw[0], feats.image_hw[0], original_hw[0], device)
    rx = _axis_matrix(low_w, feats.padded_hw[1], feats.image_hw[1], original_hw[1], device)
    return Upsampler(ry, rx, *_supports(ry), *_supports(rx))


def to_regions(feats: ImageFeatures, original_hw, logits: torch.Tensor, scores: torch.Tensor, device: str) -> Regions:
    """Quarter-resolution logits (K, low_h, low_w) of the image part -> Regions at the original size."""
    boxes, crops = upsampler(feats, tuple(original_hw), device).crops(logits.float(), 0.0)
    return Regions(crops, boxes, tuple(original_hw), scores=scores.float().cpu().numpy())


@torch.no_grad()
def select(cands: Candidates, gran: Granularity, levels: tuple[int, ...], opts: FastAmgOptions) -> torch.Tensor:
    """Indices of the candidates a granularity keeps: `levels` only, its area window, NMS, then
    a near-partition (flat levels) or nesting (nested level), in keeping order."""
    from torchvision.ops import batched_nms

    levels = check_levels(levels)
    low_h, low_w = cands.logits.shape[1:]
    dev = cands.scores.device
    frac = cands.areas.float() / float(low_h * low_w)
    ok = torch.isin(cands.mask_index, torch.tensor(levels, device=dev))
    ok &= (frac >= gran.min_area_frac) & (frac <= gran.max_area_frac)
    idx = torch.nonzero(ok).flatten()
    idx = idx[batched_nms(cands.boxes[idx], cands.scores[idx], torch.zeros_like(idx), opts.box_nms_thresh)]
    order = preference_order(gran, cands.areas[idx], cands.scores[idx]).cpu().numpy()
    if gran.nested:
        chosen = select_nested(cands, idx.cpu().numpy(), order)
    else:
        chosen = select_near_partition(cands.bits[idx.cpu().numpy()], order, opts.max_overlap_frac)
    return idx[torch.tensor(chosen, dtype=torch.int64, device=dev)]
