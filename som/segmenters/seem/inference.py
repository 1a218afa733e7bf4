"""What SEEM's reference does around the network, as pure functions: panoptic merging of query
masks, text grounding, and visual-prompt sampling and selection.

Geometry: the image is resized (short side 640 in SoM, bicubic), normalised and zero-padded to
a multiple of 32; predictions at 1/4 of the padded size are upsampled to the padded size,
cropped to the resized image and resized to the output size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from som.segmenters.seem.decoder import SPATIAL_SEED, SpatialPrompts, point_features


@dataclass(frozen=True)
class PanopticOptions:
    """The reference's panoptic thresholds (SoM config TEST.OBJECT_MASK_THRESHOLD and
    TEST.OVERLAP_THRESHOLD): a query is kept when its best class is not background and scores
    above object_threshold; a kept query's segment survives when at least overlap_threshold of
    its own mask is still its after every pixel goes to the query with the highest
    score x probability."""

    object_threshold: float = 0.8
    overlap_threshold: float = 0.8


@dataclass(frozen=True)
class Segment:
    id: int  # value in the segment map (1..)
    category: int  # class index
    score: float  # the class probability of the (first) query that made it
    isthing: bool


def upsample_logits(
    logits: torch.Tensor, padded_hw: tuple[int, int], image_hw: tuple[int, int], out_hw: tuple[int, int], mode: str = "bilinear"
) -> torch.Tensor:
    """(N, h, w) 1/4-scale logits -> (N, *out_hw): to the padded size, cropped to the image,
    resized to out_hw (the reference's two interpolations)."""
    x = F.interpolate(logits[None].float(), size=padded_hw, mode=mode, align_corners=False)
    x = x[..., : image_hw[0], : image_hw[1]]
    return F.interpolate(x, size=out_hw, mode=mode, align_corners=False)[0]


def panoptic_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    num_things: int,
    padded_hw: tuple[int, int],
    image_hw: tuple[int, int],
    options: PanopticOptions = PanopticOptions(),
) -> tuple[torch.Tensor, list[Segment]]:
    """(Q, K + 1) class logits (last = background) and (Q, h, w) 1/4-scale mask logits ->
    ((H, W) int32 segment map at image_hw, 0 = none; segments). Classes below num_things are
    things; stuff segments of one class are merged. Only kept queries are upsampled (the
    result is the reference's, which upsamples all first)."""
    probs = F.softmax(class_logits.float(), dim=-1)
    scores, labels = probs.max(-1)
    background = class_logits.shape[-1] - 1
    keep = (labels != background) & (scores > options.object_threshold)
    seg = torch.zeros(image_hw, dtype=torch.int32, device=mask_logits.device)
    segments: list[Segment] = []
    if not bool(keep.any()):
        return seg, segments
    masks = upsample_logits(mask_logits[keep], padded_hw, image_hw, image_hw).sigmoid()
    cur_scores, cur_classes = scores[keep], labels[keep]
    owner = (cur_scores.view(-1, 1, 1) * masks).argmax(0)
    stuff_ids: dict[int, int] = {}
    for k in range(len(cur_classes)):
        category = int(cur_classes[k])
        isthing = category < num_things
        own = masks[k] >= 0.5
        mine = owner == k
        mask = mine & own
        mask_area, original_area = int(mine.sum()), int(own.sum())
        if mask_area == 0 or original_area == 0 or int(mask.sum()) == 0:
            continue
        if mask_area / original_area < options.overlap_threshold:
            continue
        if not isthing and category in stuff_ids:
            seg[mask] = stuff_ids[category]
            continue
        new_id = len(segments) + 1
        if not isthing:
            stuff_ids[category] = new_id
        seg[mask] = new_id
        segments.append(Segment(new_id, category, float(cur_scores[k]), isthing))
    return seg, segments


def grounding_match(v_emb: torch.Tensor, t_emb: torch.Tensor, logit_scale: torch.Tensor) -> tuple[int, float]:
    """(Q, D) grounding-query embeddings, (D,) sentence embedding -> (best query, its softmax
    probability over queries). The reference picks the argmax of exp(logit_scale) * cos."""
    v = v_emb / (v_emb.norm(dim=-1, keepdim=True) + 1e-7)
    t = t_emb / (t_emb.norm(dim=-1, keepdim=True) + 1e-7)
    sim = logit_scale.exp() * (v.float() @ t.float())
    best = int(sim.argmax())
    return best, float(sim.softmax(0)[best])


