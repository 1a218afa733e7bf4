"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

Each query looks at a few points per head and feature level, placed around its reference point
(or inside its reference box) by learned offsets, and mixes the bilinearly sampled values with
learned softmax weights. The reference ships a compiled CUDA kernel; the same sampling is
`F.grid_sample` (bilinear, zero padding, align_corners=False), so nothing here is compiled.
Parameter names match the reference (`sampling_offsets`, `attention_weights`, `value_proj`,
`output_proj`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def deform_sample(
    value: torch.Tensor, shapes_hw: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """value (N, S, heads, D) over levels flattened row-major; locations (N, Q, heads, L, P, 2)
    as x, y in 0..1; weights (N, Q, heads, L, P) -> (N, Q, heads * D)."""
    n, _, heads, d = value.shape
    _, q, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1
    sampled = []
    for level, part in enumerate(value.split([h * w for h, w in shapes_hw], dim=1)):
        h, w = shapes_hw[level]
        v = part.flatten(2).transpose(1, 2).reshape(n * heads, d, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N*heads, Q, P, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    w = weights.transpose(1, 2).reshape(n * heads, 1, q, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1)  # (N*heads, D, Q)
    return out.view(n, heads * d, q).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    def __init__(self, dim: int, levels: int, heads: int, points: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"deformable attention width {dim} is not divisible by {heads} heads")
        self.dim, self.levels, self.heads, self.points = dim, levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, reference: torch.Tensor, source: torch.Tensor, shapes_hw: list[tuple[int, int]]
    ) -> torch.Tensor:
        """query (N, Q, C); reference (N, Q, L, 2) points or (N, Q, L, 4) cx, cy, w, h boxes in 0..1;
        source (N, S, C) levels flattened -> (N, Q, C)."""
        return self.attend(query, reference, self.value_proj(source), shapes_hw)

    def attend(
        self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor, shapes_hw: list[tuple[int, int]]
    ) -> torch.Tensor:
        """As forward, with the source already projected: value = value_proj(source), (N, S, C).
        The projection depends on the image only, so a decoder computes it once per image."""
        n, q, _ = query.shape
        value = value.view(n, value.shape[1], self.heads, self.dim // self.heads)
        offsets = self.sampling_offsets(query).view(n, q, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(n, q, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(n, q, self.heads, self.levels, self.points)
        if reference.shape[-1] == 2:
            normaliser = torch.tensor([[w, h] for h, w in shapes_hw], dtype=query.dtype, device=query.device)
            locations = reference[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        else:  # boxes: offsets are in units of half the box size, spread over the points
            locations = (
                reference[:, :, None, :, None, :2]
                + offsets / self.points * reference[:, :, None, :, None, 2:] * 0.5
            )
        return self.output_proj(deform_sample(value, shapes_hw, locations, weights))
