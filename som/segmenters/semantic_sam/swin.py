"""Swin Transformer backbone (shifted windows), as Semantic-SAM configures it.

Written from the Swin paper and the facts of the reference model (module and key names, a -100
additive mask between shifted-window regions, windows padded at the bottom/right, a LayerNorm
per output stage); state-dict keys match the reference's `backbone.*` so the official
checkpoint loads by name. Output: {"res2".."res5"} feature maps at strides 4, 8, 16, 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MASK_VALUE = -100.0  # added to attention logits between tokens from different regions


class SwinMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) int64: index into the (2w-1)² bias table for every token pair."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, w²)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool, qk_scale: float | None):
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = qk_scale or (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (windows*B, N, C); mask (windows, N, N) additive or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        logits = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        logits = logits + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def from_windows(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of to_windows: (B * H/w * W/w, w*w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shift_mask(hp: int, wp: int, window: int, shift: int, device, dtype) -> torch.Tensor:
    """(windows, w², w²) additive mask for shifted windows: tokens that came from different
    regions of the rolled map may not attend to each other."""
    region = torch.zeros(hp, wp, device=device)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for ys in bands:
        for xs in bands:
            region[ys, xs] = label
            label += 1
    ids = to_windows(region[None, :, :, None], window)[..., 0]  # (windows, w²)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, SHIFT_MASK_VALUE, 0.0).to(dtype)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, qkv_bias: bool, qk_scale):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, qkv_bias, qk_scale)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        """x (B, H*W, C) -> same; mask: the stage's shifted-window mask (used when shifting)."""
        b, _, c = x.shape
        win = self.window
        y = self.norm1(x).view(b, h, w, c)
        pad_b, pad_r = (win - h % win) % win, (win - w % win) % win
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = from_windows(self.attn(to_windows(y, win), mask if self.shift else None), win, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token with twice the channels (odd sizes padded)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, qkv_bias, qk_scale, merge: bool):
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, qkv_bias, qk_scale)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        win = self.window
        hp, wp = -(-h // win) * win, -(-w // win) * win
        mask = shift_mask(hp, wp, win, win // 2, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, h, w, mask)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, norm: bool):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = F.pad(x, (0, (p - x.shape[3] % p) % p, 0, (p - x.shape[2] % p) % p))
        x = self.proj(x)
        if self.norm is not None:
            b, c, h, w = x.shape
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(b, c, h, w)
        return x


class SwinBackbone(nn.Module):
    """(B, 3, H, W) normalised image -> {"res2": (B, C, H/4, W/4), ..., "res5": (B, 8C, H/32, W/32)}."""

    def __init__(self, swin_cfg: dict):
        super().__init__()
        dim, depths, heads = swin_cfg["EMBED_DIM"], swin_cfg["DEPTHS"], swin_cfg["NUM_HEADS"]
        self.out_features = list(swin_cfg["OUT_FEATURES"])
        self.patch_embed = PatchEmbed(swin_cfg["PATCH_SIZE"], dim, swin_cfg["PATCH_NORM"])
        self.num_features = [dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            SwinStage(
                self.num_features[i], depths[i], heads[i], swin_cfg["WINDOW_SIZE"], swin_cfg["MLP_RATIO"],
                swin_cfg["QKV_BIAS"], swin_cfg["QK_SCALE"], merge=i < len(depths) - 1,
            )
            for i in range(len(depths))
        )
        for i, channels in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(channels))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.patch_embed(x)
        h, w = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        out = {}
        for i, stage in enumerate(self.layers):
            x = stage(x, h, w)
            name = f"res{i + 2}"
            if name in self.out_features:
                y = getattr(self, f"norm{i}")(x)
                out[name] = y.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return out
