"""What makes the harness usable on paid models: the response cache (a re-run sends nothing, a
killed run resumes), bounded concurrency, retries, temperature 0 + seed, tokens and cost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oracle import Oracle
from openai_double import Step

from som.eval.cache import ResponseCache, request_key

REPO = Path(__file__).resolve().parents[2]


def _refer_count(smoke) -> int:
    return len(Path(smoke["refer"]).read_text().splitlines())


def _args(server, smoke, rundir, *extra):
    return ["eval", "run", "refer", "--data", str(smoke["refer"]), "-o", str(rundir), "--model", "test-model",
            "--base-url", server.base_url, "-q", "--bootstrap", "50", *extra]


def test_rerun_sends_no_request(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke, wrong=lambda kind, stem, key: key.startswith("the left"))
    n = 12
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "none,gt", "--limit", "12"))
    assert code == 0, err
    first = json.loads((rundir / "summary.json").read_text())
    assert len(llm_server.requests) == 2 * n
    assert [r["requests_sent"] for r in first["results"]] == [n, n]

    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "none,gt", "--limit", "12"))
    assert code == 0, err
    second = json.loads((rundir / "summary.json").read_text())
    assert len(llm_server.requests) == 2 * n  # nothing new reached the server
    assert [r["requests_sent"] for r in second["results"]] == [0, 0]
    assert [r["cached"] for r in second["results"]] == [n, n]
    assert first["results"][1]["metrics"]["accuracy"] < 1.0  # the oracle's wrong answers are in the cache too
    for a, b in zip(first["results"], second["results"]):
        assert a["metrics"] == b["metrics"] and a["counts"] == b["counts"] and a["tokens"] == b["tokens"]

    # another parameter is another request: the seed is part of the key
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "gt", "--seed", "7", "--limit", "12"))
    assert code == 0, err
    assert len(llm_server.requests) == 3 * n
    assert {r.body["seed"] for r in llm_server.requests[-n:]} == {7}
    assert {r.body["temperature"] for r in llm_server.requests} == {0.0}


def test_killed_run_resumes_without_repeating(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    llm_server.delay_s = 0.25
    n = _refer_count(smoke)
    env = {**os.environ, "OPENAI_API_KEY": llm_server.api_key, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "som.cli", *_args(llm_server, smoke, rundir, "--conditions", "gt", "--concurrency", "2")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # an ignored SIGINT survives exec, and earlier tests (Ray, servers) may leave this process
        # ignoring it: give the child the default, so Python turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while len(ResponseCache(rundir / "cache")) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (rundir / "summary.json").exists()
    done = len(ResponseCache(rundir / "cache"))
    assert 3 <= done < n
    while llm_server.in_flight and time.time() < deadline:  # requests the killed run had sent are still counted
        time.sleep(0.02)
    before = len(llm_server.requests)

    llm_server.delay_s = 0.0
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "gt"))
    assert code == 0, err
    assert len(llm_server.requests) - before == n - done  # finished samples were not asked again
    res = json.loads((rundir / "summary.json").read_text())["results"][0]
    assert res["cached"] == done and res["requests_sent"] == n - done
    assert res["metrics"]["accuracy"] == 1.0 and res["n"] == n


def test_ctrl_c_stops_soon_and_keeps_finished_replies(llm_server, smoke, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    llm_server.delay_s = 1.5
    env = {**os.environ, "OPENAI_API_KEY": llm_server.api_key, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "som.cli", *_args(llm_server, smoke, rundir, "--conditions", "none", "--concurrency", "2")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        # an ignored SIGINT survives exec, and earlier tests (Ray, servers) may leave this process
        # ignoring it: give the child the default, so Python turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 60
    while len(ResponseCache(rundir / "cache")) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    while llm_server.in_flight < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)  # both slots busy (1.5 s each): the run cannot have ended, no third can start
    with llm_server.lock:
        started = len(llm_server.requests) + llm_server.in_flight
    proc.send_signal(signal.SIGINT)
    t = time.time()
    proc.wait(timeout=30)
    assert proc.returncode == 130 and "interrupted" in proc.stderr.read().decode()
    assert time.time() - t < 8
    time.sleep(1.0)  # let the server finish what it got
    # the queued questions were dropped: no request started after Ctrl-C; those in flight were cached
    assert len(llm_server.requests) == started
    assert len(ResponseCache(rundir / "cache")) >= 2


def test_concurrency_bound(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    llm_server.delay_s = 0.15
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "none", "--concurrency", "3", "--limit", "12"))
    assert code == 0, err
    assert llm_server.max_in_flight == 3


def test_retries_seed_refusal_tokens_and_cost(llm_server, smoke, tmp_path):
    """429 and 500 are retried by the client; a server refusing `seed` is asked again without it;
    usage is summed into tokens, and prices give the cost."""
    from som.eval.client import EvalClient
    from som.eval.conditions import make_conditions
    from som.eval.data import load_data
    from som.eval.runner import RunOptions, run_eval
    from som.llm.client import LLMConfig

    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    llm_server.refuse_params = {"seed"}
    llm_server.enqueue(Step(status=429, message="slow down", headers={"Retry-After": "0"}), Step(status=500, message="oops"))
    delays: list[float] = []
    client = EvalClient(LLMConfig(model="test-model", base_url=llm_server.base_url, api_key=llm_server.api_key, max_retries=3, timeout_s=10),
                        sleep=delays.append)
    data = load_data("refer", smoke["refer"], limit=5)
    options = RunOptions(concurrency=1, price_in=2.5, price_out=10.0, quiet=True)
    summary = run_eval(data, make_conditions(["gt"]), client, rundir, options)
    res = summary["results"][0]
    assert res["metrics"]["accuracy"] == 1.0 and res["errors"] == 0
    assert len(delays) == 2  # one wait after the 429, one after the 500
    assert client.seed_refused and all("seed" not in r.body for r in llm_server.requests)
    assert res["tokens"] == {"prompt_tokens": 50, "completion_tokens": 25}
    assert res["cost_usd"] == pytest.approx((50 * 2.5 + 25 * 10.0) / 1e6)
    assert summary["params"] == {"temperature": 0.0, "seed": 0}


def test_failed_sample_is_reported_not_cached_and_retried(llm_server, smoke, run_cli, tmp_path):
    rundir = tmp_path / "run"
    llm_server.responder = Oracle(rundir, smoke)
    llm_server.enqueue(Step(status=400, message="this image is not allowed"))
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "gt", "--concurrency", "1", "--limit", "4"))
    assert code == 1 and "1 sample(s) failed" in err
    res = json.loads((rundir / "summary.json").read_text())["results"][0]
    assert res["errors"] == 1 and res["n"] == 3 and "bad_request" in res["error_examples"][0]
    assert len(ResponseCache(rundir / "cache")) == 3
    code, _, err = run_cli(*_args(llm_server, smoke, rundir, "--conditions", "gt", "--limit", "4"))
    assert code == 0, err
    res = json.loads((rundir / "summary.json").read_text())["results"][0]
    assert res["errors"] == 0 and res["requests_sent"] == 1 and res["cached"] == 3


def test_cache_key_and_atomic_entries(tmp_path):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    k = request_key("m", msgs, {"temperature": 0, "seed": 0})
    assert k == request_key("m", [dict(m) for m in msgs], {"seed": 0, "temperature": 0})
    assert k != request_key("m2", msgs, {"temperature": 0, "seed": 0})
    assert k != request_key("m", msgs, {"temperature": 0, "seed": 1})
    assert k != request_key("m", [{"role": "user", "content": [{"type": "text", "text": "hi!"}]}], {"temperature": 0, "seed": 0})
    cache = ResponseCache(tmp_path)
    assert cache.get(k) is None
    cache.put(k, {"text": "[3]", "usage": {"prompt_tokens": 1}})
    assert cache.get(k)["text"] == "[3]" and len(cache) == 1
    path = tmp_path / k[:2] / f"{k}.json"
    path.write_text('{"text": "[3]", "ke')  # a torn file reads as a miss, not an error
    assert cache.get(k) is None
    assert not list(tmp_path.rglob(".tmp-*"))
    with pytest.raises(ValueError, match="SHA-256"):
        cache.get("../../etc/passwd")


def test_messages_reuse_the_encoded_picture():
    import numpy as np

    from som.eval.runner import _with_texts
    from som.llm.client import LLMConfig, build_messages

    picture = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    config = LLMConfig(model="m", api_key="k", image_detail="high")
    shape = build_messages("system", "user", [picture], config)
    for system, user in (("You locate objects.", "Which mark is the cup?"), ("", "no system text")):
        assert _with_texts(shape, system, user) == build_messages(system, user, [picture], config)
