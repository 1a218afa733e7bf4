"""mark_page on pages written for the tests: exactly the elements a user can see and act on,
records that lead back to them, boxes in screenshot pixels, labels that never collide."""

from __future__ import annotations

import numpy as np
import pytest

from som.ui_layout import boxes_overlap
from som.web.page import mark_page

pytestmark = pytest.mark.browser

# expected ids per page, from the pages' data-t="v" (read from the live DOM, every root and frame)
EXPECTED_JS = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.dataset && el.dataset.t === 'v') out.push(el.id);
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.tagName === 'IFRAME') { try { if (el.contentDocument) walk(el.contentDocument); } catch (e) {} }
    }
  };
  walk(document);
  return out;
}"""


def marked_ids(marks) -> list[str]:
    out = []
    for e in marks.elements:
        assert e.css.startswith("#"), f"test elements all have ids; got {e.css}"
        out.append(e.css[1:])
    return out


def check_labels(marks):
    """Inside the image, pairwise disjoint, never on their own element."""
    lab = marks.regions.label_xyxy.astype(np.int64)
    h, w = marks.regions.image_hw
    assert (lab[:, :2] >= 0).all() and (lab[:, 2] <= w).all() and (lab[:, 3] <= h).all()
    ov = boxes_overlap(lab, lab)
    np.fill_diagonal(ov, 0)
    assert ov.max(initial=0) == 0, "two labels overlap"
    own = boxes_overlap(lab, np.round(marks.regions.xyxy).astype(np.int64)).diagonal()
    assert (own == 0).all(), f"labels on their own element: {np.nonzero(own)[0] + 1}"


@pytest.mark.parametrize("name", ["form", "menu", "modal", "frames", "shadow", "sticky"])
def test_marks_exactly_what_a_user_can_act_on(name, site, open_page, artifacts):
    page = open_page(f"{site}/{name}.html")
    expected = sorted(page.evaluate(EXPECTED_JS))  # an id twice: the same child page in two frames
    marks = mark_page(page)
    marks.save(artifacts / "web", name)
    got = marked_ids(marks)
    where = [(e.frame, e.css) for e in marks.elements]
    assert len(where) == len(set(where)), f"an element marked twice: {where}"
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert sorted(got) == expected, f"missing {sorted(missing)}, extra {sorted(extra)}; got {sorted(got)}"
    check_labels(marks)
    assert marks.regions.labels == [str(i) for i in range(1, len(got) + 1)]
    assert marks.image.shape == marks.screenshot.shape == (800, 1280, 3)


def test_records_name_the_element(site, open_page):
    marks = mark_page(open_page(f"{site}/form.html"))
    by_id = {e.css[1:]: e for e in marks.elements}
    assert by_id["name"].role == "textbox" and by_id["name"].name == "Name" and by_id["name"].placeholder == "Your name"
    assert by_id["email"].name == "Email" and by_id["email"].type == "email"
    assert by_id["pw"].value is None, "a password's value must never be recorded"
    assert by_id["agree"].role == "checkbox" and by_id["agree"].checked is False and by_id["agree"].kind == "toggle"
    assert by_id["size"].role == "combobox" and by_id["size"].value == "s" and by_id["size"].kind == "input"
    assert by_id["go"].role == "button" and by_id["go"].name == "Submit"
    assert by_id["help"].href.endswith("/form.html#help-text") and by_id["help"].kind == "link"
    assert by_id["editor"].reason == "editable" and by_id["editor"].kind == "input"
    assert by_id["fancy"].reason == "label"
    assert by_id["go"].xpath.startswith("/html/body/") and by_id["go"].frame == "main"


def test_frames_and_shadow_records(site, open_page):
    marks = mark_page(open_page(f"{site}/frames.html"))
    in_frame = [e for e in marks.elements if e.css == "#in-frame"]
    assert len(in_frame) == 2, "the same-origin child and the nested one; never the cross-origin one"
    assert [s["into"] for s in in_frame[0].path] == ["frame"] and in_frame[0].frame == "#same"
    assert [s["into"] for s in in_frame[1].path] == ["frame", "frame"]
    assert in_frame[0].frame_url.endswith("/child.html")
    marks = mark_page(open_page(f"{site}/shadow.html"))
    deep = next(e for e in marks.elements if e.css == "#deep")
    assert [s["into"] for s in deep.path] == ["shadow", "shadow"] and deep.xpath.startswith("./")


def test_boxes_are_screenshot_pixels_at_device_scale(site, open_page):
    page = open_page(f"{site}/form.html", device_scale_factor=2)
    marks = mark_page(page)
    assert marks.screenshot.shape == (1600, 2560, 3) and marks.device_scale_factor == 2
    go = next(e for e in marks.elements if e.css == "#go")
    r = page.evaluate("() => { const r = document.querySelector('#go').getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }")
    np.testing.assert_allclose(go.xyxy, [np.floor(2 * r[0]), np.floor(2 * r[1]), np.ceil(2 * r[2]), np.ceil(2 * r[3])])
    # the screenshot really shows the button there: its pixels differ from the page background
    x1, y1, x2, y2 = (int(v) for v in go.xyxy)
    assert marks.screenshot[y1:y2, x1:x2].std() > 5


def test_kinds_and_full_page(site, open_page):
    page = open_page(f"{site}/sticky.html")
    assert {e.css for e in mark_page(page, kinds=["button"]).elements} == {"#visible-1"}
    full = mark_page(page, full_page=True)
    ids = {e.css[1:] for e in full.elements}
    assert {"below", "visible-1", "home", "about"} <= ids
    assert not ids & {"none", "invisible", "transparent", "zero", "left-out", "clipped"}
    assert full.screenshot.shape[0] > 800
    assert page.viewport_size == {"width": 1280, "height": 800}, "the viewport is restored"
    with pytest.raises(ValueError, match="unknown element kinds"):
        mark_page(page, kinds=["buttons"])


def test_no_mark_on_a_covered_or_hidden_point(site, open_page):
    """Independently of collect.js: the topmost element at each mark's point is the element the
    record leads back to (or inside it)."""
    for name in ("modal", "sticky", "frames", "shadow"):
        page = open_page(f"{site}/{name}.html")
        marks = mark_page(page)
        for k, e in enumerate(marks.elements):
            el = marks.locate(e.label)
            frame = el.owner_frame()
            fx, fy = page.evaluate("() => [0, 0]") if frame == page.main_frame else _frame_offset(page, frame)
            inside = el.evaluate(
                """(el, [x, y]) => { let h = el.getRootNode().elementFromPoint(x, y);
                     while (h && h !== el) h = h.parentNode || h.host; return h === el; }""",
                [e.point_css[0] - fx, e.point_css[1] - fy],
            )
            assert inside, f"{name}: mark {e.label} ({e.describe()}) is not the topmost element at its point"


def _frame_offset(page, frame):
    """Top-viewport position of a frame's viewport: sum of its iframes' content-box offsets."""
    x = y = 0.0
    while frame.parent_frame is not None:
        off = frame.frame_element().evaluate(
            "f => { const r = f.getBoundingClientRect(), s = getComputedStyle(f);"
            " return [r.left + f.clientLeft + parseFloat(s.paddingLeft), r.top + f.clientTop + parseFloat(s.paddingTop)]; }"
        )
        x, y = x + off[0], y + off[1]
        frame = frame.parent_frame
    return x, y


def test_mark_page_opens_and_closes_its_own_browser(site):
    """With a URL, mark_page starts Playwright and Chromium itself. Playwright allows one sync
    driver per thread and the session's browser holds this one, so this runs in a thread of its own."""
    import concurrent.futures

    def run():
        with mark_page(f"{site}/menu.html", viewport=(800, 600)) as marks:
            doc = marks.to_dict("menu.marked.png")
            browser = marks._session.browser
            shape, n = marks.screenshot.shape, len(marks)
        return shape, n, doc, browser.is_connected()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        shape, n, doc, connected = pool.submit(run).result(timeout=60)
    assert shape == (600, 800, 3) and n > 5 and not connected
    assert doc["format"] == "som.marks" and len(doc["marks"]) == n
    first = doc["marks"][0]
    assert {"id", "label", "xyxy", "anchor_xy", "label_xyxy", "rle"} <= set(first)
    assert {"tag", "role", "name", "css", "xpath", "frame", "box_css"} <= set(first)
    with pytest.raises(ValueError, match="neither a URL"):
        mark_page("no/such/file.html")


@pytest.mark.parametrize("vision", [False, True])
def test_vision_marks_only_what_the_dom_does_not_expose(vision, site, open_page):
    pytest.importorskip("rapidocr_onnxruntime")
    page = open_page(f"{site}/canvas.html")
    marks = mark_page(page, vision=vision)
    dom = [e for e in marks.elements if e.kind != "vision"]
    seen = {e.text: e for e in marks.elements if e.kind == "vision"}
    # the canvas has a click listener, so the DOM marks it as a whole; the vision marks name its parts
    assert {e.css for e in dom} == {"#real", "#game"}
    if not vision:
        assert not seen
        return
    assert "Buy now" in seen and "Level 3" in seen, seen
    buy = seen["Buy now"]
    assert buy.tag == "canvas" and buy.css == "#game" and buy.reason == "vision-control"
    assert not any("A real button" in t for t in seen), "what the DOM marks is not marked again"
    marks.click(buy.label)
    (x, y), = page.evaluate("window.__canvasClicks")
    assert 40 <= x <= 190 and 50 <= y <= 100, "the click landed on the drawn button"
    check_labels(marks)
