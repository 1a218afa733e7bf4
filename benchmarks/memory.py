"""Peak memory of `som mark` on a small photo and on a huge one (peak RSS of the whole process).

Each run is a fresh `python -m som.cli mark` child; its peak resident set comes from the
kernel (`os.wait4` rusage), so model, decoder, arrays and PNG encoder all count. The huge photo
is synthetic (a gradient with 30 shapes, each with another shape inside: wholes and parts),
written as JPEG first. "Above" = huge minus small: what the photo's size costs.

    python benchmarks/memory.py                         # 9000 x 9000 vs assets/coffee.jpg
    python benchmarks/memory.py --reference ../old-som  # also a checkout of another version, same run

Writes benchmarks/results/memory-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def synthetic_photo(height: int, width: int, seed: int = 0):
    """(H, W, 3) uint8: a gradient with 30 filled shapes, each holding a shape of another colour
    (wholes and parts). Also used by tests/test_memory.py."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    for y0 in range(0, height, 512):  # the gradient in bands: the generator stays small too
        yy, xx = np.mgrid[y0 : min(y0 + 512, height), :width].astype(np.float32)
        img[y0 : y0 + 512] = np.stack([xx * 120 / width, yy * 120 / height, np.full_like(xx, 60)], -1)
    for _ in range(30):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(min(height, width) // 20, min(height, width) // 6))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, c, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r // 2), c, -1)
        cv2.circle(img, (cx, cy), r // 3, tuple(255 - v for v in c), -1)
    return img


def peak_rss_mb(src: Path, image: Path, out_dir: Path) -> tuple[float, float]:
    """(peak RSS MB, wall s) of `som mark image` run from the package in `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "som.cli", "mark", str(image), "-o", str(out_dir), "--device", "cpu", "--quiet"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=9000, help="side of the square synthetic photo (px)")
    ap.add_argument("--small", default=str(REPO / "assets" / "coffee.jpg"))
    ap.add_argument("--reference", help="a checkout of another som version to measure in the same run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        huge = tmp / f"synthetic-{args.size}.jpg"
        from PIL import Image

        Image.fromarray(synthetic_photo(args.size, args.size)).save(huge, quality=90)
        rows = {}
        for name, src in [("this", REPO)] + ([("reference", Path(args.reference).resolve())] if args.reference else []):
            small_mb, small_s = peak_rss_mb(src, Path(args.small), tmp / f"{name}-small")
            huge_mb, huge_s = peak_rss_mb(src, huge, tmp / f"{name}-huge")
            rows[name] = {"src": str(src), "small_peak_mb": round(small_mb), "huge_peak_mb": round(huge_mb),
                          "above_mb": round(huge_mb - small_mb), "small_wall_s": round(small_s, 1), "huge_wall_s": round(huge_s, 1)}
            print(f"{name:10s} {Path(args.small).name}: {small_mb:6.0f} MB  {args.size}x{args.size}: {huge_mb:6.0f} MB  "
                  f"above: {huge_mb - small_mb:6.0f} MB  ({small_s:.0f} s, {huge_s:.0f} s)", flush=True)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "huge": f"{args.size}x{args.size} synthetic JPEG", "small": Path(args.small).name, "runs": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"memory-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
