"""Superpixel segmenter (scikit-image SLIC): no model, no weights, no torch.

For machines without torch or when speed matters more than object boundaries.
Granularity sets the number of superpixels (more = finer).
"""

from __future__ import annotations

import numpy as np

from som.regions import Regions
from som.segmenters.base import DEFAULT_LEVEL, ProgressFn, granularity, image_key


class SuperpixelSegmenter:
    def __init__(self, name: str = "superpixel", device: str = "cpu", checkpoint=None, compactness: float = 12.0):
        self.name = name
        self.device = "cpu"  # SLIC runs on the CPU whatever was asked
        self.compactness = compactness
        self._last: tuple[str, int, np.ndarray] | None = None  # (image key, n_segments, labels)

    def _slic(self, image: np.ndarray, n_segments: int) -> np.ndarray:
        """(H, W) int labels 0..K-1, cached for the last image (interactive clicks reuse it)."""
        from skimage.segmentation import slic

        key = (image_key(image), n_segments)
        if self._last is not None and self._last[:2] == key:
            return self._last[2]
        labels = slic(image, n_segments=n_segments, compactness=self.compactness, start_label=0, channel_axis=2)
        self._last = (*key, labels)
        return labels

    def segment_everything(
        self, image: np.ndarray, level: int | str = DEFAULT_LEVEL, progress: ProgressFn | None = None
    ) -> Regions:
        labels = self._slic(image, granularity(level).superpixel_segments)
        regions = Regions.from_label_map(labels + 1)
        if progress is not None:
            progress(1.0, f"{len(regions)} superpixels")
        return regions.replace(scores=np.ones(len(regions), np.float32))

    def segment_prompts(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
    ) -> Regions:
        """Union of the superpixels under positive points (or mostly inside the box), minus those
        under negative points."""
        if points_xy is None and box_xyxy is None:
            raise ValueError("segment_prompts needs at least one point or a box")
        labels = self._slic(image, granularity(DEFAULT_LEVEL).superpixel_segments)
        h, w = labels.shape
        chosen: set[int] = set()
        if box_xyxy is not None:
            x1, y1, x2, y2 = np.clip(np.asarray(box_xyxy, float).reshape(4), 0, [w, h, w, h]).astype(int)
            inside = np.zeros_like(labels, bool)
            inside[y1:y2, x1:x2] = True
            counts = np.bincount(labels.ravel(), minlength=labels.max() + 1)
            counts_in = np.bincount(labels[inside], minlength=labels.max() + 1)
            chosen |= set(np.flatnonzero(counts_in > 0.5 * np.maximum(counts, 1)).tolist())
        if points_xy is not None:
            pts = np.asarray(points_xy, float).reshape(-1, 2)
            lbl = np.ones(len(pts), int) if point_labels is None else np.asarray(point_labels).reshape(-1)
            for (x, y), positive in zip(pts, lbl):
                seg_id = int(labels[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))])
                (chosen.add if positive else chosen.discard)(seg_id)
        mask = np.isin(labels, sorted(chosen))
        return Regions.from_crops(np.array([[0, 0, w, h]]), [mask], (h, w), scores=np.ones(1, np.float32))
