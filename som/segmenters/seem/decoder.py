"""SEEM's decoder: object queries, optional text (grounding) queries and visual-prompt
(spatial) queries refined together over the pixel decoder's three scales.

Each of the DEC_LAYERS - 1 layers: masked cross-attention of every query to one scale
(a query sees only the pixels its previous mask predicts), self-attention under a mask that
says which groups may talk, and an FFN. Prediction heads (before the first layer and after
each) give per-query masks (mask embedding . mask features), class logits (projected query
against text embeddings) and the next cross-attention mask.

Groups in self-attention (True in the mask = blocked), as the reference's SoM config says:
  object queries      <-> object queries
  grounding queries   <-> grounding queries and text tokens (text tokens likewise)
  spatial queries     <-> spatial queries of the same prompt and prompt tokens of that prompt
  prompt tokens       <-> prompt tokens of the same prompt
Grounding queries start as copies of the object queries; spatial queries are `QUERY_NUMBER`
object queries per prompt, picked at random by the reference (here: given, or drawn from a
fixed seed so a call is repeatable).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from som.segmenters.seem.layers import (
    MLP,
    ConvNorm,
    CrossAttentionLayer,
    FFNLayer,
    SelfAttentionLayer,
    sine_position_embedding,
)
from som.segmenters.seem.text import LanguageEncoder

SPATIAL_SEED = 0  # seed of the prompt-point and query draws when the caller gives none


@dataclass
class SpatialPrompts:
    """Visual prompts for one image (batch size 1), as the reference samples them.

    points_yx: four (K_l, 2) tensors of normalised y/Hp, x/Wp in the padded input: the prompt
        tokens' points for each of the three decoder scales (positive points, then negative),
        and last the positive points whose mean mask feature picks each prompt's mask.
    prompt_index: matching (K_l,) long, the prompt each point belongs to.
    positive: matching (K_l,) bool, False for negative points.
    num_prompts: n.
    query_indices: (QUERY_NUMBER * n,) the object queries that seed each prompt's queries.
    """

    points_yx: list[torch.Tensor]
    prompt_index: list[torch.Tensor]
    positive: list[torch.Tensor]
    num_prompts: int
    query_indices: torch.Tensor


def point_features(features: torch.Tensor, points_yx: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) map sampled bilinearly at (K, 2) normalised y, x (0 and 1 at the first and
    last pixel centres) -> (K, C)."""
    grid = points_yx.flip(-1).to(features.dtype)[None, :, None] * 2 - 1
    return F.grid_sample(features, grid, align_corners=True)[0, :, :, 0].t()


