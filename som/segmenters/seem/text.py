"""SEEM's text side: a CLIP-style causal transformer and the projection into the joint space.

Key names follow the reference (`lang_encoder.{token_embedding, positional_embedding,
resblocks.N.{attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2}, ln_final}`, `lang_proj`, `logit_scale`).
A sentence's embedding is the final hidden state at its end token (the first position holding
the largest id), projected by `lang_proj`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class LayerNormFp32(nn.Module):
    """LayerNorm with eps inside the square root, computed in fp32 (the reference's text-side
    norm; eps 1e-12)."""

    def __init__(self, width: int, eps: float = 1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps)
        return self.weight * x.to(dtype) + self.bias


class TextBlock(nn.Module):
    """Pre-norm attention block with a QuickGELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNormFp32(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, width * 4))
        self.mlp.add_module("c_proj", nn.Linear(width * 4, width))
        self.ln_2 = LayerNormFp32(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (L, N, C) sequence-first."""
        h = self.ln_1(x)
        mask = None if attn_mask is None else attn_mask.to(h.dtype)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))


class TextTransformer(nn.Module):
    def __init__(self, context_length: int, vocab_size: int, width: int, layers: int, heads: int, causal: bool = True):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.resblocks = nn.ModuleList(TextBlock(width, heads) for _ in range(layers))
        self.ln_final = LayerNormFp32(width)
        self.causal = causal

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) ids, L <= context length -> (N, L, width) last hidden states. Causal: padding
        needs no mask, and a state never depends on later positions (so callers may drop
        trailing padding)."""
        n = input_ids.shape[1]
        mask = torch.full((n, n), float("-inf"), device=input_ids.device).triu_(1) if self.causal else None
        x = (self.token_embedding(input_ids) + self.positional_embedding[:n]).permute(1, 0, 2)
        for block in self.resblocks:
            x = block(x, mask)
        return self.ln_final(x.permute(1, 0, 2))


class LanguageEncoder(nn.Module):
    """Text transformer + projection; `compute_similarity` scores visual embeddings against
    the class embeddings set by the caller."""

    def __init__(self, cfg: dict, vocab_size: int = 49408):
        super().__init__()
        text = cfg["MODEL"]["TEXT"]
        self.context_length = text["CONTEXT_LENGTH"]
        self.lang_encoder = TextTransformer(
            text["CONTEXT_LENGTH"], vocab_size, text["WIDTH"], text["LAYERS"], text["HEADS"], text.get("AUTOGRESSIVE", True)
        )
        self.lang_proj = nn.Parameter(torch.zeros(text["WIDTH"], cfg["MODEL"]["DIM_PROJ"]))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def token_embeddings(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) ids -> (projected hidden states (N, L, D), sentence embeddings (N, D)); not normalised."""
        hidden = self.lang_encoder(input_ids)
        return hidden @ self.lang_proj, self.end_states(hidden, input_ids) @ self.lang_proj

    @staticmethod
    def end_states(hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L, C) states at each row's end token (the first position of the largest id)."""
        return hidden[torch.arange(len(hidden), device=hidden.device), input_ids.argmax(dim=-1)]

    def sentence_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, L) ids -> (N, D) unit sentence embeddings (only end-token states projected)."""
        x = self.end_states(self.lang_encoder(input_ids), input_ids) @ self.lang_proj
        return x / (x.norm(dim=-1, keepdim=True) + 1e-7)

    def class_embeddings(
        self, prompts_per_class: list[list[str]], tokenizer, batch: int = 256, progress=None
    ) -> torch.Tensor:
        """Each class's prompts -> mean of their unit embeddings, renormalised: (K, D).

        With the causal text encoder, trailing padding cannot change the end token's state, so
        sentences run sorted by length in batches cut to their longest one (same result, a
        fraction of the work of 77-token rows). progress(done, total) is called after each batch."""
        device = self.lang_proj.device
        flat = [p for prompts in prompts_per_class for p in prompts]
        ids, mask = tokenizer(flat, self.context_length)
        lengths = mask.sum(1) if self.lang_encoder.causal else np.full(len(flat), self.context_length)
        order = np.argsort(lengths, kind="stable")
        emb = torch.empty(len(flat), self.lang_proj.shape[1], device=device)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            cut = torch.from_numpy(ids[rows, : int(lengths[rows].max())]).to(device)
            emb[torch.from_numpy(rows).to(device)] = self.sentence_embeddings(cut).float()
            if progress:
                progress(start + len(rows), len(order))
        out, start = [], 0
        for prompts in prompts_per_class:
            mean = emb[start : start + len(prompts)].mean(dim=0)
            out.append(mean / mean.norm())
            start += len(prompts)
        return torch.stack(out)

    def compute_similarity(self, v_emb: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """(B, Q, D) visual x (K, D) unit text -> (B, Q, K) logits scaled by exp(logit_scale)."""
        v_emb = v_emb / (v_emb.norm(dim=-1, keepdim=True) + 1e-7)
        return self.logit_scale.exp() * v_emb @ t_emb.t().to(v_emb.dtype)
