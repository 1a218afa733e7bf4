"""Fixtures for som.tools: a folder of real photos as the allowed root, the local OpenAI-protocol
test double (tests/llm/openai_double.py) as the LLM endpoint, `som mcp` servers started as real
processes, and MCP client sessions made with the SDK's own client.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "llm"))
from openai_double import FakeOpenAIServer  # noqa: E402

pytest.importorskip("mcp", reason="som mcp needs the MCP SDK: pip install 'som[mcp]'")

API_KEY = "sk-test-SECRET-mcp-double-5b1e9d7c3a"
MODEL = "test-model"
LLM_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SOM_MODEL", "OPENAI_LOG", "SOM_TEST_KEY")
PHOTOS = ("coffee.jpg", "astronaut.jpg", "chelsea.jpg")


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a `som mcp` process: this checkout's som, no LLM settings unless given."""
    env = {k: v for k, v in os.environ.items() if k not in LLM_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.update(extra)
    return env


def som_mcp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "som.cli", "mcp", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_of(content: Any) -> np.ndarray:
    """An MCP ImageContent (base64 PNG) -> (H, W, 3) uint8."""
    from PIL import Image

    assert content.type == "image" and content.mime_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(content.data))).convert("RGB"))


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


@pytest.fixture(scope="session")
def outside_file(photo_root) -> Path:
    return (photo_root / "escape.jpg").resolve()


@pytest.fixture(scope="module")
def llm_server():
    server = FakeOpenAIServer(api_key=API_KEY, models=(MODEL,)).start()
    yield server
    server.stop()


class ServerProcess:
    """`som mcp --http` as a child process on a free localhost port."""

    def __init__(self, root: Path, env: dict[str, str], *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        cmd = som_mcp_command("--http", "--port", str(self.port), "--root", str(root), *extra)
        self.log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty server never blocks
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stderr=self.log, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"som mcp --http exited with {self.proc.returncode}: {self.stop()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("som mcp --http did not listen within 60 s")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="module")
def http_server(photo_root, llm_server):
    """One `som mcp --http` for the module, with the LLM double as its endpoint."""
    env = server_env(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=llm_server.base_url, SOM_MODEL=MODEL)
    server = ServerProcess(photo_root, env)
    yield server
    log = server.stop()
    assert API_KEY not in log, "the server wrote the API key to its log"


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def stdio_session(root: Path, env: dict[str, str], *extra: str, errlog: Any = None) -> AsyncIterator[Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    cmd = som_mcp_command("--root", str(root), *extra)
    params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=env, cwd=str(root))
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def error_text(result: Any) -> str:
    """The one-line reason of an MCP tool error (asserting it is one)."""
    assert result.is_error, f"expected a tool error, got {result.content[0].text[:200] if result.content else result}"
    assert len(result.content) == 1 and result.content[0].type == "text"
    text = result.content[0].text
    assert text and "\n" not in text and len(text) <= 500
    return text
