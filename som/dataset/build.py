"""`build_dataset`: plan the jobs, run an engine, (optionally) describe with an LLM, merge.

Output folder:

    OUT/images/NAME.png          the marked images (what the records' "image" names)
    OUT/marks/NAME.marks.json    som.marks documents (COCO RLE per mark, label boxes; with
                                 --coco also category, category_id, annotation_id per mark)
    OUT/parts/NAME.json          per-image records, written last and atomically (resume state)
    OUT/llm/NAME.json            cached LLM replies (--llm only)
    OUT/records.json[l]          every record, in image order (LLaVA conversation format)
    OUT/summary.json             counts, skipped images and annotations with reasons
    OUT/manifest.json            the settings the folder was built with (resume checks them)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from som.dataset.core import BuildConfig, ImageJob, done_names, file_sha256, merge, prepare_out_dir


@dataclass
class BuildReport:
    summary: dict
    resumed: int = 0
    elapsed_s: float = 0.0
    llm_errors: list = field(default_factory=list)


def plan_jobs(images_dir: str | Path, coco_path: str | Path | None = None) -> tuple[list[ImageJob], list[dict], dict]:
    """(jobs in a fixed order, images skipped before any work, coco info for the config).

    With COCO: one job per COCO image (file_name under images_dir); images in the folder the
    file does not mention are skipped ("not in the annotations file").
    """
    from som.cli import output_names
    from som.imageio import list_images

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"--images {images_dir}: not a folder")
    on_disk = list_images([images_dir])
    if coco_path is None:
        names = output_names(on_disk)
        return [ImageJob(index=i, name=n, path=str(p)) for i, (p, n) in enumerate(zip(on_disk, names))], [], {}
    from som.dataset.coco import load_coco

    index = load_coco(coco_path)
    entries = sorted(index.images.values(), key=lambda im: (im["file_name"], str(im["id"])))
    paths = [images_dir / im["file_name"] for im in entries]
    names = output_names(paths)
    jobs = [
        ImageJob(
            index=i,
            name=n,
            path=str(p),
            image_id=im["id"],
            height=im.get("height"),
            width=im.get("width"),
            annotations=tuple(index.annotations[im["id"]]),
        )
        for i, (im, p, n) in enumerate(zip(entries, paths, names))
    ]
    listed = {p.resolve() for p in paths}
    skipped = [{"image": p.name, "reason": "not in the annotations file"} for p in on_disk if p.resolve() not in listed]
    info = {
        "categories": tuple(sorted(index.categories.items())),
        "sha256": file_sha256(coco_path),
        "orphans": len(index.orphans),
    }
    return jobs, skipped, info


def build_dataset(
    images_dir: str | Path,
    out_dir: str | Path,
    cfg: BuildConfig,
    *,
    coco: str | Path | None = None,
    engine: str = "local",
    workers: int = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    ray_cpus: int | None = None,
    actors: int | None = None,
    record_format: str = "json",
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    llm_client: Any = None,
    llm_concurrency: int = 4,
    log=lambda msg: print(msg, file=sys.stderr),
) -> BuildReport:
    """Build (or resume building) a SoM dataset. `cfg.use_coco`/`categories` are filled from `coco`."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    jobs, skipped, info = plan_jobs(images_dir, coco)
    if coco is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, use_coco=True, categories=info["categories"])
        if info["orphans"]:
            log(f"som dataset: {info['orphans']} annotation(s) name an image_id the file does not list; ignored")
    if limit is not None:
        jobs = jobs[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    prepare_out_dir(out_dir, {"format": "som.dataset", "config": cfg.fingerprint({"coco_sha256": info.get("sha256")})}, overwrite)
    done = done_names(out_dir)
    todo = [j for j in jobs if j.name not in done]
    resumed = len(jobs) - len(todo)
    if resumed:
        log(f"som dataset: resuming: {resumed} of {len(jobs)} image(s) already built")

    bar = tqdm(total=len(jobs), initial=resumed, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    marks = [0]

    def report(job: ImageJob, result: dict) -> None:
        if "skipped" in result:
            skipped.append({"image": Path(job.path).name, "reason": result["skipped"]})
            tqdm.write(f"som dataset: skipped {Path(job.path).name}: {result['skipped']}", file=sys.stderr)
        else:
            marks[0] += result["marks"]
        bar.update(1)
        bar.set_postfix_str(f"{marks[0]} marks, {len(skipped)} skipped", refresh=False)

    try:
        if engine == "local":
            from som.dataset.engines import run_local

            run_local(todo, cfg, out_dir, report, workers=workers, threads=threads)
        elif engine == "ray":
            from som.dataset.engines import run_ray

            run_ray(todo, cfg, out_dir, report, address=ray_address, num_cpus=ray_cpus, actors=actors, threads=threads)
        else:
            raise ValueError(f"--engine must be local or ray, got {engine!r}")
    finally:
        bar.close()

    descriptions = None
    llm_errors: list = []
    if llm_client is not None:
        names = [j.name for j in jobs]
        lbar = tqdm(total=len(names), unit="img", desc="llm", disable=not progress, file=sys.stderr)

        def on_done(name: str, error: str | None) -> None:
            if error:
                llm_errors.append({"image": name, "reason": error})
                tqdm.write(f"som dataset: llm failed for {name}: {error}", file=sys.stderr)
            lbar.update(1)

        from som.dataset.llm import describe_all

        descriptions = describe_all(out_dir, names, cfg.style.label_mode, llm_client, llm_concurrency, on_done)
        lbar.close()
    summary = merge(out_dir, jobs, skipped, cfg, record_format, descriptions)
    return BuildReport(summary=summary, resumed=resumed, elapsed_s=time.perf_counter() - t0, llm_errors=llm_errors)
