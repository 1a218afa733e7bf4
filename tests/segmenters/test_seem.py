"""SEEM segmenter: registry, checkpoint errors, tokenizer, and every inference path end to end
on real photos with a small seeded-random model (the real checkpoint cannot be had here;
equality with the reference is tests/segmenters/test_seem_parity.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("open_clip")

from som.segmenters import availability, build_segmenter  # noqa: E402
from som.segmenters.seeded import seeded_state_dict  # noqa: E402
from som.segmenters.seem.model import SeemModel, checkpoint_state, load_model  # noqa: E402
from som.segmenters.seem.random_checkpoint import random_state  # noqa: E402
from som.segmenters.seem.tokenizer import default_tokenizer  # noqa: E402

SMALL = {
    "MODEL": {
        "DIM_PROJ": 64,
        "TEXT": {"WIDTH": 64, "HEADS": 4, "LAYERS": 2},
        "BACKBONE": {"FOCAL": {"EMBED_DIM": 32, "DEPTHS": [1, 1, 2, 1]}},
        "ENCODER": {"CONVS_DIM": 64, "MASK_DIM": 64, "TRANSFORMER_ENC_LAYERS": 1},
        "DECODER": {"HIDDEN_DIM": 64, "NUM_OBJECT_QUERIES": 16, "NHEADS": 4, "DIM_FEEDFORWARD": 128, "DEC_LAYERS": 4},
    },
    "ATTENTION_ARCH": {"SPATIAL_MEMORIES": 4},
}
ASSETS = Path(__file__).resolve().parents[2] / "assets"
# random weights give flat class probabilities and overlapping masks: thresholds low enough
# that the panoptic path keeps segments (the defaults are the reference's 0.8 / 0.8)
LOW = {"object_mask_threshold": 0.2, "overlap_threshold": 0.02}


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Text-embedding disk cache in a temporary folder, never the user's."""
    monkeypatch.setenv("SOM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "som-cache"))


def photo(name="coffee.jpg"):
    return np.asarray(Image.open(ASSETS / name).convert("RGB"))


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    state = random_state(3, SMALL)
    state["sem_seg_head.predictor.lang_encoder.logit_scale"] = torch.tensor(4.0)  # sharper class scores
    path = tmp_path_factory.mktemp("seem") / "seem_small.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def seg(small_ckpt):
    return build_segmenter("seem", device="cpu", checkpoint=small_ckpt, config=SMALL, input_short_side=192, **LOW)


def test_registry_says_what_is_missing_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SOM_CHECKPOINT_DIR", str(tmp_path))
    ok, why = availability("seem")
    assert not ok
    assert str(tmp_path / "seem_focall_v1.pt") in why and "download_ckpt.sh seem" in why
    assert "random_checkpoint" in why
    with pytest.raises(ValueError, match="download_ckpt.sh seem"):
        build_segmenter("seem", device="cpu")


def test_tokenizer_matches_open_clip_ids_padding_and_truncation():
    import open_clip

    texts = ["a photo of a dog.", "The  RED mug!", "don't stop-sign 42 ½", "x" * 400, "café déjà vu"]
    ids, mask = default_tokenizer()(texts, 77)
    ref = open_clip.tokenize(texts, 77).numpy()
    ref[ref == 0] = 49407  # the reference pads with the end token, open_clip with 0
    np.testing.assert_array_equal(ids, ref)
    assert (mask.sum(1) == (open_clip.tokenize(texts, 77).numpy() != 0).sum(1)).all()
    assert ids[0, 0] == 49406 and mask[3].sum() == 77 and ids[3, -1] == 49407


def test_strict_load_names_missing_unexpected_and_misshapen_keys(small_ckpt, tmp_path):
    state = checkpoint_state(small_ckpt)
    del state["backbone.norm0.weight"]
    state["sem_seg_head.extra.weight"] = torch.zeros(2)
    state["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError) as err:
        load_model(bad, SMALL)
    msg = str(err.value)
    assert "backbone.norm0.weight" in msg and "sem_seg_head.extra.weight" in msg
    assert "sem_seg_head.predictor.query_feat.weight (3, 3)" in msg and str(bad) in msg


def test_truncated_or_wrong_file_is_a_clear_error(small_ckpt, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(small_ckpt.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="not a readable SEEM checkpoint"):
        load_model(cut, SMALL)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable SEEM checkpoint"):
        load_model(text, SMALL)
    with pytest.raises(ValueError, match="fit this SEEM model"):
        load_model(small_ckpt)  # small file, full-size model


def test_model_keys_are_the_reference_layout():
    keys = SeemModel(SMALL).state_dict().keys()
    for key in [
        "backbone.patch_embed.proj.weight",
        "backbone.layers.2.blocks.1.modulation.focal_layers.3.0.weight",
        "backbone.layers.0.downsample.norm.weight",
        "backbone.norm3.bias",
        "sem_seg_head.pixel_decoder.adapter_1.norm.weight",
        "sem_seg_head.pixel_decoder.layer_4.weight",
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.in_proj_weight",
        "sem_seg_head.predictor.mask_sptial_embed.2",
        "sem_seg_head.predictor.lang_encoder.lang_encoder.resblocks.1.mlp.c_proj.weight",
        "sem_seg_head.predictor.lang_encoder.logit_scale",
    ]:
        assert key in keys, key


def test_open_vocabulary_panoptic_marks_carry_the_given_classes(seg):
    image = photo()
    steps = []
    regions = seg.segment_everything(image, 2, classes=["mug", "table", "window"], progress=lambda f, what: steps.append((f, what)))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("sentences" in what for _, what in steps)  # class names encoded: said how far
    assert len(regions) >= 1 and regions.image_hw == image.shape[:2]
    assert set(regions.categories) <= {"mug", "table", "window"}
    assert len(regions.category_scores) == len(regions) and ((regions.category_scores > 0.2) & (regions.category_scores <= 1)).all()
    # a panoptic result is a partition: no pixel in two regions
    assert (sum(regions.mask(k).astype(int) for k in range(len(regions))) <= 1).all()
    assert seg.class_embeddings(("mug", "table", "window")) is seg.class_embeddings(("mug", "table", "window"))
    with pytest.raises(ValueError, match="non-empty strings"):
        seg.segment_everything(image, 2, classes=["mug", " "])


def test_class_embeddings_are_read_back_from_the_disk_cache(seg, small_ckpt, monkeypatch):
    names = ("cup", "saucer", "spoon")
    first = seg.class_embeddings(names)
    fresh = build_segmenter("seem", device="cpu", checkpoint=small_ckpt, config=SMALL, input_short_side=192, **LOW)

    def no_encoding(*args, **kwargs):
        raise AssertionError("class names were encoded again")

    monkeypatch.setattr(fresh.model.lang_encoder, "class_embeddings", no_encoding)
    assert torch.equal(fresh.class_embeddings(names), first)
    with pytest.raises(AssertionError, match="encoded again"):  # a new list is not in the cache
        fresh.class_embeddings(("cup",))


def test_levels_keep_a_flat_partition_and_wholes_drop_small_segments(seg):
    image = photo("chelsea.jpg")
    objects = seg.segment_everything(image, "objects", classes=["cat", "floor"])
    predictor = seg.model.sem_seg_head.predictor
    calls = []
    hook = predictor.register_forward_hook(lambda *args: calls.append(1))
    try:  # another level of the same image and classes reuses the decoded queries
        wholes = seg.segment_everything(image, "wholes", classes=["cat", "floor"])
    finally:
        hook.remove()
    assert calls == []
    assert len(wholes) <= len(objects) and (wholes.parent == -1).all()
    assert (wholes.areas >= 0.004 * image.shape[0] * image.shape[1]).all()


def test_text_prompt_gives_one_region_named_by_the_text(seg):
    image = photo("astronaut.jpg")
    regions = seg.segment_text(image, "the astronaut's helmet")
    assert len(regions) == 1 and regions.image_hw == image.shape[:2]
    assert regions.categories == ["the astronaut's helmet"] and 0 < regions.category_scores[0] <= 1
    with pytest.raises(ValueError):
        seg.segment_text(image, "  ")


def test_click_and_box_prompts_give_one_region_with_a_coco_class(seg):
    from som.segmenters.seem.classes import COCO_PANOPTIC_CLASSES, display_name

    image = photo()
    click = seg.segment_prompts(image, np.array([[300, 200], [50, 50]]), np.array([1, 0]))
    box = seg.segment_prompts(image, box_xyxy=np.array([100, 80, 400, 300]))
    names = {display_name(c) for c in COCO_PANOPTIC_CLASSES}
    for regions in (click, box):
        assert len(regions) == 1 and regions.image_hw == image.shape[:2]
        assert regions.categories[0] in names and len(regions.category_scores) == 1
    # the same prompt on the same image is repeatable (spatial queries drawn from a fixed seed)
    again = seg.segment_prompts(image, np.array([[300, 200], [50, 50]]), np.array([1, 0]))
    assert np.array_equal(again.mask(0), click.mask(0))
    with pytest.raises(ValueError, match="positive point or a box"):
        seg.segment_prompts(image, np.array([[10, 10]]), np.array([0]))


def test_random_checkpoint_cli_writes_the_official_layout(tmp_path, monkeypatch):
    import som.segmenters.seem.random_checkpoint as rc

    monkeypatch.setattr(rc, "random_state", lambda seed: random_state(seed, SMALL))
    out = tmp_path / "ck" / "seem.pt"
    rc.main([str(out), "--seed", "5"])
    state = torch.load(out, weights_only=True)
    assert "criterion.empty_weight" in state and "dilation_kernel" in state
    model = load_model(out, SMALL)
    again = seeded_state_dict(SeemModel(SMALL).state_dict(), 5)
    assert torch.equal(model.state_dict()["backbone.norm1.weight"], again["backbone.norm1.weight"])


def test_bf16_autocast_runs_every_path_and_keeps_the_masks(seg, small_ckpt):
    """The autocast path CUDA uses (bf16 here on CPU): dtypes meet, masks stay close to fp32."""
    half = build_segmenter(
        "seem", device="cpu", checkpoint=small_ckpt, config=SMALL, input_short_side=192, precision="bf16", **LOW
    )
    image = photo()

    def iou(a, b):
        return (a & b).sum() / max((a | b).sum(), 1)

    for call in (
        lambda s: s.segment_text(image, "the mug"),
        lambda s: s.segment_prompts(image, np.array([[300, 200]])),
    ):
        assert iou(call(half).mask(0), call(seg).mask(0)) > 0.9
    assert len(half.segment_everything(image, 2, classes=["mug", "table"])) >= 1


# ---- through the product paths: som.mark, the marks file, the toolbox ----------------------


def test_mark_with_classes_names_the_marks_in_the_json(seg, tmp_path):
    from som.draw import MarkStyle
    from som.marksfile import regions_to_dict, write_marks
    from som.pipeline import mark

    result = mark(ASSETS / "coffee.jpg", segmenter=seg, granularity_level=2, classes="mug, table, window",
                  style=MarkStyle(names=True))
    regions = result.regions
    assert len(regions) >= 1 and set(regions.categories) <= {"mug", "table", "window"}
    assert result.settings["classes"] == ["mug", "table", "window"]
    doc = regions_to_dict(regions, result.settings)
    assert [m["category"] for m in doc["marks"]] == regions.categories
    assert all(0 < m["category_score"] <= 1 for m in doc["marks"])
    path = write_marks(tmp_path / "coffee.marks.json", regions, result.settings)
    from som.marksfile import read_marks

    assert read_marks(path).categories == regions.categories
    assert not np.array_equal(result.image, result.source)  # marks were drawn


def test_toolbox_text_click_box_and_stroke_add_named_regions(seg):
    from som.app.state import ToolboxSession

    session = ToolboxSession()
    session.load(str(ASSETS / "coffee.jpg"), name="coffee.jpg")
    try:
        session.add_text(seg, "the coffee cup")
        session.add_point(seg, 300.0, 200.0)
        session.add_box(seg, 20.0, 20.0, 200.0, 150.0)
        stroke = np.zeros((400, 600), bool)
        stroke[330:340, 380:580] = True  # a brush stroke along the bottom right
        session.add_stroke(seg, stroke)
        regions = session.regions()
        assert [g.kind for g in session.gestures] == ["text", "point", "box", "stroke"]
        assert regions.categories[0] == "the coffee cup"
        from som.segmenters.seem.classes import COCO_PANOPTIC_CLASSES, display_name

        coco = {display_name(c) for c in COCO_PANOPTIC_CLASSES}
        assert len(regions) == 4 and all(name in coco for name in regions.categories[1:])
        assert np.isfinite(regions.category_scores).all()
    finally:
        session.close()


def test_segmenter_options_reach_the_builder_and_unknown_ones_are_refused(small_ckpt, monkeypatch):
    monkeypatch.setenv("SOM_SEGMENTER_OPTIONS", "seem.object_mask_threshold=0.35 seem.overlap_threshold=0.1")
    built = build_segmenter("seem", device="cpu", checkpoint=small_ckpt, config=SMALL)
    assert (built.panoptic.object_threshold, built.panoptic.overlap_threshold) == (0.35, 0.1)
    with pytest.raises(ValueError, match="object_mask_threshold"):
        build_segmenter("seem", device="cpu", checkpoint=small_ckpt, config=SMALL, object_threshold=0.1)


def test_forget_images_drops_features_and_decoded_queries_but_keeps_class_names(seg):
    from som.app.serving import forget_images

    image = photo()
    seg.segment_everything(image, level=2, classes=["cup", "table"])
    assert len(seg._features) and len(seg._decoded) and seg._class_emb
    forget_images(seg)  # what the apps call once no session is left
    assert not len(seg._features) and not len(seg._decoded) and seg._class_emb
