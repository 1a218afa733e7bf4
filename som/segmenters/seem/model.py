"""The SEEM network (Focal backbone, pixel decoder, SEEM decoder, text encoder) with the
reference's state-dict key names, and strict loading of its checkpoint file.

Keys: `backbone.*`, `sem_seg_head.pixel_decoder.*`, `sem_seg_head.predictor.*` (the text
encoder under `sem_seg_head.predictor.lang_encoder.*`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from som.segmenters.seem.config import model_config
from som.segmenters.seem.decoder import SeemDecoder
from som.segmenters.seem.focal import FocalNet
from som.segmenters.seem.pixel_decoder import PixelDecoder
from som.segmenters.seem.text import LanguageEncoder

# Buffers the official file carries that inference never reads: the training loss's class
# weights and the stroke-dilation kernel. Named here so any other mismatch is an error.
IGNORED_KEYS = ("criterion.empty_weight", "dilation_kernel")


class SemSegHead(nn.Module):
    def __init__(self, cfg: dict, in_channels: dict[str, int]):
        super().__init__()
        self.pixel_decoder = PixelDecoder(cfg, in_channels)
        self.predictor = SeemDecoder(cfg, LanguageEncoder(cfg), cfg["MODEL"]["ENCODER"]["CONVS_DIM"])


class SeemModel(nn.Module):
    """(B, 3, H, W) float RGB 0..255 -> features and decoder predictions (see `forward`)."""

    def __init__(self, cfg: Mapping | None = None):
        super().__init__()
        self.cfg = model_config(cfg)
        self.backbone = FocalNet(self.cfg)
        channels = dict(zip(("res2", "res3", "res4", "res5"), self.backbone.num_features))
        self.sem_seg_head = SemSegHead(self.cfg, channels)
        self.register_buffer("pixel_mean", torch.tensor(self.cfg["INPUT"]["PIXEL_MEAN"]).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(self.cfg["INPUT"]["PIXEL_STD"]).view(-1, 1, 1), False)
        self.size_divisibility = self.cfg["MODEL"]["DECODER"]["SIZE_DIVISIBILITY"]

    @staticmethod
    def num_classes_for(cfg: Mapping | None) -> int:
        return model_config(cfg)["MODEL"]["ENCODER"]["NUM_CLASSES"]

    @property
    def lang_encoder(self) -> LanguageEncoder:
        return self.sem_seg_head.predictor.lang_encoder

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB 0..255 -> (1, 3, Hp, Wp) normalised, zero-padded right/bottom to a
        multiple of SIZE_DIVISIBILITY (padding after normalisation, as the reference)."""
        x = (image.float() - self.pixel_mean) / self.pixel_std
        d = self.size_divisibility
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % d, 0, (-h) % d))[None]

    def features(self, x: torch.Tensor):
        """Normalised padded batch -> (mask_features, multi-scale features coarse to fine)."""
        mask_features, _, multi_scale = self.sem_seg_head.pixel_decoder(self.backbone(x))
        return mask_features, multi_scale


def checkpoint_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a SEEM checkpoint file (a plain dict of tensors, or one under 'model').
    Raises ValueError naming the file when it is unreadable, truncated or not a state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"SEEM checkpoint not found: {path}") from None
    except Exception as e:  # a cut or foreign file fails deep in torch with many error types
        raise ValueError(f"{path} is not a readable SEEM checkpoint (truncated or wrong file?): {str(e).splitlines()[0]}") from None
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a SEEM state dict (a mapping of key names to tensors)")
    return dict(state)


def ignored_key(key: str) -> bool:
    return key in IGNORED_KEYS


def load_state(model: SeemModel, state: Mapping[str, torch.Tensor], source: str = "checkpoint", assign: bool = False) -> None:
    """Load by key name; every model key must be there with its shape, and every file key must
    be a model key or a known unused one. Otherwise ONE ValueError lists all mismatches."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own and not ignored_key(k))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or wrong_shape:
        def listed(title, keys):
            shown = ", ".join(keys[:12]) + (f" ... (+{len(keys) - 12} more)" if len(keys) > 12 else "")
            return f"{len(keys)} {title}: {shown}" if keys else ""

        parts = [listed("missing keys", missing), listed("unexpected keys", unexpected), listed("wrong shapes", wrong_shape)]
        raise ValueError(f"{source} does not fit this SEEM model: " + "; ".join(p for p in parts if p))
    model.load_state_dict({k: state[k] for k in own}, strict=True, assign=assign)


def load_model(path: str | Path, cfg: Mapping | None = None) -> SeemModel:
    """A SEEM model in eval mode with the weights of the checkpoint at `path`. The model is
    built without memory (meta device) and takes the file's tensors, so no time goes into a
    random initialisation that would be overwritten."""
    state = checkpoint_state(path)
    with torch.device("meta"):
        model = SeemModel(cfg)
    load_state(model, state, str(path), assign=True)
    model.register_buffer("pixel_mean", torch.tensor(model.cfg["INPUT"]["PIXEL_MEAN"]).view(-1, 1, 1), False)
    model.register_buffer("pixel_std", torch.tensor(model.cfg["INPUT"]["PIXEL_STD"]).view(-1, 1, 1), False)
    return model.float().eval()
