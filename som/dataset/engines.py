"""Engines that run the stages of `som.dataset.core` over many images.

- `local` (default): the calling process (workers=1) or a process pool; no Ray. Workers
  write their own files (same machine), the parent keeps the progress bar.
- `ray`: Ray Data. Segmenter datasets run segmentation in an actor pool (num_gpus=1 per
  actor when the cluster has GPUs, else one CPU each), then marking/drawing as CPU tasks;
  ground-truth datasets need only the CPU tasks. Outputs stream back to the driver, which
  writes them, so workers need no shared output folder (they do need to read the images:
  a shared filesystem or the same path on every node).

Both call the same functions on the same inputs, so records are byte-identical.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterator

from som.dataset.core import BuildConfig, ImageJob, SkipImage, finish_job, run_one, segment_job, write_output

# (job, result) where result is {"skipped": reason} or {"marks": n}
Report = Callable[[ImageJob, dict], None]


def _set_threads(threads: int | None) -> None:
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover - superpixel-only installs
            pass


def _segmenter(cfg: BuildConfig):
    if cfg.use_coco:
        return None
    from som.pipeline import cached_segmenter

    return cached_segmenter(cfg.segmenter, cfg.device, cfg.checkpoint)


def _local_task(job: ImageJob, cfg: BuildConfig, out_dir: str) -> dict:
    got = run_one(job, cfg, _segmenter(cfg))
    if "skip" in got:
        return {"skipped": got["skip"]}
    write_output(Path(out_dir), job.name, got["output"], cfg.image_format)
    return {"marks": _n_marks(got["output"])}


def _n_marks(output: dict) -> int:
    import json

    return int(json.loads(output["part"])["n_marks"])


def run_local(jobs: list[ImageJob], cfg: BuildConfig, out_dir: Path, report: Report, workers: int = 1, threads: int | None = None) -> None:
    if workers <= 1 or len(jobs) <= 1:
        _set_threads(threads)
        for job in jobs:
            report(job, _local_task(job, cfg, str(out_dir)))
        return
    import multiprocessing as mp

    # spawn: workers start clean (no inherited torch/OpenMP state, no forked threads)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_set_threads, initargs=(threads,)) as pool:
        pending: dict[Any, ImageJob] = {}
        it = iter(jobs)
        window = 2 * workers  # bounded: a million-image run does not queue a million futures
        while True:
            while len(pending) < window:
                job = next(it, None)
                if job is None:
                    break
                pending[pool.submit(_local_task, job, cfg, str(out_dir))] = job
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                job = pending.pop(f)
                try:
                    result = f.result()
                except Exception as e:  # noqa: BLE001 - a crashed worker must not lose the summary line
                    result = {"skipped": f"worker failed: {type(e).__name__}: {e}"}
                report(job, result)


# ---------------------------------------------------------------- Ray
class _SegmentActor:
    """Ray actor: holds one segmenter (weights loaded once) and segments images."""

    def __init__(self, cfg: BuildConfig, threads: int | None = None):
        _set_threads(threads)
        self.cfg = cfg
        self.segmenter = _segmenter(cfg)

    def __call__(self, row: dict) -> dict:
        job = ImageJob.from_json(row["job"])
        out = {"job": row["job"], "skip": "", "labels": b"", "scores": b"", "parents": b"", "categories": ""}
        got = _guard(lambda: segment_job(job, self.cfg, self.segmenter))
        if "skip" in got:
            out["skip"] = got["skip"]
        else:
            out.update(got["value"])
        return out


def _guard(fn: Callable[[], Any]) -> dict:
    try:
        return {"value": fn()}
    except SkipImage as e:
        return {"skip": str(e)}
    except MemoryError:
        return {"skip": "out of memory; try a smaller --max-side"}
    except Exception as e:  # noqa: BLE001 - one bad image must not fail a cluster job
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"skip": f"{type(e).__name__}: {first}"}


def _finish_row(row: dict, cfg: BuildConfig) -> dict:
    job = ImageJob.from_json(row["job"])
    out = {"name": job.name, "skip": row.get("skip", "") or "", "image": b"", "marks": "", "part": ""}
    if out["skip"]:
        return out
    segmented = None if cfg.use_coco else {k: row.get(k) for k in ("labels", "scores", "parents", "categories")}
    got = _guard(lambda: finish_job(job, cfg, segmented))
    if "skip" in got:
        out["skip"] = got["skip"]
    else:
        out.update(got["value"])
    return out


def ray_rows(
    jobs: list[ImageJob],
    cfg: BuildConfig,
    *,
    actors: int | None = None,
    threads: int | None = None,
) -> Iterator[dict]:
    """Run the stages on Ray Data (already initialised); yields one output row per job."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is the one progress bar
    ctx.execution_options.preserve_order = False  # merge() orders; stream results as they come
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    items = [{"job": j.to_json()} for j in jobs]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 256)))
    if not cfg.use_coco:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if gpus:
            n = actors or gpus
            opts = {"num_gpus": 1, "num_cpus": 1}
        else:
            n = actors or max(1, int(resources.get("CPU", 1)) // 2)
            opts = {"num_cpus": threads or 1}
        try:  # Ray >= 2.51: compute=ActorPoolStrategy; older: concurrency=n
            from ray.data import ActorPoolStrategy

            pool = {"compute": ActorPoolStrategy(size=n)}
        except ImportError:  # pragma: no cover
            pool = {"concurrency": n}
        ds = ds.map(_SegmentActor, fn_constructor_kwargs={"cfg": cfg, "threads": threads}, **pool, **opts)
    ds = ds.map(_finish_row, fn_kwargs={"cfg": cfg}, num_cpus=1)
    yield from ds.iter_rows()


def run_ray(
    jobs: list[ImageJob],
    cfg: BuildConfig,
    out_dir: Path,
    report: Report,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int | None = None,
    threads: int | None = None,
) -> None:
    """address: None/"local" starts a local Ray (num_cpus of this machine); "auto" joins the
    cluster this machine is part of; "ray://host:10001" connects a Ray Client."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError("--engine ray needs Ray Data: pip install 'som[dataset]' (or pip install 'ray[data]')") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address in (None, "", "local"):
            kwargs["num_cpus"] = num_cpus or os.cpu_count()
        else:
            kwargs["address"] = address
        # workers import som from the same environment; the working dir holds nothing they need
        ray.init(**kwargs)
        started = True
    try:
        if not jobs:
            return
        by_name = {j.name: j for j in jobs}
        for row in ray_rows(jobs, cfg, actors=actors, threads=threads):
            job = by_name[row["name"]]
            if row["skip"]:
                report(job, {"skipped": row["skip"]})
                continue
            output = {"image": row["image"], "marks": row["marks"], "part": row["part"]}
            write_output(out_dir, job.name, output, cfg.image_format)
            report(job, {"marks": _n_marks(output)})
    finally:
        if started:
            ray.shutdown()
