"""The marking pipeline: image -> segment -> refine -> layout -> draw.

`mark` is the whole automatic path (`mark_many` pipelines it over many images);
`mark_regions` marks regions you already have (interactive clicks, ground-truth masks). Both return a `MarkResult`
whose numbers in the picture, in `regions.labels` and in the marks JSON name
the same regions.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from som.draw import MarkStyle, draw_marks
from som.imageio import ImageError, ImageLike, load_image, resize_rgb, working_size
from som.layout import place_labels
from som.nest import is_laminar
from som.refine import RefineOptions, refine
from som.regions import Regions
from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, Segmenter, build_segmenter, granularity
from som.segmenters.base import ProgressFn, check_classes

MIN_SIDE_PX = 16  # smaller images have no room for a readable mark
DEFAULT_MAX_SIDE_PX = 2048  # larger images are segmented at this size; output stays original size


@dataclass
class MarkResult:
    """image: marked (H, W, 3) uint8 RGB; source: the clean image; regions: labelled, same size."""

    image: np.ndarray
    regions: Regions
    source: np.ndarray
    style: MarkStyle
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


@functools.lru_cache(maxsize=4)
def cached_segmenter(name: str, device: str = "auto", checkpoint: str | None = None) -> Segmenter:
    """Build a segmenter once per (name, device, checkpoint) per process: loading weights is slow."""
    return build_segmenter(name, device=device, checkpoint=checkpoint)


def _check_size(image: np.ndarray) -> None:
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise ImageError(f"image is {w}x{h} pixels; marks need at least {MIN_SIDE_PX}x{MIN_SIDE_PX}")


def _finish(
    source: np.ndarray, regions: Regions, style: MarkStyle, settings: dict, timings: dict[str, float]
) -> MarkResult:
    t = time.perf_counter()
    try:
        regions = place_labels(regions, mode=style.label_mode, names=style.names)
    except ValueError:
        if not (style.names and regions.categories is not None):
            raise
        # the names leave no room (a small image, many marks): numbers only, and say so
        regions = place_labels(regions, mode=style.label_mode)
        style = dataclasses.replace(style, names=False)
        settings = {**settings, "names_dropped": "no room for class names beside the labels; numbers only"}
    timings["layout"] = time.perf_counter() - t
    t = time.perf_counter()
    marked = draw_marks(source, regions, style)
    timings["draw"] = time.perf_counter() - t
    return MarkResult(marked, regions, source, style, settings, timings)


@dataclass
class _Segmented:
    """What `mark` has after segmentation, before refine/layout/draw (the host-side stages)."""

    source: np.ndarray
    candidates: Regions
    style: MarkStyle
    refine_options: RefineOptions
    settings: dict[str, Any]
    timings: dict[str, float]


def _load(image: ImageLike) -> np.ndarray:
    source = load_image(image)
    _check_size(source)
    return source


def _segment(
    source: np.ndarray,
    seg: Segmenter,
    gran_level: int | str,
    style: MarkStyle,
    refine_options: RefineOptions,
    max_side_px: int,
    progress: ProgressFn | None,
    classes: list[str] | None = None,
) -> _Segmented:
    gran = granularity(gran_level)
    h, w = source.shape[:2]
    wh, ww = working_size(h, w, max_side_px)
    work = resize_rgb(source, wh, ww)
    t = time.perf_counter()
    if classes is None:
        candidates = seg.segment_everything(work, gran.level, progress=progress)
    else:  # only segmenters that know classes take a vocabulary (checked by check_classes)
        candidates = seg.segment_everything(work, gran.level, progress=progress, classes=classes)
    timings = {"segment": time.perf_counter() - t}
    settings = {
        "segmenter": seg.name,
        "device": getattr(seg, "device", "cpu"),
        "granularity": {"level": gran.level, "name": gran.name},
        "style": dataclasses.asdict(style),
        "refine": dataclasses.asdict(refine_options_for(gran.level, refine_options)),
        "max_side_px": max_side_px,
        "working_size": {"width": ww, "height": wh},
        "candidates": len(candidates),
    }
    if classes is not None:
        settings["classes"] = list(classes)
    if hasattr(seg, "amg"):
        settings["amg"] = dataclasses.asdict(seg.amg)
    return _Segmented(source, candidates, style, refine_options_for(gran.level, refine_options), settings, timings)


def refine_options_for(level: int | str, options: RefineOptions) -> RefineOptions:
    """`options` for a granularity level: nested levels nest (RefineOptions.nested)."""
    nested = granularity(level).nested
    return options if options.nested == nested else dataclasses.replace(options, nested=nested)


def _refine_and_draw(s: _Segmented) -> MarkResult:
    t = time.perf_counter()
    regions = refine(s.candidates, s.refine_options).resized(*s.source.shape[:2])
    s.timings["refine"] = time.perf_counter() - t
    return _finish(s.source, regions, s.style, s.settings, s.timings)


def _setup(
    segmenter: str | Segmenter, granularity_level: int | str, max_side_px: int, device: str, checkpoint: str | None,
    classes: str | Iterable[str] | None = None,
) -> tuple[Segmenter, float, list[str] | None]:
    """Check the arguments, then build (or take) the segmenter: (segmenter, seconds that took,
    the class vocabulary checked against it)."""
    granularity(granularity_level)
    if max_side_px < MIN_SIDE_PX:
        raise ValueError(f"max_side_px must be >= {MIN_SIDE_PX}, got {max_side_px}")
    t = time.perf_counter()
    seg = cached_segmenter(segmenter, device, checkpoint) if isinstance(segmenter, str) else segmenter
    return seg, time.perf_counter() - t, check_classes(seg, classes)


def mark(
    image: ImageLike,
    *,
    segmenter: str | Segmenter = DEFAULT_SEGMENTER,
    granularity_level: int | str = DEFAULT_LEVEL,
    style: MarkStyle = MarkStyle(),
    refine_options: RefineOptions = RefineOptions(),
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
    device: str = "auto",
    checkpoint: str | None = None,
    progress: ProgressFn | None = None,
    classes: str | Iterable[str] | None = None,
) -> MarkResult:
    """Automatic Set-of-Mark: segment everything, clean, number and draw.

    image: path, bytes, PIL image or (H, W, 3) RGB array. segmenter: a registered name
    (see `som segmenters`) or a built segmenter. granularity_level: 1 parts .. 3 wholes.
    Images larger than max_side_px are segmented at that size; masks and the picture
    come back at the original size. For many images, `mark_many` keeps the model busy.
    classes: an open vocabulary ("mug, laptop" or a list) for a segmenter that names what it
    finds (`knows_classes`, e.g. seem); others raise ValueError. The marks then carry
    `regions.categories`; `MarkStyle(names=True)` prints them beside the numbers.
    """
    source = _load(image)  # a bad image or argument fails before the model loads
    seg, load_s, classes = _setup(segmenter, granularity_level, max_side_px, device, checkpoint, classes)
    s = _segment(source, seg, granularity_level, style, refine_options, max_side_px, progress, classes)
    s.timings = {"load": load_s, **s.timings}
    return _refine_and_draw(s)


def mark_many(
    images: Iterable[ImageLike],
    *,
    segmenter: str | Segmenter = DEFAULT_SEGMENTER,
    granularity_level: int | str = DEFAULT_LEVEL,
    style: MarkStyle = MarkStyle(),
    refine_options: RefineOptions = RefineOptions(),
    max_side_px: int = DEFAULT_MAX_SIDE_PX,
    device: str = "auto",
    checkpoint: str | None = None,
    classes: str | Iterable[str] | None = None,
) -> Iterator[tuple[ImageLike, MarkResult | Exception]]:
    """`mark` for many images, pipelined: while image i is refined, laid out and drawn (on the
    host) image i+1 is segmented (on the model's device), so a GPU does not wait for the host.

    Yields (image, result) in input order, the same results as `mark` one by one. An image that
    fails yields (image, the exception) and the others go on (a batch skips a bad file);
    argument mistakes raise before any image is read.
    """
    seg, _, classes = _setup(segmenter, granularity_level, max_side_px, device, checkpoint, classes)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="som-draw") as host:
        pending: tuple[ImageLike, Future | Exception] | None = None
        for image in images:
            try:
                segmented = _segment(_load(image), seg, granularity_level, style, refine_options, max_side_px, None,
                                     classes)
                job: Future | Exception = host.submit(_refine_and_draw, segmented)
            except Exception as e:  # this image failed to load or segment; the batch goes on
                job = e
            if pending is not None:
                yield _collect(*pending)
            pending = image, job
        if pending is not None:
            yield _collect(*pending)


def _collect(image: ImageLike, job: Future | Exception) -> tuple[ImageLike, MarkResult | Exception]:
    if isinstance(job, Exception):
        return image, job
    try:
        return image, job.result()
    except Exception as e:
        return image, e


def mark_regions(
    image: ImageLike,
    regions: Regions | np.ndarray,
    *,
    style: MarkStyle = MarkStyle(),
    refine_options: RefineOptions | None = RefineOptions(),
) -> MarkResult:
    """Mark regions you already have ((N, H, W) masks or Regions at the image's size).

    With refine_options (default) they are cleaned, de-overlapped (or nested, with
    `RefineOptions(nested=True)`) and re-ordered like the automatic path; with None they must
    already be disjoint or nested (`regions.parent`), and keep your order.
    """
    source = load_image(image)
    _check_size(source)
    if not isinstance(regions, Regions):
        regions = Regions.from_masks(np.asarray(regions, bool))
    if regions.image_hw != source.shape[:2]:
        raise ValueError(
            f"regions are {regions.image_hw[1]}x{regions.image_hw[0]} but the image is "
            f"{source.shape[1]}x{source.shape[0]}; resize them with Regions.resized(h, w)"
        )
    timings: dict[str, float] = {}
    t = time.perf_counter()
    if refine_options is not None:
        regions = refine(regions, refine_options)
    elif not is_laminar(regions.boxes_px, regions.crops, regions.parent):
        raise ValueError(
            "regions overlap without nesting (two regions meet and neither is the other's parent); "
            "pass refine_options to de-overlap them, or RefineOptions(nested=True) to nest them"
        )
    timings["refine"] = time.perf_counter() - t
    settings = {
        "segmenter": None,
        "style": dataclasses.asdict(style),
        "refine": None if refine_options is None else dataclasses.asdict(refine_options),
    }
    return _finish(source, regions, style, settings, timings)
