"""Running an evaluation: every sample of a task under every condition, cached, in parallel.

For each condition, images are marked one at a time on this thread (the segmenter is the
expensive part and runs best alone) while up to `concurrency` requests are in flight on a
thread pool. Each request first looks in the response cache; only a miss reaches the model
(with the client's retries on 429/5xx). Every sample's picture, prompt, answer, parsed marks
and score are kept in RUNDIR:

    RUNDIR/run.json                       task, data, model, conditions, parameters
    RUNDIR/summary.json                   metrics, tokens, cost and request counts per condition
    RUNDIR/images/<condition>/<image>.png the picture sent, and <image>.marks.json its marks
    RUNDIR/samples/<condition>.jsonl      one line per sample, in data order
    RUNDIR/cache/                         the responses (unless a shared --cache is given)

A killed run leaves its finished replies in the cache and its pictures on disk; the next run
with the same settings sends only the requests that never completed. A failed request
(after retries) is recorded with its error, left out of the metrics and counted, and asked
again by the next run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from som.eval.cache import ResponseCache, request_key
from som.eval.conditions import Condition, Marked, Marker
from som.eval.data import EvalData, EvalImage, Sample
from som.eval.prompts import eval_templates
from som.eval.tasks import TASK_SPECS, ScoreContext, sum_counts

FORMAT = "som.eval"
VERSION = 1


@dataclass(frozen=True)
class RunOptions:
    """concurrency: requests in flight. temperature / seed / max_tokens: sampling parameters sent
    (seed None: not sent). box_units: how no-marks boxes are read (see answers.parse_box).
    price_in / price_out: US dollars per million prompt / completion tokens (cost when both set).
    cache_dir: a response cache shared between runs (default RUNDIR/cache)."""

    concurrency: int = 4
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int | None = None
    box_units: str = "px"
    price_in: float | None = None
    price_out: float | None = None
    cache_dir: str | None = None
    templates_file: str | None = None
    device: str = "auto"
    checkpoint: str | None = None
    max_side_px: int = 2048
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        from som.eval.answers import BOX_UNITS

        if self.box_units not in BOX_UNITS:
            raise ValueError(f"box units must be one of {', '.join(BOX_UNITS)}, got {self.box_units!r}")

    def params(self) -> dict[str, Any]:
        """The sampling parameters sent with (and keyed into the cache of) every request."""
        p: dict[str, Any] = {"temperature": self.temperature}
        if self.seed is not None:
            p["seed"] = self.seed
        if self.max_tokens is not None:
            p["max_tokens"] = self.max_tokens
        return p


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN (a metric with nothing to count) as None, which JSON can hold."""
    return {k: None if isinstance(v, float) and v != v else v for k, v in metrics.items()}


def _cost(tokens: dict[str, int], options: RunOptions) -> float | None:
    if options.price_in is None or options.price_out is None:
        return None
    return (tokens["prompt_tokens"] * options.price_in + tokens["completion_tokens"] * options.price_out) / 1e6


