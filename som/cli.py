"""`som` command line: mark images, list segmenters, and the subcommands of the other parts.

Every failure a user can cause ends in one readable line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path

MARK_TYPES = ("mark", "mask", "box", "contour")
# subcommands living next to the code they drive: module with register(subparsers)
PLUGINS = (
    "som.llm.cli", "som.app.cli", "som.app.chat_cli", "som.dataset.cli", "som.tools.cli", "som.web.cli", "som.screen.cli",
    "som.eval.cli",
)


def _fail(message: str, code: int = 1) -> int:
    print(f"som: error: {message}", file=sys.stderr)
    return code


def parse_mark_types(text: str) -> dict[str, bool]:
    """'mark,mask,contour' -> MarkStyle flags; ValueError naming the valid types."""
    chosen = {t.strip().lower() for t in text.split(",") if t.strip()}
    unknown = chosen - set(MARK_TYPES)
    if unknown or not chosen:
        raise ValueError(f"--marks takes a comma list of {', '.join(MARK_TYPES)}; got {text!r}")
    return {t: t in chosen for t in MARK_TYPES}


def add_segmenter_option_flag(p) -> None:
    """--segmenter-option NAME.KEY=VALUE (repeatable), also read from $SOM_SEGMENTER_OPTIONS."""
    p.add_argument("--segmenter-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="a segmenter setting, e.g. mobile-sam.points_per_side=32 or seem.object_mask_threshold=0.2 "
                        "(repeatable; added to $SOM_SEGMENTER_OPTIONS; see docs for each segmenter's options)")


def add_marking_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that marks images (mark, ask, dataset)."""
    from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, GRANULARITY_HELP, SPECS

    g = p.add_argument_group("marking")
    g.add_argument("--segmenter", default=DEFAULT_SEGMENTER, choices=sorted(SPECS), help="default: %(default)s")
    g.add_argument("--granularity", default=str(DEFAULT_LEVEL), help=GRANULARITY_HELP)
    g.add_argument("--marks", default="mark,mask,contour", help=f"comma list of {', '.join(MARK_TYPES)}")
    g.add_argument("--label-mode", default="number", choices=["number", "alphabet"])
    g.add_argument("--alpha", type=float, default=0.4, help="mask fill opacity 0..1 (default 0.4)")
    g.add_argument(
        "--min-area", type=float, default=0.0005, help="smallest region: <1 a fraction of the image, >=1 pixels"
    )
    g.add_argument("--max-side", type=int, default=2048, help="segment at most this many pixels on the long side")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    g.add_argument("--checkpoint", default=None, help="checkpoint file for sam-vit-*, semantic-sam, seem (default: the file in $SOM_CHECKPOINT_DIR or ./checkpoints; see download_ckpt.sh)")
    add_segmenter_option_flag(g)
    g.add_argument("--names", action="store_true",
                   help="print each mark's class name beside its number (segmenters that name classes, e.g. seem)")
    g.add_argument("--classes", default=None, metavar="NAMES",
                   help='open vocabulary for a segmenter that names classes, e.g. "mug,laptop,window"')


def marking_kwargs(args: argparse.Namespace) -> dict:
    """Namespace from add_marking_options -> keyword arguments of som.pipeline.mark."""
    from som.draw import MarkStyle
    from som.refine import RefineOptions
    from som.segmenters import add_configured_options, granularity

    granularity(args.granularity)  # validate early, before any model loads
    add_configured_options(getattr(args, "segmenter_option", []))
    flags = parse_mark_types(args.marks)
    style = MarkStyle(alpha=args.alpha, label_mode=args.label_mode, names=bool(getattr(args, "names", False)), **flags)
    if args.min_area < 0:
        raise ValueError(f"--min-area must be >= 0, got {args.min_area}")
    refine_options = (
        RefineOptions(min_area_frac=args.min_area)
        if args.min_area < 1
        else RefineOptions(min_area_px=int(args.min_area))
    )
    out = {
        "segmenter": args.segmenter,
        "granularity_level": args.granularity,
        "style": style,
        "refine_options": refine_options,
        "max_side_px": args.max_side,
        "device": args.device,
        "checkpoint": args.checkpoint,
    }
    if getattr(args, "classes", None):
        out["classes"] = args.classes
    return out


