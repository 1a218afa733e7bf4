"""mark_screen on screenshots alone: a UI rendered by Chromium (truth from its DOM) and a picture
drawn with Pillow; text read right, controls/icons/images found, labels beside their marks."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from som.layout import label_font
from som.screen.marks import SCREEN_KINDS, mark_screen, reading_order
from som.ui_layout import boxes_overlap

pytest.importorskip("rapidocr_onnxruntime", reason="screen tests need rapidocr-onnxruntime (pip install 'som[screen]')")
REPO = Path(__file__).resolve().parents[2]


def _photo_data_url() -> str:
    import skimage.data

    buf = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).resize((120, 120)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


PAGE = """<!doctype html><html><head><style>
body {{ font: 16px sans-serif; margin: 16px; background: #fff; }}
button {{ font: 16px sans-serif; padding: 6px 14px; border: 1px solid #666; border-radius: 4px; background: #f4f4f4; margin-right: 10px; }}
input {{ font: 16px sans-serif; padding: 5px; border: 1px solid #888; width: 220px; }}
a {{ color: #0645ad; margin-right: 18px; }}
</style></head><body>
<div style="margin-bottom:24px">
  <svg id="menu" width="22" height="22" viewBox="0 0 22 22" style="margin-right:24px;vertical-align:middle"><rect x="2" y="4" width="18" height="3" fill="#333"/><rect x="2" y="10" width="18" height="3" fill="#333"/><rect x="2" y="16" width="18" height="3" fill="#333"/></svg>
  <button id="save">Save</button><button id="cancel">Cancel</button>
  <input id="search" placeholder="Search files">
</div>
<div style="margin-bottom:24px"><a id="home" href="#">Home</a><a id="docs" href="#">Documentation</a><a id="contact" href="#">Contact us</a></div>
<h2 id="title">Quarterly report</h2>
<p>Please read the <a id="terms" href="#">privacy policy</a> before you start.</p>
<img id="photo" src="{photo}" width="120" height="120">
</body></html>"""

TRUTH_JS = """() => ['menu', 'save', 'cancel', 'search', 'home', 'docs', 'contact', 'title', 'terms', 'photo'].map((id) => {
  const r = document.getElementById(id).getBoundingClientRect(); return [id, [r.left, r.top, r.right, r.bottom]]; })"""


@pytest.fixture(scope="module")
def ui_shot(browser):
    page = browser.new_page(viewport={"width": 800, "height": 460})
    page.set_content(PAGE.format(photo=_photo_data_url()))
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    truth = dict(page.evaluate(TRUTH_JS))
    page.close()
    marks = mark_screen(shot)
    return shot, truth, marks


def _mark_for(marks, box):
    """The mark whose centre lies in the element's box, or that overlaps it at IoU >= 0.5."""
    for it in marks.items:
        x1, y1, x2, y2 = it.xyxy
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        inter = boxes_overlap(np.array([it.xyxy]), np.array([np.round(box).astype(int)]))[0, 0]
        union = (x2 - x1) * (y2 - y1) + (box[2] - box[0]) * (box[3] - box[1]) - inter
        if (box[0] <= cx <= box[2] and box[1] <= cy <= box[3]) or inter / union >= 0.5:
            return it
    return None


@pytest.mark.browser
def test_marks_every_element_of_a_rendered_ui(ui_shot, artifacts):
    shot, truth, marks = ui_shot
    marks.save(artifacts / "screen", "ui")
    found = {k: _mark_for(marks, box) for k, box in truth.items()}
    missing = [k for k, it in found.items() if it is None]
    assert not missing, f"no mark for {missing}; marks: {[(i.kind, i.text, i.xyxy) for i in marks.items]}"
    assert found["save"].kind == "control" and found["save"].text == "Save"
    assert found["cancel"].kind == "control" and found["cancel"].text == "Cancel"
    assert found["search"].kind == "control" and "Search files" in found["search"].text
    assert found["docs"].kind == "text" and found["docs"].text == "Documentation"
    assert found["contact"].text == "Contact us", "the space between words is restored"
    assert found["title"].text == "Quarterly report"
    assert found["terms"].text == "privacy policy", "a link inside a sentence is its own mark (it changes colour)"
    assert found["menu"].kind == "icon" and found["photo"].kind == "image"
    # the three links on one line are three marks, not one
    assert len({id(found[k]) for k in ("home", "docs", "contact")}) == 3


@pytest.mark.browser
def test_screen_labels_and_json(ui_shot):
    shot, _, marks = ui_shot
    lab = marks.regions.label_xyxy.astype(np.int64)
    ov = boxes_overlap(lab, lab)
    np.fill_diagonal(ov, 0)
    assert ov.max(initial=0) == 0
    h, w = shot.shape[:2]
    assert (lab[:, :2] >= 0).all() and (lab[:, 2] <= w).all() and (lab[:, 3] <= h).all()
    assert (boxes_overlap(lab, marks.regions.xyxy.astype(np.int64)).diagonal() == 0).all(), "no label on its own mark"
    assert marks.regions.labels == [it.label for it in marks.items] == [str(i) for i in range(1, len(marks) + 1)]
    assert {it.kind for it in marks.items} <= set(SCREEN_KINDS)
    doc = marks.to_dict("ui.png")
    assert doc["format"] == "som.marks" and {"kind", "text", "rle", "label_xyxy"} <= set(doc["marks"][0])
    assert marks.item(1) is marks.items[0]
    with pytest.raises(ValueError, match="no mark"):
        marks.item(999)


def test_drawn_picture_and_kinds():
    img = Image.new("RGB", (480, 200), "white")
    d = ImageDraw.Draw(img)
    font = label_font(20)
    d.rectangle([20, 20, 140, 60], outline="black", width=2)
    d.text((48, 28), "Open", fill="black", font=font)
    d.text((200, 30), "Settings", fill="black", font=font)
    d.ellipse([400, 25, 428, 53], fill=(200, 30, 30))
    d.text((20, 120), "Total 42 items", fill="black", font=font)
    marks = mark_screen(np.asarray(img))
    kinds = sorted((it.kind, it.text) for it in marks.items)
    assert ("control", "Open") in kinds and ("text", "Settings") in kinds and ("text", "Total 42 items") in kinds
    assert ("icon", "") in kinds
    only_text = mark_screen(np.asarray(img), kinds=["text"])
    assert {it.kind for it in only_text.items} == {"text"} and len(only_text) == 2
    with pytest.raises(ValueError, match="unknown mark kinds"):
        mark_screen(np.asarray(img), kinds=["button"])
    blank = mark_screen(np.full((100, 100, 3), 255, np.uint8))
    assert len(blank) == 0 and blank.image.shape == (100, 100, 3)


def test_reading_order():
    boxes = np.array([[300, 12, 340, 30], [10, 10, 50, 28], [10, 50, 60, 70], [200, 52, 260, 68]])
    assert reading_order(boxes).tolist() == [1, 0, 2, 3]


def test_cli_screen(tmp_path):
    img = Image.new("RGB", (300, 120), "white")
    ImageDraw.Draw(img).text((20, 40), "Sign in", fill="black", font=label_font(22))
    img.save(tmp_path / "login.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "som.cli", "screen", str(tmp_path / "login.png"), str(tmp_path / "broken.png"),
                          "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1, "a skipped image makes the exit status 1"
    assert "login.png\t[1]\ttext\tSign in" in out.stdout and "broken.png" in out.stderr
    doc = json.loads((tmp_path / "out" / "login.marks.json").read_text())
    assert doc["marks"][0]["text"] == "Sign in" and doc["marks"][0]["kind"] == "text"
    assert (tmp_path / "out" / "login.marked.png").exists()
