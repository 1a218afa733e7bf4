"""Speed of DOM marks (`som.mark_page`) on real pages, after load, 1280x800 viewport.

Serves Debian's Python documentation (python3-doc) on localhost, opens each page in headless
Chromium (Playwright), lets it load, then times `mark_page(page)` --repeats times after one
warm-up: the DOM script (collect), the screenshot, label layout, drawing, and the whole call.
The CPU load average is recorded beside the figures (this machine is shared).

    python benchmarks/web_marks.py [--repeats 7] [--docs /usr/share/doc/python3-doc/html]

Writes benchmarks/results/web_marks.json and web_marks.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its shared helpers
from machine import cpu_model  # noqa: E402
sys.path.insert(0, str(REPO))

PAGES = [
    ("index.html", 0),
    ("library/os.html", 0),
    ("library/os.html", 6000),
    ("library/functions.html", 0),
    ("tutorial/controlflow.html", 1200),
    ("genindex-A.html", 800),
    ("reference/expressions.html", 2000),
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--docs", default="/usr/share/doc/python3-doc/html")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from som.web.page import launch_browser, mark_page, open_page

    docs = Path(args.docs).resolve()
    if not (docs / "index.html").exists():
        print(f"no Python documentation at {docs}: apt-get install python3-doc", file=sys.stderr)
        return 2
    server, base = serve(docs)
    rows = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        for path, scroll in PAGES:
            page, session = open_page(f"{base}/{path}", browser=browser)
            page.evaluate(f"window.scrollTo(0, {scroll})")
            n_dom = page.evaluate("document.querySelectorAll('*').length")
            mark_page(page)  # warm-up: JIT, fonts, first style recalculation
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                m = mark_page(page)
                total = (time.perf_counter() - t0) * 1000
                runs.append({**m.timings_ms, "total": total, "marks": len(m)})
            session.close()
            med = {k: round(statistics.median(r[k] for r in runs), 1) for k in ("collect", "screenshot", "layout", "draw", "total")}
            rows.append({"page": path, "scroll": scroll, "dom_elements": n_dom, "marks": runs[-1]["marks"], **med})
            print(rows[-1], flush=True)
        browser.close()
    server.shutdown()

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "viewport": [1280, 800],
        "repeats": args.repeats,
        "command": "python benchmarks/web_marks.py " + " ".join(sys.argv[1:]),
        "pages": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "web_marks.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# DOM marks speed ({result['date']})",
        "",
        f"Machine: {result['machine']}; load average during the run {result['load_average']} (shared). "
        f"Viewport 1280x800, device scale 1, medians of {args.repeats} after a warm-up; ms.",
        "",
        "| page | scroll | DOM elements | marks | collect | screenshot | layout | draw | total |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['page']} | {r['scroll']} | {r['dom_elements']} | {r['marks']} | {r['collect']} | {r['screenshot']} | "
            f"{r['layout']} | {r['draw']} | **{r['total']}** |"
        )
    lines += ["", f"Command: `{result['command']}`", ""]
    (out / "web_marks.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
