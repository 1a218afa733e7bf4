"""The short version of benchmarks/app_load.py: a few gradio_client users at once on the served
toolbox, each with its own photo, mixing /mark, session clicks, loads and downloads. No errors,
and every answer shows the user's own photo (no cross-user leakage)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("som_bench_app_load", REPO / "benchmarks" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_users_at_once_get_their_own_marks(app_url, tmp_path):
    bench = _bench()
    photos = bench.user_photos(4, tmp_path, side=256)
    outcome = bench.run_users(app_url, "toolbox", photos, requests=5, segmenter="superpixel", timeout_s=300)
    assert not outcome.errors, outcome.errors
    assert not outcome.busy  # 4 users stay within the queue of 8
    done = {k: len(v) for k, v in outcome.latencies.items()}
    assert {"/mark", "/load_image", "/add_point", "download"} <= set(done), done
    assert sum(done.values()) == 4 * 5


def test_a_leak_would_be_caught(tmp_path):
    """The check itself: another user's picture does not pass for one's own."""
    import numpy as np
    import pytest
    from PIL import Image

    bench = _bench()
    photos = bench.user_photos(4, tmp_path, side=256)
    px = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    bench.assert_own(px[0], px[0], px[1:], "own")
    for j in range(1, 4):
        if px[j].shape == px[0].shape:
            with pytest.raises(AssertionError, match="not this user's photo"):
                bench.assert_own(px[j], px[0], px[1:j] + px[j + 1:] + [px[j]], "other")
