"""Semantic-SAM as one module: Swin backbone, pixel decoder, interactive decoder.

State-dict keys equal the reference model's (`backbone.*`, `sem_seg_head.pixel_decoder.*`,
`sem_seg_head.predictor.*`), so the official checkpoint loads by name (som.segmenters.
semantic_sam.checkpoint). Two entry points split the work as interactive use needs it:
`encode` once per image, `decode` per batch of prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from som.segmenters.semantic_sam.config import model_config
from som.segmenters.semantic_sam.decoder import ImageMemory, InteractiveDecoder
from som.segmenters.semantic_sam.pixel_encoder import PixelDecoder
from som.segmenters.semantic_sam.swin import SwinBackbone

CLICK_BOX_SIZE = 0.005  # a click is a box this wide and high (fraction of the image), as in the reference


@dataclass(frozen=True)
class ImageFeatures:
    """One image's encoding: everything `decode` needs, computed once.

    mask_features: (1, MASK_DIM, Hp/4, Wp/4); multi_scale: pixel-decoder levels, finest first;
    image_hw: the model input's size before padding; padded_hw: after padding to SIZE_DIVISIBILITY;
    memory: every decoder layer's value projection of the levels (prompt-independent, so done here
    once: a click then costs only its queries, not a projection of the whole image per layer).
    """

    mask_features: torch.Tensor
    multi_scale: tuple[torch.Tensor, ...]
    image_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    memory: ImageMemory  # the decoder's per-image inputs (decoder.ImageMemory)


class SemanticSamHead(nn.Module):
    def __init__(self, cfg: dict, channels: dict[str, int], strides: dict[str, int]):
        super().__init__()
        self.pixel_decoder = PixelDecoder(cfg, channels, strides)
        self.predictor = InteractiveDecoder(cfg)


class SemanticSam(nn.Module):
    """Semantic-SAM for interactive and automatic segmentation (no text/classification heads run)."""

    def __init__(self, cfg: dict | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else model_config()
        swin = cfg["MODEL"]["BACKBONE"]["SWIN"]
        self.backbone = SwinBackbone(swin)
        names = [f"res{i + 2}" for i in range(len(swin["DEPTHS"]))]
        channels = dict(zip(names, self.backbone.num_features))
        strides = {name: swin["PATCH_SIZE"] * 2**i for i, name in enumerate(names)}
        self.sem_seg_head = SemanticSamHead(cfg, channels, strides)
        self.size_divisibility = cfg["MODEL"]["DECODER"]["SIZE_DIVISIBILITY"]
        # not in the checkpoint: made on the CPU even when the model is built on the meta device
        self.register_buffer("pixel_mean", torch.tensor(cfg["INPUT"]["PIXEL_MEAN"], device="cpu").view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg["INPUT"]["PIXEL_STD"], device="cpu").view(-1, 1, 1), False)

    @property
    def num_tokens(self) -> int:
        return self.sem_seg_head.predictor.tokens

    def preprocess(self, image: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(H, W, 3) uint8 RGB -> normalised (1, 3, Hp, Wp) float, zero-padded at the bottom/right to
        a multiple of SIZE_DIVISIBILITY (after normalisation, as the reference pads), and (H, W)."""
        x = torch.tensor(np.asarray(image), device=self.pixel_mean.device).permute(2, 0, 1).float()  # a copy: input may be read-only
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[1:]
        d = self.size_divisibility
        x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d), value=0.0)
        return x[None], (h, w)

    def encode(self, image: np.ndarray | torch.Tensor) -> ImageFeatures:
        """(H, W, 3) uint8 RGB at model resolution -> ImageFeatures."""
        x, image_hw = self.preprocess(image)
        feats = self.backbone(x)
        mask_features, _, multi_scale = self.sem_seg_head.pixel_decoder.forward_features(feats)
        memory = self.sem_seg_head.predictor.image_memory(multi_scale)
        return ImageFeatures(mask_features, tuple(multi_scale), image_hw, tuple(x.shape[2:]), memory)

    def decode(
        self,
        features: ImageFeatures,
        boxes_cxcywh: torch.Tensor,
        prompt_type: torch.Tensor | None = None,
        isolate: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt boxes (P, 4) cx, cy, w, h as fractions of the UNPADDED image (a click: w = h =
        CLICK_BOX_SIZE) -> mask logits (P, tokens, Hp/4, Wp/4) over the padded frame and predicted
        IoU (P, tokens). As in the reference, the P prompts attend to each other (a prompt's masks
        depend on the others); isolate=True decodes each as if it were alone."""
        h, w = features.image_hw
        hp, wp = features.padded_hw
        dev = boxes_cxcywh.device
        # (boxes * size) / padded size, in this order and in float32, as the reference computes it
        size = torch.tensor([w, h, w, h], dtype=torch.float32, device=dev)
        padded = torch.tensor([wp, hp, wp, hp], dtype=torch.float32, device=dev)
        boxes = (boxes_cxcywh.float() * size / padded)[None]
        if prompt_type is None:
            prompt_type = torch.zeros(boxes.shape[:2], dtype=torch.long, device=boxes.device)
        logits, iou = self.sem_seg_head.predictor(
            features.memory, features.mask_features, boxes, prompt_type.reshape(1, -1), isolate
        )
        return logits[0], iou[0]


def click_boxes(points_xy: np.ndarray | torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """(P, 2) pixel x, y in an image of image_hw -> (P, 4) click boxes as `decode` takes them."""
    pts = torch.as_tensor(points_xy, dtype=torch.float32).reshape(-1, 2)
    h, w = image_hw
    frac = pts / torch.tensor([w, h], dtype=torch.float32)
    return torch.cat([frac, torch.full_like(frac, CLICK_BOX_SIZE)], 1)


def upsample_logits(logits: torch.Tensor, features: ImageFeatures) -> torch.Tensor:
    """(..., Hp/4, Wp/4) logits -> (..., H, W) at model-input resolution, as the reference does it:
    bilinear to the padded size, then crop the padding."""
    lead = logits.shape[:-2]
    up = F.interpolate(logits.reshape(1, -1, *logits.shape[-2:]), size=features.padded_hw, mode="bilinear", align_corners=False)
    h, w = features.image_hw
    return up[0, :, :h, :w].reshape(*lead, h, w)