class _Progress:
    def __init__(self, total: int, desc: str, quiet: bool) -> None:
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="q", disable=quiet, file=sys.stderr, leave=True)

    def update(self, cached: bool) -> None:
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def run_eval(
    data: EvalData,
    conditions: list[Condition],
    client: Any,
    out_dir: str | Path,
    options: RunOptions = RunOptions(),
    *,
    on_condition: Callable[[Condition, dict], None] | None = None,
) -> dict[str, Any]:
    """Evaluate `data` under each condition with `client` (an `EvalClient`); write RUNDIR and
    return the summary (also RUNDIR/summary.json)."""
    spec = TASK_SPECS[data.task]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(options.cache_dir or out / "cache")
    lib = eval_templates(options.templates_file)
    marker = Marker(out / "images", device=options.device, checkpoint=options.checkpoint, max_side_px=options.max_side_px)
    model = client.config.model
    from som.llm.errors import scrub

    run_doc = {
        "format": FORMAT,
        "version": VERSION,
        "task": data.task,
        "data": data.source,
        "samples": len(data.samples),
        "images": len(data.images),
        "model": model,
        "base_url": scrub(client.config.base_url or "https://api.openai.com/v1"),
        "params": options.params(),
        "options": {k: v for k, v in asdict(options).items() if k not in ("quiet",)},
        "conditions": [c.to_json() for c in conditions],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _atomic_write(out / "run.json", json.dumps(run_doc, indent=1))
    results = []
    for cond in conditions:
        if cond.kind not in spec.kinds:
            results.append({**cond.to_json(), "skipped": f"{data.task} needs marks; '{cond.kind}' shows none"})
            continue
        summary = _run_condition(data, cond, client, out, cache, lib, marker, options)
        results.append(summary)
        if on_condition is not None:
            on_condition(cond, summary)
    doc = {**run_doc, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "primary": spec.primary, "results": results}
    _atomic_write(out / "summary.json", json.dumps(doc, indent=1))
    return doc


def _with_texts(shape: list[dict[str, Any]], system: str, user: str) -> list[dict[str, Any]]:
    """`build_messages(system, user, [picture])` from one built with placeholder texts: the same
    messages without encoding the picture again for every question about it."""
    out: list[dict[str, Any]] = []
    for m in shape:
        if m["role"] == "system":
            if system:
                out.append({**m, "content": system})
        else:
            out.append({**m, "content": [{**m["content"][0], "text": user}, *m["content"][1:]]})
    return out


def _groups(samples: list[Sample]) -> list[tuple[str, list[int]]]:
    """Sample indices grouped by image, in order of first appearance."""
    order: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        order.setdefault(s.image, []).append(i)
    return list(order.items())


def _run_condition(
    data: EvalData,
    cond: Condition,
    client: Any,
    out: Path,
    cache: ResponseCache,
    lib: Any,
    marker: Marker,
    options: RunOptions,
) -> dict[str, Any]:
    from som.imageio import working_size
    from som.llm.client import build_messages

    spec = TASK_SPECS[data.task]
    params = options.params()
    model = client.config.model
    records: list[dict[str, Any] | None] = [None] * len(data.samples)
    remaining = {key: len(idx) for key, idx in _groups(data.samples)}
    tally = {"sent": 0, "cached": 0}
    tally_lock = threading.Lock()
    progress = _Progress(len(data.samples), cond.name, options.quiet)

    def ask(i: int, image: EvalImage, marked: Marked, messages: list, question: Any, sent_hw: tuple[int, int]) -> dict[str, Any]:
        sample = data.samples[i]
        key = request_key(model, messages, params)
        entry = cache.get(key)
        cached = entry is not None
        if entry is None:
            try:
                text, usage = client.complete_usage(messages, params)
            except Exception as e:  # noqa: BLE001 - one sample fails, the run goes on
                kind = getattr(e, "kind", type(e).__name__)
                return {"error": f"{kind}: {e}", "key": key}
            entry = {"model": model, "params": params, "text": text, "usage": usage, "created": time.time()}
            cache.put(key, entry)
        with tally_lock:
            tally["cached" if cached else "sent"] += 1
        ctx = ScoreContext(data, image, marked, sent_hw, options.box_units)
        try:
            scored = spec.score(sample, cond, entry["text"], ctx)
        except ValueError as e:  # a broken ground-truth annotation: this sample cannot be scored
            return {"answer": entry["text"], "error": f"ground truth: {e}", "key": key}
        return {"answer": entry["text"], "usage": entry.get("usage") or {}, "cached": cached, "key": key, **scored}

    def record(i: int, image: EvalImage, marked: Marked | None, question: Any, result: dict[str, Any]) -> None:
        sample = data.samples[i]
        picture = str(marked.file.relative_to(out)) if marked is not None and marked.file else str(image.path)
        records[i] = {
            "id": sample.id,
            "image": image.key,
            "picture": picture,
            "text": sample.text,
            "system": None if question is None else question.system,
            "prompt": None if question is None else question.user,
            **result,
        }
        progress.update(bool(result.get("cached")))
        remaining[image.key] -= 1
        if remaining[image.key] == 0:  # the image's last sample is scored: free its decoded masks
            for o in image.objects:
                o.release()

    pending: dict[Future, tuple[int, EvalImage, Marked, Any]] = {}

    def drain(limit: int) -> None:
        while len(pending) > limit:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                i, image, marked, question = pending.pop(f)
                record(i, image, marked, question, f.result())

    def submit_all(pool: ThreadPoolExecutor) -> None:
        for key, idx in _groups(data.samples):
            image = data.images[key]
            try:
                marked = marker(cond, image)
            except (ValueError, OSError) as e:  # an unreadable image or mismatched annotations
                for i in idx:
                    record(i, image, None, None, {"error": f"image: {e}"})
                continue
            url_hw = working_size(*marked.picture.shape[:2], client.config.max_image_side_px)
            shape = build_messages("system", "user", [marked.picture], client.config)  # the picture encoded once
            for i in idx:
                q = spec.question(data.samples[i], cond, marked, lib, url_hw, data)
                messages = _with_texts(shape, q.system, q.user)
                pending[pool.submit(ask, i, image, marked, messages, q, url_hw)] = (i, image, marked, q)
                drain(2 * options.concurrency)
        drain(0)

    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="som-eval") as pool:
        try:
            submit_all(pool)
        except BaseException:  # Ctrl-C (or a bug): queued requests are dropped; those in flight finish and are cached
            for f in pending:
                f.cancel()
            raise
        finally:
            progress.close()

    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records if r is not None)
    _atomic_write(out / "samples" / f"{cond.slug}.jsonl", lines)
    ok = [r for r in records if r is not None and "error" not in r]
    errors = [r for r in records if r is not None and "error" in r]
    totals = sum_counts([r["counts"] for r in ok])
    tokens = {
        "prompt_tokens": sum(int(r["usage"].get("prompt_tokens", 0)) for r in ok),
        "completion_tokens": sum(int(r["usage"].get("completion_tokens", 0)) for r in ok),
    }
    return {
        **cond.to_json(),
        "samples_file": f"samples/{cond.slug}.jsonl",
        "n": len(ok),
        "errors": len(errors),
        "error_examples": [e["error"] for e in errors[:3]],
        "counts": totals,
        "metrics": _finite(spec.metrics(totals)) if ok else {},
        "requests_sent": tally["sent"],
        "cached": tally["cached"],
        "tokens": tokens,
        "cost_usd": _cost(tokens, options),
    }


__all__ = ["FORMAT", "RunOptions", "VERSION", "run_eval"]
