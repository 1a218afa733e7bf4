"""Fixtures for the chat app: the LLM test double of tests/llm (reused, not copied) and a chat app
served in a subprocess pointed at it."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

LLM_TESTS = Path(__file__).resolve().parents[1] / "llm"
REPO = Path(__file__).resolve().parents[2]
if str(LLM_TESTS) not in sys.path:
    sys.path.insert(0, str(LLM_TESTS))


def _load_llm_conftest():
    spec = importlib.util.spec_from_file_location("som_tests_llm_conftest", LLM_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_llm = _load_llm_conftest()
API_KEY = _llm.API_KEY  # the test double's key
llm_server = _llm.llm_server  # function-scoped FakeOpenAIServer fixture
_clean_llm_env = _llm._clean_llm_env  # autouse: the developer's endpoint settings never leak in

from openai_double import FakeOpenAIServer, Step  # noqa: E402  (after sys.path)

ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SOM_MODEL", "OPENAI_LOG", "SOM_TEST_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatApp:
    """`python demo_gpt4v_som.py` in a subprocess; everything it prints goes to `log_path`."""

    def __init__(self, env_overrides: dict[str, str], log_path: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env.update({"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env_overrides})
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "demo_gpt4v_som.py"), "--port", str(self.port), "--segmenter", "superpixel",
             "--verbose", *flags],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait(self, timeout_s: float = 60.0) -> "ChatApp":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chat app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"chat app did not come up in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def chat_server():
    """A module-wide LLM test double (the app subprocess keeps pointing at one URL)."""
    server = FakeOpenAIServer(api_key=API_KEY, models=("test-model", "other-model")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def apps(chat_server, tmp_path_factory):
    """Two chat apps started side by side: `keyed` has OPENAI_API_KEY/OPENAI_BASE_URL/SOM_MODEL set
    (pointing at the test double, 3 s timeout); `keyless` has no endpoint settings at all."""
    logs = tmp_path_factory.mktemp("chat-logs")
    keyed = ChatApp({"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": chat_server.base_url, "SOM_MODEL": "test-model"},
                    logs / "keyed.log", "--timeout", "3")
    keyless = ChatApp({}, logs / "keyless.log")
    try:
        yield {"keyed": keyed.wait(), "keyless": keyless.wait()}
    finally:
        keyed.stop()
        keyless.stop()
