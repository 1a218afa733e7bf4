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
# Larger images are refused before they are decoded, rather than exhausting memory. Kept under
# PIL's own decompression-bomb threshold (2 x Image.MAX_IMAGE_PIXELS, 179 MP), so every image under
# this limit opens, and PIL's refusal always means "over the limit".
MAX_PIXELS = 178_000_000
# An image over the pixel limit whose decoded RGB would be this many times its file size is a
# decompression bomb (a tiny file declaring a huge picture), not a large photo: photos compress
# about 3-20x (JPEG) or 1.5-3x (PNG); flat screenshots rarely 100x; deflate tops out near 1000x.
BOMB_RATIO = 250


class ImageError(ValueError):
    """An input that cannot be used as an image; the message is one readable line."""


class ImageTooLarge(ImageError):
    """An image over a size limit (pixels or file bytes). `limit` and `size` are in `unit`."""

    def __init__(self, message: str, size: int, limit: int, unit: str):
        super().__init__(message)
        self.size, self.limit, self.unit = size, limit, unit


class DecompressionBomb(ImageTooLarge):
    """A small file that declares far more pixels than the limit: refused without decoding."""


def describe_bytes(n: float) -> str:
    """Bytes for a message, in 1024-based units as Gradio's "25mb" counts them: 26214400 -> "25 MB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _megapixels(n: int) -> str:
    if n < 100_000:
        return f"{n:,} pixels"
    return f"{n / 1e6:.1f} MP" if n < 10e6 else f"{n / 1e6:.0f} MP"


def check_pixels(width: int, height: int, name: str, max_pixels: int, file_bytes: int | None = None) -> None:
    """Raise ImageTooLarge (or DecompressionBomb, for a small file declaring a huge picture) when
    width x height is over `max_pixels`. Called on the header, before anything is decoded."""
    pixels = int(width) * int(height)
    if pixels > max_pixels:
        raise _too_large(f"{width}x{height} pixels", pixels, name, max_pixels, file_bytes)


def _too_large(what: str, pixels: int, name: str, max_pixels: int, file_bytes: int | None) -> ImageTooLarge:
    decoded = 3 * pixels
    if file_bytes is not None and decoded > BOMB_RATIO * max(file_bytes, 1):
        return DecompressionBomb(
            f"{name}: refused as a decompression bomb: a {describe_bytes(file_bytes)} file that declares {what} "
            f"({_megapixels(pixels)}, {describe_bytes(decoded)} once decoded), over the {_megapixels(max_pixels)} limit",
            pixels, max_pixels, "pixels",
        )
    return ImageTooLarge(f"{name}: {what} ({_megapixels(pixels)}) is over the {_megapixels(max_pixels)} limit",
                         pixels, max_pixels, "pixels")


def _bomb_from_pil(e: Exception, name: str, max_pixels: int, file_bytes: int | None) -> ImageTooLarge:
    """PIL refused the image itself (Image.DecompressionBombError, or a PNG text/ICC chunk that
    inflates past PIL's MAX_TEXT_CHUNK): an ImageTooLarge / DecompressionBomb saying so."""
    import re

    found = re.search(r"\((\d+) pixels\)", str(e))
    if found is None:  # a compressed metadata chunk too large to inflate
        return DecompressionBomb(f"{name}: refused as a decompression bomb: {e}", 0, max_pixels, "pixels")
    pixels = int(found.group(1))
    return _too_large(f"{pixels:,} pixels", pixels, name, max_pixels, file_bytes)


def _from_pil(img: Image.Image, name: str, max_pixels: int = MAX_PIXELS, file_bytes: int | None = None) -> np.ndarray:
    check_pixels(img.width, img.height, name, max_pixels, file_bytes)  # on the header: nothing decoded yet
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise _bomb_from_pil(e, name, max_pixels, file_bytes) from None
    except ValueError as e:
        if "decompressed" in str(e).lower():
            raise _bomb_from_pil(e, name, max_pixels, file_bytes) from None
        raise ImageError(f"{name}: image data is truncated or corrupt ({e})") from None
    except (OSError, SyntaxError) as e:
        raise ImageError(f"{name}: image data is truncated or corrupt ({e})") from None
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


def load_image(
    source: ImageLike, name: str | None = None, *, max_pixels: int = MAX_PIXELS, max_bytes: int | None = None
) -> np.ndarray:
    """Any image source -> (H, W, 3) uint8 RGB, EXIF orientation applied.

    Accepts a path, raw file bytes, a PIL image or a numpy array (assumed RGB/RGBA).
    16-bit and float inputs are rescaled, grayscale is repeated to three channels,
    transparency is composited on white, CMYK and palette images are converted.

    Limits: a file over `max_bytes` (None: any) is not read; an image over `max_pixels` is
    refused from its header, before decoding, as `ImageTooLarge`, or as `DecompressionBomb`
    when a small file declares it (both are ImageError).
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    if isinstance(source, Image.Image):
        return _from_pil(source, name or "image", max_pixels)
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "bytes"
        _check_bytes(len(data), label, max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise ImageError(f"{label}: no such file")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image")
        _check_bytes(path.stat().st_size, label, max_bytes)
        data = path.read_bytes()
    else:
        raise ImageError(f"expected a path, bytes, PIL image or numpy array, got {type(source).__name__}")
    if not data:
        raise ImageError(f"{label}: file is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:  # PIL's own check, on the header
        raise _bomb_from_pil(e, label, max_pixels, len(data)) from None
    except ValueError as e:
        if "decompressed" in str(e).lower():  # e.g. a PNG ICC profile that inflates past PIL's cap
            raise _bomb_from_pil(e, label, max_pixels, len(data)) from None
        raise ImageError(f"{label}: cannot be read: truncated or corrupt image ({e})") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot be read: truncated or corrupt image ({e})") from None
    return _from_pil(img, label, max_pixels, len(data))


def _check_bytes(size: int, name: str, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise ImageTooLarge(f"{name}: the file is {describe_bytes(size)}, over the {describe_bytes(max_bytes)} limit",
                            size, max_bytes, "bytes")


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
