"""Real HTML not written here: Debian's Python documentation (python3-doc) served on localhost.

The truth is computed in the test, independently of collect.js: every link, button and form
field whose box meets the viewport, that CSS shows, and that is the topmost element at the centre
of one of its line boxes. Recall of mark_page against it must be >= 0.98; every mark must be the
topmost element at the point it names; labels never collide."""

from __future__ import annotations

import numpy as np
import pytest

from som.ui_layout import boxes_overlap
from som.web.page import mark_page

pytestmark = pytest.mark.browser

TRUTH_JS = """() => {
  const vw = innerWidth, vh = innerHeight, out = [];
  for (const el of document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary')) {
    if (el.disabled) continue;
    const s = getComputedStyle(el);
    if (s.visibility !== 'visible' || s.display === 'none' || parseFloat(s.opacity) === 0) continue;
    let shown = false;
    for (const r of el.getClientRects()) {
      const x1 = Math.max(0, r.left), y1 = Math.max(0, r.top), x2 = Math.min(vw, r.right), y2 = Math.min(vh, r.bottom);
      if (x2 - x1 < 2 || y2 - y1 < 2) continue;
      const hit = document.elementFromPoint((x1 + x2) / 2, (y1 + y2) / 2);
      if (hit && el.contains(hit)) { shown = true; break; }
    }
    if (!shown) continue;
    const b = el.getBoundingClientRect();
    out.push({box: [Math.max(0, b.left), Math.max(0, b.top), Math.min(vw, b.right), Math.min(vh, b.bottom)],
              text: (el.innerText || el.value || '').trim().slice(0, 40)});
  }
  return out;
}"""

POINT_JS = """(marks) => marks.map(([x, y, css]) => {
  const el = document.querySelector(css), hit = document.elementFromPoint(x, y);
  return !!(el && hit && el.contains(hit));
})"""

PAGES = [
    ("index.html", 0),
    ("library/os.html", 0),
    ("library/os.html", 6000),
    ("library/functions.html", 0),
    ("library/functions.html", 3000),
    ("tutorial/controlflow.html", 1200),
    ("genindex-A.html", 800),
]


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched(t, marks) -> bool:
    for e in marks.elements:
        m = e.box_css
        if _iou(t, m) >= 0.5:
            return True
        # the mark's box was cut by an overflow-clipping ancestor: same element if it lies inside
        px, py = e.point_css
        if t[0] - 1 <= m[0] and m[2] <= t[2] + 1 and t[1] - 1 <= m[1] and m[3] <= t[3] + 1 and t[0] <= px <= t[2] and t[1] <= py <= t[3]:
            return True
    return False


@pytest.mark.parametrize("path,scroll", PAGES)
def test_python_docs_recall_and_no_hidden_marks(path, scroll, docs_site, open_page, artifacts):
    page = open_page(f"{docs_site}/{path}")
    page.evaluate(f"window.scrollTo(0, {scroll})")
    truth = page.evaluate(TRUTH_JS)
    marks = mark_page(page)
    marks.save(artifacts / "web-docs", path.replace("/", "_").removesuffix(".html") + f"_{scroll}")
    assert len(truth) >= 10, f"{path}: the page shows too few links to test ({len(truth)})"
    missed = [t["text"] for t in truth if not _matched(t["box"], marks)]
    recall = 1 - len(missed) / len(truth)
    assert recall >= 0.98, f"{path}@{scroll}: recall {recall:.3f} ({len(truth)} truth), missed {missed[:10]}"

    ok = page.evaluate(POINT_JS, [[*e.point_css, e.css] for e in marks.elements])
    bad = [e.describe() for e, good in zip(marks.elements, ok) if not good]
    assert not bad, f"{path}: marks not on top at their point: {bad[:5]}"

    lab = marks.regions.label_xyxy.astype(np.int64)
    ov = boxes_overlap(lab, lab)
    np.fill_diagonal(ov, 0)
    assert ov.max(initial=0) == 0
    h, w = marks.regions.image_hw
    assert (lab[:, :2] >= 0).all() and (lab[:, 2] <= w).all() and (lab[:, 3] <= h).all()
    own = boxes_overlap(lab, np.round(marks.regions.xyxy).astype(np.int64)).diagonal()
    assert (own == 0).mean() >= 0.95, "labels sit beside their elements, not on them"
