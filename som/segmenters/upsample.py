"""Decoder logits -> masks in image pixels, computed only inside each mask's box.

SAM's `postprocess_masks` resizes the decoder's 256x256 logits to the encoder's
1024x1024 frame (bilinear), crops the image part and resizes that to the original
size (bilinear again). Both steps are linear and separable, so the whole map is

    full = Ry @ L @ Rx.T        Ry: (H, 256), Rx: (W, 256), a few taps per row.

Bilinear weights are a convex combination, so a pixel can be above the threshold
only if one of its taps is: only the rows and columns whose taps meet the low-res
mask's box are computed. Work and the device-to-host copy are proportional to the
masks' boxes, not to N x H x W (at 1024 px, 40 full masks would be 40 MB).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LOW_PX = 256  # side of the decoder's logit frame
FRAME_PX = 1024  # side of the encoder's input frame


def resize_matrix(input_px: int, out_px: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """(out_px, LOW_PX) float32: SAM's two bilinear resizes along one axis as a matrix
    (built by resizing the identity with the same F.interpolate calls SAM makes)."""
    eye = torch.eye(LOW_PX, device=device)[None, None]  # resizing its rows resizes the axis
    m = F.interpolate(eye, (FRAME_PX, LOW_PX), mode="bilinear", align_corners=False)[..., :input_px, :]
    m = F.interpolate(m, (out_px, LOW_PX), mode="bilinear", align_corners=False)
    return m[0, 0].contiguous()


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, h, w) bool -> (K, 4) float xyxy (exclusive max); empty masks give zeros."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros((0, 4), device=masks.device)
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y2 = torch.where(rows, ar_h, -1).amax(1) + 1
    y1 = torch.where(rows, ar_h, h).amin(1)
    x2 = torch.where(cols, ar_w, -1).amax(1) + 1
    x1 = torch.where(cols, ar_w, w).amin(1)
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def _support(m: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a resize matrix: first and one-past-last column with a non-zero weight."""
    nz = (m != 0).cpu().numpy()
    lo = nz.argmax(axis=1)
    hi = m.shape[1] - nz[:, ::-1].argmax(axis=1)
    return lo, hi


@dataclass(frozen=True)
class Upsampler:
    """Maps (K, 256, 256) logits of one image geometry to tight mask crops at its original size."""

    ry: torch.Tensor  # (H, 256)
    rx: torch.Tensor  # (W, 256)
    ry_lo: np.ndarray  # (H,) first tap of each output row; non-decreasing
    ry_hi: np.ndarray  # (H,) one past its last tap; non-decreasing
    rx_lo: np.ndarray
    rx_hi: np.ndarray

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def for_geometry(input_hw: tuple[int, int], original_hw: tuple[int, int], device: str) -> "Upsampler":
        ry = resize_matrix(input_hw[0], original_hw[0], device)
        rx = resize_matrix(input_hw[1], original_hw[1], device)
        return Upsampler(ry, rx, *_support(ry), *_support(rx))

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.ry.shape[0], self.rx.shape[0]

    def _span(self, lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> tuple[int, int]:
        """Output rows whose taps meet low-res rows [a, b) (a contiguous range: taps are monotone)."""
        return int(np.searchsorted(hi, a, side="right")), int(np.searchsorted(lo, b, side="left"))

    @torch.no_grad()
    def crops(self, logits: torch.Tensor, threshold: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """logits (K, 256, 256) -> (K, 4) int64 tight boxes x1, y1, x2, y2 (exclusive) and K bool crops.

        An empty mask gets a zero box and a (0, 0) crop."""
        k = logits.shape[0]
        boxes = np.zeros((k, 4), np.int64)
        if k == 0:
            return boxes, []
        logits = logits.float()
        low = masks_to_boxes(logits > threshold).long().cpu().numpy()  # one device-to-host copy
        pieces, spans = [], []
        for i, (lx1, ly1, lx2, ly2) in enumerate(low):
            r0, r1 = self._span(self.ry_lo, self.ry_hi, ly1, ly2)
            c0, c1 = self._span(self.rx_lo, self.rx_hi, lx1, lx2)
            if lx2 <= lx1 or r1 <= r0 or c1 <= c0:
                spans.append(None)
                continue
            a0, a1 = int(self.ry_lo[r0]), int(self.ry_hi[r1 - 1])
            b0, b1 = int(self.rx_lo[c0]), int(self.rx_hi[c1 - 1])
            full = self.ry[r0:r1, a0:a1] @ logits[i, a0:a1, b0:b1] @ self.rx[c0:c1, b0:b1].T
            pieces.append((full > threshold).flatten())
            spans.append((r0, r1, c0, c1))
        flat = torch.cat(pieces).cpu().numpy() if pieces else np.zeros(0, bool)
        crops: list[np.ndarray] = []
        at = 0
        for i, span in enumerate(spans):
            if span is None:
                crops.append(np.zeros((0, 0), bool))
                continue
            r0, r1, c0, c1 = span
            crop = flat[at : at + (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            at += crop.size
            ys, xs = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
            if len(ys) == 0:
                crops.append(np.zeros((0, 0), bool))
                continue
            boxes[i] = (c0 + xs[0], r0 + ys[0], c0 + xs[-1] + 1, r0 + ys[-1] + 1)
            crops.append(crop[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1])
        return boxes, crops
