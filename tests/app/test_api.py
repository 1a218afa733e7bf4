"""Every named endpoint through gradio_client against the served app (superpixel for speed)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from som.marksfile import read_marks

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "assets" / "coffee.jpg"
CHELSEA = REPO / "assets" / "chelsea.jpg"
SP = {"segmenter": "superpixel"}
ENDPOINTS = {"/load_image", "/segment_auto", "/add_point", "/refine_last", "/add_box", "/add_stroke", "/undo",
             "/clear", "/restyle", "/segmenter_info", "/larger", "/smaller", "/add_text"}


def _upload(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def _rows(out) -> list:
    table = out[1]
    return table["data"] if isinstance(table, dict) else list(table)


def _app_error():
    from gradio_client.exceptions import AppError

    return AppError


def test_named_endpoints_are_public(client):
    info = client.view_api(return_format="dict", print_info=False)
    assert ENDPOINTS <= set(info["named_endpoints"]), set(info["named_endpoints"])


def test_load_auto_and_downloads(client):
    out = client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    assert "0 marks" in out[2] and _rows(out) == []
    assert Image.open(out[0]).size == (600, 400)
    out = client.predict(granularity=2, marks=["Mark", "Box"], label_mode="Alphabet", alpha=0.3, min_area=0.001,
                         api_name="/segment_auto", **SP)
    rows = _rows(out)
    assert len(rows) > 10 and rows[0][0] == "a"
    canvas, png, marks_json, clean = out[0], out[3], out[4], out[5]
    assert Image.open(canvas).size == Image.open(png).size == (600, 400)
    assert np.array_equal(np.asarray(Image.open(clean).convert("RGB")),
                          np.asarray(Image.open(out[5]).convert("RGB")))
    regions = read_marks(marks_json)
    assert regions.labels == [r[0] for r in rows]
    assert [int(a) for a in regions.areas] == [int(r[2]) for r in rows]
    assert all(r[1] == "" for r in rows), "granularity 2 is flat: no mark is a part of another"
    doc = json.loads(Path(marks_json).read_text())
    assert doc["settings"]["segmenter"] == "superpixel" and doc["settings"]["mode"] == "automatic"


def test_interactive_endpoints(client):
    client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    out = client.predict(x=300, y=120, api_name="/add_point", **SP)
    assert len(_rows(out)) == 1 and "added region 1" in out[2]
    out = client.predict(x=330, y=120, positive=True, api_name="/refine_last", **SP)
    assert len(_rows(out)) == 1 and "region 1" in out[2]
    out = client.predict(x1=20, y1=300, x2=150, y2=395, api_name="/add_box", **SP)
    assert [r[0] for r in _rows(out)] == ["1", "2"] and _rows(out)[1][-1] == "box"
    out = client.predict(stroke="[[480, 150], [520, 170], [560, 160]]", api_name="/add_stroke", **SP)
    assert [r[-1] for r in _rows(out)] == ["point", "box", "stroke"]
    out = client.predict(marks=["Contour"], label_mode="Alphabet", alpha=0.2, api_name="/restyle")
    assert [r[0] for r in _rows(out)] == ["a", "b", "c"]
    out = client.predict(api_name="/undo")
    assert [r[0] for r in _rows(out)] == ["1", "2"]
    out = client.predict(api_name="/clear")
    assert _rows(out) == []


def test_larger_and_smaller_step_through_mobile_sam_choices(client):
    """The default segmenter gives three masks per click: a click adds the middle one, /larger and
    /smaller replace it with the next, and say so at the ends."""
    client.predict(_upload(COFFEE), "mobile-sam", api_name="/load_image")
    out = client.predict(x=300, y=100, segmenter="mobile-sam", api_name="/add_point")
    assert "mask 2 of 3" in out[2]
    middle = int(_rows(out)[0][2])
    out = client.predict(api_name="/larger")
    assert "mask 3 of 3" in out[2] and int(_rows(out)[0][2]) > middle
    out = client.predict(api_name="/larger")
    assert "largest" in out[2] and len(_rows(out)) == 1
    out = client.predict(api_name="/smaller")
    out = client.predict(api_name="/smaller")
    assert "mask 1 of 3" in out[2] and int(_rows(out)[0][2]) < middle
    assert read_marks(out[4]).areas.tolist() == [int(_rows(out)[0][2])]
    out = client.predict(api_name="/undo")
    assert _rows(out) == []


def test_click_on_existing_region_warns_and_keeps_regions(client):
    client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    client.predict(x=300, y=120, api_name="/add_point", **SP)
    out = client.predict(x=300, y=120, api_name="/add_point", **SP)
    assert len(_rows(out)) == 1 and "nothing added" in out[2]


@pytest.mark.parametrize(
    "call, message",
    [
        (dict(x=5000, y=10, api_name="/add_point", **SP), "outside"),
        (dict(stroke="not json", api_name="/add_stroke", **SP), "stroke"),
        (dict(marks=[], api_name="/restyle"), "at least one mark type"),
        (dict(segmenter="sam-vit-h", api_name="/segment_auto"), "checkpoint"),
    ],
)
def test_bad_requests_give_readable_errors(client, call, message):
    client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")
    with pytest.raises(_app_error(), match=message) as info:
        client.predict(**call)
    assert "Traceback" not in str(info.value)


def test_actions_before_upload_say_so(client):
    with pytest.raises(_app_error(), match="upload an image first"):
        client.predict(x=10, y=10, api_name="/add_point", **SP)


def test_bad_upload_is_readable_and_app_keeps_serving(client, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is a text file, not a PNG\n")
    with pytest.raises(_app_error(), match=r"notes\.png: not an image") as info:
        client.predict(_upload(fake), "superpixel", api_name="/load_image")
    assert "Traceback" not in str(info.value) and "/tmp" not in str(info.value)
    out = client.predict(_upload(COFFEE), "superpixel", api_name="/load_image")  # still serving
    assert "coffee" in out[2]


def test_too_large_upload_is_refused(client, tmp_path):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)  # noise does not compress: > 5 MB cap of the test server
    Image.fromarray(rng.integers(0, 255, (1800, 1800, 3), dtype=np.uint8)).save(big, compress_level=0)
    assert big.stat().st_size > 5_000_000
    with pytest.raises(Exception, match="(?i)size|large|exceed"):
        client.predict(_upload(big), "superpixel", api_name="/load_image")


def test_segmenter_info(client):
    assert "superpixel" in client.predict("superpixel", api_name="/segmenter_info")
    assert "cannot run here" in client.predict("sam-vit-l", api_name="/segmenter_info")


def test_sessions_are_isolated_under_concurrency(app_url):
    from gradio_client import Client

    results: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def work(name, path):
        try:
            c = Client(app_url, verbose=False)
            c.predict(_upload(path), "superpixel", api_name="/load_image")
            out = c.predict(api_name="/segment_auto", granularity=3, **SP)
            out2 = c.predict(api_name="/undo")
            results[name] = (out, out2, read_marks(out[4]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=("coffee", COFFEE)),
               threading.Thread(target=work, args=("chelsea", CHELSEA))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    (c_out, c_undo, c_regions), (k_out, k_undo, k_regions) = results["coffee"], results["chelsea"]
    assert "coffee" in c_out[2] and "chelsea" in k_out[2]
    assert c_regions.image_hw == (400, 600) and k_regions.image_hw == Image.open(CHELSEA).size[::-1]
    assert len(_rows(c_undo)) == len(_rows(c_out)) - 1 and len(_rows(k_undo)) == len(_rows(k_out)) - 1
    assert Path(c_out[4]).parent != Path(k_out[4]).parent
