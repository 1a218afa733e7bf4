"""Semantic-SAM's interactive decoder (DINO-style, MaskDINO lineage) and its prediction heads.

Facts from the reference: every prompt is a reference box (cx, cy, w, h in 0..1 of the padded
image; a click is a 0.005-wide box) and becomes `NUM_INTERACTIVE_TOKENS` queries, one per
granularity token: content = label embedding + prompt-type embedding + the token's own
embedding. Each decoder layer: self-attention among ALL queries of the call (no attention mask
at inference: prompts decoded together influence each other), deformable cross-attention into
the pixel decoder's levels (coarsest first) sampled inside the query's box, a ReLU FFN, all
post-norm and in float32; a shared box head refines the reference box after every layer. The
last layer's output is normalised twice (the decoder's final norm, then the heads' norm, the
same LayerNorm), then gives mask embeddings (dot product with the mask features) and a
predicted IoU per token.
Key names match the reference's `sem_seg_head.predictor.*`, including the shared box head listed
under three names and the unused class projections that the checkpoint carries.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from som.segmenters.semantic_sam.config import DEFORM_POINTS
from som.segmenters.semantic_sam.deform_attn import MSDeformAttn


class MLP(nn.Module):
    """Linear layers with ReLU between them (keys `layers.N.*`)."""

    def __init__(self, cin: int, hidden: int, cout: int, depth: int):
        super().__init__()
        dims = [cin] + [hidden] * (depth - 1) + [cout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def box_sine_code(boxes: torch.Tensor, per_coord: int) -> torch.Tensor:
    """(..., 4) cx, cy, w, h -> (..., 4 * per_coord) sine code, ordered y, x, w, h."""
    dim_t = torch.arange(per_coord, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / per_coord)

    def code(v: torch.Tensor) -> torch.Tensor:
        p = (v * 2 * math.pi)[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2)

    cx, cy, w, h = boxes.unbind(-1)
    return torch.cat((code(cy), code(cx), code(w), code(h)), dim=-1)


@dataclass(frozen=True)
class ImageMemory:
    """What the decoder needs of one image, computed once: each layer's deformable-attention value
    projection of the pixel-decoder levels (1, S, C) float32, and the levels' (h, w), coarsest first."""

    values: tuple[torch.Tensor, ...]
    shapes_hw: tuple[tuple[int, int], ...]


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, ffn: int, levels: int, heads: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(dim, levels, heads, DEFORM_POINTS)
        self.norm1 = nn.LayerNorm(dim)
        # sequence-first, as the reference: batch_first=True would take PyTorch's fused inference
        # path, whose rounding differs (masks must equal the reference's bit for bit)
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt, pos, boxes, values, shapes_hw, group: int = 0):
        """tgt, pos (B, Q, C); boxes (B, Q, levels, 4); values: this layer's projection of the image
        levels (B, S, C) (ImageMemory) -> (B, Q, C), in float32.

        group: 0 lets all Q queries attend to each other (the reference at inference); g > 0 lets
        only each run of g queries (one prompt's tokens) attend among themselves, so every prompt
        is decoded as if it were alone (as in training, where an attention mask separates them)."""
        b, nq, c = tgt.shape
        g = group or nq
        q = (tgt + pos).reshape(b * nq // g, g, c).transpose(0, 1)  # sequence-first, one sequence per group
        v = tgt.reshape(b * nq // g, g, c).transpose(0, 1)
        tgt = self.norm2(tgt + self.self_attn(q, q, v)[0].transpose(0, 1).reshape(b, nq, c))
        tgt = self.norm1(tgt + self.cross_attn.attend(tgt + pos, boxes, values, shapes_hw))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class TransformerDecoder(nn.Module):
    """Keys: `layers.N.*`, `norm.*`, `ref_point_head.*`, `bbox_embed.N.*` (norm and box head shared)."""

    def __init__(self, dim: int, ffn: int, levels: int, heads: int, layers: int, norm: nn.LayerNorm, bbox_embed):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, ffn, levels, heads) for _ in range(layers))
        self.norm = norm
        self.ref_point_head = MLP(2 * dim, dim, dim, 2)
        self.bbox_embed = bbox_embed
        self.dim = dim

    def image_memory(self, multi_scale: list[torch.Tensor]) -> ImageMemory:
        """Pixel-decoder levels (finest first) -> every layer's value projection, in float32."""
        levels = multi_scale[::-1]  # the decoder attends coarsest level first
        shapes_hw = tuple(tuple(x.shape[2:]) for x in levels)
        with torch.autocast(levels[0].device.type, enabled=False):
            memory = torch.cat([x.float().flatten(2).transpose(1, 2) for x in levels], 1)
            values = tuple(layer.cross_attn.value_proj(memory) for layer in self.layers)
        return ImageMemory(values, shapes_hw)

    def forward(self, tgt, boxes_logit, memory: ImageMemory, group: int = 0):
        """tgt (B, Q, C); boxes_logit (B, Q, 4) inverse-sigmoid boxes -> last layer's output (B, Q, C).
        group: self-attention groups (DecoderLayer.forward)."""
        boxes = boxes_logit.sigmoid()
        shapes_hw = list(memory.shapes_hw)
        for layer, box_head, values in zip(self.layers, self.bbox_embed, memory.values):
            pos = self.ref_point_head(box_sine_code(boxes, self.dim // 2))
            with torch.autocast(values.device.type, enabled=False):  # the reference runs its layers in float32
                levels = boxes.float()[:, :, None].expand(-1, -1, len(shapes_hw), 4)
                tgt = layer(tgt.float(), pos.float(), levels, values, shapes_hw, group)
            boxes = (box_head(tgt) + inverse_sigmoid(boxes)).sigmoid()
        return tgt


class InteractiveDecoder(nn.Module):
    """Prompt boxes + image features -> mask logits (B, P, tokens, H/4, W/4) and predicted IoU (B, P, tokens)."""

    def __init__(self, cfg: dict):
        super().__init__()
        dec, enc = cfg["MODEL"]["DECODER"], cfg["MODEL"]["ENCODER"]
        dim, dim_proj = dec["HIDDEN_DIM"], cfg["MODEL"]["DIM_PROJ"]
        if enc["CONVS_DIM"] != dim:
            raise ValueError(f"MODEL.ENCODER.CONVS_DIM ({enc['CONVS_DIM']}) must equal MODEL.DECODER.HIDDEN_DIM ({dim})")
        self.tokens = dec["NUM_INTERACTIVE_TOKENS"]
        self.lang_mapper = nn.Parameter(torch.zeros(dim_proj, dim))  # unused at inference; in the checkpoint
        self.mask_embed = MLP(dim, dim, enc["MASK_DIM"], 3)
        self.decoder_norm = nn.LayerNorm(dim)
        box_head = MLP(dim, dim, 4, 3)  # one box head, shared by every layer
        box_heads = nn.ModuleList([box_head] * dec["DEC_LAYERS"])
        # registration order = load order, as in the reference: when a file gives a shared module's
        # names different values (seeded random weights do), the last name loaded wins, here
        # as there (`decoder.norm`, then `bbox_embed.<last>`)
        self.decoder = TransformerDecoder(
            dim, dec["DIM_FEEDFORWARD"], dec["TOTAL_NUM_FEATURE_LEVELS"], dec["NHEADS"], dec["DEC_LAYERS"],
            self.decoder_norm, box_heads,
        )
        self._bbox_embed = box_head
        self.bbox_embed = box_heads
        self.class_embed = nn.Parameter(torch.zeros(dim, dim_proj))  # unused at inference
        self.class_embed_part = nn.Parameter(torch.zeros(dim, dim_proj))  # unused at inference
        self.iou_prediction_head = MLP(dim, dim, 1, 3)
        self.mask_tokens = nn.Embedding(self.tokens, dim)
        self.pb_embedding = nn.Embedding(2, dim)
        self.label_enc = nn.Embedding(2, dim)

    def queries(self, boxes_cxcywh: torch.Tensor, prompt_type: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, 4) boxes, (B, P) 0/1 prompt type -> content (B, P*tokens, C), box logits (B, P*tokens, 4)."""
        b, p = prompt_type.shape
        content = self.label_enc(torch.zeros_like(prompt_type, dtype=torch.long)) + self.pb_embedding(prompt_type.long())
        content = content.repeat_interleave(self.tokens, 1) + self.mask_tokens.weight.repeat(b, p, 1)
        return content, inverse_sigmoid(boxes_cxcywh).repeat_interleave(self.tokens, 1)

    def image_memory(self, multi_scale: list[torch.Tensor]) -> ImageMemory:
        """Pixel-decoder levels (finest first) -> the decoder's per-image inputs (compute once per image)."""
        return self.decoder.image_memory(multi_scale)

    def forward(self, memory: ImageMemory, mask_features: torch.Tensor, boxes_cxcywh, prompt_type, isolate: bool = False):
        """memory: image_memory(levels); boxes (1, P, 4) in 0..1 of the padded image; prompt_type (1, P).
        isolate: decode each prompt as if alone (its tokens attend only to each other); False is
        the reference: all prompts of the call attend to each other."""
        tgt, boxes_logit = self.queries(boxes_cxcywh, prompt_type)
        out = self.decoder(tgt, boxes_logit, memory, self.tokens if isolate else 0)
        out = self.decoder_norm(self.decoder_norm(out))  # the decoder's final norm, then the heads' (same module)
        b, q, _ = out.shape
        logits = torch.einsum("bqc,bchw->bqhw", self.mask_embed(out), mask_features)
        iou = self.iou_prediction_head(out).view(b, q // self.tokens, self.tokens)
        return logits.view(b, q // self.tokens, self.tokens, *logits.shape[2:]), iou