def sample_points(mask: torch.Tensor, max_len: int, generator: torch.Generator) -> torch.Tensor:
    """(H, W) bool -> (K, 2) normalised (y/H, x/W) of its pixels in raster order; at most max_len,
    chosen uniformly at random (raster order kept) when there are more."""
    h, w = mask.shape
    yx = mask.nonzero().float()
    if len(yx) > max_len:
        keep = torch.randperm(len(yx), generator=generator)[:max_len].sort()[0]
        yx = yx[keep.to(yx.device)]
    return yx / torch.tensor([h, w], dtype=yx.dtype, device=yx.device)


def spatial_prompts(
    positive: torch.Tensor,
    negative: torch.Tensor,
    max_spatial_len: list[int],
    num_queries: int,
    sample_size: int,
    query_indices: torch.Tensor | None = None,
    seed: int = SPATIAL_SEED,
) -> SpatialPrompts:
    """(n, Hp, Wp) bool positive / negative stroke masks at the padded input size -> prompts:
    per decoder scale the positive then negative points (at most max_spatial_len each), and the
    positive points for the prompt's mean feature. query_indices: the object queries that seed
    each prompt's queries (the reference draws them with torch.randint; default: a fixed seed)."""
    g = torch.Generator().manual_seed(seed)
    n = len(positive)

    def points(masks, max_len):
        pts = [sample_points(m, max_len, g) for m in masks]
        index = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(pts)])
        return torch.cat(pts), index.to(positive.device)

    yx, idx, pos = [], [], []
    for max_len in max_spatial_len[:3]:
        p_yx, p_idx = points(positive, max_len)
        n_yx, n_idx = points(negative, max_len)
        yx.append(torch.cat([p_yx, n_yx]))
        idx.append(torch.cat([p_idx, n_idx]))
        pos.append(torch.cat([torch.ones(len(p_idx), dtype=torch.bool), torch.zeros(len(n_idx), dtype=torch.bool)]).to(positive.device))
    mean_yx, mean_idx = points(positive, max_spatial_len[-1])
    yx.append(mean_yx)
    idx.append(mean_idx)
    pos.append(torch.ones(len(mean_idx), dtype=torch.bool, device=positive.device))
    if query_indices is None:
        query_indices = torch.randint(0, num_queries, (sample_size * n,), generator=g)
    return SpatialPrompts(yx, idx, pos, n, query_indices)


def select_spatial_masks(
    result: dict, mask_features: torch.Tensor, prompts: SpatialPrompts, sample_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder output for spatial prompts -> ((n, h, w) mask logits, (n,) chosen spatial
    query): for each prompt, the one of its queries whose mask embedding best matches the mean
    mask feature under its positive points (the reference's choice)."""
    feats = point_features(mask_features[:1], prompts.points_yx[-1])  # (K, E)
    index = prompts.prompt_index[-1]
    n = prompts.num_prompts
    means = torch.stack(
        [feats[index == i].mean(0) if bool((index == i).any()) else -torch.ones(feats.shape[1], device=feats.device, dtype=feats.dtype) for i in range(n)]
    ).nan_to_num()
    v_emb = result["pred_smaskembs"][0]  # (sample_size * n, E)
    owner = torch.arange(n, device=v_emb.device).repeat_interleave(sample_size)
    logits = v_emb @ means.t().to(v_emb.dtype)
    logits = logits.masked_fill(owner[:, None] != torch.arange(n, device=v_emb.device)[None, :], float("-inf"))
    best = logits.argmax(0)
    return result["pred_smasks"][0, best], best


def stroke_masks(
    points_xy: np.ndarray | None,
    labels: np.ndarray | None,
    box_xyxy: np.ndarray | None,
    scale: float,
    padded_hw: tuple[int, int],
    radius_px: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """One gesture in original pixels -> (1, Hp, Wp) bool positive and negative masks at the
    model's padded size: each point a disc of radius_px (after scaling by `scale`), a box its
    filled rectangle (positive)."""
    import cv2

    pos = np.zeros(padded_hw, np.uint8)
    neg = np.zeros(padded_hw, np.uint8)
    if points_xy is not None:
        for (x, y), label in zip(np.asarray(points_xy, float).reshape(-1, 2), np.asarray(labels).reshape(-1)):
            target = pos if label > 0 else neg
            cv2.circle(target, (int(round(x * scale)), int(round(y * scale))), radius_px, 1, -1)
    if box_xyxy is not None:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in np.asarray(box_xyxy, float).reshape(4))
        cv2.rectangle(pos, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), 1, -1)
    return pos[None].astype(bool), neg[None].astype(bool)
