"""Small building blocks shared by SEEM's pixel decoder and decoder: a conv with optional
norm and activation (detectron2's `Conv2d` key layout: `weight`, `bias`, `norm.*`), the sine
position embedding, and the post-norm attention/FFN layers of Mask2Former-style decoders."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ConvNorm(nn.Conv2d):
    """Conv2d, then GroupNorm(32) when norm == "GN", then ReLU when relu."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, norm: str = "", relu: bool = False):
        super().__init__(in_dim, out_dim, kernel, padding=kernel // 2, bias=norm == "")
        self.norm = nn.GroupNorm(32, out_dim) if norm == "GN" else None
        if norm not in ("", "GN"):
            raise ValueError(f"unsupported norm {norm!r}; SEEM's configs use 'GN' or ''")
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x) if self.relu else x


def sine_position_embedding(x: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's normalised 2-D sine embedding for a (B, C, H, W) map: (B, 2 * num_feats, H, W),
    y features then x features, positions scaled to (0, 2 pi]."""
    b, _, h, w = x.shape
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=x.dtype, device=x.device)
    xs = torch.arange(1, w + 1, dtype=x.dtype, device=x.device)
    y = (y / (y[-1] + eps) * scale)[:, None].expand(h, w)
    xs = (xs / (xs[-1] + eps) * scale)[None, :].expand(h, w)
    dim_t = torch.arange(num_feats, dtype=x.dtype, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(v: torch.Tensor) -> torch.Tensor:
        v = v[:, :, None] / dim_t
        return torch.stack((v[:, :, 0::2].sin(), v[:, :, 1::2].cos()), dim=3).flatten(2)

    pos = torch.cat((encode(y), encode(xs)), dim=2).permute(2, 0, 1)
    return pos[None].expand(b, -1, -1, -1)


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: x + attn(x + pos, x + pos, x), then LayerNorm. Sequence-first."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor) -> torch.Tensor:
        q = x + pos
        return self.norm(x + self.self_attn(q, q, x, attn_mask=mask, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention from queries to image features. Sequence-first."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, memory, mask, pos, query_pos) -> torch.Tensor:
        out = self.multihead_attn(x + query_pos, memory + pos, memory, attn_mask=mask, need_weights=False)[0]
        return self.norm(x + out)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """Linear layers with ReLU between them (`layers.N`)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, depth: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (depth - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
