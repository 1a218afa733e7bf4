"""TinyViT image encoder for SAM (the MobileSAM encoder), inference only.

TinyViT (Wu et al., ECCV 2022, https://github.com/microsoft/Cream/tree/main/TinyViT) as cut
down by MobileSAM (Zhang et al., 2023): a 5M-parameter hybrid of MBConv blocks and windowed
attention that maps a padded (B, 3, 1024, 1024) image to SAM's (B, 256, 64, 64) embedding.

Written for this project from the published architecture. Parameter and buffer names follow
the reference implementation so that the ``image_encoder.*`` entries of ``mobile_sam.pt`` load
with ``strict=True``. Left out on purpose: drop-path, gradient checkpointing, layer-wise lr
decay and timm (not a runtime dependency).

Shapes through the MobileSAM configuration (B = batch)::

    input                          (B,   3, 1024, 1024)  normalised and padded as SAM does
    patch_embed   2x conv s2       (B,  64,  256,  256)
    layers[0]     2 MBConv, merge  (B, 128,  128,  128)
    layers[1]     2 blocks w7      (B, 160,   64,   64)
    layers[2]     6 blocks w14     (B, 320,   64,   64)  last merge has stride 1 (MobileSAM)
    layers[3]     2 blocks w7      (B, 320,   64,   64)
    neck          1x1, LN, 3x3, LN (B, 256,   64,   64)

The forward pass has no data-dependent Python branches: window padding and counts are fixed
at construction from the static resolution of each stage, so torch.compile traces it once per
batch size and it runs in bf16 as well as fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

__all__ = ["TinyViT"]


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (keys ``c.*`` and ``bn.*``); 'same' padding."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, dim, H/4, W/4): two stride-2 3x3 convolutions with GELU between."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2, 3, 2), nn.GELU(), ConvBN(dim // 2, dim, 3, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual (1x1 expand, 3x3 depthwise, 1x1 project); (B, C, H, W) -> same shape."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        # TinyViT applies the activation after the residual sum, not before it.
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """(B, dim, H, W) -> (B, out_dim, H/stride, W/stride): 1x1, depthwise 3x3 (strided), 1x1."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)


class Mlp(nn.Module):
    """Pre-norm MLP on the last axis: (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Pre-norm multi-head self-attention inside one window, with a learned relative-position bias.

    Input and output (B * windows, N, dim) with N = window_size**2. The bias is a table of
    ``num_heads x window_size**2`` values, one per absolute offset (|dy|, |dx|) between two
    positions of the window; it is gathered into a dense (num_heads, N, N) additive mask on each
    call. That gather is tiny (at most 5 x 196 x 196 here) and, unlike a cache filled at
    ``eval()`` time, can never go stale when weights are loaded after the model was built.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        # Output features are grouped per head as [q, k, v] (head_dim each), as in the checkpoint.
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

        ij = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        ij = ij.flatten(1)  # (2, N) row-major window positions
        offset = (ij[:, :, None] - ij[:, None, :]).abs()  # (2, N, N)
        # Offset (dy, dx) -> column dy * window_size + dx of the table: the order in which the
        # reference enumerates offsets, so the checkpoint's table columns line up.
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", offset[0] * window_size + offset[1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.head_dim, dim=-1)  # each (b, heads, n, head_dim)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)  # (heads, n, n)
        # An explicit batch dim on the mask lets CPU PyTorch pick its fused (flash) kernel; a 3-D
        # mask falls back to the unfused math path (measured 2-3x slower here).
        bias = bias.expand(b, -1, -1, -1)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale 1/sqrt(head_dim)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TinyViTBlock(nn.Module):
    """Window attention, depthwise 3x3 'local' conv, MLP; (B, H, W, C) -> same shape.

    The feature map is zero-padded at the bottom/right to a multiple of the window. As in the
    reference, the padded positions take part in attention as keys (no mask), which the
    checkpoint was trained with, so they are kept.
    """

    def __init__(self, dim: int, resolution: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.window_size = window_size
        self.pad = (window_size - resolution % window_size) % window_size
        self.num_windows = (resolution + self.pad) // window_size  # per side
        self.attn = Attention(dim, num_heads, window_size)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        ws, nw, p = self.window_size, self.num_windows, self.pad
        if p:
            x = F.pad(x, (0, 0, 0, p, 0, p))
        # (B, H', W', C) -> (B * nw * nw, ws * ws, C)
        x = x.reshape(-1, nw, ws, nw, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        x = self.attn(x)
        x = x.reshape(-1, nw, nw, ws, ws, c).transpose(2, 3).reshape(-1, nw * ws, nw * ws, c)
        return x[:, :h, :w] if p else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._window_attention(x)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then a patch merge; (B, C, H, W) -> (B, C', H/s, W/s)."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Attention stage: TinyViT blocks then an optional patch merge; (B, C, H, W) in and out."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        out_dim: int | None,
        stride: int,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, resolution, num_heads, window_size, mlp_ratio) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # blocks work channels-last: (B, H, W, C)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT encoder with SAM's neck; defaults are MobileSAM's TinyViT-5M at 1024 px.

    forward: (B, 3, img_size, img_size) float, normalised and padded the SAM way
    (``Sam.preprocess``) -> (B, out_chans, img_size / 16, img_size / 16).

    ``img_size`` is read by ``segment_anything.SamPredictor`` to size its resize transform.
    ``norm_head`` / ``head`` are the ImageNet classifier of TinyViT pre-training. SAM never uses
    them, but ``mobile_sam.pt`` stores them, so they are kept (unused, 0.3M parameters) to make
    ``load_state_dict(strict=True)`` check every other key. ``num_classes=0`` drops them.
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        merge_strides: tuple[int, ...] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        out_chans: int = 256,
        num_classes: int = 1000,
    ):
        super().__init__()
        n = len(embed_dims)
        if not (len(depths) == len(num_heads) == len(window_sizes) == n and len(merge_strides) == n - 1):
            raise ValueError(
                "embed_dims, depths, num_heads, window_sizes need one entry per stage and merge_strides "
                f"one fewer; got {len(embed_dims)}, {len(depths)}, {len(num_heads)}, {len(window_sizes)}, "
                f"{len(merge_strides)}"
            )
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])

        resolution = img_size // 4
        self.layers = nn.ModuleList()
        for i in range(n):
            last = i == n - 1
            out_dim = None if last else embed_dims[i + 1]
            stride = 1 if last else merge_strides[i]
            if i == 0:
                layer = ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, out_dim, stride)
            else:
                layer = BasicLayer(
                    embed_dims[i], resolution, depths[i], num_heads[i], window_sizes[i], mlp_ratio, out_dim, stride
                )
            self.layers.append(layer)
            resolution = (resolution - 1) // stride + 1  # 3x3 conv, padding 1
        self.embedding_size = resolution  # 64 for MobileSAM: SAM's image_embedding_size

        if num_classes > 0:
            self.norm_head = nn.LayerNorm(embed_dims[-1])
            self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"TinyViT expects (B, 3, {self.img_size}, {self.img_size}) input, got {tuple(x.shape)}; "
                "resize the long side and pad as segment_anything's Sam.preprocess does"
            )
        # Channels-last throughout: oneDNN's depthwise and 1x1 convolutions run ~15-20% faster on
        # CPU (the 256x256 stage 0 dominates), and the attention stages' (B, H, W, C) views of it
        # are then free. The values are the same up to float rounding.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return self.neck(x).contiguous()
