"""Record Semantic-SAM parity fixtures from the reference implementation (run outside the project).

The reference (UX-Decoder/Semantic-SAM, branch `package`, the one SoM installs) and detectron2
have no licence the project can use, so neither is vendored: this script takes their public git
repositories (a local clone or a URL), exports them into a scratch folder, patches only what
blocks a CPU run, and records what our own model must reproduce:

  - a small configuration of the SoM architecture (config.json: the reference yaml's names) with
    seeded random weights (`som/segmenters/seeded.py`, loaded by file path: no weights are saved),
  - per image: the reference preprocessing, backbone features, pixel-decoder outputs, decoder mask
    logits and IoU predictions for a batch of clicks and a batch of boxes, the full-size masks of
    the click batch, and the automatic generator's masks per SoM granularity level,
  - key names and shapes of the FULL SoM configuration (keys_full.json), for strict loading of
    `swinl_only_sam_many2many.pth`.

Patches (each must apply, or the script stops: a changed upstream must be looked at):
  - `.cuda()` / `.to('cuda')` removed (on CPU they are the identity);
  - the compiled MultiScaleDeformableAttention import failing leaves MSDA = None, so MSDeformAttn
    takes the reference's own pure-PyTorch `ms_deform_attn_core_pytorch` branch;
  - `from ops.modules import MSDeformAttn` made relative (it only resolves with the ops folder on
    sys.path), and the package's generator imports its amg helpers relatively (as SoM's copy does);
  - the pretrained Swin download is switched off in the config (LOAD_PRETRAINED: false), weights
    being seeded anyway.

Environment (python 3.11; the versions the committed fixtures were recorded with; torch, OpenCV and
Pillow matter for bit-equality, the rest only has to import):
  python -m venv /tmp/ssam-ref-venv
  /tmp/ssam-ref-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy==2.4.6 scipy==1.17.1 \
      pillow==12.3.0 pyyaml==6.0.4 opencv-python-headless==5.0.0.93 pycocotools==2.0.11 \
      matplotlib==3.11.2 timm==1.0.31 fvcore==0.1.5.post20221221 kornia==0.9.0 cloudpickle==3.1.3 \
      omegaconf==2.3.1 hydra-core==1.3.8 transformers==5.24.0
  /tmp/ssam-ref-venv/bin/python scripts/semantic_sam_reference.py \
      --mirror https://github.com/UX-Decoder/Semantic-SAM \
      --detectron2 https://github.com/facebookresearch/detectron2 --out tests/fixtures/semantic_sam

Timing: 30 s on 2 idle CPU cores (minutes when the machine is busy). Reruns give byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SEED = 16
REFERENCE_BRANCH = "package"
IMAGES = ("astronaut", "chelsea")  # square (no padding) and 451x300 -> 962x640 (padded to 992)

# the small configuration: only sizes shrink, every structural setting stays SoM's
SMALL_OVERRIDES = {
    "MODEL": {
        "DIM_PROJ": 64,
        "BACKBONE": {"SWIN": {"EMBED_DIM": 32, "DEPTHS": [2, 2, 2, 2], "NUM_HEADS": [1, 2, 4, 8]}},
        "ENCODER": {"CONVS_DIM": 64, "MASK_DIM": 64, "TRANSFORMER_ENC_LAYERS": 2},
        "DECODER": {"HIDDEN_DIM": 64, "DIM_FEEDFORWARD": 128, "DEC_LAYERS": 2},
    }
}

# prompts as fractions of the unpadded image: clicks (x, y) as SemanticSAMPredictor and the
# generator give them (each becomes the box (x, y, 0.005, 0.005), type 0), boxes (cx, cy, w, h)
# as SoM's box prompt gives them (type 1)
CLICKS_XY = [(0.5, 0.5), (0.25, 0.3), (0.7, 0.65), (0.1, 0.9), (0.85, 0.2)]
BOXES_CXCYWH = [(0.5, 0.5, 0.6, 0.8), (0.3, 0.35, 0.2, 0.25), (0.75, 0.7, 0.3, 0.4)]
CLICK_SIZE = 0.005

# SoM's generator call (task_adapter/semantic_sam/tasks/inference_semsam_m2m_auto.py) is
# points_per_side=32, pred_iou_thresh=0.88, stability_score_thresh=0.92, min_mask_region_area=10,
# points_per_batch 200 (default), box_nms_thresh 0.7 (default). Smaller here so the run is short
# and several batches (the last one partial) are exercised. Random weights predict IoUs around
# -0.9..-0.4 and stabilities around 0.2..0.6, so the thresholds sit near their medians.
GENERATOR = {
    "points_per_side": 6,
    "points_per_batch": 16,
    "pred_iou_thresh": -0.7,
    "stability_score_thresh": 0.42,
    "min_mask_region_area": 10,
}
# (SoM levels, box_nms_thresh) per run and image: each level alone (SoM's slider) on the first
# image, all six in SoM's order on both. Random weights scatter every mask over the whole image,
# so nearly every box IS the image and box NMS below 1.0 keeps one or two masks: most runs use
# 1.0 (NMS keeps all but still orders them by predicted IoU, and the clean-up's NMS puts
# unchanged masks first); the 0.995 runs are where NMS suppresses.
ALL_LEVELS = [6, 1, 2, 3, 4, 5]
GENERATOR_RUNS = {
    "astronaut": [*(([level], 1.0) for level in range(1, 7)), (ALL_LEVELS, 1.0), (ALL_LEVELS, 0.995)],
    "chelsea": [(ALL_LEVELS, 1.0), (ALL_LEVELS, 0.995)],
}


def generator_key(levels: list[int], box_nms_thresh: float) -> str:
    return f"generator.{'-'.join(map(str, levels))}.nms{box_nms_thresh}"


# spatial subsampling of the recorded maps: stride-s maps keep every (32 // s)-th pixel, so all
# feature maps are stored on the image's 32-pixel grid; decoder logits (stride 4) every 4th pixel,
# full-size masks every 16th
FEATURE_GRID_PX = 32
LOW_RES_STEP = 4
FULL_RES_STEP = 16


def export_tree(source: str, ref: str, paths: list[str], dest: pathlib.Path) -> str:
    """`git archive` of `paths` at `ref` from a local repository or a URL into dest; the commit."""
    repo = source
    if not pathlib.Path(source).exists():
        repo = str(dest) + ".git"
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", source, repo], check=True)
    commit = subprocess.run(["git", "-C", repo, "rev-parse", ref], check=True, capture_output=True, text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", repo, "archive", commit, "--", *paths], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def patch_file(path: pathlib.Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"patch target {old!r} not found in {path}: the reference changed, look at it")
    path.write_text(text.replace(old, new))


def patch_reference(root: pathlib.Path) -> None:
    """Only what blocks a CPU run without compiled ops or downloads (see the module docstring)."""
    pkg = root / "semantic_sam"
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        cpu = text.replace(".cuda()", "").replace(".to('cuda')", "")
        if cpu != text:
            path.write_text(cpu)
    patch_file(pkg / "body/encoder/ops/functions/ms_deform_attn_func.py",
                         "    raise ModuleNotFoundError(info_string)", "    MSDA = None")
    patch_file(pkg / "body/encoder/encoder_deform.py",
                         "from ops.modules import MSDeformAttn", "from .ops.modules import MSDeformAttn")
    patch_file(pkg / "body/decoder/utils/dino_decoder.py",
                         "from ops.modules import MSDeformAttn", "from ...encoder.ops.modules import MSDeformAttn")
    patch_file(pkg / "tasks/automatic_mask_generator.py",
                         "from utils.sam_utils.amg import", "from ..utils.sam_utils.amg import")


def load_seeded():
    spec = importlib.util.spec_from_file_location("seeded", REPO_ROOT / "som/segmenters/seeded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deep_update(base: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            deep_update(base[key], value)
        else:
            assert key in base, key
            base[key] = value


def build(root: pathlib.Path, overrides: dict):
    from semantic_sam import build_model
    from semantic_sam.BaseModel import BaseModel
    from semantic_sam.utils.arguments import load_opt_from_config_file

    opt = load_opt_from_config_file(str(root / "configs/semantic_sam_only_sa-1b_swinL.yaml"))
    opt["MODEL"]["BACKBONE"]["LOAD_PRETRAINED"] = False
    deep_update(opt, overrides)
    return BaseModel(opt, build_model(opt)).eval()


def reference_image(name: str) -> np.ndarray:
    """The reference preprocessing (prepare_image / SoM's text_size=640): short side to 640 with
    torchvision's Resize on a PIL image, bicubic; HWC uint8."""
    from PIL import Image
    from torchvision import transforms

    image = Image.open(REPO_ROOT / "assets" / f"{name}.jpg").convert("RGB")
    return np.asarray(transforms.Resize(640, interpolation=Image.BICUBIC)(image)).copy()


def grid_step(stride: int) -> int:
    return max(1, FEATURE_GRID_PX // stride)


def record_map(out: dict, name: str, value, step: int) -> None:
    """value (..., H, W): store every step-th pixel of the last two axes, and the full shape."""
    array = value.detach().numpy().astype(np.float32)
    out[name] = np.ascontiguousarray(array[..., ::step, ::step])
    out[f"{name}.full_shape"] = np.array(array.shape, dtype=np.int64)
    out[f"{name}.step"] = np.array(step, dtype=np.int64)


def mask_digest(mask: np.ndarray) -> np.ndarray:
    """SHA-256 of the mask's row-major packed bits: identical masks, identical digests (random
    weights give masks of scattered blobs, too many runs to store them all)."""
    packed = np.packbits(np.ascontiguousarray(mask, dtype=bool).reshape(-1))
    return np.frombuffer(hashlib.sha256(packed.tobytes()).digest(), dtype=np.uint8)


def record_prompts(model, features_in, image_hw, padded_hw, prompts, prompt_type, out, prefix) -> None:
    """Decoder outputs for one batch, as the reference's evaluate_demo runs it: the prompts are
    rescaled from the unpadded to the padded image, all go through the decoder together."""
    import torch

    mask_features, multi_scale = features_in
    h, w = image_hw
    ph, pw = padded_hw
    boxes = torch.tensor(prompts, dtype=torch.float32)
    scaled = boxes * torch.tensor([w, h, w, h], dtype=torch.float32) / torch.tensor([pw, ph, pw, ph], dtype=torch.float32)
    targets = [{"points": scaled, "pb": boxes.new_tensor([float(prompt_type)] * len(boxes))}]
    switch = {"part": False, "whole": False, "seg": True, "det": True}
    outputs, _ = model.sem_seg_head.predictor(multi_scale, mask_features, None, targets=targets, target_queries=None,
                                              target_vlp=None, task="demo", extra=switch)
    ious = outputs["pred_ious"][0]  # (P, tokens)
    logits = outputs["pred_masks"][0].view(ious.shape[0], ious.shape[1], *outputs["pred_masks"].shape[-2:])
    out[f"{prefix}.prompts"] = boxes.numpy()
    out[f"{prefix}.iou"] = ious.numpy().astype(np.float32)
    record_map(out, f"{prefix}.logits", logits, LOW_RES_STEP)


def record_image(base, model, name: str) -> tuple[dict, dict]:
    import torch
    from detectron2.structures import ImageList
    from semantic_sam.tasks.automatic_mask_generator import SemanticSamAutomaticMaskGenerator

    out: dict[str, np.ndarray] = {}
    image = reference_image(name)
    out["image_uint8"] = image
    h, w = image.shape[:2]
    chw = torch.from_numpy(image).permute(2, 0, 1)
    normalised = (chw.float() - model.pixel_mean) / model.pixel_std
    padded = ImageList.from_tensors([normalised], model.size_divisibility).tensor
    ph, pw = padded.shape[-2:]
    record_map(out, "input", padded[0], FEATURE_GRID_PX // 4)

    with torch.no_grad():
        feats = model.backbone(padded)
        for key, value in feats.items():
            record_map(out, f"backbone.{key}", value[0], grid_step(padded.shape[-1] // value.shape[-1]))
        mask_features, _, multi_scale = model.sem_seg_head.pixel_decoder.forward_features(feats, None)
        record_map(out, "encoder.mask_features", mask_features[0], grid_step(pw // mask_features.shape[-1]))
        for i, value in enumerate(multi_scale):
            record_map(out, f"encoder.multi_scale.{i}", value[0], grid_step(pw // value.shape[-1]))

        clicks = [(x, y, CLICK_SIZE, CLICK_SIZE) for x, y in CLICKS_XY]
        record_prompts(model, (mask_features, multi_scale), (h, w), (ph, pw), clicks, 0, out, "clicks")
        record_prompts(model, (mask_features, multi_scale), (h, w), (ph, pw), BOXES_CXCYWH, 1, out, "boxes")
        # the first click decoded alone: other masks than in its batch (no attention mask)
        record_prompts(model, (mask_features, multi_scale), (h, w), (ph, pw), clicks[:1], 0, out, "click0_alone")

        # the full-size path: evaluate_demo upsamples to the padded size, crops, keeps the size
        targets = [{"points": torch.tensor(clicks, dtype=torch.float32), "pb": torch.zeros(len(clicks))}]
        masks, ious = model.evaluate_demo([{"image": chw, "height": h, "width": w, "targets": targets}],
                                          mask_features=mask_features, multi_scale_features=multi_scale)
        record_map(out, "clicks.full_logits", masks.view(len(clicks), -1, h, w), FULL_RES_STEP)
        out["clicks.full_iou"] = ious[0].numpy().astype(np.float32)

        generated = {}
        for levels, box_nms_thresh in GENERATOR_RUNS[name]:
            generator = SemanticSamAutomaticMaskGenerator(base, level=list(levels), box_nms_thresh=box_nms_thresh, **GENERATOR)
            anns = generator.generate(chw)
            key = generator_key(levels, box_nms_thresh)
            out[f"{key}.sha256"] = np.array([mask_digest(a["segmentation"]) for a in anns], np.uint8).reshape(-1, 32)
            out[f"{key}.predicted_iou"] = np.array([a["predicted_iou"] for a in anns], np.float32)
            out[f"{key}.stability_score"] = np.array([a["stability_score"] for a in anns], np.float32)
            out[f"{key}.bbox_xywh"] = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
            out[f"{key}.point_coords"] = np.array([a["point_coords"][0] for a in anns], np.float32).reshape(-1, 4)
            out[f"{key}.area"] = np.array([a["area"] for a in anns], np.int64)
            generated[key] = len(anns)
    return out, generated


def check_not_degenerate(out: dict, name: str) -> None:
    for key, value in out.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise RuntimeError(f"{name}: {key} has non-finite values")
    for key, value in out.items():
        if key.endswith(".sha256") and len(value) == 0:
            raise RuntimeError(f"{name}: the generator left no mask in {key}: lower its thresholds")
    logits = out["clicks.logits"]
    positive = (logits > 0).mean(axis=(-1, -2))
    if (positive == 0).any() or (positive == 1).any():
        raise RuntimeError(f"{name}: some click masks are empty or full: {positive}")


def full_keys(root: pathlib.Path) -> dict:
    model = build(root, {})
    return {key: {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
            for key, value in model.model.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", required=True, help="UX-Decoder/Semantic-SAM: local git repository or URL")
    parser.add_argument("--detectron2", required=True, help="facebookresearch/detectron2: local git repository or URL")
    parser.add_argument("--out", default=str(REPO_ROOT / "tests/fixtures/semantic_sam"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="semantic-sam-reference-"))
    ref_root, d2_root = work / "semantic-sam", work / "detectron2"
    ref_commit = export_tree(args.mirror, REFERENCE_BRANCH, ["semantic_sam", "configs"], ref_root)
    d2_commit = export_tree(args.detectron2, "HEAD", ["detectron2", "projects/PointRend/point_rend"], d2_root)
    patch_reference(ref_root)
    sys.path[:0] = [str(ref_root), str(d2_root)]

    import torch

    torch.manual_seed(0)  # nothing at inference draws random numbers; this only pins the build
    seeded = load_seeded()
    base = build(ref_root, SMALL_OVERRIDES)
    base.model.load_state_dict(seeded.seeded_state_dict(base.model.state_dict(), SEED), strict=True)

    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in IMAGES:
        arrays, counts[name] = record_image(base, base.model, name)
        check_not_degenerate(arrays, name)
        np.savez_compressed(out_dir / f"{name}.npz", **arrays)

    config = {
        "seed": SEED,
        "overrides": SMALL_OVERRIDES,
        "images": list(IMAGES),
        "short_side_px": 640,
        "clicks_xy": CLICKS_XY,
        "click_size": CLICK_SIZE,
        "boxes_cxcywh": BOXES_CXCYWH,
        "generator": GENERATOR,
        "generator_runs": {name: [{"levels": levels, "box_nms_thresh": nms, "key": generator_key(levels, nms)}
                                  for levels, nms in runs] for name, runs in GENERATOR_RUNS.items()},
        "generator_mask_counts": counts,
        "feature_grid_px": FEATURE_GRID_PX,
        "low_res_step": LOW_RES_STEP,
        "full_res_step": FULL_RES_STEP,
        "reference": {"repository": "UX-Decoder/Semantic-SAM", "branch": REFERENCE_BRANCH, "commit": ref_commit,
                      "detectron2_commit": d2_commit, "torch": torch.__version__},
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    keys = {
        "checkpoint_format": (
            "BaseModel.from_pretrained: torch.load(file); if it has an entry 'model', that entry is the state; "
            "only keys starting with 'model.' are kept, with that prefix removed; they are matched to the "
            "model's own keys by exact name and shape (align_and_update_state_dicts), then load_state_dict(strict=False)."
        ),
        "keys": full_keys(ref_root),
    }
    (out_dir / "keys_full.json").write_text(json.dumps(keys, indent=0) + "\n")
    print(json.dumps({"work": str(work), "generator_mask_counts": counts}, indent=1))


if __name__ == "__main__":
    main()
