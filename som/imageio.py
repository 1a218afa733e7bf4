"""Reading images from any source into one form: (H, W, 3) uint8 RGB, upright.

This is the one edge where pixel formats are converted. Everything downstream
is RGB uint8. Errors are `ImageError` (a ValueError) with one readable line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageLike = Union[str, os.PathLike, bytes, np.ndarray, Image.Image]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
MAX_PIXELS = 200_000_000  # larger files are refused rather than exhausting memory


class ImageError(ValueError):
    """An input that cannot be used as an image; the message is one readable line."""


def _from_pil(img: Image.Image, name: str) -> np.ndarray:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: image data is truncated or corrupt ({e})") from None
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"{name}: {img.width}x{img.height} is over the {MAX_PIXELS:,}-pixel limit")
    # marks must match the upright image a viewer shows; in place: no copy of a huge photo
    img = ImageOps.exif_transpose(img, in_place=True) or img
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit single channel: rescale its actual range to 0..255
        arr = np.asarray(img, np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        gray = arr.round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # composite on white: transparent pixels have undefined colour underneath
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, np.uint8)
    return np.ascontiguousarray(arr)


def _from_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / (255.0 if arr.dtype == np.uint8 else float(arr[:, :, 3].max() or 1))
        rgb = arr[:, :, :3].astype(np.float32)
        white = 255.0 if arr.dtype == np.uint8 else float(rgb.max() or 1)
        arr = rgb * alpha + white * (1 - alpha)
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
        out = (np.clip(np.nan_to_num(arr), 0, 1) * 255).round().astype(np.uint8)
    else:
        a = np.nan_to_num(arr.astype(np.float64))
        lo, hi = float(a.min()), float(a.max())
        out = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).round().astype(np.uint8)
    if out.shape[0] < 1 or out.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    return np.ascontiguousarray(out[:, :, :3])


def load_image(source: ImageLike, name: str | None = None) -> np.ndarray:
    """Any image source -> (H, W, 3) uint8 RGB, EXIF orientation applied.

    Accepts a path, raw file bytes, a PIL image or a numpy array (assumed RGB/RGBA).
    16-bit and float inputs are rescaled, grayscale is repeated to three channels,
    transparency is composited on white, CMYK and palette images are converted.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    if isinstance(source, Image.Image):
        return _from_pil(source, name or "image")
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "bytes"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise ImageError(f"{label}: no such file")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image")
        data = path.read_bytes()
    else:
        raise ImageError(f"expected a path, bytes, PIL image or numpy array, got {type(source).__name__}")
    if not data:
        raise ImageError(f"{label}: file is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (unrecognised format)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{label}: cannot be read: truncated or corrupt image ({e})") from None
    try:
        return _from_pil(img, label)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{label}: too large ({e})") from None


def working_size(height: int, width: int, max_side_px: int) -> tuple[int, int]:
    """(h, w) scaled so the longer side is at most max_side_px (never upscaled)."""
    longest = max(height, width)
    if longest <= max_side_px:
        return height, width
    s = max_side_px / longest
    return max(1, round(height * s)), max(1, round(width * s))


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaged downscale (or linear upscale) of an RGB uint8 image."""
    import cv2

    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (non-recursive, sorted) into image paths. Folders keep every
    file whose suffix looks like an image, so a corrupt one is reported rather than skipped silently."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
