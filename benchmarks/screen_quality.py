"""Screenshot-only marks against DOM truth: `som screen` (OCR + image analysis) and `som.mark` (SAM)
on the same screenshots of real pages, plus their speed.

Serves Debian's Python documentation (python3-doc) on localhost and renders pages at 1280x800 in
headless Chromium. Truth: the interactive elements `mark_page` finds in the DOM (visible, not
covered), with their visible text. A truth element is found by a screenshot mark when the mark's
box overlaps it at IoU >= 0.5 or the mark's centre lies inside it. Text accuracy, over found
elements with text: 1 - (edit distance / longer length) between the element's text and the
text of the mark that found it (whitespace collapsed, case kept), and the share read exactly.

    python benchmarks/screen_quality.py [--sam] [--repeats 3]

Writes benchmarks/results/screen_quality.json and screen_quality.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_model  # noqa: E402
from web_marks import serve  # noqa: E402

PAGES = [
    ("index.html", 0),
    ("library/os.html", 0),
    ("library/functions.html", 0),
    ("tutorial/controlflow.html", 1200),
    ("genindex-A.html", 800),
    ("reference/expressions.html", 2000),
]


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def norm(s: str) -> str:
    return " ".join((s or "").split())


def found_by(truth_box, boxes: np.ndarray) -> int | None:
    """Index of the first mark box that finds the truth box (IoU >= 0.5, or its centre inside)."""
    if len(boxes) == 0:
        return None
    t = np.asarray(truth_box, np.float64)
    b = boxes.astype(np.float64)
    ix = np.clip(np.minimum(b[:, 2], t[2]) - np.maximum(b[:, 0], t[0]), 0, None)
    iy = np.clip(np.minimum(b[:, 3], t[3]) - np.maximum(b[:, 1], t[1]), 0, None)
    inter = ix * iy
    union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + (t[2] - t[0]) * (t[3] - t[1]) - inter
    iou = inter / np.maximum(union, 1e-9)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    centre = (cx >= t[0]) & (cx <= t[2]) & (cy >= t[1]) & (cy <= t[3])
    hit = np.nonzero((iou >= 0.5) | centre)[0]
    if len(hit) == 0:
        return None
    return int(hit[np.argmax(iou[hit])])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="/usr/share/doc/python3-doc/html")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of som screen per page (after a warm-up)")
    ap.add_argument("--sam", action="store_true", help="also run som.mark (MobileSAM) on the screenshots")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from som.screen.marks import mark_screen
    from som.web.page import launch_browser, mark_page, open_page

    docs = Path(args.docs).resolve()
    server, base = serve(docs)
    shots = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        for path, scroll in PAGES:
            page, session = open_page(f"{base}/{path}", browser=browser)
            page.evaluate(f"window.scrollTo(0, {scroll})")
            dom = mark_page(page)
            truth = [(e.xyxy, norm(e.text or e.name)) for e in dom.elements]
            shots.append((path, scroll, dom.screenshot, truth))
            session.close()
        browser.close()
    server.shutdown()

    mark_screen(shots[0][2])  # warm-up: ONNX sessions
    rows = []
    sam = None
    if args.sam:
        import som

        sam = som
    for path, scroll, shot, truth in shots:
        times, cpu = [], []
        for _ in range(max(1, args.repeats)):
            t0, c0 = time.perf_counter(), time.process_time()
            sm = mark_screen(shot)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # all threads of this process (ONNX Runtime's too)
        boxes = np.array([it.xyxy for it in sm.items], np.float64).reshape(-1, 4)
        found, acc, exact, n_text = 0, [], 0, 0
        for box, text in truth:
            k = found_by(box, boxes)
            if k is None:
                continue
            found += 1
            if text:
                n_text += 1
                got = norm(sm.items[k].text)
                acc.append(1 - levenshtein(text, got) / max(len(text), len(got), 1))
                exact += got == text
        row = {
            "page": path, "scroll": scroll, "truth": len(truth), "screen_marks": len(sm),
            "screen_recall": round(found / max(1, len(truth)), 3),
            "screen_text_accuracy": round(float(np.mean(acc)), 3) if acc else None,
            "screen_text_exact": round(exact / max(1, n_text), 3),
            "screen_s": round(statistics.median(times), 2),
            "screen_cpu_s": round(statistics.median(cpu), 2),
            "screen_stage_ms": {k: round(v) for k, v in sm.timings_ms.items()},
        }
        if sam is not None:
            t0 = time.perf_counter()
            res = sam.mark(shot)
            row["sam_s"] = round(time.perf_counter() - t0, 2)
            sboxes = np.asarray(res.regions.xyxy, np.float64).reshape(-1, 4)
            row["sam_marks"] = len(res.regions)
            row["sam_recall"] = round(sum(found_by(b, sboxes) is not None for b, _ in truth) / max(1, len(truth)), 3)
        rows.append(row)
        print(row, flush=True)

    def mean(key):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return round(float(np.mean(vals)), 3) if vals else None

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": "python benchmarks/screen_quality.py " + " ".join(sys.argv[1:]),
        "pages": rows,
        "mean": {k: mean(k) for k in ("screen_recall", "screen_text_accuracy", "screen_text_exact", "screen_s", "screen_cpu_s", "sam_recall", "sam_s")},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "screen_quality.json").write_text(json.dumps(result, indent=1))
    sam_cols = " sam recall | sam marks | sam s |" if sam else ""
    lines = [
        f"# Screenshot-only marks vs DOM truth ({result['date']})",
        "",
        f"Machine: {result['machine']}; load average at the end {result['load_average']} (shared). 1280x800 screenshots "
        "of Debian's Python documentation; truth = interactive elements mark_page finds in the DOM.",
        "",
        "| page | scroll | DOM elements | screen marks | screen recall | text accuracy | text exact | som screen s (wall) | CPU s |" + sam_cols,
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if sam else ""),
    ]
    for r in rows:
        extra = f" {r['sam_recall']} | {r['sam_marks']} | {r['sam_s']} |" if sam else ""
        lines.append(
            f"| {r['page']} | {r['scroll']} | {r['truth']} | {r['screen_marks']} | {r['screen_recall']} | "
            f"{r['screen_text_accuracy']} | {r['screen_text_exact']} | {r['screen_s']} | {r['screen_cpu_s']} |" + extra
        )
    m = result["mean"]
    lines += ["", f"Means: screen recall {m['screen_recall']}, text accuracy {m['screen_text_accuracy']}, "
              f"exact {m['screen_text_exact']}, {m['screen_s']} s per screenshot ({m['screen_cpu_s']} CPU s)"
              + (f"; SAM recall {m['sam_recall']}, {m['sam_s']} s" if sam else "") + ".",
              "", f"Command: `{result['command']}`", ""]
    (out / "screen_quality.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
