"""SEEM's pixel decoder: an FPN whose coarsest level first passes a transformer encoder.

res5 -> 1x1 `input_proj` -> 6 post-norm encoder layers (sine positions) -> 3x3 conv; then
top-down: each finer level's 1x1 lateral conv (`adapter_k`) plus the nearest-upsampled coarser
output, through a 3x3 conv (`layer_k`). The first three outputs (strides 32, 16, 8) feed the
decoder's cross-attention; a 3x3 conv on the finest (stride 4) gives the mask features.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from som.segmenters.seem.layers import ConvNorm, sine_position_embedding


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (self-attention with positions on q/k, ReLU FFN)."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = x + pos
        x = self.norm1(x + self.self_attn(q, q, x, need_weights=False)[0])
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class Encoder(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, hidden) for _ in range(depth))


class EncoderOnly(nn.Module):
    """Key layout `transformer.encoder.layers.N`."""

    def __init__(self, dim: int, heads: int, hidden: int, depth: int):
        super().__init__()
        self.encoder = Encoder(dim, heads, hidden, depth)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x, pos = x.flatten(2).permute(2, 0, 1), pos.flatten(2).permute(2, 0, 1)
        for layer in self.encoder.layers:
            x = layer(x, pos)
        return x.permute(1, 2, 0).reshape(b, c, h, w)


class PixelDecoder(nn.Module):
    NUM_DECODER_LEVELS = 3

    def __init__(self, cfg: dict, in_channels: dict[str, int]):
        super().__init__()
        enc, dec = cfg["MODEL"]["ENCODER"], cfg["MODEL"]["DECODER"]
        dim, norm = enc["CONVS_DIM"], enc["NORM"]
        self.in_features = [f for f in ("res2", "res3", "res4", "res5") if f in enc["IN_FEATURES"]]
        n = len(self.in_features)
        for k, name in enumerate(self.in_features[:-1], start=1):
            self.add_module(f"adapter_{k}", ConvNorm(in_channels[name], dim, 1, norm))
            self.add_module(f"layer_{k}", ConvNorm(dim, dim, 3, norm, relu=True))
        self.add_module(f"layer_{n}", ConvNorm(dim, dim, 3, norm, relu=True))
        self.mask_features = ConvNorm(dim, enc["MASK_DIM"], 3)
        self.input_proj = ConvNorm(in_channels[self.in_features[-1]], dim, 1)
        self.transformer = EncoderOnly(dim, dec["NHEADS"], dec["DIM_FEEDFORWARD"], enc["TRANSFORMER_ENC_LAYERS"])
        self.dim = dim

    def forward(self, features: dict[str, torch.Tensor]):
        """-> (mask_features (B, MASK_DIM, H/4, W/4), encoder output (B, C, H/32, W/32),
        three multi-scale maps coarse to fine)."""
        n = len(self.in_features)
        x = features[self.in_features[-1]]
        encoded = self.transformer(self.input_proj(x), sine_position_embedding(x, self.dim // 2))
        y = getattr(self, f"layer_{n}")(encoded)
        multi_scale = [y]
        for k in range(n - 1, 0, -1):
            lateral = getattr(self, f"adapter_{k}")(features[self.in_features[k - 1]])
            y = getattr(self, f"layer_{k}")(lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
            if len(multi_scale) < self.NUM_DECODER_LEVELS:
                multi_scale.append(y)
        return self.mask_features(y), encoded, multi_scale
