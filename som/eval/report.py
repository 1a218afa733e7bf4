"""`som eval report`: conditions side by side, for one run or several.

Reads each RUNDIR's summary.json and per-sample counts (samples/<condition>.jsonl), adds a 95%
bootstrap interval to every metric (samples drawn with replacement, the metric recomputed from
the summed counts, so mIoU and ratio metrics are resampled the way they are computed), and
writes report.md, report.json and report.png (the main metric of each task by condition, one
bar per run, with the intervals).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from som.eval.tasks import TASK_SPECS


def load_run(rundir: str | Path) -> dict[str, Any]:
    """summary.json of a run with, per condition, the list of per-sample counts."""
    rundir = Path(rundir)
    path = rundir / "summary.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{rundir}: no summary.json (not a finished `som eval run` folder)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not readable ({e})") from None
    if doc.get("format") != "som.eval":
        raise ValueError(f"{path}: not a som eval summary")
    for res in doc.get("results", []):
        res["sample_counts"] = []
        f = rundir / res.get("samples_file", "")
        if "samples_file" in res and f.is_file():
            for line in f.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                if "error" not in row:
                    res["sample_counts"].append(row["counts"])
    doc["rundir"] = str(rundir)
    return doc


def bootstrap(task: str, counts: list[dict[str, float]], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Per metric of `task`, the (low, high) percentile interval over `n_boot` resamples."""
    spec = TASK_SPECS[task]
    if not counts or n_boot <= 0:
        return {}
    keys = sorted({k for c in counts for k in c})
    m = np.array([[c.get(k, 0) for k in keys] for c in counts], np.float64)  # (samples, keys)
    rng = np.random.default_rng(seed)
    n = len(counts)
    values: dict[str, list[float]] = {}
    for start in range(0, n_boot, 200):  # in chunks: (chunk, n) weights stay small
        size = min(200, n_boot - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size)  # how often each sample is drawn
        sums = weights @ m
        for row in sums:
            for name, v in spec.metrics(dict(zip(keys, row))).items():
                values.setdefault(name, []).append(v)
    alpha = (1.0 - level) / 2
    out = {}
    for name, vs in values.items():
        arr = np.array([v for v in vs if not math.isnan(v)])
        if len(arr):
            out[name] = (float(np.quantile(arr, alpha)), float(np.quantile(arr, 1 - alpha)))
    return out


def _run_label(doc: dict[str, Any], all_docs: list[dict[str, Any]]) -> str:
    models = [d["model"] for d in all_docs]
    name = Path(doc["rundir"]).name
    return doc["model"] if models.count(doc["model"]) == 1 else f"{doc['model']} ({name})"


