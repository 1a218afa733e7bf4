"""Semantic-SAM model sizes as a nested dict, named as in the reference yaml.

The default is SoM's configuration (`semantic_sam_only_sa-1b_swinL.yaml`, the one the checkpoint
`swinl_only_sam_many2many.pth` was trained with). Only the entries inference needs are here;
`model_config(overrides)` deep-merges a partial dict of the same shape, so a small configuration
for tests and parity fixtures builds with the same code. Pure Python: no torch import.
"""

from __future__ import annotations

import copy

DEFAULT_CONFIG: dict = {
    "MODEL": {
        "DIM_PROJ": 512,
        "BACKBONE": {
            "SWIN": {
                "PATCH_SIZE": 4,
                "EMBED_DIM": 192,
                "DEPTHS": [2, 2, 18, 2],
                "NUM_HEADS": [6, 12, 24, 48],
                "WINDOW_SIZE": 12,
                "MLP_RATIO": 4.0,
                "QKV_BIAS": True,
                "QK_SCALE": None,
                "APE": False,
                "PATCH_NORM": True,
                "OUT_FEATURES": ["res2", "res3", "res4", "res5"],
            },
        },
        "ENCODER": {
            "CONVS_DIM": 256,
            "MASK_DIM": 256,
            "NORM": "GN",
            "IN_FEATURES": ["res2", "res3", "res4", "res5"],
            "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": ["res3", "res4", "res5"],
            "COMMON_STRIDE": 4,
            "TRANSFORMER_ENC_LAYERS": 6,
            "TOTAL_NUM_FEATURE_LEVELS": 4,
            "FEATURE_ORDER": "low2high",
        },
        "DECODER": {
            "HIDDEN_DIM": 256,
            "NHEADS": 8,
            "DIM_FEEDFORWARD": 2048,
            "DEC_LAYERS": 9,
            "NUM_INTERACTIVE_TOKENS": 6,
            "TOTAL_NUM_FEATURE_LEVELS": 4,
            "SIZE_DIVISIBILITY": 32,
        },
    },
    "INPUT": {
        "PIXEL_MEAN": [123.675, 116.280, 103.530],
        "PIXEL_STD": [58.395, 57.120, 57.375],
    },
}

# a small model of the same structure (fast on a CPU): tests, random-weight try-outs, parity fixtures
SMALL_OVERRIDES: dict = {
    "MODEL": {
        "DIM_PROJ": 64,
        "BACKBONE": {"SWIN": {"EMBED_DIM": 32, "DEPTHS": [2, 2, 2, 2], "NUM_HEADS": [1, 2, 4, 8]}},
        "ENCODER": {"CONVS_DIM": 64, "MASK_DIM": 64, "TRANSFORMER_ENC_LAYERS": 2},
        "DECODER": {"HIDDEN_DIM": 64, "DIM_FEEDFORWARD": 128, "DEC_LAYERS": 2},
    },
}

# points sampled per head, level and query by every deformable attention (the reference's default)
DEFORM_POINTS = 4
# the reference resizes the image's short side to this before inference (SoM's `text_size`)
SHORT_SIDE_PX = 640


def _merge(base: dict, overrides: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"unknown Semantic-SAM config entry {path}{key!r}; known here: {sorted(out)}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"config entry {path}{key} must be a dict, got {type(value).__name__}")
            out[key] = _merge(out[key], value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config(overrides: dict | None = None) -> dict:
    """SoM's Semantic-SAM configuration with `overrides` (same nesting and names) merged in.

    Unknown names raise ValueError, so a typo in a small test configuration cannot silently
    build the full-size model."""
    cfg = _merge(DEFAULT_CONFIG, overrides or {})
    enc = cfg["MODEL"]["ENCODER"]
    if enc["FEATURE_ORDER"] != "low2high":
        raise ValueError(f"only FEATURE_ORDER 'low2high' (the reference's) is supported, got {enc['FEATURE_ORDER']!r}")
    if enc["TOTAL_NUM_FEATURE_LEVELS"] != cfg["MODEL"]["DECODER"]["TOTAL_NUM_FEATURE_LEVELS"]:
        raise ValueError("MODEL.ENCODER and MODEL.DECODER TOTAL_NUM_FEATURE_LEVELS must agree")
    if cfg["MODEL"]["BACKBONE"]["SWIN"]["APE"]:
        raise ValueError("APE (absolute position embedding) is not used by Semantic-SAM and not supported")
    return cfg
