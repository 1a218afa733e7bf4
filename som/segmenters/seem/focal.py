"""FocalNet backbone (Focal-L in SoM's SEEM): four stages of focal-modulation blocks.

A focal modulation block replaces self-attention: a linear layer gives a query, a context and
L+1 gates; the context goes through L depthwise convolutions of growing kernel (each level's
output gated and summed) plus a global average, the sum (divided by L+1 with the scaling
modulator) is mixed by a 1x1 conv and multiplies the query. Stages downsample by 2 with a
3x3 stride-2 conv; the stem is a 7x7 stride-4 conv. Outputs res2..res5 (strides 4..32),
each layer-normed. Key names follow the reference (`patch_embed`, `layers.S.blocks.B`,
`layers.S.downsample`, `normS`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FocalModulation(nn.Module):
    def __init__(self, dim: int, focal_level: int, focal_window: int, scaling_modulator: bool, postln: bool):
        super().__init__()
        self.focal_level = focal_level
        self.scaling_modulator = scaling_modulator
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for k in range(focal_level):
            size = 2 * k + focal_window
            level = nn.Sequential(nn.Conv2d(dim, dim, size, padding=size // 2, groups=dim, bias=False), nn.GELU())
            self.focal_layers.append(level)
        self.ln = nn.LayerNorm(dim) if postln else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        c = x.shape[-1]
        q, ctx, gates = torch.split(self.f(x).permute(0, 3, 1, 2), (c, c, self.focal_level + 1), 1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level : level + 1]
        ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level :]
        if self.scaling_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        out = (q * self.h(ctx_all)).permute(0, 2, 3, 1)
        if self.ln is not None:
            out = self.ln(out)
        return self.proj(out)


class FocalBlock(nn.Module):
    """Modulation and MLP residual branches, norms before (pre-LN) or after (post-LN), each
    branch scaled by a learned per-channel layer scale when enabled."""

    def __init__(self, dim: int, mlp_ratio: float, focal_level: int, focal_window: int, fc: dict):
        super().__init__()
        self.postln = fc["USE_POSTLN"]
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(
            dim, focal_level, focal_window, fc.get("SCALING_MODULATOR", False), fc["USE_POSTLN_IN_MODULATION"]
        )
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))
        if fc["USE_LAYERSCALE"]:
            self.gamma_1 = nn.Parameter(torch.ones(dim))
            self.gamma_2 = nn.Parameter(torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = 1.0

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """x: (B, H*W, C)."""
        b, n, c = x.shape
        h = x if self.postln else self.norm1(x)
        h = self.modulation(h.view(b, *hw, c)).view(b, n, c)
        if self.postln:
            x = x + self.gamma_1 * self.norm1(h)
            return x + self.gamma_2 * self.norm2(self.mlp(x))
        x = x + self.gamma_1 * h
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Strided conv (+ LayerNorm): the stem (stride 4) or a stage's downsampling (stride 2).
    Inputs are zero-padded on the right/bottom to a multiple of the patch size first."""

    def __init__(self, patch: int, in_dim: int, out_dim: int, conv_embed: bool, stem: bool, norm: bool):
        super().__init__()
        self.patch = patch
        if conv_embed:
            kernel, pad, stride = (7, 2, 4) if stem else (3, 1, 2)
            self.proj = nn.Conv2d(in_dim, out_dim, kernel, stride=stride, padding=pad)
        else:
            self.proj = nn.Conv2d(in_dim, out_dim, patch, stride=patch)
        self.norm = nn.LayerNorm(out_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % self.patch, 0, (-h) % self.patch))
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class FocalStage(nn.Module):
    def __init__(self, dim: int, depth: int, focal_level: int, focal_window: int, fc: dict, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            FocalBlock(dim, fc["MLP_RATIO"], focal_level, focal_window, fc) for _ in range(depth)
        )
        self.downsample = PatchEmbed(2, dim, 2 * dim, fc["USE_CONV_EMBED"], False, True) if downsample else None


class FocalNet(nn.Module):
    """(B, 3, H, W) normalised image -> {"res2": (B, C, H/4, W/4), ..., "res5": (B, 8C, H/32, W/32)}."""

    def __init__(self, cfg: dict):
        super().__init__()
        fc = cfg["MODEL"]["BACKBONE"]["FOCAL"]
        dim, depths = fc["EMBED_DIM"], fc["DEPTHS"]
        self.out_indices = list(fc["OUT_INDICES"])
        self.out_features = list(fc["OUT_FEATURES"])
        self.num_features = [dim * 2**i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(fc["PATCH_SIZE"], 3, dim, fc["USE_CONV_EMBED"], True, fc["PATCH_NORM"])
        self.layers = nn.ModuleList(
            FocalStage(
                self.num_features[i], depths[i], fc["FOCAL_LEVELS"][i], fc["FOCAL_WINDOWS"][i], fc, i < len(depths) - 1
            )
            for i in range(len(depths))
        )
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.patch_embed(x)
        hw = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        outs = {}
        for i, stage in enumerate(self.layers):
            for block in stage.blocks:
                x = block(x, hw)
            if i in self.out_indices:
                name = f"res{i + 2}"
                y = getattr(self, f"norm{i}")(x)
                if name in self.out_features:
                    outs[name] = y.view(-1, *hw, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
            if stage.downsample is not None:
                x = stage.downsample(x.transpose(1, 2).reshape(x.shape[0], -1, *hw))
                hw = tuple(x.shape[-2:])
                x = x.flatten(2).transpose(1, 2)
        return outs
