"""`som` on the command line: real files, real console script, bad inputs reported and skipped."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from som.cli import main
from som.marksfile import read_marks

PHOTO = skimage.data.coffee()  # 400x600


def write(path: Path, img: Image.Image, fmt: str | None = None, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


@pytest.fixture()
def odd_inputs(tmp_path):
    """A folder of every kind of input a user may throw at `som mark`."""
    d = tmp_path / "in"
    d.mkdir()
    base = Image.fromarray(PHOTO)
    write(d / "plain.jpg", base, quality=92)
    write(d / "gray.png", base.convert("L"))
    write(d / "rgba.png", base.convert("RGBA"))
    write(d / "palette.png", base.convert("P", palette=Image.Palette.ADAPTIVE))
    write(d / "cmyk.jpg", base.convert("CMYK"))
    write(d / "sixteen.png", Image.fromarray((np.asarray(base.convert("L"), np.uint16) * 257)))
    exif = Image.Exif()
    exif[0x0112] = 6
    write(d / "rotated.jpg", base, exif=exif.tobytes())
    write(d / "big.jpg", base.resize((3000, 2000)), quality=80)
    write(d / "one.png", Image.new("RGB", (1, 1), (9, 9, 9)))  # bad: no room for marks
    (d / "empty.jpg").write_bytes(b"")  # bad
    (d / "text.png").write_text("not an image")  # bad
    buf = io.BytesIO()
    base.save(buf, "JPEG")
    (d / "truncated.jpg").write_bytes(buf.getvalue()[:1000])  # bad
    return d


BAD = {"one.png", "empty.jpg", "text.png", "truncated.jpg"}


def test_folder_with_bad_files_reports_skips_and_writes_the_rest(odd_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["mark", str(odd_inputs), "-o", str(out), "--segmenter", "superpixel", "--max-side", "512"])
    captured = capsys.readouterr()
    assert code == 1  # some files failed
    assert "Traceback" not in captured.err
    for name in BAD:
        lines = [ln for ln in captured.err.splitlines() if name in ln and "skipped" in ln]
        assert len(lines) >= 1, (name, captured.err)
    good = sorted(p.name for p in odd_inputs.iterdir() if p.name not in BAD)
    for name in good:
        stem = Path(name).stem
        png, js = out / f"{stem}.marked.png", out / f"{stem}.marks.json"
        assert png.is_file() and js.is_file(), name
        picture = np.asarray(Image.open(png))
        doc = json.loads(js.read_text())
        regions = read_marks(js)
        assert picture.shape[:2] == (doc["image"]["height"], doc["image"]["width"])
        assert regions.full_masks().shape[1:] == picture.shape[:2]
        assert regions.full_masks().sum(axis=0).max() <= 1
        assert doc["image"]["file"] == name
        for m in doc["marks"]:
            assert set(m) >= {"id", "label", "xyxy", "area", "anchor_xy", "label_xyxy", "score", "rle"}
    # originals keep their size, EXIF rotation is applied
    assert np.asarray(Image.open(out / "big.marked.png")).shape[:2] == (2000, 3000)
    assert np.asarray(Image.open(out / "rotated.marked.png")).shape[:2] == (600, 400)
    assert f"wrote {len(good)} marked image(s)" in captured.err


def test_all_good_exits_zero_and_usage_errors_exit_two(tmp_path, capsys):
    img = write(tmp_path / "a.png", Image.fromarray(PHOTO))
    assert main(["mark", str(img), "-o", str(tmp_path / "o"), "--segmenter", "superpixel", "-q"]) == 0
    assert main(["mark", str(img), "-o", str(tmp_path / "o"), "--marks", "mark,glitter"]) == 2
    assert main(["mark", str(img), "-o", str(tmp_path / "o"), "--granularity", "9"]) == 2
    assert main(["mark", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "glitter" in err and "granularity" in err and "Traceback" not in err


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    img = write(tmp_path / "a.png", Image.fromarray(PHOTO))
    code = main(["mark", str(img), "-o", str(tmp_path / "o"), "--segmenter", "sam-vit-l", "--checkpoint", str(tmp_path / "x.pth")])
    err = capsys.readouterr().err
    assert code == 1 and "download_ckpt.sh" in err and len(err.strip().splitlines()) == 1


def test_segmenters_command_lists_availability(capsys):
    assert main(["segmenters", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"mobile-sam", "superpixel", "sam-vit-b"}


@pytest.mark.slow
def test_console_script_on_the_default_segmenter(tmp_path):
    """The installed `som` script, default segmenter (MobileSAM, real weights), a real photo."""
    img = write(tmp_path / "coffee.jpg", Image.fromarray(PHOTO), quality=95)
    som = Path(sys.executable).parent / "som"
    proc = subprocess.run(
        [str(som), "mark", str(img), "-o", str(tmp_path / "out"), "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "coffee.marked.png" in proc.stdout
    regions = read_marks(tmp_path / "out" / "coffee.marks.json")
    assert len(regions) >= 5
    doc = json.loads((tmp_path / "out" / "coffee.marks.json").read_text())
    assert doc["settings"]["segmenter"] == "mobile-sam"
