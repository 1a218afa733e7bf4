"""Toolbox latency on this machine: click -> updated image, and automatic mode's first result.

Runs the real server (`demo_som.py` in a subprocess, CPU) and drives it with gradio_client:

* click: `/add_point` round trip with the image embedding cached (each click is followed by
  `/undo`, so every click sees the same number of regions); median and p90 over --clicks;
  from gradio_client downloading the four file outputs, from one taking them as URLs (as the
  page does), and in headless Chromium from the click to the new picture and status line;
* first click: the first `/add_point` right after `/load_image` (the background warm-up may
  still be embedding);
* automatic: `/segment_auto` round trip on a freshly loaded image (mobile-sam, default settings).

Then the same click is profiled in-process, stage by stage (decoder, upsample, cleaning and
de-overlap, layout, draw, PNG/JSON writing), so the gap to the round trip is Gradio's overhead.

    python benchmarks/app_latency.py [--clicks 20] [--segmenter mobile-sam]

Writes benchmarks/results/app_latency.json and app_latency.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its shared helpers
from machine import cpu_model  # noqa: E402
IMAGE = REPO / "assets" / "coffee.jpg"
# points on objects of coffee.jpg (cup, saucer, spoon, table, crema)
POINTS = [(300, 130), (150, 330), (420, 290), (560, 40), (300, 180), (240, 250), (480, 200), (60, 60)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {
        "n": len(xs),
        "median_ms": round(1000 * statistics.median(xs), 1),
        "p90_ms": round(1000 * xs[min(len(xs) - 1, int(0.9 * len(xs)))], 1),
        "min_ms": round(1000 * xs[0], 1),
    }


def through_server(segmenter: str, clicks: int) -> dict:
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "demo_som.py"), "--port", str(port), "--device", "cpu", "--segmenter", segmenter],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        client = None
        while client is None:
            try:
                client = Client(url, verbose=False)
            except Exception:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the app did not start")
                time.sleep(0.5)
        out: dict = {}
        kw = {"segmenter": segmenter}

        # automatic, first result on a fresh image (model already loaded by a first warm-up image)
        client.predict(handle_file(str(REPO / "assets" / "chelsea.jpg")), segmenter, api_name="/load_image")
        client.predict(x=10, y=10, api_name="/add_point", **kw)  # builds the model
        t = time.perf_counter()
        client.predict(handle_file(str(IMAGE)), segmenter, api_name="/load_image")
        out["load_image_ms"] = round(1000 * (time.perf_counter() - t), 1)
        t = time.perf_counter()
        client.predict(api_name="/segment_auto", **kw)
        out["automatic_first_result_s"] = round(time.perf_counter() - t, 2)

        # first click after a fresh load (embedding may still be computing in the background)
        client.predict(handle_file(str(IMAGE)), segmenter, api_name="/load_image")
        client.predict(api_name="/clear")
        t = time.perf_counter()
        client.predict(x=POINTS[0][0], y=POINTS[0][1], api_name="/add_point", **kw)
        out["first_click_ms"] = round(1000 * (time.perf_counter() - t), 1)
        client.predict(api_name="/undo")

        out["click"] = timed_clicks(client, clicks, kw)

        # the same click from a client that takes file outputs as URLs (as the page does)
        light = Client(url, verbose=False, download_files=False)
        light.predict(handle_file(str(IMAGE)), segmenter, api_name="/load_image")
        light.predict(x=POINTS[0][0], y=POINTS[0][1], api_name="/add_point", **kw)
        light.predict(api_name="/undo")
        out["click_no_download"] = timed_clicks(light, clicks, kw)
        out["click_browser"] = in_browser(url, clicks)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed_clicks(client, clicks: int, kw: dict) -> dict:
    """`/add_point` round trips on a warm embedding, each followed by `/undo` (same region count)."""
    times = []
    for i in range(clicks):
        x, y = POINTS[i % len(POINTS)]
        t = time.perf_counter()
        client.predict(x=x, y=y, api_name="/add_point", **kw)
        times.append(time.perf_counter() - t)
        client.predict(api_name="/undo")
    return stats(times)


def in_browser(url: str, clicks: int) -> dict | None:
    """A click in headless Chromium until the page shows the new region, timed inside the page:
    from the click event (capture phase) to the later of the status line saying so and the new
    picture's load event. Playwright's own click machinery (~60-130 ms here) is not counted."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        return None
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        return None
    probe = """() => {
        const canvas = document.querySelector('#som-canvas'), status = document.querySelector('#som-status');
        window.__t = {};
        canvas.addEventListener('click', () => { window.__t = {click: performance.now()}; }, true);
        canvas.addEventListener('load', () => { if (window.__t.click) window.__t.loaded = performance.now(); }, true);
        new MutationObserver(() => {
            if (window.__t.click && !window.__t.status && status.innerText.includes('added region'))
                window.__t.status = performance.now();
        }).observe(status, {subtree: true, childList: true, characterData: true});
    }"""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    times, outside = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.locator("#som-input input[type=file]").set_input_files(str(IMAGE))
        expect(page.locator("#som-status")).to_contain_text("image loaded", timeout=60_000)
        img = page.locator("#som-canvas img")
        expect(img).to_be_visible()
        page.wait_for_timeout(1000)  # let the page settle after the upload
        page.evaluate(probe)
        for i in range(clicks + 1):  # the first click is a warm-up
            box = img.bounding_box()
            src = img.get_attribute("src")
            t = time.perf_counter()
            img.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.25})
            expect(page.locator("#som-status")).to_contain_text("added region 1", timeout=60_000)
            expect(img).not_to_have_attribute("src", src, timeout=60_000)
            page.wait_for_function("() => window.__t.status && window.__t.loaded", timeout=60_000)
            stamps = page.evaluate("() => window.__t")
            if i:
                times.append((max(stamps["status"], stamps["loaded"]) - stamps["click"]) / 1000)
                outside.append(time.perf_counter() - t)
            shown = img.get_attribute("src")
            page.click("#som-undo")  # and wait until its picture is shown, as a user would
            expect(page.locator("#som-status")).to_contain_text("removed region 1", timeout=60_000)
            expect(img).not_to_have_attribute("src", shown, timeout=60_000)
            page.wait_for_timeout(300)
        browser.close()
    return {**stats(times), "with_playwright_click": stats(outside)}


