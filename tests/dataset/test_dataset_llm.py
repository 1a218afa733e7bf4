"""The optional --llm step against the local OpenAI-protocol test double (tests/llm/openai_double.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
pytest.importorskip("openai")
from openai_double import FakeOpenAIServer, Step  # noqa: E402

from som.cli import main as som_main  # noqa: E402


@pytest.fixture
def server():
    s = FakeOpenAIServer(api_key="sk-test-dataset", models=("test-model",)).start()
    yield s
    s.stop()


def test_llm_descriptions_are_used_cached_and_resumable(coco_data, tmp_path, server, monkeypatch):
    images, ann = coco_data
    monkeypatch.setenv("SOM_DS_KEY", "sk-test-dataset")
    args = ["dataset", "build", "--images", str(images), "--coco", str(ann), "--out", str(tmp_path / "o"), "-q",
            "--workers", "1", "--tasks", "listing", "--llm", "--model", "test-model", "--base-url", server.base_url,
            "--api-key-env", "SOM_DS_KEY", "--llm-concurrency", "1"]  # fmt: skip
    # 4 images: one fails with a 400 (reported, not cached), the others answer; [2] is left out by one reply
    server.enqueue(
        Step(text="[1] a grey astronaut suit\n[2] a white space shuttle"),
        Step(text="[1] a tabby cat\n[3] a green bottle"),
        Step(status=400, message="bad image"),
        Step(text="[1] a wooden table"),
    )
    assert som_main(args) == 1  # corrupt.jpg / extra.png skipped, one llm failure
    first = len(server.requests)
    assert first == 4
    assert all(r.images for r in server.requests)
    assert any("[1] person" in r.all_text for r in server.requests)  # known categories go as hints
    records = {r["id"]: r["conversations"][1]["value"] for r in json.loads((tmp_path / "o/records.json").read_text())}
    described = [v for v in records.values() if v.startswith("[1] a ")]
    assert len(described) == 3
    chelsea = next(v for v in described if "tabby" in v)
    assert chelsea.splitlines()[1] == "[2] pottedplant"  # left out by the model: ground truth text
    # rerun: cached replies are not asked again, the failed image is
    server.enqueue(Step(text="[1] a brown table\n[2] a coffee cup"))
    assert som_main(args) == 1
    assert len(server.requests) == first + 1
    records2 = json.loads((tmp_path / "o/records.json").read_text())
    assert sum(r["conversations"][1]["value"].startswith("[1] a ") for r in records2) == 4
    assert json.loads((tmp_path / "o/summary.json").read_text())["llm_described"] == 4
