"""Seeded random weights for models whose real checkpoints cannot be had here.

Parity with a reference implementation (Semantic-SAM, SEEM) is proven on random weights: the
reference script (scripts/) and our tests fill the two models' state dicts with the same values,
made from a seed and each tensor's key name only, so neither side needs the other's code or a
saved weight file. Every floating tensor is re-drawn, zero-initialised ones included (a bias left
at zero would hide a missing bias). Integer buffers (index tables) keep the model's own values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping

import torch


def seeded_tensor(key: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The float32 tensor for `key`: the same on every machine for the same (key, shape, seed).

    Matrices and kernels: uniform with variance 1/fan_in (activations keep their scale through
    deep stacks). 1-D weights (norm scales): 1 +- 0.2. Running variances: 0.5..1.5. Other 1-D
    tensors (biases, running means, embeddings of one vector): +-0.2.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    unit = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1  # uniform -1..1
    name = key.rsplit(".", 1)[-1]
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        values = unit * math.sqrt(3.0 / fan_in)
    elif name == "running_var":
        values = 1.0 + 0.5 * unit
    elif name == "weight":
        values = 1.0 + 0.2 * unit
    else:
        values = 0.2 * unit
    return values.to(torch.float32)


def seeded_state_dict(
    state: Mapping[str, torch.Tensor], seed: int, keep: Callable[[str], bool] = lambda key: False
) -> dict[str, torch.Tensor]:
    """A copy of `state` with every floating tensor replaced by `seeded_tensor` (same shape and
    dtype); non-floating tensors and keys for which `keep(key)` is true are copied as they are."""
    out = {}
    for key, value in state.items():
        if value.is_floating_point() and not keep(key):
            out[key] = seeded_tensor(key, tuple(value.shape), seed).to(value.dtype)
        else:
            out[key] = value.clone()
    return out
