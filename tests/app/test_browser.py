"""The toolbox in headless Chromium: upload, automatic marks, clicks, errors. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "assets" / "coffee.jpg"


def _expect():
    from playwright.sync_api import expect

    return expect


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("#som-input input[type=file]", state="attached", timeout=30_000)


def _upload(page, path):
    page.locator("#som-input input[type=file]").set_input_files(str(path))
    _expect()(page.locator("#som-status")).to_contain_text("image loaded", timeout=30_000)
    _expect()(page.locator("#som-canvas img")).to_be_visible()


def _choose_segmenter(page, name):
    box = page.locator("#som-segmenter input")
    box.click()
    box.fill(name)
    page.keyboard.press("Enter")
    _expect()(page.locator("#som-segmenter input")).to_have_value(re.compile(name))


def _table_rows(page) -> int:
    """Data rows of the mark table (the grid is virtualised: count from aria-rowcount, header excluded)."""
    return int(page.locator("#som-table [role=grid]").get_attribute("aria-rowcount")) - 1


def _expect_rows(page, n: int) -> None:
    _expect()(page.locator("#som-table [role=grid]")).to_have_attribute("aria-rowcount", str(n + 1))


def _click_canvas(page, fx, fy):
    img = page.locator("#som-canvas img")
    box = img.bounding_box()
    img.click(position={"x": box["width"] * fx, "y": box["height"] * fy})


def test_automatic_then_clicks_superpixel(app_url, page, artifacts):
    expect = _expect()
    _open(page, app_url)
    _upload(page, COFFEE)
    _choose_segmenter(page, "superpixel")
    page.click("#som-run")
    expect(page.locator("#som-status")).to_contain_text("automatic:", timeout=60_000)
    assert _table_rows(page) > 5
    page.screenshot(path=str(artifacts / "app_automatic_superpixel.png"), full_page=True)

    page.click("#som-clear")
    expect(page.locator("#som-status")).to_contain_text("cleared")
    for k, (fx, fy) in enumerate([(0.5, 0.45), (0.15, 0.8), (0.85, 0.35)], start=1):
        _click_canvas(page, fx, fy)
        expect(page.locator("#som-status")).to_contain_text(f"added region {k}", timeout=30_000)
    _expect_rows(page, 3)
    page.click("#som-undo")
    expect(page.locator("#som-status")).to_contain_text("removed region 3")
    _expect_rows(page, 2)
    page.screenshot(path=str(artifacts / "app_clicks_superpixel.png"), full_page=True)


def test_default_mobile_sam_end_to_end(app_url, page, artifacts):
    """The default segmenter through the page: automatic marks, then a click answered from the cached embedding."""
    expect = _expect()
    _open(page, app_url)
    _upload(page, COFFEE)
    expect(page.locator("#som-segmenter input")).to_have_value(re.compile("mobile-sam"))
    page.click("#som-run")
    expect(page.locator("#som-status")).to_contain_text("automatic:", timeout=240_000)
    expect(page.locator("#som-status")).to_contain_text("mobile-sam")
    assert _table_rows(page) >= 1
    page.screenshot(path=str(artifacts / "app_automatic_mobile_sam.png"), full_page=True)

    page.click("#som-clear")
    expect(page.locator("#som-status")).to_contain_text("cleared")
    _click_canvas(page, 0.5, 0.25)  # the cup
    expect(page.locator("#som-status")).to_contain_text("added region 1", timeout=60_000)
    _click_canvas(page, 0.8, 0.75)  # the spoon / saucer
    expect(page.locator("#som-status")).to_contain_text(re.compile("added region 2|nothing added"), timeout=60_000)
    assert _table_rows(page) >= 1
    page.screenshot(path=str(artifacts / "app_clicks_mobile_sam.png"), full_page=True)
    # the downloads follow the clicks (they are written right after the picture is shown)
    rows = _table_rows(page)
    expect(page.locator("#som-dl-json")).to_be_enabled()
    with page.expect_download() as info:
        page.click("#som-dl-json")
    doc = json.loads(Path(info.value.path()).read_text())
    assert [m["label"] for m in doc["marks"]] == [str(k) for k in range(1, rows + 1)]
    with page.expect_download() as info:
        page.click("#som-dl-png")
    from PIL import Image

    assert Image.open(info.value.path()).size == (600, 400)


def test_bad_upload_shows_readable_error(app_url, page, tmp_path, artifacts):
    fake = tmp_path / "notes.png"
    fake.write_text("plain text, not a picture\n")
    _open(page, app_url)
    page.locator("#som-input input[type=file]").set_input_files(str(fake))
    toast = page.get_by_text(re.compile(r"notes\.png: not an image"))
    _expect()(toast.first).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts / "app_bad_upload.png"), full_page=True)
    _upload(page, COFFEE)  # the app keeps serving this page


def test_nested_marks_clicking_inside_a_part_names_the_part(app_url, page, artifacts):
    """At the nested setting (the default) a whole and its parts are marks; a click inside a part
    adds a part of it or names it, never its whole."""
    expect = _expect()
    _open(page, app_url)
    _upload(page, COFFEE)
    expect(page.get_by_label("4 nested")).to_be_checked()
    page.click("#som-run")
    expect(page.locator("#som-status")).to_contain_text("automatic:", timeout=240_000)
    expect(page.locator("#som-dl-json")).to_be_enabled()
    with page.expect_download() as info:
        page.click("#som-dl-json")
    doc = json.loads(Path(info.value.path()).read_text())
    parts = [m for m in doc["marks"] if m["parent"] is not None]
    assert parts, "coffee.jpg at the nested setting: the cup and spoon are parts of the saucer"
    page.screenshot(path=str(artifacts / "app_nested_mobile_sam.png"), full_page=True)
    part = min(parts, key=lambda m: m["area"])  # the innermost part: a click there is inside it only
    x, y = part["anchor_xy"]
    w, h = doc["image"]["width"], doc["image"]["height"]
    _click_canvas(page, (x + 0.5) / w, (y + 0.5) / h)
    k, whole = part["label"], part["parent"]
    expect(page.locator("#som-status")).to_contain_text(
        re.compile(rf"inside region {k} \(a part of region {whole}\)|as a part of region {k}\b"), timeout=60_000
    )
    page.screenshot(path=str(artifacts / "app_nested_click.png"), full_page=True)


def test_larger_and_smaller_buttons(app_url, page, artifacts):
    """A click with mobile-sam adds the middle of its three masks; the buttons step through them."""
    expect = _expect()
    _open(page, app_url)
    _upload(page, COFFEE)
    _click_canvas(page, 0.5, 0.25)  # the cup
    expect(page.locator("#som-status")).to_contain_text("mask 2 of 3", timeout=60_000)
    page.click("#som-larger")
    expect(page.locator("#som-status")).to_contain_text("mask 3 of 3", timeout=30_000)
    page.screenshot(path=str(artifacts / "app_larger.png"), full_page=True)
    page.click("#som-larger")
    expect(page.get_by_text(re.compile("already shows the largest")).first).to_be_visible(timeout=30_000)
    page.click("#som-smaller")  # a button ignores clicks while its last one runs: wait between them
    expect(page.locator("#som-status")).to_contain_text("replaced region 1 (", timeout=30_000)
    expect(page.locator("#som-status")).to_contain_text("mask 2 of 3", timeout=30_000)
    page.click("#som-smaller")
    expect(page.locator("#som-status")).to_contain_text("mask 1 of 3", timeout=30_000)
    _expect_rows(page, 1)
    page.screenshot(path=str(artifacts / "app_smaller.png"), full_page=True)


def test_text_prompt_with_a_segmenter_without_text_says_so(app_url, page, artifacts):
    """The Names mark type and the classes / text controls are there; mobile-sam refuses a text prompt
    in one readable line and the page keeps working."""
    expect = _expect()
    _open(page, app_url)
    _upload(page, COFFEE)
    expect(page.get_by_label("Names")).not_to_be_checked()
    page.get_by_text("Classes and text").click()
    page.locator("#som-text textarea").fill("the red mug")
    page.click("#som-text-btn")
    expect(page.get_by_text(re.compile("'mobile-sam' takes no text prompts")).first).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts / "app_text_prompt_refused.png"), full_page=True)
