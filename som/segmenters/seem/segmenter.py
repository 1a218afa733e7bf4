"""SEEM as a som segmenter: panoptic marks with class names, open-vocabulary classes, text
prompts and click/box prompts.

Granularity levels (SEEM's panoptic output is one flat partition; there are no parts):
  1 parts   : panoptic with the object threshold lowered to (at most) 0.5: more, less certain segments
  2 objects : the reference's panoptic output (thresholds 0.8 / 0.8), as SoM draws it
  3 wholes  : as 2, without segments under the level's minimum area (0.4 % of the image)
  4 nested  : as 2 (flat: SEEM gives no part hierarchy)
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from som.regions import Regions
from som.segmenters.base import (
    DEFAULT_LEVEL,
    LruCache,
    ProgressFn,
    granularity,
    image_key,
)
from som.segmenters.seem import text_cache
from som.segmenters.seem.classes import (
    BACKGROUND,
    COCO_PANOPTIC_CLASSES,
    NUM_COCO_THINGS,
    display_name,
    prompts_for,
)
from som.segmenters.seem.inference import (
    PanopticOptions,
    grounding_match,
    panoptic_inference,
    select_spatial_masks,
    spatial_prompts,
    stroke_masks,
    upsample_logits,
)
from som.segmenters.seem.model import SeemModel
from som.segmenters.seem.tokenizer import default_tokenizer

INPUT_SHORT_SIDE = 640  # SoM resizes the short side to 640 before SEEM
PARTS_OBJECT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Features:
    """Pixel-decoder output for one image at the model's input size."""

    mask_features: torch.Tensor
    multi_scale: list[torch.Tensor]
    padded_hw: tuple[int, int]
    input_hw: tuple[int, int]  # the resized image inside the padding
    original_hw: tuple[int, int]


