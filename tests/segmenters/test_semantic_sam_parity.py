"""Our Semantic-SAM computes what the reference implementation computes (seeded random weights).

tests/fixtures/semantic_sam/ holds what scripts/semantic_sam_reference.py recorded from
UX-Decoder/Semantic-SAM (CPU, fp32) for a small configuration of SoM's architecture whose every
weight comes from som.segmenters.seeded with the seed in config.json; the README there lists
each array. Here the same weights go into our model, which must give: the same preprocessed
input, backbone features, pixel-decoder outputs, decoder logits and IoU predictions for a batch
of clicks and a batch of boxes (within 1e-4), the same full-size logits, and bit-identical masks
from the automatic generator at every SoM level. The full SoM configuration's state-dict keys and
shapes must equal the reference's, so the official checkpoint loads strictly by name.

Nothing here skips: a model that cannot be imported or built fails the tests.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from som.segmenters.seeded import seeded_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "semantic_sam"
ASSETS = Path(__file__).resolve().parents[2] / "assets"
CONFIG = json.loads((FIXTURES / "config.json").read_text())
ATOL = 1e-4  # fp32; recorded values stay under 20 (features under 5, logits under 17), so no rtol is needed


@functools.cache
def recorded(image: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{image}.npz"))


def assert_close(ours: torch.Tensor, ref: dict, name: str) -> None:
    """ours (the full map, batch axis of 1 dropped) against the recorded every-step-th-pixel sample."""
    ours = ours.detach().float()
    full_shape = tuple(int(v) for v in ref[f"{name}.full_shape"])
    assert tuple(ours.shape) == full_shape, f"{name}: shape {tuple(ours.shape)}, reference {full_shape}"
    step = int(ref[f"{name}.step"])
    sample = ours[..., ::step, ::step].numpy()
    diff = np.abs(sample - ref[name]).max()
    assert diff <= ATOL, f"{name}: max |ours - reference| = {diff:.3g} > {ATOL} (values up to {np.abs(ref[name]).max():.3g})"


@pytest.fixture(scope="module")
def model():
    from som.segmenters.semantic_sam.config import model_config
    from som.segmenters.semantic_sam.model import SemanticSam

    net = SemanticSam(model_config(CONFIG["overrides"])).eval()
    net.load_state_dict(seeded_state_dict(net.state_dict(), CONFIG["seed"]), strict=True)
    return net


@pytest.fixture(scope="module")
def encoded(model):
    """image name -> our ImageFeatures of its recorded model input (each image encoded once)."""
    cache = {}

    def get(image: str):
        if image not in cache:
            with torch.no_grad():
                cache[image] = model.encode(recorded(image)["image_uint8"])
        return cache[image]

    return get


@pytest.fixture(scope="module", params=CONFIG["images"])
def case(request, model, encoded):
    """(name, recorded arrays, our preprocessed input, our backbone features, our ImageFeatures)."""
    ref = recorded(request.param)
    with torch.no_grad():
        x, _ = model.preprocess(ref["image_uint8"])
        backbone = model.backbone(x)
    return request.param, ref, x, backbone, encoded(request.param)


def test_preprocessing_matches(case):
    from som.segmenters.semantic_sam.reference_amg import resize_short_side

    name, ref, x, _, _ = case
    original = np.asarray(Image.open(ASSETS / f"{name}.jpg").convert("RGB"))
    resized = resize_short_side(original, CONFIG["short_side_px"])
    assert resized.shape == ref["image_uint8"].shape
    assert np.array_equal(resized, ref["image_uint8"]), "resize differs from the reference's PIL bicubic Resize(640)"
    assert_close(x[0], ref, "input")


def test_backbone_features_match(case):
    _, ref, _, backbone, _ = case
    names = sorted(k[len("backbone."):] for k in ref if k.startswith("backbone.") and k.count(".") == 1)
    assert sorted(backbone) == names == ["res2", "res3", "res4", "res5"]
    for key in names:
        assert_close(backbone[key][0], ref, f"backbone.{key}")


def test_encoder_outputs_match(case):
    _, ref, _, _, feats = case
    assert_close(feats.mask_features[0], ref, "encoder.mask_features")
    levels = sorted(k for k in ref if k.startswith("encoder.multi_scale.") and k.count(".") == 2)
    assert len(feats.multi_scale) == len(levels) == 4
    for i, level in enumerate(feats.multi_scale):
        assert_close(level[0], ref, f"encoder.multi_scale.{i}")


@pytest.mark.parametrize("batch, prompt_type", [("clicks", 0), ("boxes", 1)])
def test_decoder_logits_and_iou_match(case, model, batch, prompt_type):
    """One call per batch: the prompts attend to each other, so the batch is what is compared."""
    _, ref, _, _, feats = case
    prompts = torch.from_numpy(ref[f"{batch}.prompts"])
    kinds = torch.full((len(prompts),), prompt_type, dtype=torch.long)
    with torch.no_grad():
        logits, iou = model.decode(feats, prompts, kinds)
    assert_close(logits, ref, f"{batch}.logits")
    assert iou.shape == ref[f"{batch}.iou"].shape
    np.testing.assert_allclose(iou.numpy(), ref[f"{batch}.iou"], rtol=0, atol=ATOL)


def test_click_alone_matches_and_differs_from_its_batch(case, model):
    """The decoder has no attention mask between prompts, so a click decoded alone gets other
    masks than in a batch: alone it must match the reference alone, and differ from its batch."""
    _, ref, _, _, feats = case
    with torch.no_grad():
        alone, iou = model.decode(feats, torch.from_numpy(ref["click0_alone.prompts"]))
    assert_close(alone, ref, "click0_alone.logits")
    np.testing.assert_allclose(iou.numpy(), ref["click0_alone.iou"], rtol=0, atol=ATOL)
    step = int(ref["clicks.logits.step"])
    batched = ref["clicks.logits"][0]
    assert np.abs(alone[0, :, ::step, ::step].numpy() - batched).max() > 1e3 * ATOL


def test_full_size_logits_match(case, model):
    from som.segmenters.semantic_sam.model import upsample_logits

    _, ref, _, _, feats = case
    with torch.no_grad():
        logits, iou = model.decode(feats, torch.from_numpy(ref["clicks.prompts"]))
        full = upsample_logits(logits, feats)
    assert_close(full, ref, "clicks.full_logits")
    np.testing.assert_allclose(iou.numpy(), ref["clicks.full_iou"], rtol=0, atol=ATOL)


def digest(mask: np.ndarray) -> bytes:
    return hashlib.sha256(np.packbits(np.ascontiguousarray(mask, dtype=bool).reshape(-1)).tobytes()).digest()


GENERATOR_RUNS = [(image, run) for image, runs in CONFIG["generator_runs"].items() for run in runs]


@pytest.mark.parametrize("image, run", GENERATOR_RUNS, ids=[f"{i}-{r['key'][len('generator.'):]}" for i, r in GENERATOR_RUNS])
def test_generator_masks_identical(model, encoded, image, run):
    from som.segmenters.semantic_sam.reference_amg import ReferenceAmgOptions, reference_masks

    ref = recorded(image)
    key = run["key"]
    opts = ReferenceAmgOptions(levels=tuple(run["levels"]), box_nms_thresh=run["box_nms_thresh"], **CONFIG["generator"])
    with torch.no_grad():
        got = reference_masks(model, ref["image_uint8"], opts, features=encoded(image))
    expected = [bytes(row) for row in ref[f"{key}.sha256"]]
    assert len(expected) > 0
    assert len(got.masks) == len(expected), f"{len(got.masks)} masks, reference {len(expected)}"
    np.testing.assert_array_equal(got.masks.reshape(len(got.masks), -1).sum(1), ref[f"{key}.area"])
    assert [digest(m) for m in got.masks] == expected, "masks differ from the reference's (same order)"
    x0, y0, x1, y1 = np.asarray(got.boxes_xyxy, np.float64).T
    np.testing.assert_array_equal(np.stack([x0, y0, x1 - x0, y1 - y0], 1), ref[f"{key}.bbox_xywh"])
    np.testing.assert_allclose(got.points_xy, ref[f"{key}.point_coords"][:, :2], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.iou, ref[f"{key}.predicted_iou"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(got.stability, ref[f"{key}.stability_score"], rtol=0, atol=1e-6)


def test_full_configuration_keys_and_shapes_match():
    """SoM's configuration (swinL, the official checkpoint's): same key names, shapes and dtypes."""
    from som.segmenters.semantic_sam.config import model_config
    from som.segmenters.semantic_sam.model import SemanticSam

    expected = json.loads((FIXTURES / "keys_full.json").read_text())["keys"]
    with torch.device("meta"):
        net = SemanticSam(model_config())
    ours = {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in net.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == [], "keys the reference has and we lack"
    assert sorted(set(ours) - set(expected)) == [], "keys we have and the reference lacks"
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}
