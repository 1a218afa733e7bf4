"""`som ask` against the local OpenAI-protocol test double, marking with the weight-free superpixel segmenter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import API_KEY
from openai_double import Step
from PIL import Image

from som.cli import main as som_main


@pytest.fixture
def photo(tmp_path):
    import skimage.data

    path = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    return path


@pytest.fixture
def endpoint(llm_server, monkeypatch):
    monkeypatch.setenv("SOM_TEST_KEY", API_KEY)
    return ["--base-url", llm_server.base_url, "--model", "test-model", "--api-key-env", "SOM_TEST_KEY", "--timeout", "5"]


MARKING = ["--segmenter", "superpixel", "--granularity", "3"]


def test_list_templates(capsys):
    assert som_main(["ask", "--list-templates"]) == 0
    out = capsys.readouterr().out
    for name in ("chat", "list", "refer", "ground", "label", "match"):
        assert f"\n{name} " in "\n" + out


def test_list_templates_with_file(capsys, tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"count": {"extends": "refer", "description": "count things", "user": "How many {question}?"}}))
    assert som_main(["ask", "--list-templates", "--templates-file", str(f)]) == 0
    assert "count  " in capsys.readouterr().out


def test_ask_prints_answer_then_marks_json(capsys, llm_server, endpoint, photo, tmp_path):
    llm_server.enqueue(Step(text="The cat is [2], next to [1]."))
    hl, marked = tmp_path / "hl.png", tmp_path / "marked.png"
    code = som_main(["ask", str(photo), "where is the cat?", *endpoint, *MARKING,
                     "--save-highlight", str(hl), "--save-marked", str(marked), "--max-image-side", "300"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0] == "The cat is [2], next to [1]."
    marks = json.loads(lines[-1])
    assert [m["label"] for m in marks] == ["2", "1"]
    assert set(marks[0]) == {"label", "xyxy", "area"} and len(marks[0]["xyxy"]) == 4 and marks[0]["area"] > 0
    assert np.asarray(Image.open(hl)).shape == (300, 451, 3)
    assert np.asarray(Image.open(marked)).shape == (300, 451, 3)
    (req,) = llm_server.requests
    assert req.images == [("PNG", (200, 300))] and "where is the cat?" in req.all_text


def test_ask_streams(capsys, llm_server, endpoint, photo):
    llm_server.enqueue(Step(text="Mark 1 is fur. [2] too.", chunk_chars=3))
    assert som_main(["ask", str(photo), "what is this?", "--stream", "--template", "chat", *endpoint, *MARKING]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Mark 1 is fur. [2] too."
    assert [m["label"] for m in json.loads(out[-1])] == ["1", "2"]
    assert llm_server.requests[0].body["stream"] is True


@pytest.mark.parametrize(
    "argv,words",
    [
        (["ask", "missing.png", "q"], "no such file"),
        (["ask", "{photo}", "q", "--template", "nope"], "unknown template"),
        (["ask", "{photo}", "", "--template", "refer"], "needs a question"),
        (["ask", "{photo}", "q", "--model", "nope-model"], "'nope-model' not found"),
        (["ask", "{photo}", "q", "--granularity", "9"], "granularity"),
        (["ask", "{photo}", "q", "--templates-file", "missing.yaml"], "cannot read"),
        (["ask"], "IMAGE is required"),
    ],
)
def test_errors_are_one_line(capsys, endpoint, photo, argv, words):
    argv = [a.replace("{photo}", str(photo)) for a in argv]
    # the later --model wins over the endpoint default
    code = som_main([*argv[:1], *endpoint, *MARKING, *argv[1:]])
    err = capsys.readouterr().err
    assert code != 0
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_key_anywhere(capsys, photo):
    assert som_main(["ask", str(photo), "q", *MARKING]) == 1
    err = capsys.readouterr().err
    assert "no API key" in err and "OPENAI_API_KEY" in err


def test_wrong_key_in_a_real_process(llm_server, photo):
    """The console path end to end: exit status 1, one line on stderr, no traceback, the key never shown."""
    wrong = "sk-wrong-proc-key-0123456789abcdef"
    env = {**os.environ, "MY_KEY": wrong}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "som.cli", "ask", str(photo), "where?", "--base-url", llm_server.base_url,
         "--model", "test-model", "--api-key-env", "MY_KEY", *MARKING],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("som ask: error:") and "rejected the API key" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert wrong not in proc.stderr + proc.stdout and API_KEY not in proc.stderr + proc.stdout
