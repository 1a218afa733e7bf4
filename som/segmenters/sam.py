"""SAM-family segmenters (MobileSAM, SAM ViT-B/L/H) over the official `segment_anything` model.

One class serves every SAM-family model: it owns the model, a small cache of
image embeddings (so interactive clicks after the first are cheap), prompt
decoding, and automatic generation (`som.segmenters.amg`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch

from som.regions import Regions
from som.segmenters.amg import AmgOptions, decode_grid, select
from som.segmenters.base import (
    DEFAULT_LEVEL,
    LruCache,
    ProgressFn,
    granularity,
    image_key,
)
from som.segmenters.fast_decoder import FastMaskDecoder, ImageSide
from som.segmenters.upsample import Upsampler


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 matrix products natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


CHOICE_DUP_IOU = 0.95  # two choices this alike are one step, not two (segment_prompt_choices)


def distinct_choices(regions: Regions, dup_iou: float = CHOICE_DUP_IOU) -> Regions:
    """Non-empty regions ordered by area ascending, without near-duplicates: of two masks with
    IoU >= dup_iou only the one with the higher score stays (the smaller on a tie)."""
    from som.cropmask import intersection_px

    areas, boxes = regions.areas, regions.boxes_px
    scores = regions.scores if regions.scores is not None else np.zeros(len(regions), np.float32)
    def alike(k: int, j: int) -> bool:
        inter = intersection_px(regions.crops[k], boxes[k], regions.crops[j], boxes[j])
        return inter >= dup_iou * (areas[k] + areas[j] - inter)

    kept: list[int] = []
    for k in np.lexsort((areas, -scores)):  # best score first, then the smaller
        if areas[k] > 0 and not any(alike(k, j) for j in kept):
            kept.append(int(k))
    order = sorted(kept, key=lambda k: (int(areas[k]), k))
    return regions[np.asarray(order, np.int64)]


@dataclass(frozen=True)
class DecoderOptions:
    """How the model runs: the decoder (automatic generation and clicks alike), and the
    precision of both the image encoder and the decoder.

    fast: our FastMaskDecoder (same weights and outputs as SAM's decoder, prompt-independent
        work done once per image); False runs `segment_anything`'s MaskDecoder as is.
    precision: "auto", "fp32" or "bf16" (autocast for the image encoder and the decoder).
        auto: bf16 on CUDA, and on CPUs with native bf16 matrix instructions (AVX512-BF16,
        AMX), where it runs 1.5-2.5x faster and keeps the masks (tests/segmenters/test_amg_exact.py,
        benchmarks/amg.py); fp32 on other CPUs, where bf16 would be emulated and slow.
    compile: torch.compile the fast decoder (GPU; first calls are slow while it compiles).
    """

    fast: bool = True
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")


@dataclass(frozen=True)
class Embedding:
    """Image features of one image: (1, 256, 64, 64) plus the sizes needed to map masks back.

    side: the decoder's prompt-independent inputs (FastMaskDecoder), computed once with the features.
    """

    features: torch.Tensor
    input_hw: tuple[int, int]  # size of the resized image inside the padded 1024 square
    original_hw: tuple[int, int]
    side: ImageSide | None = None


class SamSegmenter:
    """A SAM-family model with cached embeddings, prompt decoding and automatic generation."""

    def __init__(
        self,
        name: str,
        model,
        device: str,
        amg: AmgOptions = AmgOptions(),
        cache_size: int = 8,
        decoder: DecoderOptions = DecoderOptions(),
    ):
        from segment_anything.utils.transforms import ResizeLongestSide

        self.name = name
        self.device = device
        self.model = model.to(device).eval()
        self.amg = amg
        self.decoder = decoder
        self._fast = FastMaskDecoder(self.model) if decoder.fast else None
        self._fast_call = self._fast
        if self._fast is not None and decoder.compile:
            self._fast_call = torch.compile(self._fast.__call__, dynamic=False)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self._cache = LruCache(cache_size)  # image key -> Embedding
        # decoded grid per (image, options): changing granularity needs no new decoding
        self._candidates = LruCache(2)
        self._lock = threading.Lock()  # one model, many app sessions: serialise model calls

    def forget_images(self) -> None:
        """Drop the per-image caches (embeddings, decoded grids): the apps call it once no session is left."""
        with self._lock:
            self._cache.clear()
            self._candidates.clear()

    # ---- embedding ----------------------------------------------------
    @torch.no_grad()
    def embed(self, image: np.ndarray, key: str | None = None) -> Embedding:
        """(H, W, 3) uint8 RGB -> cached Embedding. key: image_key(image) if the caller has it."""
        key = key or image_key(image)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            resized = self.transform.apply_image(image)
            x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
            with self._autocast():
                features = self.model.image_encoder(self.model.preprocess(x)).float()
            side = self._fast.image_side(features) if self._fast is not None else None
            emb = Embedding(features, tuple(resized.shape[:2]), tuple(image.shape[:2]), side)
            self._cache.put(key, emb)
            return emb

    # ---- decoding -----------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        emb: Embedding,
        points_xy: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes_xyxy: torch.Tensor | None = None,
        multimask: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in original-image pixels -> (low-res logits (B, M, 256, 256), predicted IoU (B, M)).

        points_xy: (B, K, 2), point_labels: (B, K), boxes_xyxy: (B, 4).
        """
        points = None
        if points_xy is not None:
            coords = self.transform.apply_coords_torch(points_xy.float(), emb.original_hw)
            points = (coords.to(self.device), point_labels.to(self.device).int())
        boxes = None
        if boxes_xyxy is not None:
            boxes = self.transform.apply_boxes_torch(boxes_xyxy.float(), emb.original_hw).to(self.device)
        with self._lock, self._autocast():
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=None)
            if emb.side is not None and self._fast is not None:
                logits, iou = self._fast_call(emb.side, sparse, multimask)
            else:
                logits, iou = self.model.mask_decoder(
                    image_embeddings=emb.features,
                    image_pe=self.model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multimask,
                )
        return logits, iou

    @property
    def uses_bf16(self) -> bool:
        p = self.decoder.precision
        if p != "auto":
            return p == "bf16"
        return str(self.device).startswith("cuda") or (str(self.device) == "cpu" and cpu_has_native_bf16())

    def _autocast(self):
        """bf16 autocast where asked or where "auto" finds it fast (see DecoderOptions.precision)."""
        if self.uses_bf16:
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_regions(self, emb: Embedding, logits: torch.Tensor, scores: np.ndarray | None = None) -> Regions:
        """(K, 256, 256) low-res logits -> K Regions in original pixels, masks as tight crops.
        Same as SAM's `postprocess_masks` then threshold, computed only inside each mask's box
        (som.segmenters.upsample)."""
        up = Upsampler.for_geometry(emb.input_hw, emb.original_hw, str(self.device))
        boxes, crops = up.crops(logits, self.model.mask_threshold)
        return Regions(crops, boxes, emb.original_hw, scores=scores)

    # ---- public API ---------------------------------------------------
    def _prompt_tensors(self, points_xy, point_labels, box_xyxy):
        """Checked numpy prompts -> (points (1, K, 2), labels (1, K), box (1, 4)) tensors or Nones."""
        if points_xy is None and box_xyxy is None:
            raise ValueError("segment_prompts needs at least one point or a box")
        pts = lbl = box = None
        if points_xy is not None:
            points_xy = np.asarray(points_xy, np.float32).reshape(-1, 2)
            point_labels = (
                np.ones(len(points_xy), np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
            )
            if len(point_labels) != len(points_xy):
                raise ValueError(f"{len(points_xy)} points but {len(point_labels)} point labels")
            pts, lbl = torch.from_numpy(points_xy)[None], torch.from_numpy(point_labels.astype(np.int64))[None]
        if box_xyxy is not None:
            box = torch.as_tensor(np.asarray(box_xyxy, np.float32).reshape(1, 4))
        return pts, lbl, box

    def segment_prompts(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
    ) -> Regions:
        pts, lbl, box = self._prompt_tensors(points_xy, point_labels, box_xyxy)
        emb = self.embed(image)
        # one positive click is ambiguous: ask for three masks and keep the best;
        # several points or a box pin the object down: SAM recommends one mask then
        single_click = box is None and pts is not None and pts.shape[1] == 1
        logits, iou = self.decode(emb, pts, lbl, box, multimask=single_click)
        best = int(iou[0].argmax())
        return self.to_regions(emb, logits[0, best : best + 1], iou[0, best : best + 1].float().cpu().numpy())

    def segment_prompt_choices(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
        dup_iou: float = CHOICE_DUP_IOU,
    ) -> Regions:
        """Every mask of one gesture, small to large: SAM's three multimask outputs (sub-part,
        part, whole), whatever the prompt, ordered by area, scores (predicted IoU) set.

        Empty masks are dropped, and so is a mask that nearly repeats a smaller one kept
        (IoU >= dup_iou; the one with the higher predicted IoU stays), so each step to a larger
        choice visibly changes the region: 1 to 3 choices come back."""
        pts, lbl, box = self._prompt_tensors(points_xy, point_labels, box_xyxy)
        emb = self.embed(image)
        logits, iou = self.decode(emb, pts, lbl, box, multimask=True)
        regions = self.to_regions(emb, logits[0], iou[0].float().cpu().numpy())
        return distinct_choices(regions, dup_iou)

    def segment_everything(
        self, image: np.ndarray, level: int | str = DEFAULT_LEVEL, progress: ProgressFn | None = None
    ) -> Regions:
        ikey = image_key(image)
        emb = self.embed(image, ikey)
        key = (ikey, self.amg)
        cands = self._candidates.get(key)
        if cands is None:
            cands = decode_grid(self, emb, self.amg, progress=progress)
            self._candidates.put(key, cands)
        return select(self, emb, cands, granularity(level), self.amg)
