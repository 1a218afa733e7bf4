"""SAM's mask decoder, rewritten to do per prompt only the work that depends on the prompt.

Same weights and the same mathematics as `segment_anything.modeling.MaskDecoder`
(multimask or single-mask, point/box prompts, no mask input); the outputs agree to
float rounding (tests/segmenters/test_fast_decoder.py). What changes is the order
of operations:

1. Per image, once (`ImageSide`): the image tokens plus the no-mask dense embedding,
   the positional encoding, and the first layer's image-side projections (the
   token->image keys/values and the image->token queries). Stock SAM recomputes them
   for every prompt after copying the image embedding once per prompt.
2. Attention between 4096 image tokens and ~7 prompt tokens never projects the 4096
   image tokens: projections are linear, so they are moved onto the 7 prompt tokens
   (q.(W x + b) = (W^T q).x + q.b; softmax rows sum to 1, so A (W x + b) = W (A x) + b),
   and the output projection is applied to the 7 values before the weighted sum.
3. The upscaling runs channels-last: each stride-2 transposed convolution is one matrix
   product per pixel (kernel 2, stride 2 has no overlap), LayerNorm2d is a plain
   last-dimension layer norm, and only the mask tokens asked for are multiplied out.
   The layout is rearranged to (B, M, 256, 256) once, at the end, on the final masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ImageSide:
    """Prompt-independent decoder inputs for one image (all (4096, C), row = image token)."""

    keys: torch.Tensor  # image embedding + no-mask dense embedding, (N, 256)
    pe: torch.Tensor  # positional encoding, (N, 256)
    t2i_k: torch.Tensor  # layer-1 token->image keys, heads split: (H, N, d)
    t2i_v: torch.Tensor  # layer-1 token->image values: (H, N, d)
    i2t_q: torch.Tensor  # layer-1 image->token queries: (N, H, d)
    hw: tuple[int, int]


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """(..., T, H*d) -> (..., H, T, d)"""
    return x.unflatten(-1, (h, -1)).transpose(-3, -2)


class FastMaskDecoder:
    """Wraps a `segment_anything` Sam model's prompt encoder and mask decoder (weights shared)."""

    def __init__(self, sam):
        dec = sam.mask_decoder
        tr = dec.transformer
        if len(tr.layers) != 2 or not tr.layers[0].skip_first_layer_pe or tr.layers[1].skip_first_layer_pe:
            raise ValueError("FastMaskDecoder expects SAM's two-layer TwoWayTransformer")
        self.sam = sam
        self.dec = dec
        self.tr = tr
        self.heads = tr.num_heads
        up = dec.output_upscaling  # ConvT(256->64, k2 s2), LayerNorm2d, GELU, ConvT(64->32, k2 s2), GELU
        self.up1, self.up_norm, self.up2 = up[0], up[1], up[3]
        self.act1, self.act2 = up[2], up[4]
        self._weights_cache: dict = {}

    # ---- weights rearranged for channels-last upscaling ------------------
    def _up_weights(self, dtype, device):
        key = (dtype, device)
        w = self._weights_cache.get(key)
        if w is None:
            # ConvTranspose2d weight (Cin, Cout, 2, 2) -> (Cin, 2*2*Cout): output order (di, dj, o)
            w1 = self.up1.weight.permute(0, 2, 3, 1).reshape(self.up1.in_channels, -1)
            b1 = self.up1.bias.repeat(4)
            w2 = self.up2.weight.permute(0, 2, 3, 1).reshape(self.up2.in_channels, -1)
            b2 = self.up2.bias.repeat(4)
            w = tuple(t.detach().to(device=device, dtype=dtype).contiguous() for t in (w1, b1, w2, b2))
            self._weights_cache[key] = w
        return w

    # ---- per image --------------------------------------------------------
    @torch.no_grad()
    def image_side(self, features: torch.Tensor) -> ImageSide:
        """features: (1, 256, h, w) image embedding -> ImageSide."""
        pe_enc = self.sam.prompt_encoder
        _, c, h, w = features.shape
        dense = pe_enc.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense)[0].flatten(1).T.contiguous()  # (N, C)
        pe = pe_enc.get_dense_pe()[0].flatten(1).T.contiguous()
        layer = self.tr.layers[0]
        a, b = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        kpe = keys + pe
        return ImageSide(
            keys=keys,
            pe=pe,
            t2i_k=_heads(a.k_proj(kpe), self.heads).contiguous(),
            t2i_v=_heads(a.v_proj(keys), self.heads).contiguous(),
            i2t_q=b.q_proj(kpe).unflatten(-1, (self.heads, -1)).contiguous(),
            hw=(h, w),
        )

    # ---- attention forms ---------------------------------------------------
    def _t2i_shared(self, attn, q, k, v):
        """Tokens attend to the same image tokens for every prompt. q: (B, T, C); k, v: (H, N, d)."""
        qh = _heads(attn.q_proj(q), self.heads)  # (B, H, T, d)
        s = torch.softmax(qh @ k.transpose(-1, -2) / math.sqrt(qh.shape[-1]), dim=-1)
        out = (s @ v).transpose(1, 2).flatten(2)  # (B, T, H*d)
        return attn.out_proj(out)

    def _t2i(self, attn, q, xk, xv):
        """Tokens attend to per-prompt image tokens without projecting them.

        q: (B, T, C) token queries; xk, xv: (B, N, C) image tokens for keys / values.
        """
        hn = self.heads
        qh = _heads(attn.q_proj(q), hn)  # (B, H, T, d)
        d = qh.shape[-1]
        wk = attn.k_proj.weight.unflatten(0, (hn, d))  # (H, d, C)
        bk = attn.k_proj.bias.unflatten(0, (hn, d))  # (H, d)
        qk = (qh @ wk).flatten(1, 2)  # (B, H*T, C)
        bias = (qh * bk[:, None]).sum(-1).flatten(1)[..., None]  # (B, H*T, 1)
        s = torch.baddbmm(bias, qk, xk.transpose(1, 2)) / math.sqrt(d)  # (B, H*T, N)
        s = torch.softmax(s, dim=-1)
        ax = (s @ xv).unflatten(1, (hn, -1))  # (B, H, T, C)
        wv = attn.v_proj.weight.unflatten(0, (hn, d))  # (H, d, C)
        out = ax @ wv.transpose(1, 2) + attn.v_proj.bias.unflatten(0, (hn, d))[:, None]  # (B, H, T, d)
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def _i2t_values(self, attn, k_tok, v_tok):
        """Token keys (B, H, T, d) and output-projected values (B, H*T, C)."""
        hn = self.heads
        kh = _heads(attn.k_proj(k_tok), hn)  # (B, H, T, d)
        vh = _heads(attn.v_proj(v_tok), hn)  # (B, H, T, d)
        d = kh.shape[-1]
        wo = attn.out_proj.weight.unflatten(1, (hn, d))  # (C, H, d)
        vo = torch.einsum("bhtd,chd->bhtc", vh, wo).flatten(1, 2)  # (B, H*T, C)
        return kh, vo

    def _i2t_first(self, attn, side: ImageSide, k_tok, v_tok):
        """Layer 1: image queries are per image (ImageSide.i2t_q). Returns (B, N, C)."""
        kh, vo = self._i2t_values(attn, k_tok, v_tok)
        d = kh.shape[-1]
        # (N, H, d) x (B, H, T, d) -> (B, N, H, T)
        s = torch.einsum("nhd,bhtd->bnht", side.i2t_q, kh) / math.sqrt(d)
        s = torch.softmax(s, dim=-1).flatten(2)  # (B, N, H*T)
        return torch.baddbmm(attn.out_proj.bias.expand(s.shape[0], 1, -1), s, vo)

    def _i2t_later(self, attn, x_img, k_tok, v_tok):
        """Later layers: x_img (B, N, C) image tokens (+pe); their q projection is moved onto the tokens."""
        hn = self.heads
        kh, vo = self._i2t_values(attn, k_tok, v_tok)
        d = kh.shape[-1]
        wq = attn.q_proj.weight.unflatten(0, (hn, d))  # (H, d, C)
        bq = attn.q_proj.bias.unflatten(0, (hn, d))  # (H, d)
        # q.k = (W x + b).k = x.(W^T k) + b.k
        proj = torch.einsum("bhtd,hdc->bhtc", kh, wq).flatten(1, 2)  # (B, H*T, C)
        bias = (kh * bq[:, None]).sum(-1).flatten(1)[:, None]  # (B, 1, H*T)
        s = torch.baddbmm(bias, x_img, proj.transpose(1, 2)) / math.sqrt(d)  # (B, N, H*T)
        s = torch.softmax(s.unflatten(-1, (hn, -1)), dim=-1).flatten(2)
        return torch.baddbmm(attn.out_proj.bias.expand(s.shape[0], 1, -1), s, vo)

    # ---- per batch of prompts ------------------------------------------
    @torch.no_grad()
    def __call__(
        self, side: ImageSide, sparse: torch.Tensor, multimask: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sparse: (B, T, 256) prompt-encoder tokens -> (logits (B, M, 4h, 4w), iou (B, M)).

        M = 3 with multimask (SAM's outputs 1..3), else 1 (output 0), as the stock decoder.
        """
        dec, tr = self.dec, self.tr
        bsz = sparse.shape[0]
        dtype = sparse.dtype
        out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], 0).to(dtype)
        tokens = torch.cat([out_tokens.expand(bsz, -1, -1), sparse], 1)  # (B, T, C)
        keys0, pe = side.keys.to(dtype), side.pe.to(dtype)

        # ---- layer 1 (no pe on the first self-attention, no residual) ----
        l1 = tr.layers[0]
        q = l1.norm1(l1.self_attn(q=tokens, k=tokens, v=tokens))
        q = l1.norm2(q + self._t2i_shared(l1.cross_attn_token_to_image, q + tokens, side.t2i_k, side.t2i_v))
        q = l1.norm3(q + l1.mlp(q))
        keys = l1.norm4(keys0 + self._i2t_first(l1.cross_attn_image_to_token, side, q + tokens, q))

        # ---- layer 2 ----
        l2 = tr.layers[1]
        qp = q + tokens
        q = l2.norm1(q + l2.self_attn(q=qp, k=qp, v=q))
        kpe = keys + pe
        q = l2.norm2(q + self._t2i(l2.cross_attn_token_to_image, q + tokens, kpe, keys))
        q = l2.norm3(q + l2.mlp(q))
        keys = l2.norm4(keys + self._i2t_later(l2.cross_attn_image_to_token, kpe, q + tokens, q))

        # ---- final token->image attention ----
        q = tr.norm_final_attn(q + self._t2i(tr.final_attn_token_to_image, q + tokens, keys + pe, keys))

        first = 1 if multimask else 0
        count = dec.num_mask_tokens - 1 if multimask else 1
        hyper = torch.stack(
            [dec.output_hypernetworks_mlps[i](q[:, 1 + i]) for i in range(first, first + count)], 1
        )  # (B, M, 32)
        iou = dec.iou_prediction_head(q[:, 0])[:, first : first + count]
        return self._upscale_masks(keys, hyper, side.hw), iou

    def _upscale_masks(self, keys: torch.Tensor, hyper: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """keys (B, h*w, 256) image tokens, hyper (B, M, 32) -> logits (B, M, 4h, 4w)."""
        bsz, m = hyper.shape[:2]
        h, w = hw
        w1, b1, w2, b2 = self._up_weights(keys.dtype, keys.device)
        x = torch.addmm(b1, keys.flatten(0, 1), w1)  # (B*N, 4*64): pixel (2i+di, 2j+dj), order (di, dj, o)
        x = x.view(-1, self.up1.out_channels)
        x = self.act1(F.layer_norm(x, (x.shape[-1],), self.up_norm.weight, self.up_norm.bias, self.up_norm.eps))
        x = self.act2(torch.addmm(b2, x, w2))  # (B*N*4, 4*32): order (ei, ej, o)
        x = x.view(bsz, -1, self.up2.out_channels)  # (B, N*16, 32), rows ordered (i, j, di, dj, ei, ej)
        masks = x @ hyper.transpose(1, 2)  # (B, N*16, M)
        masks = masks.view(bsz, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(bsz, m, 4 * h, 4 * w)
