"""Acting on marks: click(k) reaches element k (checked through page state), type, select,
hover, scroll, and a clear error when the element is gone."""

from __future__ import annotations

import pytest

from som.web.page import ElementGone, mark_page

pytestmark = pytest.mark.browser


def clicks(page):
    return page.evaluate("() => window.__clicks.slice()")


@pytest.mark.parametrize("name", ["form", "menu", "frames", "shadow"])
def test_click_k_reaches_element_k(name, site, open_page):
    page = open_page(f"{site}/{name}.html")
    marks = mark_page(page)
    assert len(marks) >= 4
    for e in marks.elements:
        if e.css == "#go" or e.css == "#reset":
            continue  # would submit / reset the form under the other clicks; checked below
        if e.tag in ("audio", "video"):
            continue  # the browser's own player controls take the click; no page event to observe
        before = len(clicks(page))
        marks.click(e.label)
        got = clicks(page)[before:]
        # the last click event (a label also clicks its control) went through element k
        assert got and e.css[1:] in got[-1], f"click({e.label}) on {e.describe()} reached {got}"


def test_click_changes_page_state(site, open_page):
    page = open_page(f"{site}/form.html")
    marks = mark_page(page)
    k = {e.css: e.label for e in marks.elements}
    marks.click(k["#agree"])
    assert page.is_checked("#agree")
    marks.click(k["#go"])
    assert page.title() == "submitted"
    page = open_page(f"{site}/menu.html")
    marks = mark_page(page)
    card = next(e for e in marks.elements if e.css == "#card")
    marks.click(card.label)
    marks.click(card.label)
    assert page.get_attribute("#card", "data-n") == "2"
    summary = next(e for e in marks.elements if e.css == "#sum")
    marks.click(summary.label)
    assert "#inside-det" in {e.css for e in marks.remark().elements}, "the opened details' button is marked now"


def test_modal_ok_then_the_page_behind(site, open_page):
    page = open_page(f"{site}/modal.html")
    marks = mark_page(page)
    assert [e.css for e in marks.elements] == ["#ok", "#cancel"]
    marks.click(1)
    assert {e.css for e in marks.remark().elements} == {"#under1", "#under2", "#under3"}


def test_type_select_hover_scroll(site, open_page):
    page = open_page(f"{site}/form.html")
    marks = mark_page(page)
    k = {e.css: e.label for e in marks.elements}
    marks.type(k["#name"], "Ada Lovelace")
    assert page.input_value("#name") == "Ada Lovelace"
    marks.type(k["#note"], "two\nlines")
    assert page.input_value("#note") == "two\nlines"
    marks.type(k["#editor"], "edited")
    assert page.inner_text("#editor") == "edited"
    assert marks.select(k["#size"], "Large") == "l" and page.input_value("#size") == "l"
    assert marks.select(k["#size"], "m") == "m"
    with pytest.raises(ValueError, match="no option 'Huge'"):
        marks.select(k["#size"], "Huge")
    with pytest.raises(ValueError, match="not a text field"):
        marks.type(k["#go"], "x")
    with pytest.raises(ValueError, match="not a <select>"):
        marks.select(k["#name"], "x")
    with pytest.raises(ValueError, match="no mark '99'"):
        marks.click("99")

    page = open_page(f"{site}/menu.html")
    marks = mark_page(page)
    assert "#m-open" not in {e.css for e in marks.elements}
    marks.hover(next(e.label for e in marks.elements if e.css == "#m-file"))
    after = marks.remark()
    assert "#m-open" in {e.css for e in after.elements}, "the submenu shown on hover is marked"

    page = open_page(f"{site}/sticky.html")
    marks = mark_page(page)
    y0 = page.evaluate("scrollY")
    marks.scroll("down")
    assert page.evaluate("scrollY") > y0
    assert "#below" in {e.css for e in marks.remark().elements}
    marks.scroll("up", amount=5)
    assert page.evaluate("scrollY") == 0
    with pytest.raises(ValueError, match="scroll direction"):
        marks.scroll("sideways")


def test_gone_element_is_a_clear_error(site, open_page):
    page = open_page(f"{site}/shadow.html")
    marks = mark_page(page)
    deep = next(e for e in marks.elements if e.css == "#deep")
    page.evaluate("() => document.querySelector('#panel').shadowRoot.querySelector('#inner-host').remove()")
    with pytest.raises(ElementGone, match=rf"mark {deep.label} .*Deep link.* mark the page again"):
        marks.click(deep.label)
    page = open_page(f"{site}/frames.html")
    marks = mark_page(page)
    inner = next(e for e in marks.elements if e.css == "#frame-link")
    page.evaluate("() => document.querySelector('#same').remove()")
    with pytest.raises(ElementGone, match="frame"):
        marks.click(inner.label)


def test_refinds_a_moved_element_by_its_name(site, open_page):
    page = open_page(f"{site}/form.html")
    marks = mark_page(page)
    go = next(e for e in marks.elements if e.css == "#go")
    # the page re-renders: the button loses its id and moves to the top of the form
    page.evaluate("() => { const b = document.querySelector('#go'); b.removeAttribute('id'); b.id = 'moved';"
                  " document.querySelector('#f').prepend(b); }")
    marks.click(go.label)
    assert page.title() == "submitted"