def in_process(segmenter: str, clicks: int) -> dict:
    """The same click, stage by stage, without a server."""
    import torch

    from som.app.state import ToolboxSession, make_style
    from som.pipeline import cached_segmenter

    seg = cached_segmenter(segmenter, "cpu")
    s = ToolboxSession()
    s.load(str(IMAGE), name="coffee.jpg")
    style = make_style(["Mark", "Mask", "Contour"])
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "upsample", "segment_prompts", "add_gesture",
                                                         "render", "handler_total")}
    t = time.perf_counter()
    if hasattr(seg, "embed"):
        seg.embed(s.source)
    embed_s = time.perf_counter() - t
    for i in range(clicks):
        x, y = POINTS[i % len(POINTS)]
        if hasattr(seg, "decode"):
            emb = seg.embed(s.source)
            t = time.perf_counter()
            logits, iou = seg.decode(emb, torch.tensor([[[x, y]]], dtype=torch.float32), torch.tensor([[1]]),
                                     None, multimask=True)
            stages["decode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            seg.to_regions(emb, logits[0, :1])
            stages["upsample"].append(time.perf_counter() - t)
        t = time.perf_counter()
        seg.segment_prompts(s.source, np.array([[x, y]], np.float32), np.array([1]))
        stages["segment_prompts"].append(time.perf_counter() - t)
        t0 = time.perf_counter()
        try:
            s.add_point(seg, x, y, 120)
        except ValueError:
            pass
        t1 = time.perf_counter()
        s.render(style)
        t2 = time.perf_counter()
        stages["add_gesture"].append(t1 - t0)
        stages["render"].append(t2 - t1)
        stages["handler_total"].append(t2 - t0)
        s.undo()
    s.close()
    out = {k: stats(v) for k, v in stages.items() if v}
    out["embed_s"] = round(embed_s, 2)
    out["torch_threads"] = torch.get_num_threads()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--segmenter", default="mobile-sam")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()

    load = os.getloadavg()
    server = through_server(args.segmenter, args.clicks)
    profile = in_process(args.segmenter, args.clicks)
    result = {
        "command": "python benchmarks/app_latency.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "loadavg_at_start": [round(v, 2) for v in load]},
        "image": f"{IMAGE.name} 600x400",
        "segmenter": args.segmenter,
        "server": server,
        "in_process": profile,
        "target_click_ms": 150,
    }
    handler = profile["handler_total"]["median_ms"]
    result["gradio_overhead_ms"] = round(server["click_no_download"]["median_ms"] - handler, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "app_latency.json").write_text(json.dumps(result, indent=2))
    p = profile
    rows = [
        ("click in Chromium until the new region shows (timed in the page), median / p90",
         f"{server['click_browser']['median_ms']} / {server['click_browser']['p90_ms']} ms" if server["click_browser"] else "-"),
        ("click, gradio_client taking files as URLs (`/add_point`), median / p90",
         f"{server['click_no_download']['median_ms']} / {server['click_no_download']['p90_ms']} ms"),
        ("click, gradio_client downloading the 4 files, median / p90", f"{server['click']['median_ms']} / {server['click']['p90_ms']} ms"),
        ("first click after load (embedding in background)", f"{server['first_click_ms']} ms"),
        ("automatic mode, first result (`/segment_auto`)", f"{server['automatic_first_result_s']} s"),
        ("load image (`/load_image`)", f"{server['load_image_ms']} ms"),
        ("— in process: mask decoder (3 masks, 1 point)", f"{p.get('decode', {}).get('median_ms', '-')} ms"),
        ("— in process: upsample to image size", f"{p.get('upsample', {}).get('median_ms', '-')} ms"),
        ("— in process: segment_prompts (decode + upsample)", f"{p['segment_prompts']['median_ms']} ms"),
        ("— in process: add region (segment + clean + de-overlap)", f"{p['add_gesture']['median_ms']} ms"),
        ("— in process: render (layout + draw + PNG + JSON)", f"{p['render']['median_ms']} ms"),
        ("— Gradio + client overhead (URL round trip − handler)", f"{result['gradio_overhead_ms']} ms"),
        ("image embedding (once per image)", f"{p['embed_s']} s"),
    ]
    md = [
        f"# Toolbox latency ({args.segmenter}, CPU)",
        "",
        f"`{result['command']}` — {result['date']} — {os.cpu_count()} cores, {cpu_model()}, "
        f"load average at start {result['machine']['loadavg_at_start'][0]} (shared machine), "
        f"torch threads {p['torch_threads']}, image {result['image']}.",
        "",
        "| what | time |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        f"Target: a click in under 150 ms. Medians over {args.clicks} clicks; medians of stages do not add up exactly.",
    ]
    (out / "app_latency.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
