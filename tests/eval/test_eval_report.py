"""`som eval report`: two runs side by side, metrics as run, bootstrap intervals, markdown,
JSON and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from oracle import Oracle

from som.eval.report import bootstrap


def test_two_runs_side_by_side(llm_server, smoke, run_cli, tmp_path):
    refs = [json.loads(line) for line in Path(smoke["refer"]).read_text().splitlines()][:10]
    runs = {}
    for model, n_wrong in (("test-model", 2), ("other-model", 5)):
        rundir = tmp_path / model
        bad = {(Path(r["image"]).stem, r["expression"]) for r in refs[:n_wrong]}
        llm_server.responder = Oracle(rundir, smoke, wrong=lambda kind, stem, key, bad=bad: (stem, key) in bad)
        code, _, err = run_cli(
            "eval", "run", "refer", "--data", smoke["refer"], "-o", rundir, "--model", model, "--base-url",
            llm_server.base_url, "--conditions", "none,gt", "--limit", "10", "-q", "--price-in", "1", "--price-out", "2",
        )
        assert code == 0, err
        runs[model] = json.loads((rundir / "summary.json").read_text())

    out = tmp_path / "report"
    code, md, err = run_cli("eval", "report", tmp_path / "test-model", tmp_path / "other-model", "-o", out, "--bootstrap", "300")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["test-model", "other-model"]
    assert len(report["rows"]) == 4
    for row in report["rows"]:
        expected = 0.8 if row["run"] == "test-model" else 0.5
        assert row["metrics"]["accuracy"] == pytest.approx(expected)
        lo, hi = row["ci95"]["accuracy"]
        assert 0.0 <= lo <= expected <= hi <= 1.0 and hi - lo > 0.1
        assert row["n"] == 10 and row["tokens"] == {"prompt_tokens": 100, "completion_tokens": 50}
        assert row["cost_usd"] == pytest.approx((100 * 1 + 50 * 2) / 1e6)
    assert md == (out / "report.md").read_text() + "\n"
    assert "| condition | test-model | other-model |" in md
    gt_line = next(line for line in md.splitlines() if line.startswith("| gt |"))
    assert "**0.800**" in gt_line and "**0.500**" in gt_line and "(n=10)" in gt_line
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_intervals():
    all_hits = [{"hit": 1, "n": 1}] * 30
    assert bootstrap("refer", all_hits, 200) == {"accuracy": (1.0, 1.0)}
    half = [{"hit": i % 2, "n": 1} for i in range(100)]
    lo, hi = bootstrap("refer", half, 1000, seed=3)["accuracy"]
    assert 0.35 < lo < 0.45 and 0.55 < hi < 0.65
    assert bootstrap("refer", half, 1000, seed=3) == bootstrap("refer", half, 1000, seed=3)
    # mIoU is resampled from summed counts; samples missing a category count zero for it
    label = [{"I:cat": 50, "U:cat": 100, "marks_right": 1, "marks_scored": 1}, {"I:dog": 10, "U:dog": 10, "marks_right": 0, "marks_scored": 1}]
    ci = bootstrap("label", label, 500)
    assert 0.0 <= ci["mIoU"][0] <= 0.75 <= ci["mIoU"][1] <= 1.0
    assert bootstrap("refer", [], 100) == {}