class SeemSegmenter:
    """A SEEM model with per-image feature and class-embedding caches."""

    knows_classes = True

    def __init__(
        self,
        name: str,
        model: SeemModel,
        device: str,
        precision: str = "auto",
        cache_size: int = 2,
        input_short_side: int = INPUT_SHORT_SIDE,
        panoptic: PanopticOptions | None = None,
        disk_cache: bool = True,
    ):
        if precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {precision!r}")
        self.name = name
        self.device = device
        self.model = model.to(device).eval()
        self.precision = precision
        self.input_short_side = input_short_side
        test = model.cfg["MODEL"]["DECODER"]["TEST"]
        self.panoptic = panoptic or PanopticOptions(test["OBJECT_MASK_THRESHOLD"], test["OVERLAP_THRESHOLD"])
        self.tokenizer = default_tokenizer()
        self._features = LruCache(cache_size)  # image key -> Features
        self._class_emb: dict[tuple[str, ...], torch.Tensor] = {}
        self._decoded = LruCache(cache_size)  # (image key, class names) -> decoded queries
        self._disk_cache = disk_cache
        self._text_weights: str | None = None  # digest of the text encoder, computed on first use
        self._lock = threading.RLock()

    # ---- precision ------------------------------------------------------
    def _autocast(self):
        """fp32 on CPU; autocast on CUDA (bf16 by default, fp16 when asked)."""
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        if self.precision == "auto" and str(self.device).startswith("cuda"):
            dtype = torch.bfloat16
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=dtype)

    # ---- caches ---------------------------------------------------------
    def input_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) -> the model input size: short side input_short_side, aspect kept (torchvision
        Resize(int) rounding: the long side truncated)."""
        h, w = hw
        s = self.input_short_side
        return (s, int(s * w / h)) if h <= w else (int(s * h / w), s)

    def forget_images(self) -> None:
        """Drop the per-image caches (features, decoded queries); class embeddings stay."""
        with self._lock:
            self._features.clear()
            self._decoded.clear()

    def embed(self, image: np.ndarray) -> None:
        """Compute and cache the image's features (the apps' warm-up, so the first click is fast)."""
        self.features(image)

    @torch.no_grad()
    def features(self, image: np.ndarray, key: str | None = None) -> Features:
        key = key or image_key(image)
        with self._lock:
            hit = self._features.get(key)
            if hit is not None:
                return hit
            h, w = self.input_size(image.shape[:2])
            resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))
            x = torch.from_numpy(resized.copy()).to(self.device).permute(2, 0, 1)
            with self._autocast():
                batch = self.model.preprocess(x)
                mask_features, multi_scale = self.model.features(batch)
            feats = Features(mask_features, multi_scale, tuple(batch.shape[-2:]), (h, w), tuple(image.shape[:2]))
            self._features.put(key, feats)
            return feats

    @torch.no_grad()
    def class_embeddings(self, classes: tuple[str, ...], progress: ProgressFn | None = None) -> torch.Tensor:
        """(K + 1, D) unit embeddings of the classes (template-averaged) and 'background'; cached
        per class list in memory (one segmenter holds one checkpoint) and on disk per (text
        encoder weights, sentences) (som.segmenters.seem.text_cache). progress: told how many
        sentences are encoded when they are (minutes on a small CPU for the COCO names)."""
        with self._lock:
            hit = self._class_emb.get(classes)
            if hit is not None:
                return hit
            prompts = [prompts_for(c) for c in classes] + [prompts_for(BACKGROUND)]
            path = None
            if self._disk_cache:
                if self._text_weights is None:
                    self._text_weights = text_cache.weights_digest(self.model.lang_encoder)
                path = text_cache.entry_path(self._text_weights, prompts)
                hit = text_cache.load(path)
            if hit is None:
                report = None
                if progress:
                    def report(done: int, total: int) -> None:
                        progress(0.5 + 0.4 * done / total, f"SEEM: class names, {done}/{total} sentences")
                hit = self.model.lang_encoder.class_embeddings(prompts, self.tokenizer, progress=report).float()
                if path is not None:
                    text_cache.store(path, hit)
            hit = hit.to(self.device)
            self._class_emb[classes] = hit
            return hit

    # ---- public API -----------------------------------------------------
    @torch.no_grad()
    def segment_everything(
        self,
        image: np.ndarray,
        level: int | str = DEFAULT_LEVEL,
        progress: ProgressFn | None = None,
        classes: list[str] | None = None,
    ) -> Regions:
        """Panoptic marks over the COCO classes, or only over `classes` (open vocabulary; None or
        [] means COCO), with Regions.categories / category_scores set per region."""
        g = granularity(level)
        if classes and not all(isinstance(c, str) and c.strip() for c in classes):
            raise ValueError(f"classes must be non-empty strings, got {classes!r}")
        # no classes (None or an empty list): the 133 COCO panoptic classes
        names = tuple(dict.fromkeys(c.strip() for c in classes)) if classes else COCO_PANOPTIC_CLASSES
        num_things = len(names) if classes else NUM_COCO_THINGS  # open vocabulary: every class a thing
        if progress:
            progress(0.0, "SEEM: image features")
        key = image_key(image)
        feats = self.features(image, key)
        out = self._decoded.get((key, names))
        if out is None:
            if progress:
                progress(0.5, "SEEM: class names")
            class_emb = self.class_embeddings(names, progress)
            with self._lock, self._autocast():
                out = self.model.sem_seg_head.predictor(feats.multi_scale, feats.mask_features, class_emb=class_emb)
            out = {k: out[k] for k in ("pred_logits", "pred_masks")}
            self._decoded.put((key, names), out)  # another level of the same marks needs no decoding
        options = self.panoptic
        if g.level == 1:
            options = dataclasses.replace(options, object_threshold=min(options.object_threshold, PARTS_OBJECT_THRESHOLD))
        seg, segments = panoptic_inference(
            out["pred_logits"][0], out["pred_masks"][0], num_things, feats.padded_hw, feats.input_hw, options
        )
        seg_np = seg.cpu().numpy()
        if feats.input_hw != feats.original_hw:
            oh, ow = feats.original_hw
            seg_np = np.asarray(Image.fromarray(seg_np).resize((ow, oh), Image.NEAREST))
        regions = Regions.from_label_map(seg_np)
        present = [s for s in segments if (seg_np == s.id).any()] if len(regions) != len(segments) else segments
        labels = [display_name(names[s.category]) for s in present]
        scores = np.array([s.score for s in present], np.float32)
        regions = regions.replace(scores=scores)
        if g.level == 3 and len(regions):
            keep = np.flatnonzero(regions.areas >= g.min_area_frac * seg_np.size)
            regions = regions[keep]
            labels, scores = [labels[k] for k in keep], scores[keep]
        if progress:
            progress(1.0, f"SEEM: {len(regions)} segments")
        return regions.replace(categories=labels, category_scores=scores)

    @torch.no_grad()
    def segment_text(self, image: np.ndarray, text: str) -> Regions:
        """The one region the text refers to (the reference's grounding: text tokens as
        queries, the best-matching grounding query's mask). categories = [text]."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("segment_text needs a non-empty text")
        feats = self.features(image)
        lang = self.model.lang_encoder
        ids, attention = self.tokenizer([text], lang.context_length)
        with self._lock, self._autocast():
            token_emb, sentence = lang.token_embeddings(torch.from_numpy(ids).to(self.device))
            tokens = token_emb[0][torch.from_numpy(attention[0]).bool().to(self.device)]
            out = self.model.sem_seg_head.predictor(feats.multi_scale, feats.mask_features, grounding_tokens=tokens)
        best, prob = grounding_match(out["pred_gtexts"][0], sentence[0], lang.logit_scale)
        logits = upsample_logits(out["pred_gmasks"][0, best : best + 1], feats.padded_hw, feats.input_hw, feats.original_hw)
        regions = Regions.from_masks((logits > 0).cpu().numpy(), scores=np.array([prob], np.float32))
        return regions.replace(categories=[text.strip()], category_scores=np.array([prob], np.float32))

    @torch.no_grad()
    def segment_prompts(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
    ) -> Regions:
        """SEEM's mask for one visual prompt: points (K, 2) with labels (1 positive, 0
        negative; a stroke is many points) and/or a box, drawn as strokes at the model's input
        size. The region's category is the COCO class its mask embedding scores best."""
        if points_xy is None and box_xyxy is None:
            raise ValueError("segment_prompts needs at least one point or a box")
        if points_xy is not None:
            points_xy = np.asarray(points_xy, np.float32).reshape(-1, 2)
            point_labels = np.ones(len(points_xy), np.int64) if point_labels is None else np.asarray(point_labels).reshape(-1)
            if len(point_labels) != len(points_xy):
                raise ValueError(f"{len(points_xy)} points but {len(point_labels)} point labels")
            if box_xyxy is None and not (point_labels > 0).any():
                raise ValueError("segment_prompts needs a positive point or a box")
        feats = self.features(image)
        scale = feats.input_hw[0] / feats.original_hw[0]
        pos, neg = stroke_masks(points_xy, point_labels, box_xyxy, scale, feats.padded_hw)
        if not pos.any():
            raise ValueError("the prompt lies outside the image")
        predictor = self.model.sem_seg_head.predictor
        prompts = spatial_prompts(
            torch.from_numpy(pos).to(self.device), torch.from_numpy(neg).to(self.device),
            predictor.max_spatial_len, predictor.num_queries, predictor.sample_size,
        )
        with self._lock, self._autocast():
            out = predictor(feats.multi_scale, feats.mask_features, spatial=prompts)
            logits, best = select_spatial_masks(out, feats.mask_features, prompts, predictor.sample_size)
        logits = upsample_logits(logits[:1], feats.padded_hw, feats.input_hw, feats.original_hw, mode="bicubic")
        regions = Regions.from_masks((logits > 0).cpu().numpy(), scores=np.ones(1, np.float32))
        names, probs = self.classify(out["pred_stexts"][0, best[:1]])
        return regions.replace(categories=names, category_scores=probs)

    @torch.no_grad()
    def classify(self, captions: torch.Tensor) -> tuple[list[str], np.ndarray]:
        """(N, D) query class embeddings -> each one's best COCO class (background excluded)
        and its softmax probability over the classes and background."""
        class_emb = self.class_embeddings(COCO_PANOPTIC_CLASSES)
        probs = self.model.lang_encoder.compute_similarity(captions[None].float(), class_emb)[0].softmax(-1)
        score, label = probs[:, :-1].max(-1)
        return [display_name(COCO_PANOPTIC_CLASSES[int(k)]) for k in label], score.cpu().numpy()

