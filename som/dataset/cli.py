"""`som dataset build`: SoM training data (listing and QA records) from a folder of images.

Only argparse-level code runs at import (som.cli imports every plugin to build its parser).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    from som.cli import add_marking_options

    p = subparsers.add_parser("dataset", help="build SoM training data (listing / QA records)")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    b = sub.add_parser(
        "build",
        help="mark every image and write LLaVA-format records",
        description=(
            "Mark every image in --images (regions from the COCO masks of --coco, else from --segmenter) "
            "and write OUT/images/*.png, OUT/marks/*.marks.json and OUT/records.json(l) in LLaVA "
            "conversation format. Rerunning with the same --out resumes where a killed run stopped."
        ),
    )
    b.add_argument("--images", required=True, metavar="DIR", help="folder of images (COCO file_name is relative to it)")
    b.add_argument("--coco", metavar="ANNOTATIONS.json", help="COCO instances file: ground-truth masks and category names")
    b.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed when it exists)")
    b.add_argument("--tasks", default="listing,qa", help="comma list of listing, qa (default: both)")
    b.add_argument("--seed", type=int, default=0, help="seed of the instruction / question sampling (default 0)")
    b.add_argument("--qa-per-image", type=int, default=3, metavar="N", help="questions per QA record (default 3)")
    b.add_argument("--crowd", choices=["skip", "mark"], default="skip", help="COCO crowd annotations: skip (default) or mark as '<category> (crowd)'")
    b.add_argument("--format", dest="record_format", choices=["json", "jsonl"], default="json", help="records.json (a list, LLaVA style) or records.jsonl")
    b.add_argument("--image-format", choices=["png", "jpg"], default="png", help="marked image files (png: lossless marks)")
    b.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    b.add_argument("--overwrite", action="store_true", help="start again when --out was built with other settings")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e = b.add_argument_group("engine")
    e.add_argument("--engine", choices=["local", "ray"], default="local", help="local process pool (default) or Ray Data")
    e.add_argument("--workers", type=int, default=None, metavar="N", help="local engine: processes (default: CPU count)")
    e.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads per worker/actor (default: CPUs / workers)")
    e.add_argument("--ray-address", default=None, metavar="ADDR", help="'auto' (join this machine's cluster), ray://HOST:10001, or unset: start a local Ray")
    e.add_argument("--ray-cpus", type=int, default=None, metavar="N", help="CPUs of a locally started Ray (default: all)")
    e.add_argument("--actors", type=int, default=None, metavar="N", help="Ray segmentation actors (default: one per GPU, else CPUs/2)")
    g = b.add_argument_group("llm (optional richer listing descriptions)")
    g.add_argument("--llm", action="store_true", help="ask an OpenAI-compatible model to describe every mark")
    g.add_argument("--model", help="model name (default: $SOM_MODEL, else gpt-4o)")
    g.add_argument("--base-url", help="endpoint base URL (default: $OPENAI_BASE_URL)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="environment variable holding the API key")
    g.add_argument("--llm-concurrency", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    g.add_argument("--llm-timeout", type=float, default=None, metavar="S", help="seconds per request attempt")
    add_marking_options(b)
    b.set_defaults(func=run_build)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def _fail(message: str, code: int = 1) -> int:
    print(f"som dataset: error: {message}", file=sys.stderr)
    return code


def run_build(args: argparse.Namespace) -> int:
    from som.cli import marking_kwargs
    from som.dataset.core import BuildConfig
    from som.dataset.tasks import TASKS

    try:
        kw = marking_kwargs(args)
        if "classes" in kw:
            raise ValueError("som dataset build takes no --classes (yet): its marks come from ground truth or "
                             "a segmenter's own vocabulary")
        tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks:
            raise ValueError(f"--tasks takes a comma list of {', '.join(TASKS)}; got {args.tasks!r}")
        if args.qa_per_image < 1:
            raise ValueError(f"--qa-per-image must be >= 1, got {args.qa_per_image}")
        for flag in ("workers", "threads", "ray_cpus", "actors", "limit"):
            v = getattr(args, flag)
            if v is not None and v < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {v}")
    except ValueError as e:
        return _fail(str(e), 2)
    cfg = BuildConfig(
        tasks=tasks,
        seed=args.seed,
        qa_per_image=args.qa_per_image,
        crowd=args.crowd,
        image_format=args.image_format,
        segmenter=args.segmenter,
        granularity=str(args.granularity),
        style=kw["style"],
        refine=kw["refine_options"],
        max_side_px=args.max_side,
        device=args.device,
        checkpoint=args.checkpoint,
    )
    client = None
    if args.llm:
        try:
            from som.llm.client import LLMClient, LLMConfig
            from som.llm.errors import LLMError

            settings = {} if args.llm_timeout is None else {"timeout_s": args.llm_timeout}
            client = LLMClient(LLMConfig.from_env(model=args.model, base_url=args.base_url, api_key_env=args.api_key_env, **settings))
        except (LLMError, ImportError, ValueError) as e:
            return _fail(str(e), 2)
    workers = args.workers or (os.cpu_count() or 1)
    threads = args.threads or max(1, (os.cpu_count() or 1) // workers)
    if not args.coco and args.engine == "local" and workers > 1 and args.workers is None:
        workers = 1  # one model per process: more processes would hold more weights and fight for cores
        threads = args.threads or (os.cpu_count() or 1)
    from som.dataset.build import build_dataset

    try:
        rep = build_dataset(
            args.images,
            args.out,
            cfg,
            coco=args.coco,
            engine=args.engine,
            workers=workers,
            threads=threads,
            ray_address=args.ray_address,
            ray_cpus=args.ray_cpus,
            actors=args.actors,
            record_format=args.record_format,
            limit=args.limit,
            overwrite=args.overwrite,
            progress=not args.quiet,
            llm_client=client,
            llm_concurrency=args.llm_concurrency,
        )
    except (ValueError, ImportError) as e:
        return _fail(str(e), 2)
    s = rep.summary
    line = (
        f"som dataset: {s['written']} of {s['images']} image(s), {s['marks']} marks, {s['records']} records "
        f"-> {args.out} in {rep.elapsed_s:.1f} s"
    )
    if rep.resumed:
        line += f" ({rep.resumed} from an earlier run)"
    print(line, file=sys.stderr)
    if s["skipped"]:
        print(f"som dataset: skipped {len(s['skipped'])} image(s):", file=sys.stderr)
        for x in s["skipped"]:
            print(f"  {x['image']}: {x['reason']}", file=sys.stderr)
    if s["annotations_not_marked"]:
        parts = ", ".join(f"{v} {k}" for k, v in s["annotations_not_marked"].items())
        print(f"som dataset: annotations not marked: {parts} (details in summary.json)", file=sys.stderr)
    if rep.llm_errors:
        print(f"som dataset: llm failed for {len(rep.llm_errors)} image(s); rerun to retry them", file=sys.stderr)
    return 0 if not s["skipped"] and not rep.llm_errors else 1
