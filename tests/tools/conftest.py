"""Fixtures for som.tools: a folder of real photos as the allowed root, the local OpenAI-protocol
test double (tests/llm/openai_double.py) as the LLM endpoint, `som mcp --http` as a real process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools_helpers import API_KEY, MODEL, PHOTOS, REPO, FakeOpenAIServer, ServerProcess, server_env


@pytest.fixture(scope="session")
def photo_root(tmp_path_factory) -> Path:
    """The allowed root: three real photos, a text file, a sub-folder, and a symbolic link leading out."""
    root = tmp_path_factory.mktemp("root")
    for name in PHOTOS:
        shutil.copy(REPO / "assets" / name, root / name)
    (root / "notes.txt").write_text("not an image\n")
    (root / "photos").mkdir()
    shutil.copy(REPO / "assets" / "chelsea.jpg", root / "photos" / "cat.jpg")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(REPO / "assets" / "coffee.jpg", outside / "secret.jpg")
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    return root


@pytest.fixture(scope="module")
def llm_server():
    server = FakeOpenAIServer(api_key=API_KEY, models=(MODEL,)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http_server(photo_root, llm_server):
    """One `som mcp --http` for the module, with the LLM double as its endpoint."""
    env = server_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=llm_server.base_url, SOM_MODEL=MODEL)
    server = ServerProcess(photo_root, env, "--verbose")
    yield server
    log = server.stop()
    assert "ask: ok in" in log and "mark_image: error after" in log  # --verbose logs every call...
    assert API_KEY not in log, "the server wrote the API key to its log"  # ...but never the key


