"""SEEM model sizes and inference constants, keyed like the reference's yaml.

`SOM_CONFIG` holds the entries of SoM's `seem_focall_unicl_lang_v1.yaml` that shape the network
or its inference (Focal-L backbone, 512-wide pixel decoder and SEEM decoder, 12-layer CLIP text
encoder). `model_config(overrides)` deep-merges a partial dict with the same key names over it,
so a small test config states only what differs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

SOM_CONFIG: dict = {
    "MODEL": {
        "DIM_PROJ": 512,
        "TEXT": {"CONTEXT_LENGTH": 77, "WIDTH": 512, "HEADS": 8, "LAYERS": 12, "AUTOGRESSIVE": True},
        "BACKBONE": {
            "FOCAL": {
                "PATCH_SIZE": 4,
                "EMBED_DIM": 192,
                "DEPTHS": [2, 2, 18, 2],
                "FOCAL_LEVELS": [4, 4, 4, 4],
                "FOCAL_WINDOWS": [3, 3, 3, 3],
                "MLP_RATIO": 4.0,
                "PATCH_NORM": True,
                "USE_CONV_EMBED": True,
                "SCALING_MODULATOR": True,
                "USE_POSTLN": True,
                "USE_POSTLN_IN_MODULATION": False,
                "USE_LAYERSCALE": True,
                "OUT_FEATURES": ["res2", "res3", "res4", "res5"],
                "OUT_INDICES": [0, 1, 2, 3],
            }
        },
        "ENCODER": {
            "NUM_CLASSES": 133,
            "CONVS_DIM": 512,
            "MASK_DIM": 512,
            "NORM": "GN",
            "IN_FEATURES": ["res2", "res3", "res4", "res5"],
            "TRANSFORMER_ENC_LAYERS": 6,
        },
        "DECODER": {
            "HIDDEN_DIM": 512,
            "NUM_OBJECT_QUERIES": 101,
            "NHEADS": 8,
            "DIM_FEEDFORWARD": 2048,
            "DEC_LAYERS": 10,  # the reference builds DEC_LAYERS - 1 layers
            "MAX_SPATIAL_LEN": [512, 512, 512, 512],
            "PRE_NORM": False,
            "ENFORCE_INPUT_PROJ": False,
            "SIZE_DIVISIBILITY": 32,
            "TEST": {"OVERLAP_THRESHOLD": 0.8, "OBJECT_MASK_THRESHOLD": 0.8},
        },
    },
    "ATTENTION_ARCH": {"SPATIAL_MEMORIES": 32, "QUERY_NUMBER": 3},
    "INPUT": {"PIXEL_MEAN": [123.675, 116.280, 103.530], "PIXEL_STD": [58.395, 57.120, 57.375]},
}


def merged(base: Mapping, overrides: Mapping) -> dict:
    """A deep copy of `base` with `overrides` merged in, key by key (nested dicts merged too)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_config(overrides: Mapping | None = None) -> dict:
    """SoM's SEEM config with `overrides` (same key names, any subset) merged in. Keys the
    reference yaml has but that do not shape inference (losses, datasets) are accepted and ignored."""
    return merged(SOM_CONFIG, overrides or {})
