"""Every kind of input becomes (H, W, 3) uint8 RGB, upright; bad input is one ImageError line."""

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from som.imageio import MAX_PIXELS, DecompressionBomb, ImageError, ImageTooLarge, list_images, load_image, working_size

PHOTO = skimage.data.astronaut()[::4, ::4]  # 128x128 real photo


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_png_roundtrip_exact():
    out = load_image(save(Image.fromarray(PHOTO), "PNG"))
    assert out.dtype == np.uint8 and out.shape == PHOTO.shape
    assert np.array_equal(out, PHOTO)


@pytest.mark.parametrize(
    "make, fmt",
    [
        (lambda: Image.fromarray(PHOTO).convert("L"), "PNG"),  # grayscale
        (lambda: Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),  # palette
        (lambda: Image.fromarray(PHOTO).convert("CMYK"), "JPEG"),  # CMYK
        (lambda: Image.fromarray(PHOTO).convert("RGBA"), "PNG"),  # RGBA
        (lambda: Image.fromarray(PHOTO).convert("LA"), "PNG"),
    ],
    ids=["gray", "palette", "cmyk", "rgba", "gray-alpha"],
)
def test_modes_become_rgb(make, fmt):
    out = load_image(save(make(), fmt))
    assert out.shape == PHOTO.shape and out.dtype == np.uint8
    # the picture survives: correlates strongly with the original luminance
    gray = PHOTO.mean(axis=2).ravel()
    assert np.corrcoef(out.mean(axis=2).ravel(), gray)[0, 1] > 0.9


def test_bilevel_becomes_black_and_white_rgb():
    out = load_image(save(Image.fromarray(PHOTO).convert("1"), "PNG"))
    assert out.shape == PHOTO.shape and set(np.unique(out)) <= {0, 255}


def test_16bit_grayscale_uses_full_range():
    arr16 = (PHOTO.mean(axis=2) * 256).astype(np.uint16)
    out = load_image(save(Image.fromarray(arr16), "PNG"))
    assert out.shape == PHOTO.shape
    assert out.min() == 0 and out.max() == 255


def test_transparent_pixels_composite_on_white():
    rgba = np.zeros((32, 32, 4), np.uint8)  # fully transparent black
    out = load_image(save(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out == 255).all()


@pytest.mark.parametrize("orientation, expected_shape", [(1, (96, 128)), (6, (128, 96)), (8, (128, 96)), (3, (96, 128))])
def test_exif_orientation_applied(orientation, expected_shape):
    # a 128x96 picture with a red block top-left as stored
    arr = np.full((96, 128, 3), 200, np.uint8)
    arr[:20, :30] = (255, 0, 0)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(save(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.shape[:2] == expected_shape
    upright = np.asarray(Image.open(io.BytesIO(save(img, "JPEG", exif=exif.tobytes(), quality=95))).transpose(
        {1: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90, 3: Image.Transpose.ROTATE_180}[orientation]
    ).convert("RGB"))
    if orientation == 1:
        upright = np.asarray(img)
    assert np.abs(out.astype(int) - upright.astype(int)).mean() < 3


def test_bad_inputs_raise_one_line(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("hello, not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(save(Image.fromarray(PHOTO), "JPEG")[:400])
    truncated_png = tmp_path / "cut.png"
    truncated_png.write_bytes(save(Image.fromarray(PHOTO), "PNG")[:-2000])
    cases = {
        empty: "empty",
        text: "not an image",
        truncated: "truncated",
        truncated_png: "truncated",
        tmp_path / "missing.jpg": "no such file",
        tmp_path: "folder",
    }
    for path, words in cases.items():
        with pytest.raises(ImageError) as err:
            load_image(path)
        msg = str(err.value)
        assert words in msg and "\n" not in msg and str(path.name) in msg


def test_arrays_of_many_kinds():
    assert load_image(PHOTO[:, :, 0]).shape == PHOTO.shape
    assert load_image(PHOTO.astype(np.float32) / 255).max() == 255
    assert load_image(np.dstack([PHOTO, np.full(PHOTO.shape[:2], 255, np.uint8)])).shape == PHOTO.shape
    with pytest.raises(ImageError):
        load_image(np.zeros((4, 4, 7)))
    with pytest.raises(ImageError):
        load_image(12345)


def test_working_size_caps_long_side_only():
    assert working_size(3000, 4000, 2048) == (1536, 2048)
    assert working_size(300, 400, 2048) == (300, 400)


def test_list_images_keeps_corrupt_image_files_and_sorts(tmp_path):
    for name in ["b.jpg", "a.png", "notes.txt", "c.JPEG"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.jpg", "c.JPEG"]


# ---------------------------------------------------------------- limits and decompression bombs
def bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: a few KB that decode to side**2 pixels."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\0" + bytes((side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side, max_pixels", [(8000, 50_000_000), (20000, MAX_PIXELS)],
                         ids=["over-our-limit", "over-PIL-limit-too"])
def test_decompression_bomb_is_refused_as_such_without_decoding(side, max_pixels):
    import resource
    import warnings

    data = bomb_png(side)
    assert len(data) < 100_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(DecompressionBomb) as err:
            load_image(data, name="bomb.png", max_pixels=max_pixels)
    msg = str(err.value)
    assert msg.startswith("bomb.png: refused as a decompression bomb") and "truncated" not in msg and "\n" not in msg
    assert f"{side * side / 1e6:.0f} MP" in msg and "limit" in msg
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing was decoded


def test_large_photo_over_the_pixel_limit_is_too_large_not_a_bomb():
    data = save(Image.fromarray(PHOTO), "JPEG", quality=95)
    with pytest.raises(ImageTooLarge) as err:
        load_image(data, name="photo.jpg", max_pixels=10_000)
    assert not isinstance(err.value, DecompressionBomb)
    assert str(err.value) == "photo.jpg: 128x128 pixels (16,384 pixels) is over the 10,000 pixels limit"
    assert (err.value.size, err.value.limit, err.value.unit) == (128 * 128, 10_000, "pixels")
    assert load_image(data, max_pixels=128 * 128).shape == PHOTO.shape  # at the limit: fine


def test_file_over_the_byte_limit_is_not_read(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(save(Image.fromarray(PHOTO), "PNG"))
    with pytest.raises(ImageTooLarge, match=r"photo\.png: the file is .* over the 1 KB limit") as err:
        load_image(path, name="photo.png", max_bytes=1024)
    assert err.value.unit == "bytes"
    with pytest.raises(ImageTooLarge):
        load_image(path.read_bytes(), max_bytes=1024)
    assert load_image(path, max_bytes=path.stat().st_size).shape == PHOTO.shape


def test_png_metadata_bomb_is_refused_as_such():
    """An ICC profile chunk that inflates past PIL's cap (the picture itself is small)."""
    import zlib

    png = save(Image.fromarray(PHOTO), "PNG")
    profile = zlib.compress(bytes(64 * 1024 * 1024), 9)
    body = b"som\0\0" + profile
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body + zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    bomb = png[:33] + chunk + png[33:]  # right after IHDR
    with pytest.raises(DecompressionBomb, match="bomb.png: refused as a decompression bomb"):
        load_image(bomb, name="bomb.png")
