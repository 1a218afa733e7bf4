"""Semantic-SAM as a som segmenter: cached image encodings, clicks, automatic marks.

The image is resized (short side 640, as SoM does) and encoded once; clicks on the same image
then only run the decoder. Automatic marks come from som.segmenters.semantic_sam.fast_amg by
default, or from the reference-equal generator (som.segmenters.semantic_sam.reference_amg) with
mode="reference".
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from som.regions import Regions
from som.segmenters.base import (
    DEFAULT_LEVEL,
    LruCache,
    ProgressFn,
    granularity,
    image_key,
)
from som.segmenters.sam import CHOICE_DUP_IOU, distinct_choices
from som.segmenters.semantic_sam import fast_amg
from som.segmenters.semantic_sam.fast_amg import LEVELS_BY_GRANULARITY, FastAmgOptions
from som.segmenters.semantic_sam.model import ImageFeatures, SemanticSam, click_boxes
from som.segmenters.semantic_sam.reference_amg import (
    SOM_ALL_LEVELS,
    SOM_LEVEL_TO_TOKEN,
    ReferenceAmgOptions,
    check_levels,
    reference_masks,
    resize_short_side,
)


@dataclass(frozen=True)
class SemanticSamOptions:
    """How the segmenter runs.

    mode: "fast" (filter on quarter-resolution logits, upsample survivors only) or "reference"
        (SoM's generator step by step: same grid, batches, filters and masks; slow).
    levels: Semantic-SAM levels (1 finest .. 6 coarsest) for automatic marks; None: chosen by
        the granularity level (fast_amg.LEVELS_BY_GRANULARITY; reference mode: SoM's all levels).
    short_side_px: the model's input size (the reference's 640).
    precision: "auto" (fp16 autocast on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16". The pixel
        decoder and the decoder layers always run in fp32, as in the reference.
    """

    mode: str = "fast"
    levels: tuple[int, ...] | None = None
    short_side_px: int = 640
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in ("fast", "reference"):
            raise ValueError(f"mode must be 'fast' or 'reference', got {self.mode!r}")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {self.precision!r}")
        if self.levels is not None:
            object.__setattr__(self, "levels", check_levels(self.levels))


@dataclass(frozen=True)
class Encoding:
    features: ImageFeatures
    original_hw: tuple[int, int]
    model_image: np.ndarray  # the resized RGB image the model saw


class SemanticSamSegmenter:
    """Semantic-SAM with cached encodings, click decoding and automatic generation."""

    def __init__(
        self,
        name: str,
        model: SemanticSam,
        device: str,
        options: SemanticSamOptions = SemanticSamOptions(),
        amg: FastAmgOptions = FastAmgOptions(),
        cache_size: int = 3,
        reference_amg: ReferenceAmgOptions = ReferenceAmgOptions(),
    ):
        """cache_size: images whose encoding is kept (~170 MB each for the full model at 640x960,
        most of it the decoder's per-layer projections that make clicks cheap).
        reference_amg: the generator settings of mode="reference" (SoM's); its levels are
        replaced by `levels_for(granularity)` on each call."""
        self.name = name
        self.device = device
        self.model = model.to(device).eval().requires_grad_(False)
        self.options = options
        self.amg = amg
        self.reference_amg = reference_amg
        self._cache = LruCache(cache_size)  # image key -> Encoding
        self._candidates = LruCache(2)
        self._lock = threading.RLock()  # one model, many app sessions: serialise model calls

    # ---- precision and encoding ------------------------------------------
    def _autocast(self):
        p = self.options.precision
        if p == "auto":
            p = "fp16" if str(self.device).startswith("cuda") else "fp32"
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if p == "fp16" else torch.bfloat16
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    def forget_images(self) -> None:
        """Drop the per-image caches (embeddings, decoded grids): the apps call it once no session is left."""
        with self._lock:
            self._cache.clear()
            self._candidates.clear()

    @torch.no_grad()
    def embed(self, image: np.ndarray, key: str | None = None) -> Encoding:
        """(H, W, 3) uint8 RGB -> cached Encoding (resized to the model's short side, encoded)."""
        key = key or image_key(image)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            small = resize_short_side(np.ascontiguousarray(image[..., :3]), self.options.short_side_px)
            with self._autocast():
                feats = self.model.encode(small)
            enc = Encoding(feats, tuple(image.shape[:2]), small)
            self._cache.put(key, enc)
            return enc

    @torch.no_grad()
    def decode(self, enc: Encoding, boxes_cxcywh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 4) prompt boxes (fractions of the image) -> logits (P, 6, low_h, low_w) over the image
        part of the quarter-resolution frame, predicted IoU (P, 6); each prompt decoded as if alone."""
        low_h, low_w = fast_amg.image_low_hw(enc.features)
        with self._lock, self._autocast():
            logits, iou = self.model.decode(enc.features, boxes_cxcywh.to(self.device), isolate=True)
        return logits[:, :, :low_h, :low_w].float(), iou.float()

    # ---- clicks -----------------------------------------------------------
    def _prompt_candidates(self, image, points_xy, point_labels, box_xyxy):
        """Every mask the gesture yields that agrees with it -> (encoding, logits (M, h, w), iou (M,)).

        Each positive click and the box are a prompt of their own (each decoded as if alone, so a
        click gives the masks it gives on its own). A mask agrees
        when it holds every positive click and no negative one (Semantic-SAM takes no negative
        clicks; they only veto); when none agrees, the first prompt's masks are used."""
        if points_xy is None and box_xyxy is None:
            raise ValueError("segment_prompts needs at least one point or a box")
        enc = self.embed(image)
        h, w = enc.original_hw
        pts = np.zeros((0, 2), np.float32)
        labels = np.zeros(0, np.int64)
        if points_xy is not None:
            pts = np.asarray(points_xy, np.float32).reshape(-1, 2)
            labels = np.ones(len(pts), np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
            if len(labels) != len(pts):
                raise ValueError(f"{len(pts)} points but {len(labels)} point labels")
        prompts = [click_boxes(pts[labels == 1], (h, w))]
        if box_xyxy is not None:
            x1, y1, x2, y2 = np.asarray(box_xyxy, np.float32).reshape(4)
            prompts.insert(0, torch.tensor([[(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, abs(x2 - x1) / w, abs(y2 - y1) / h]]))
        boxes = torch.cat(prompts)
        if len(boxes) == 0:
            raise ValueError("segment_prompts needs a positive point (label 1) or a box; only negative points came")
        logits, iou = self.decode(enc, boxes)
        tokens = [SOM_LEVEL_TO_TOKEN[v] for v in range(1, 7)]  # SoM level order, finest first
        logits, iou = logits[:, tokens].flatten(0, 1), iou[:, tokens].flatten()
        agree = torch.ones(len(iou), dtype=torch.bool, device=iou.device)
        low_h, low_w = logits.shape[1:]
        for (x, y), label in zip(pts, labels):
            yy = min(int(y * low_h / h), low_h - 1)
            xx = min(int(x * low_w / w), low_w - 1)
            inside = logits[:, yy, xx] > 0
            agree &= inside if label == 1 else ~inside
        if not bool(agree.any()):
            agree = torch.zeros_like(agree)
            agree[:6] = True
        return enc, logits[agree], iou[agree]

    def segment_prompts(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
    ) -> Regions:
        """The gesture's mask with the best predicted IoU (see _prompt_candidates)."""
        enc, logits, iou = self._prompt_candidates(image, points_xy, point_labels, box_xyxy)
        best = int(iou.argmax())
        return fast_amg.to_regions(enc.features, enc.original_hw, logits[best : best + 1], iou[best : best + 1], self.device)

    def segment_prompt_choices(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
        dup_iou: float = CHOICE_DUP_IOU,
    ) -> Regions:
        """Every distinct mask the gesture yields (6 per prompt, one per level), ordered small to
        large by area, scores = predicted IoU. Empty masks are dropped, and of two masks with
        IoU >= dup_iou only the better-scored one stays (as for SAM, and as the reference demo
        drops near-repeats), so each step to a larger choice visibly changes the region."""
        enc, logits, iou = self._prompt_candidates(image, points_xy, point_labels, box_xyxy)
        return distinct_choices(fast_amg.to_regions(enc.features, enc.original_hw, logits, iou, self.device), dup_iou)

    # ---- automatic marks ----------------------------------------------------
    def levels_for(self, level: int | str) -> tuple[int, ...]:
        """Semantic-SAM levels used for a granularity level (options.levels wins when set)."""
        if self.options.levels is not None:
            return self.options.levels
        if self.options.mode == "reference":
            return SOM_ALL_LEVELS
        return LEVELS_BY_GRANULARITY[granularity(level).level]

    def segment_everything(
        self, image: np.ndarray, level: int | str = DEFAULT_LEVEL, progress: ProgressFn | None = None
    ) -> Regions:
        gran = granularity(level)
        ikey = image_key(image)
        enc = self.embed(image, ikey)
        if self.options.mode == "reference":
            return self._reference_regions(enc, self.levels_for(level), progress)
        key = (ikey, self.amg)
        with self._lock:
            cands = self._candidates.get(key)
            if cands is None:
                cands = fast_amg.decode_grid(self.model, enc.features, self.amg, self.device, progress, self._autocast)
                self._candidates.put(key, cands)
        idx = fast_amg.select(cands, gran, self.levels_for(level), self.amg)
        return fast_amg.to_regions(enc.features, enc.original_hw, cands.logits[idx], cands.scores[idx], self.device)

    def _reference_regions(self, enc: Encoding, levels: tuple[int, ...], progress: ProgressFn | None) -> Regions:
        with self._lock, self._autocast():
            opts = dataclasses.replace(self.reference_amg, levels=levels)
            out = reference_masks(self.model, enc.model_image, opts, enc.features, progress)
        order = out.by_area()  # SoM draws the largest first
        return Regions.from_masks(resize_masks(out.masks[order], enc.original_hw), scores=out.iou[order])


def resize_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(K, h, w) bool -> (K, H, W) bool, nearest neighbour (the reference's masks are at model size)."""
    h, w = hw
    if masks.shape[1:] == (h, w):
        return masks
    out = np.zeros((len(masks), h, w), bool)
    for k, m in enumerate(masks):
        out[k] = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return out


def build_semantic_sam_segmenter(name: str, device: str, checkpoint, config: dict | None = None, **options) -> SemanticSamSegmenter:
    """Registry builder: the model (SoM's configuration, or `config` overrides by the reference
    yaml's names) with `checkpoint` loaded strictly. Options: SemanticSamOptions and
    FastAmgOptions fields (e.g. levels=(1, 2, 3), mode="reference", points_per_side=24)."""
    from som.segmenters.base import resolve_device
    from som.segmenters.semantic_sam.checkpoint import build_from_checkpoint

    mine, theirs = SemanticSamOptions.__dataclass_fields__, FastAmgOptions.__dataclass_fields__
    unknown = set(options) - set(mine) - set(theirs)
    if unknown:
        raise ValueError(f"unknown semantic-sam options {sorted(unknown)}; expected {sorted(set(mine) | set(theirs))}")
    if checkpoint is None:
        raise ValueError("semantic-sam needs a checkpoint: pass --checkpoint PATH or run ./download_ckpt.sh semantic-sam")
    device = resolve_device(device)
    model = build_from_checkpoint(checkpoint, config)
    return SemanticSamSegmenter(
        name, model, device,
        SemanticSamOptions(**{k: v for k, v in options.items() if k in mine}),
        FastAmgOptions(**{k: v for k, v in options.items() if k in theirs}),
    )
