"""Fixtures for som.llm: a local OpenAI-protocol test double (see openai_double.py) and hand-made marks."""

from __future__ import annotations

import numpy as np
import pytest
from openai_double import FakeOpenAIServer

from som.regions import Regions

API_KEY = "sk-test-SECRET-double-7f3a9c0e1b2d4c6a"


@pytest.fixture(autouse=True)
def _clean_llm_env(monkeypatch):
    """Tests never read the developer's real endpoint settings (and never reach a hosted API)."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SOM_MODEL", "SOM_TEST_KEY", "OPENAI_LOG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def llm_server():
    server = FakeOpenAIServer(api_key=API_KEY, models=("test-model", "other-model")).start()
    yield server
    server.stop()


class SleepRecorder:
    """Stands in for time.sleep between retries: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(llm_server, sleeps):
    """make_client(**config_overrides) -> LLMClient talking to the test double."""
    from som.llm.client import LLMClient, LLMConfig

    def make(**overrides):
        settings = dict(model="test-model", base_url=llm_server.base_url, api_key=API_KEY, timeout_s=5.0, max_retries=2)
        settings.update(overrides)
        return LLMClient(LLMConfig(**settings), sleep=sleeps)

    return make


@pytest.fixture
def llm_client(make_client):
    return make_client()


def hand_marks(label_mode: str = "number"):
    """A MarkResult built by hand: a real photo (scikit-image's chelsea, 300x451) and three
    disjoint rectangular masks labelled 1-3 (or a-c), no segmenter involved."""
    import skimage.data
    from PIL import Image, ImageDraw

    from som.draw import MarkStyle
    from som.pipeline import MarkResult

    source = skimage.data.chelsea()
    h, w = source.shape[:2]
    masks = np.zeros((3, h, w), bool)
    masks[0, 20:120, 30:200] = True
    masks[1, 150:280, 40:180] = True
    masks[2, 60:260, 250:430] = True
    labels = ["1", "2", "3"] if label_mode == "number" else ["a", "b", "c"]
    regions = Regions.from_masks(masks).replace(labels=labels)
    anchors = np.array([[115, 70], [110, 215], [340, 160]])
    regions = regions.replace(anchors_xy=anchors, label_xyxy=np.concatenate([anchors - 8, anchors + 8], axis=1))
    picture = Image.fromarray(source.copy())
    draw = ImageDraw.Draw(picture)
    for (x, y), label in zip(regions.anchors_xy, labels):
        draw.rectangle([x - 8, y - 8, x + 8, y + 8], fill=(0, 0, 0))
        draw.text((x - 4, y - 6), label, fill=(255, 255, 255))
    style = MarkStyle(label_mode="number" if label_mode == "number" else "alphabet")
    return MarkResult(image=np.asarray(picture), regions=regions, source=source, style=style)


@pytest.fixture
def marks():
    return hand_marks()