def build_report(rundirs: list[str | Path], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The report as a JSON-ready dict: runs, and per task a row per condition with each run's metrics."""
    docs = [load_run(r) for r in rundirs]
    runs = []
    rows: list[dict[str, Any]] = []
    for d in docs:
        label = _run_label(d, docs)
        runs.append({"label": label, "rundir": d["rundir"], "task": d["task"], "model": d["model"], "data": d["data"],
                     "samples": d["samples"], "params": d.get("params"), "started": d.get("started"), "finished": d.get("finished")})
        for res in d.get("results", []):
            row = {"run": label, "task": d["task"], "condition": res["name"]}
            if "skipped" in res:
                rows.append({**row, "skipped": res["skipped"]})
                continue
            ci = bootstrap(d["task"], res["sample_counts"], n_boot, seed)
            rows.append({
                **row,
                "n": res["n"],
                "errors": res["errors"],
                "metrics": res["metrics"],
                "ci95": {k: list(v) for k, v in ci.items()},
                "tokens": res["tokens"],
                "cost_usd": res.get("cost_usd"),
                "requests_sent": res["requests_sent"],
                "cached": res["cached"],
            })
    return {"format": "som.eval.report", "version": 1, "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95}, "runs": runs, "rows": rows}


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"


def to_markdown(report: dict[str, Any]) -> str:
    """Per task: one table, conditions as rows, runs as columns (main metric with its 95% interval),
    then every metric, tokens and cost per (run, condition)."""
    lines = ["# som eval report", ""]
    lines += ["| run | task | model | data | samples | finished |", "|---|---|---|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['label']} | {r['task']} | {r['model']} | `{r['data']}` | {r['samples']} | {r.get('finished') or '–'} |")
    tasks = list(dict.fromkeys(r["task"] for r in report["runs"]))
    for task in tasks:
        spec = TASK_SPECS[task]
        runs = [r["label"] for r in report["runs"] if r["task"] == task]
        rows = [r for r in report["rows"] if r["task"] == task]
        conds = list(dict.fromkeys(r["condition"] for r in rows))
        lines += ["", f"## {task}: {spec.primary} (95% bootstrap interval)", ""]
        lines.append("| condition | " + " | ".join(runs) + " |")
        lines.append("|---|" + "---|" * len(runs))
        for c in conds:
            cells = []
            for run in runs:
                hit = [r for r in rows if r["run"] == run and r["condition"] == c]
                if not hit:
                    cells.append("")
                elif "skipped" in hit[0]:
                    cells.append("n/a")
                else:
                    r = hit[0]
                    lo_hi = r["ci95"].get(spec.primary)
                    ci = f" [{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if lo_hi else ""
                    cells.append(f"**{_fmt(r['metrics'].get(spec.primary))}**{ci} (n={r['n']})")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        detail = [r for r in rows if "skipped" not in r]
        if detail:
            names = list(dict.fromkeys(k for r in detail for k in r["metrics"]))
            lines += ["", "| run | condition | " + " | ".join(names) + " | errors | tokens in / out | requests sent | cached | cost (USD) |",
                      "|---|---|" + "---|" * len(names) + "---|---|---|---|---|"]
            for r in detail:
                vals = " | ".join(_fmt(r["metrics"].get(k)) for k in names)
                cost = "–" if r.get("cost_usd") is None else f"{r['cost_usd']:.4f}"
                lines.append(
                    f"| {r['run']} | {r['condition']} | {vals} | {r['errors']} | {r['tokens']['prompt_tokens']} / "
                    f"{r['tokens']['completion_tokens']} | {r['requests_sent']} | {r['cached']} | {cost} |"
                )
    b = report["bootstrap"]
    lines += ["", f"Intervals: {b['resamples']} bootstrap resamples of the samples (seed {b['seed']}), percentile method."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of each task's main metric by condition (one bar per run) with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "skipped" not in r]
    tasks = list(dict.fromkeys(r["task"] for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(5.0, 4.5 * len(tasks)), 4.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        if not mine:
            continue
        primary = TASK_SPECS[task].primary
        conds = list(dict.fromkeys(r["condition"] for r in mine))
        runs = list(dict.fromkeys(r["run"] for r in mine))
        width = 0.8 / max(1, len(runs))
        for j, run in enumerate(runs):
            xs, ys, err = [], [], [[], []]
            for i, c in enumerate(conds):
                hit = [r for r in mine if r["run"] == run and r["condition"] == c]
                if not hit:
                    continue
                v = hit[0]["metrics"].get(primary)
                if v is None:
                    continue
                lo, hi = hit[0]["ci95"].get(primary, (v, v))
                xs.append(i + (j - (len(runs) - 1) / 2) * width)
                ys.append(v)
                err[0].append(max(0.0, v - lo))
                err[1].append(max(0.0, hi - v))
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=run)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels(conds, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}: {primary}")
        if len(runs) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rundirs: list[str | Path], out_dir: str | Path, n_boot: int = 1000, seed: int = 0, with_plot: bool = True) -> dict[str, Path]:
    """report.md, report.json and (with matplotlib) report.png in out_dir."""
    report = build_report(rundirs, n_boot, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json"}
    paths["md"].write_text(to_markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=1), encoding="utf-8")
    if with_plot:
        try:
            paths["png"] = plot(report, out / "report.png")
        except ImportError:
            pass  # matplotlib is in the eval extra; the tables do not need it
    return paths


__all__ = ["bootstrap", "build_report", "load_run", "plot", "to_markdown", "write_report"]
