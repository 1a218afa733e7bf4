"""Marks JSON round trip and the Regions helpers it relies on."""

import json

import numpy as np
import pytest

from som.marksfile import decode_rle, encode_rle, read_marks, regions_from_dict, regions_to_dict, write_marks
from som.regions import Regions, masks_to_xyxy


def hand_regions() -> Regions:
    masks = np.zeros((3, 20, 30), bool)
    masks[0, 2:8, 3:10] = True
    masks[1, 10:19, 0:30] = True
    masks[2, 0:1, 29:30] = True  # single corner pixel
    return Regions.from_masks(
        masks,
        scores=np.array([0.9, 0.8, 0.7]),
        labels=["1", "2", "3"],
        anchors_xy=np.array([[5, 4], [14, 14], [29, 0]]),
        label_xyxy=np.array([[1, 1, 9, 7], [10, 11, 18, 17], [20, 0, 28, 6]]),
    )


def test_xyxy_is_tight_and_exclusive():
    r = hand_regions()
    assert r.xyxy.tolist() == [[3, 2, 10, 8], [0, 10, 30, 19], [29, 0, 30, 1]]
    assert masks_to_xyxy(np.zeros((1, 4, 4), bool)).tolist() == [[0, 0, 0, 0]]


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 48)])
def test_rle_roundtrip(shape):
    rng = np.random.default_rng(0)
    m = rng.random(shape) > 0.5
    assert np.array_equal(decode_rle(encode_rle(m)), m)
    # uncompressed COCO form (list counts) also decodes
    from pycocotools import mask as mu

    flat = m.T.ravel()
    counts, cur, run = [], False, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    assert np.array_equal(decode_rle({"size": list(shape), "counts": counts}), m)
    assert mu.area(mu.encode(np.asfortranarray(m.astype(np.uint8)))) == m.sum()


def test_document_roundtrip(tmp_path):
    r = hand_regions()
    path = write_marks(tmp_path / "x.marks.json", r, {"segmenter": "hand"}, image_file="x.png")
    doc = json.loads(path.read_text())
    assert doc["image"] == {"file": "x.png", "width": 30, "height": 20}
    assert [m["id"] for m in doc["marks"]] == [1, 2, 3]
    assert [m["area"] for m in doc["marks"]] == [42, 270, 1]
    back = read_marks(path)
    assert np.array_equal(back.full_masks(), r.full_masks())
    assert back.labels == r.labels
    assert np.array_equal(back.anchors_xy, r.anchors_xy)
    assert np.allclose(back.label_xyxy, r.label_xyxy)
    assert np.allclose(back.scores, r.scores, atol=1e-4)


def test_empty_document_and_wrong_format():
    empty = Regions.empty(5, 6)
    assert len(regions_from_dict(regions_to_dict(empty))) == 0
    with pytest.raises(ValueError, match="som marks"):
        regions_from_dict({"marks": []})


def test_select_and_index_by_label():
    r = hand_regions()
    assert r.select_labels(["3", "9", "1"]).labels == ["3", "1"]
    assert r.index_of("2") == 1
    with pytest.raises(ValueError, match="no region labelled"):
        r.index_of("7")


def test_resized_keeps_regions_disjoint_and_anchors_inside():
    r = hand_regions()
    big = r.resized(60, 90)
    assert big.full_masks().shape == (3, 60, 90)
    assert big.full_masks().sum(axis=0).max() == 1
    for k, (x, y) in enumerate(big.anchors_xy):
        assert big.full_masks()[k, y, x]
    assert np.allclose(big.areas, r.areas * 9)


