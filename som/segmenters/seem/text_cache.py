"""Disk cache of class text embeddings, so the COCO names are encoded once per checkpoint.

Panoptic marks need every class name put through 81 prompt templates and the 12-layer text
encoder: 10773 sentences, minutes on a small CPU. The result depends only on the text encoder's
weights and the sentences, so it is stored under a key made from both:
`$SOM_CACHE_DIR` (default `$XDG_CACHE_HOME/som`, else `~/.cache/som`) / `seem-text-<key>.pt`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

CACHE_DIR_ENV = "SOM_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "som"


def weights_digest(module: nn.Module) -> str:
    """Hex digest of a module's tensors (names, shapes, dtypes, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def entry_path(weights: str, prompts_per_class: list[list[str]], folder: Path | None = None) -> Path:
    key = hashlib.blake2b((weights + json.dumps(prompts_per_class)).encode(), digest_size=16).hexdigest()
    return (folder or cache_dir()) / f"seem-text-{key}.pt"


def load(path: Path) -> torch.Tensor | None:
    """The cached (K, D) tensor, or None when absent or unreadable (then it is recomputed)."""
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # absent, cut by a crash, or foreign: recompute
        return None
    return value if isinstance(value, torch.Tensor) else None


def store(path: Path, value: torch.Tensor) -> None:
    """Write atomically (a reader never sees half a file); a read-only cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(value.detach().to("cpu"), tmp)
        os.replace(tmp, path)
    except OSError:
        pass
