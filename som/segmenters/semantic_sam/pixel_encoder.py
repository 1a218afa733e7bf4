"""Semantic-SAM's pixel decoder: a deformable-attention encoder over backbone levels plus one FPN step.

Facts from the reference (MaskDINO's encoder as Semantic-SAM configures it): the deformable
encoder sees res3..res5 (1x1 conv + GroupNorm each) and extra levels made by stride-2 3x3 convs
from the coarsest one; position codes are normalised sines plus a learned per-level embedding;
post-norm layers (attention, add, norm; ReLU FFN, add, norm). Then res2 gets a lateral conv plus
the upsampled finest encoder level, a 3x3 conv, and a 1x1 conv makes the per-pixel mask features.
It always runs in float32, as the reference does (deformable attention in half precision loses
the sampling positions' precision).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from som.segmenters.semantic_sam.config import DEFORM_POINTS
from som.segmenters.semantic_sam.deform_attn import MSDeformAttn

GROUPS = 32  # GroupNorm groups everywhere in the pixel decoder


def sine_position_code(x: torch.Tensor, channels: int, temperature: float = 10000.0) -> torch.Tensor:
    """(B, ?, H, W) -> (B, channels, H, W): normalised 2-D sine/cosine code, y half then x half."""
    b, _, h, w = x.shape
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    ys = torch.arange(1, h + 1, dtype=x.dtype, device=x.device)
    xs = torch.arange(1, w + 1, dtype=x.dtype, device=x.device)
    ys = (ys / (ys[-1:] + eps) * scale)[None, :, None].expand(b, h, w)
    xs = (xs / (xs[-1:] + eps) * scale)[None, None, :].expand(b, h, w)
    dim_t = torch.arange(half, dtype=x.dtype, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)

    def code(v: torch.Tensor) -> torch.Tensor:
        p = v[..., None] / dim_t
        return torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=4).flatten(3)

    return torch.cat((code(ys), code(xs)), dim=3).permute(0, 3, 1, 2)


class ConvNorm(nn.Conv2d):
    """Conv (no bias) then GroupNorm (then ReLU): keys `weight`, `norm.*`, as detectron2's Conv2d."""

    def __init__(self, cin: int, cout: int, kernel: int, relu: bool = False):
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.GroupNorm(GROUPS, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn: int, levels: int, heads: int):
        super().__init__()
        self.self_attn = MSDeformAttn(dim, levels, heads, DEFORM_POINTS)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src, pos, reference, shapes_hw):
        src = self.norm1(src + self.self_attn(src + pos, reference, src, shapes_hw))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class LayerStack(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DeformableEncoder(nn.Module):
    """Keys: `level_embed`, `encoder.layers.N.*`."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, levels: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.zeros(levels, dim))
        self.encoder = LayerStack([EncoderLayer(dim, ffn, levels, heads) for _ in range(layers)])

    @staticmethod
    def reference_points(shapes_hw, levels: int, device) -> torch.Tensor:
        """(1, S, levels, 2): every token's pixel centre as x, y in 0..1, the same on all levels."""
        refs = []
        for h, w in shapes_hw:
            ys, xs = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            refs.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
        return torch.cat(refs)[None, :, None].expand(1, -1, levels, 2)

    def forward(self, srcs: list[torch.Tensor], pos: list[torch.Tensor]) -> list[torch.Tensor]:
        shapes_hw = [tuple(s.shape[2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        p = torch.cat([q.flatten(2).transpose(1, 2) + self.level_embed[i] for i, q in enumerate(pos)], 1)
        reference = self.reference_points(shapes_hw, len(srcs), src.device)
        for layer in self.encoder.layers:
            src = layer(src, p, reference, shapes_hw)
        b, _, c = src.shape
        return [
            z.transpose(1, 2).reshape(b, c, h, w)
            for z, (h, w) in zip(src.split([h * w for h, w in shapes_hw], 1), shapes_hw)
        ]


class PixelDecoder(nn.Module):
    """Backbone features -> (mask features (B, MASK_DIM, H/4, W/4), finest encoder level,
    multi-scale features for the decoder, finest (stride 8) first)."""

    def __init__(self, cfg: dict, channels: dict[str, int], strides: dict[str, int]):
        super().__init__()
        enc, dec = cfg["MODEL"]["ENCODER"], cfg["MODEL"]["DECODER"]
        dim = enc["CONVS_DIM"]
        self.dim = dim
        self.in_features = sorted(enc["IN_FEATURES"], key=lambda k: strides[k])
        # high-to-low resolution (res3, res4, res5); the reference orders projections this way
        self.transformer_in_features = sorted(enc["DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"], key=lambda k: strides[k])
        self.total_levels = enc["TOTAL_NUM_FEATURE_LEVELS"]
        coarsest = self.transformer_in_features[-1]
        projections = [
            nn.Sequential(nn.Conv2d(channels[k], dim, 1), nn.GroupNorm(GROUPS, dim)) for k in self.transformer_in_features
        ]
        cin = channels[coarsest]
        for _ in range(self.total_levels - len(self.transformer_in_features)):
            projections.append(nn.Sequential(nn.Conv2d(cin, dim, 3, stride=2, padding=1), nn.GroupNorm(GROUPS, dim)))
            cin = dim
        self.input_proj = nn.ModuleList(projections)
        self.transformer = DeformableEncoder(
            dim, dec["NHEADS"], dec["DIM_FEEDFORWARD"], enc["TRANSFORMER_ENC_LAYERS"], self.total_levels
        )
        self.mask_features = nn.Conv2d(dim, enc["MASK_DIM"], 1)
        finest_stride = strides[self.transformer_in_features[0]]
        self.num_fpn_levels = max(int(math.log2(finest_stride) - math.log2(enc["COMMON_STRIDE"])), 1)
        for i, name in enumerate(self.in_features[: self.num_fpn_levels]):
            self.add_module(f"adapter_{i + 1}", ConvNorm(channels[name], dim, 1))
            self.add_module(f"layer_{i + 1}", ConvNorm(dim, dim, 3, relu=True))

    def forward_features(self, features: dict[str, torch.Tensor], masks: None = None):
        """masks: the reference's padding masks, always None at inference (kept for its call form)."""
        with torch.autocast(next(iter(features.values())).device.type, enabled=False):
            return self._forward_fp32({k: v.float() for k, v in features.items()})

    def _forward_fp32(self, features: dict[str, torch.Tensor]):
        n_trans = len(self.transformer_in_features)
        extra, extra_pos = [], []
        x = features[self.transformer_in_features[-1]]
        for level in range(n_trans, self.total_levels):
            x = self.input_proj[level](x)
            extra.append(x)
            extra_pos.append(sine_position_code(x, self.dim))
        srcs = [self.input_proj[i](features[k]) for i, k in enumerate(self.transformer_in_features)]
        pos = [sine_position_code(features[k], self.dim) for k in self.transformer_in_features]
        # the reference reverses the extra levels but not their position codes (same with one extra level)
        out = self.transformer(srcs + extra[::-1], pos + extra_pos)
        for i in reversed(range(self.num_fpn_levels)):
            lateral = getattr(self, f"adapter_{i + 1}")(features[self.in_features[i]])
            y = lateral + F.interpolate(out[0], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out.append(getattr(self, f"layer_{i + 1}")(y))
        return self.mask_features(out[-1]), out[0], out[: self.total_levels]
