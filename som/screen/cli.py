"""`som screen IMAGE... -o OUT`: marks on screenshots (OCR text + icons, controls, images).

Only argparse at import time; rapidocr loads when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KINDS_HELP = "text, icon, control, image"  # som.screen.marks.SCREEN_KINDS (not imported: keeps --help light)


def cmd_screen(args: argparse.Namespace) -> int:
    from som.cli import output_names
    from som.imageio import ImageError, list_images
    from som.screen.marks import mark_screen
    from som.ui_marks import UIMarkStyle

    paths = list_images(args.inputs)
    if not paths:
        print("som: error: no images found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    kinds = None if not args.kinds else [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        style = UIMarkStyle(label_mode=args.label_mode, font_px=args.font_px)
    except ValueError as e:
        print(f"som: error: {e}", file=sys.stderr)
        return 2
    failed = []
    for path, name in zip(paths, output_names(paths)):
        try:
            marks = mark_screen(path, kinds=kinds, style=style)
        except ImageError as e:
            failed.append(path)
            print(f"som: skipped {e}", file=sys.stderr)
            continue
        except (ValueError, ImportError) as e:
            print(f"som: error: {e}", file=sys.stderr)
            return 1
        png, _ = marks.save(Path(args.output), name)
        if not args.quiet:
            for it in marks.items:
                print(f"{path.name}\t[{it.label}]\t{it.kind}\t{it.text}")
        print(f"{path} -> {png} ({len(marks)} marks)", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser("screen", help="mark screenshots (no DOM): text, icons, controls, images", description=(
        "Mark what a user could act on in screenshots: text read by OCR (rapidocr, models inside the "
        "package), icons, controls and pictures found by image analysis. Writes NAME.marked.png and "
        "NAME.marks.json (kind and text beside each mark) per image."))
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("-o", "--output", default="out", help="output folder (default: ./out)")
    p.add_argument("--kinds", default=None, help=f"comma list of mark kinds to keep: {KINDS_HELP} (default all)")
    p.add_argument("--label-mode", default="number", choices=["number", "alphabet"])
    p.add_argument("--font-px", type=int, default=None, help="label font size (default from the image size)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not list the marks")
    p.set_defaults(func=cmd_screen)