class SeemDecoder(nn.Module):
    def __init__(self, cfg: dict, lang_encoder: LanguageEncoder, in_channels: int):
        super().__init__()
        dec, enc = cfg["MODEL"]["DECODER"], cfg["MODEL"]["ENCODER"]
        dim = dec["HIDDEN_DIM"]
        self.num_heads = dec["NHEADS"]
        self.num_layers = dec["DEC_LAYERS"] - 1
        self.num_queries = dec["NUM_OBJECT_QUERIES"]
        self.num_levels = 3
        self.sample_size = cfg["ATTENTION_ARCH"]["QUERY_NUMBER"]
        self.max_spatial_len = list(dec["MAX_SPATIAL_LEN"])
        if dec.get("PRE_NORM", False):
            raise ValueError("SEEM configs with PRE_NORM: true are not supported (SoM's is post-norm)")
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(dim, self.num_heads) for _ in range(self.num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(dim, self.num_heads) for _ in range(self.num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(dim, dec["DIM_FEEDFORWARD"]) for _ in range(self.num_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.query_feat = nn.Embedding(self.num_queries, dim)
        self.query_embed = nn.Embedding(self.num_queries, dim)
        self.level_embed = nn.Embedding(self.num_levels, dim)
        project = in_channels != dim or dec.get("ENFORCE_INPUT_PROJ", False)
        self.input_proj = nn.ModuleList(
            ConvNorm(in_channels, dim, 1) if project else nn.Identity() for _ in range(self.num_levels)
        )
        self.lang_encoder = lang_encoder
        self.mask_embed = MLP(dim, dim, enc["MASK_DIM"], 3)
        self.class_embed = nn.Parameter(torch.zeros(dim, cfg["MODEL"]["DIM_PROJ"]))
        self.mask_sptial_embed = nn.ParameterList(nn.Parameter(torch.zeros(dim, dim)) for _ in range(3))
        memories = cfg["ATTENTION_ARCH"]["SPATIAL_MEMORIES"]
        self.spatial_embed = nn.Embedding(memories, dim)  # memories of earlier rounds: unused in one-shot prompts
        self.spatial_featured = nn.Embedding(memories, dim)
        self.pn_indicator = nn.Embedding(2, dim)

    # ---- heads ------------------------------------------------------------
    def heads(self, queries: torch.Tensor, mask_features: torch.Tensor, class_emb: torch.Tensor | None, size):
        """(L, B, C) queries -> dict of class_embed (B, L, D), logits (B, L, K) or None,
        mask_embed (B, L, E), masks (B, L, h, w) and the next cross-attention mask
        (B*heads, L, size) bool."""
        out = self.decoder_norm(queries).transpose(0, 1)
        caption = out @ self.class_embed
        logits = self.lang_encoder.compute_similarity(caption, class_emb) if class_emb is not None else None
        mask_embed = self.mask_embed(out)
        masks = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        attn = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        attn = (attn.sigmoid().flatten(2) < 0.5).repeat_interleave(self.num_heads, dim=0)
        attn[attn.all(-1)] = False  # a query that predicts no pixel may look everywhere
        return {"caption": caption, "logits": logits, "mask_embed": mask_embed, "masks": masks, "attn": attn.detach()}

    # ---- inputs -------------------------------------------------------------
    def prepare(self, multi_scale: list[torch.Tensor]):
        src, pos, sizes = [], [], []
        for i, x in enumerate(multi_scale):
            sizes.append(tuple(x.shape[-2:]))
            pos.append(sine_position_embedding(x, x.shape[1] // 2).flatten(2).permute(2, 0, 1))
            src.append((self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        return src, pos, sizes

    def spatial_tokens(self, src, sizes, prompts: SpatialPrompts) -> list[torch.Tensor]:
        """Per scale: (K, 1, C) prompt tokens = that scale's features projected by
        mask_sptial_embed and sampled at the prompt points, plus the positive/negative
        indicator embedding."""
        tokens = []
        for level in range(self.num_levels):
            h, w = sizes[level]
            feats = (src[level].view(h, w, 1, -1) @ self.mask_sptial_embed[level]).permute(2, 3, 0, 1)
            t = point_features(feats, prompts.points_yx[level])
            sign = self.pn_indicator.weight[(~prompts.positive[level]).long()]
            tokens.append((t + sign)[:, None])
        return tokens

    def self_attention_mask(self, n_obj, n_grd, n_tok, spatial: SpatialPrompts | None, level: int, device):
        """(L, L) bool over [object, grounding, spatial queries, text tokens, prompt tokens]."""
        n_sq = 0 if spatial is None else self.sample_size * spatial.num_prompts
        n_st = 0 if spatial is None else len(spatial.prompt_index[level])
        starts = torch.tensor([0, n_obj, n_grd, n_sq, n_tok, n_st]).cumsum(0).tolist()
        obj, grd, sq, tok, st = (slice(a, b) for a, b in zip(starts, starts[1:]))
        mask = torch.ones(starts[-1], starts[-1], dtype=torch.bool, device=device)
        mask[obj, obj] = False
        for a in (grd, tok):
            for b in (grd, tok):
                mask[a, b] = False
        if spatial is not None:
            owner = torch.arange(spatial.num_prompts, device=device).repeat_interleave(self.sample_size)
            index = spatial.prompt_index[level].to(device)
            mask[sq, sq] = owner[:, None] != owner[None, :]
            mask[sq, st] = owner[:, None] != index[None, :]
            mask[st, st] = index[:, None] != index[None, :]
        return mask

    # ---- forward ------------------------------------------------------------
    def forward(
        self,
        multi_scale: list[torch.Tensor],
        mask_features: torch.Tensor,
        class_emb: torch.Tensor | None = None,
        grounding_tokens: torch.Tensor | None = None,
        spatial: SpatialPrompts | None = None,
    ) -> dict[str, torch.Tensor]:
        """multi_scale: three (B, C, h, w) maps coarse to fine; mask_features (B, E, H/4, W/4);
        class_emb (K, D) unit text embeddings for class logits (None: no logits);
        grounding_tokens (T, D) projected text tokens (batch size 1); spatial: visual prompts
        (batch size 1). Returns the last layer's predictions, sliced per query group:
        pred_logits/pred_masks/pred_captions (object), pred_gmasks/pred_gtexts (grounding),
        pred_smasks/pred_smaskembs/pred_stexts (spatial)."""
        src, pos, sizes = self.prepare(multi_scale)
        bs = src[0].shape[1]
        if (grounding_tokens is not None or spatial is not None) and bs != 1:
            raise ValueError("text and visual prompts take one image at a time")
        query = self.query_feat.weight[:, None].repeat(1, bs, 1)
        query_pos = self.query_embed.weight[:, None].repeat(1, bs, 1)
        n_obj, n_grd, n_tok = self.num_queries, 0, 0
        queries, qpos = [query], [query_pos]
        if grounding_tokens is not None:
            n_grd, n_tok = self.num_queries, len(grounding_tokens)
            queries.append(query.clone())
            qpos.append(query_pos.clone())
        spatial_tok = None
        if spatial is not None:
            idx = spatial.query_indices.to(query.device)
            queries.append(query[idx])
            qpos.append(query_pos[idx])
            spatial_tok = self.spatial_tokens(src, sizes, spatial)
        output, output_pos = torch.cat(queries), torch.cat(qpos)
        n_q = len(output)
        text = text_pos = None
        if grounding_tokens is not None:
            text = grounding_tokens[:, None].to(output.dtype)
            text_pos = text.clone()

        pred = self.heads(output, mask_features, class_emb, sizes[0])
        for i in range(self.num_layers):
            level = i % self.num_levels
            output = self.transformer_cross_attention_layers[i](output, src[level], pred["attn"], pos[level], output_pos)
            seq, seq_pos = [output], [output_pos]
            if text is not None:
                seq.append(text)
                seq_pos.append(text_pos)
            if spatial_tok is not None:
                seq.append(spatial_tok[level])
                seq_pos.append(spatial_tok[level])
            self_mask = self.self_attention_mask(n_obj, n_grd, n_tok, spatial, level, output.device)
            x = self.transformer_self_attention_layers[i](
                torch.cat(seq), self_mask.repeat(bs * self.num_heads, 1, 1), torch.cat(seq_pos)
            )
            x = self.transformer_ffn_layers[i](x)
            output = x[:n_q]
            if text is not None:
                text = x[n_q : n_q + n_tok]
            pred = self.heads(output, mask_features, class_emb, sizes[(i + 1) % self.num_levels])

        obj, grd = slice(0, n_obj), slice(n_obj, n_obj + n_grd)
        spt = slice(n_obj + n_grd, n_q)
        result = {"pred_masks": pred["masks"][:, obj], "pred_captions": pred["caption"][:, obj]}
        if pred["logits"] is not None:
            result["pred_logits"] = pred["logits"][:, obj]
        if grounding_tokens is not None:
            result["pred_gmasks"] = pred["masks"][:, grd]
            result["pred_gtexts"] = pred["caption"][:, grd]
        if spatial is not None:
            result["pred_smasks"] = pred["masks"][:, spt]
            result["pred_smaskembs"] = pred["mask_embed"][:, spt]
            result["pred_stexts"] = pred["caption"][:, spt]
        return result