@pytest.mark.parametrize("size_hw", [(60, 90), (7, 11), (19, 30), (200, 150), (41, 29)])
def test_resized_masks_are_opencvs_nearest_resize(size_hw):
    """resized works inside each mask's box only; the pixels must be OpenCV's INTER_NEAREST ones,
    up and down, at integer and odd scales (random blobs and a pixel on the image corner)."""
    import cv2

    rng = np.random.default_rng(sum(size_hw))
    masks = np.zeros((4, 20, 30), bool)
    for m in masks[:3]:
        y, x = rng.integers(0, 20), rng.integers(0, 30)
        m[y : y + rng.integers(1, 12), x : x + rng.integers(1, 16)] = True
        m &= rng.random(m.shape) > 0.2
    masks[3, 19, 29] = True
    out = Regions.from_masks(masks).resized(*size_hw)
    h, w = size_hw
    for m, got in zip(masks, out.full_masks()):
        assert np.array_equal(got, cv2.resize(m.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0)
    assert np.array_equal(out.xyxy, masks_to_xyxy(out.full_masks())), "boxes are the resized masks' tight boxes"


@pytest.mark.parametrize("seed", range(5))
def test_masks_to_xyxy_is_the_tight_box_of_each_mask(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((6, 37, 53), bool)
    for m in masks[:-1]:  # the last stays empty
        y, x = rng.integers(0, 37), rng.integers(0, 53)
        m[y : y + rng.integers(1, 20), x : x + rng.integers(1, 30)] = True
        m[rng.integers(0, 37), rng.integers(0, 53)] = True  # a stray pixel anywhere
    want = [[0, 0, 0, 0] if not m.any() else
            [np.nonzero(m.any(0))[0][0], np.nonzero(m.any(1))[0][0], np.nonzero(m.any(0))[0][-1] + 1, np.nonzero(m.any(1))[0][-1] + 1]
            for m in masks]
    assert masks_to_xyxy(masks).tolist() == want


def test_version_2_round_trips_parents_exactly():
    h, w = 30, 40
    m = np.zeros((3, h, w), bool)
    m[0, 2:28, 2:30] = True
    m[1, 5:12, 5:15] = True
    m[2, 8:20, 32:39] = True
    r = Regions.from_masks(m, parent=np.array([-1, 0, -1]), labels=["1", "2", "3"])
    doc = json.loads(json.dumps(regions_to_dict(r)))
    assert doc["version"] == 2
    assert [mk["parent"] for mk in doc["marks"]] == [None, 1, None]
    back = regions_from_dict(doc)
    assert back.parent.tolist() == [-1, 0, -1]
    assert np.array_equal(back.full_masks(), m) and back.xyxy.tolist() == r.xyxy.tolist()
    # any COCO tool reads the masks: the RLE is the full frame's
    assert np.array_equal(decode_rle(doc["marks"][0]["rle"]), m[0])


def test_version_1_documents_still_read():
    """A file written by som before nesting: no "parent" key, version 1."""
    m = np.zeros((2, 12, 16), bool)
    m[0, 1:5, 1:9] = True
    m[1, 6:11, 3:15] = True
    doc = {
        "format": "som.marks", "version": 1, "image": {"file": "a.png", "width": 16, "height": 12},
        "settings": {}, "marks": [
            {"id": k + 1, "label": str(k + 1), "xyxy": [0, 0, 1, 1], "area": int(mk.sum()), "anchor_xy": [2, 2],
             "label_xyxy": [0, 0, 4, 4], "score": 0.9, "rle": encode_rle(mk)} for k, mk in enumerate(m)
        ],
    }
    back = regions_from_dict(doc)
    assert back.parent.tolist() == [-1, -1] and np.array_equal(back.full_masks(), m)
    with pytest.raises(ValueError, match="version 9"):
        regions_from_dict({**doc, "version": 9})


@pytest.mark.parametrize("seed", range(6))
def test_rle_from_crops_is_cocos_rle_of_the_full_frame(seed):
    """crop_to_rle never makes the full frame; its counts must equal pycocotools' on the frame
    (masks touching the top/bottom edges join runs across columns)."""
    from som.marksfile import crop_to_rle, rle_to_crop

    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    m = rng.random((h, w)) > rng.random()
    if seed % 2:
        m[:, : w // 2] = True  # full columns from the top edge to the bottom edge
    r = Regions.from_masks(m[None])
    rle = crop_to_rle(r.boxes_px[0], r.crops[0], (h, w))
    assert rle == encode_rle(m)
    box, crop = rle_to_crop(rle)
    assert box.tolist() == r.boxes_px[0].tolist() and np.array_equal(crop, r.crops[0])
