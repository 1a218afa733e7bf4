"""Helpers of the som.tools tests: `som mcp` as a real process, MCP client sessions made with the
SDK's own client, and checks of marks as data against the picture they were drawn on."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from scipy import ndimage

from som.marksfile import decode_rle

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "llm"))  # the LLM test double lives there
from openai_double import FakeOpenAIServer  # noqa: E402


API_KEY = "sk-test-SECRET-mcp-double-5b1e9d7c3a"
MODEL = "test-model"
LLM_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SOM_MODEL", "OPENAI_LOG", "SOM_TEST_KEY")
PHOTOS = ("coffee.jpg", "astronaut.jpg", "chelsea.jpg")


def run_async(fn: Any) -> Any:
    """anyio.run(fn) on a thread of its own: the suite's session-wide Playwright browser (sync
    API) keeps an event loop running on the main thread, where a second one cannot start."""
    import anyio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn).result()


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


def decode_masks(marks: list[dict], image_hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool from the marks' COCO RLE, checked against each mark's area and box."""
    masks = []
    for m in marks:
        mask = decode_rle(m["rle"])
        assert mask.shape == image_hw, (m["label"], mask.shape)
        assert int(mask.sum()) == m["area"], m["label"]
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [round(v) for v in m["xyxy"]], m["label"]
        masks.append(mask)
    return np.stack(masks)


def check_drawn(source: np.ndarray, marked: np.ndarray, marks: list[dict], alpha: float = 0.4) -> None:
    """The masks are where the marks were drawn: inside each region's visible part (its mask minus
    regions nested in it) the picture is the photo blended with one colour, every label sits in its
    own region, and pixels outside every region are (nearly all) untouched."""
    masks = decode_masks(marks, source.shape[:2])
    n = len(masks)
    for i in range(n):  # any two regions are disjoint or nested
        for j in range(i + 1, n):
            both = np.logical_and(masks[i], masks[j]).sum()
            assert both == 0 or both == min(masks[i].sum(), masks[j].sum()), (marks[i]["label"], marks[j]["label"])
    src = source.astype(np.float32)
    implied = (marked.astype(np.float32) - (1 - alpha) * src) / alpha  # the fill colour where a region is
    for k, m in enumerate(marks):
        inner = [j for j in range(n) if j != k and masks[j].sum() < masks[k].sum() and not (masks[j] & ~masks[k]).any()]
        visible = masks[k] & ~np.any(masks[inner], axis=0) if inner else masks[k]
        # away from the contours (drawn along the border) and from the label boxes
        core = ndimage.binary_erosion(visible, iterations=4)
        for other in marks:
            x1, y1, x2, y2 = (int(round(v)) for v in other["label_xyxy"])
            core[max(y1 - 1, 0) : y2 + 2, max(x1 - 1, 0) : x2 + 2] = False
        if core.sum() < 50:
            continue  # a sliver: nothing but border
        colours = implied[core]
        colour = np.median(colours, axis=0)
        same = np.all(np.abs(colours - colour) <= 6, axis=1).mean()
        assert same > 0.9, f"mark {m['label']}: only {same:.0%} of its pixels carry one fill colour"
        x, y = m["anchor_xy"]
        assert masks[k][y, x], f"label {m['label']} at {(x, y)} is not inside its region"
    outside = ndimage.binary_erosion(~masks.any(axis=0), iterations=4)  # away from contours
    if outside.sum() > 1000:
        untouched = np.all(marked[outside] == source[outside], axis=1).mean()
        assert untouched > 0.9, f"only {untouched:.0%} of the pixels outside every region are untouched"


def check_highlight(source: np.ndarray, picture: np.ndarray, masks: np.ndarray, dim: float = 0.55) -> None:
    """Outside the chosen regions the highlight picture is the photo dimmed; inside it is not."""
    chosen = masks.any(axis=0)
    dimmed = np.rint(source.astype(np.float32) * (1 - dim)).astype(np.uint8)
    away = ndimage.binary_erosion(~chosen, iterations=4)  # contours may spill over the border
    assert np.all(picture[away] == dimmed[away], axis=1).mean() > 0.99
    assert np.all(picture[chosen] == dimmed[chosen], axis=1).mean() < 0.1
