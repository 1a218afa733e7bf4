"""Reading and strictly loading Semantic-SAM checkpoints (the official file format).

The official `swinl_only_sam_many2many.pth` holds the reference's `BaseModel` state: every key is
the model's own key with a `model.` prefix, optionally wrapped in a top-level {"model": ...}
(the reference loader accepts both). Unlike the reference loader, which skips what does not
match, loading here is strict: any missing, unexpected or mis-shaped key is one ValueError that
names them, so a wrong file or a wrong configuration cannot run with half its weights random.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

KEY_PREFIX = "model."
CHECKPOINT_FILE = "swinl_only_sam_many2many.pth"
FIX_HINT = "get the official file with ./download_ckpt.sh semantic-sam, or make a random-weight one with " \
    "python -m som.segmenters.semantic_sam.random_checkpoint OUT.pth"
SHOWN_KEYS = 8  # keys named per kind of mismatch in an error message


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state in an official-format file, keys without the `model.` prefix.

    Raises ValueError naming the file when it cannot be read (truncated, not a torch file,
    not a state dict)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - garbage makes the unpickler fail in many ways (KeyError, struct.error, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        size = os.path.getsize(path) if os.path.exists(path) else 0
        unsupported = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
        if unsupported:  # a complete file, but pickled objects beyond tensors and plain containers
            raise ValueError(
                f"{path} holds Python objects besides tensors, which are not loaded here (loading them could run "
                f"code from the file): {unsupported[0]}. Save only its state dict (torch.save(state_dict, path)); "
                f"{FIX_HINT}"
            ) from None
        raise ValueError(
            f"{path} ({size} bytes) is not a readable Semantic-SAM checkpoint: {reason}. A partial download "
            f"looks like this; {FIX_HINT}"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} is a torch file but not a Semantic-SAM state dict (a mapping of names to tensors); {FIX_HINT}")
    return {k.removeprefix(KEY_PREFIX): v for k, v in obj.items()}


def to_file_state(model_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model state -> what the official file holds: the same tensors under `model.`-prefixed keys."""
    return {KEY_PREFIX + k: v for k, v in model_state.items()}


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def check_keys(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str) -> None:
    """ValueError naming every missing, unexpected and mis-shaped key (up to SHOWN_KEYS of each)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{k} {tuple(given[k].shape)} (model {tuple(expected[k].shape)})"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} keys with other shapes: {_listing(shapes)}")
    if problems:
        raise ValueError(
            f"{source} does not match this Semantic-SAM configuration: " + "; ".join(problems)
            + f". Keys are compared without the '{KEY_PREFIX}' prefix; {FIX_HINT}"
        )


def load_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> torch.nn.Module:
    """Load `state` (model keys, no prefix) into `model` strictly; returns the model."""
    check_keys(model.state_dict(), state, source)
    model.load_state_dict(dict(state), strict=True)
    return model


def build_from_checkpoint(path: str | os.PathLike, config: dict | None = None) -> torch.nn.Module:
    """A SemanticSam (SoM's configuration, or `config` overrides) holding the file's weights.

    The model is built on the meta device and the file's tensors are assigned to it: no time is
    spent initialising 225M weights that the file replaces at once."""
    from som.segmenters.semantic_sam.config import model_config
    from som.segmenters.semantic_sam.model import SemanticSam

    state = read_checkpoint(path)
    with torch.device("meta"):
        model = SemanticSam(model_config(config))
    expected = model.state_dict()
    check_keys(expected, state, str(path))
    # assign keeps the file's dtypes: cast to the model's (a half-precision file still runs in fp32)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=True)
    return model