def output_names(paths: list[Path]) -> list[str]:
    """Output stem per input: the file stem, or the full file name where stems collide."""
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]


def _reason(path: Path, error: Exception) -> str:
    """One line saying why an image was skipped; errors that are bugs, not bad input, propagate."""
    from som.imageio import ImageError

    if isinstance(error, ImageError):  # its message starts with the file name
        return str(error)
    if isinstance(error, ValueError):
        return f"{path}: {error}"
    if isinstance(error, MemoryError):
        return f"{path}: out of memory; try a smaller --max-side"
    if isinstance(error, RuntimeError):  # torch errors (e.g. CUDA out of memory) arrive as RuntimeError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"{path}: {first}"
    raise error


def cmd_mark(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from som.imageio import list_images
    from som.marksfile import write_marks
    from som.pipeline import cached_segmenter, mark_many
    from som.segmenters.base import check_classes

    try:
        kwargs = marking_kwargs(args)
    except ValueError as e:
        return _fail(str(e), 2)
    paths = list_images(args.inputs)
    if not paths:
        return _fail("no images found in " + ", ".join(args.inputs), 2)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # build once, before the loop: a missing checkpoint is one error, not one per file
        kwargs["segmenter"] = cached_segmenter(args.segmenter, args.device, args.checkpoint)
        check_classes(kwargs["segmenter"], kwargs.get("classes"))
    except ValueError as e:
        return _fail(str(e))
    written, failed = 0, []
    names = dict(zip(paths, output_names(paths)))
    bar = tqdm(total=len(paths), unit="img", disable=args.quiet or len(paths) < 2, file=sys.stderr)
    # pipelined: the next image is segmented while this one is refined, laid out and drawn
    for path, result in mark_many(paths, **kwargs):
        bar.set_postfix_str(path.name, refresh=False)
        bar.update()
        if isinstance(result, Exception):
            failed.append(path)
            tqdm.write(f"som: skipped {_reason(path, result)}", file=sys.stderr)
            continue
        png = out_dir / f"{names[path]}.marked.png"
        result.source = None  # not written; on a huge photo the PNG encoder's copy needs its room
        write_marks(out_dir / f"{names[path]}.marks.json", result.regions, result.settings, image_file=path.name)
        Image.fromarray(result.image).save(png)
        written += 1
        if not args.quiet:
            tqdm.write(f"{path} -> {png} ({len(result.regions)} marks)", file=sys.stdout)
    bar.close()
    summary = f"wrote {written} marked image(s) to {out_dir}"
    if failed:
        summary += f"; skipped {len(failed)}: " + ", ".join(p.name for p in failed)
    print(summary, file=sys.stderr)
    return 0 if not failed else 1


def cmd_segmenters(args: argparse.Namespace) -> int:
    from som.segmenters import list_segmenters

    rows = list_segmenters()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "yes" if r["available"] else "no "
        print(f"{r['name']:<{width}}  {state}  {r['description']}")
        if not r["available"]:
            print(f"{'':<{width}}       -> {r['reason']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="som", description="Set-of-Mark visual prompting toolkit")
    parser.add_argument("--version", action="version", version=f"som {importlib.import_module('som').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("mark", help="mark images: writes NAME.marked.png and NAME.marks.json")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("-o", "--output", default="out", help="output folder (default: ./out)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no per-file lines")
    add_marking_options(p)
    p.set_defaults(func=cmd_mark)

    p = sub.add_parser("segmenters", help="list segmenters and whether each can run here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_segmenters)

    for module in PLUGINS:  # plugins import only argparse-level code at import time
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
