"""Ask a multimodal LLM about an image through its marks, and map the answer back to regions.

    answer = som.ask("photo.jpg", "which mark is the red cup?", template="refer")
    answer.labels      # ['3']
    answer.regions     # Regions of mark 3 (masks, boxes)
    answer.highlighted # the picture with mark 3 emphasised (or None)

When `marks` is None the image is marked first with `som.pipeline.mark(image,
**mark_options)`; pass a `MarkResult` (anything with `image`, `regions`,
`source`, `style`) to reuse marks across questions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from som.llm.parse import label_kind, parse_marks, parse_pairs
from som.llm.templates import PromptTemplate, TemplateLibrary, load_templates
from som.regions import Regions

log = logging.getLogger(__name__)

_CLEAN_NOTE = "The last image is the same picture without marks, for reference; marks refer to the first image."


@dataclass
class Answer:
    """What the model said and what it pointed at.

    text:        the reply as written.
    labels:      valid marks it mentions, in order of first mention, no duplicates.
    regions:     those marks' Regions, in the same order.
    highlighted: (H, W, 3) uint8 RGB picture with the mentioned regions emphasised, or None
                 (nothing mentioned, highlighting off, or no highlighter available).
    marks:       the MarkResult the question was asked about (reuse it for the next question).
    template:    name of the template used.
    pairs:       two-image templates: (mark in image 1, mark in image 2 or None) per matched mark.
    marks2:      two-image templates: the MarkResult of image 2.
    """

    text: str
    labels: list[str]
    regions: Regions
    highlighted: np.ndarray | None = None
    marks: Any = None
    template: str = "chat"
    pairs: list[tuple[str, str | None]] | None = None
    marks2: Any = None

    def to_json(self) -> list[dict[str, Any]]:
        """The mentioned marks as JSON-ready dicts: label, xyxy (x2/y2 exclusive), area in pixels."""
        areas = self.regions.areas
        return [
            {"label": label, "xyxy": [float(v) for v in self.regions.xyxy[i]], "area": int(areas[i])}
            for i, label in enumerate(self.labels)
        ]


class AnswerStream:
    """Iterate for the reply's text deltas as they arrive; `answer()` then gives the `Answer`
    (it reads whatever is left of the stream first)."""

    def __init__(self, deltas: Iterator[str], finish: Callable[[str], Answer]) -> None:
        self._deltas = deltas
        self._finish = finish
        self._parts: list[str] = []
        self._answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            self._parts.append(delta)
            yield delta

    def answer(self) -> Answer:
        if self._answer is None:
            for _ in self:
                pass
            self._answer = self._finish("".join(self._parts))
        return self._answer


def _labels_of(marks: Any, which: str) -> list[str]:
    regions = getattr(marks, "regions", None)
    if not isinstance(regions, Regions):
        raise ValueError(f"{which} must be a MarkResult with .regions (Regions), got {type(marks).__name__}")
    if regions.labels is None:
        raise ValueError(f"{which}.regions has no labels; mark the image first (som.mark) so every region carries one")
    return list(regions.labels)


def _label_mode(marks: Any, labels: Sequence[str]) -> str:
    """'number' or 'letter': from the labels themselves when they tell, else the style."""
    if labels:
        if all(s.isdigit() for s in labels):
            return "number"
        if all(s.isalpha() for s in labels):
            return "letter"
    mode = getattr(getattr(marks, "style", None), "label_mode", None)
    return label_kind(mode) if mode is not None else "number"


def _mark(image: Any, marks: Any, mark_options: Mapping[str, Any], which: str) -> Any:
    if marks is not None:
        if mark_options:
            raise ValueError(
                f"{which}: marking options {sorted(mark_options)} were given with ready marks; "
                "pass either marks= or marking options, not both"
            )
        return marks
    if image is None:
        raise ValueError(f"{which}: pass an image (path, bytes, PIL image or array) or ready marks=")
    from som.pipeline import mark

    return mark(image, **_mark_kwargs(mark_options))


def _mark_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the short names people type (granularity=, label_mode='letter') next to som.mark's own."""
    kwargs = dict(options)
    if "granularity" in kwargs:
        if "granularity_level" in kwargs:
            raise ValueError("pass granularity= or granularity_level=, not both")
        kwargs["granularity_level"] = kwargs.pop("granularity")
    if "label_mode" in kwargs:
        import dataclasses

        from som.draw import MarkStyle

        mode = "alphabet" if label_kind(kwargs.pop("label_mode")) == "letter" else "number"
        kwargs["style"] = dataclasses.replace(kwargs.get("style") or MarkStyle(), label_mode=mode)
    return kwargs


def _highlight(marks: Any, labels: list[str]) -> np.ndarray | None:
    if not labels:
        return None
    try:
        from som.draw import highlight
    except ImportError:
        log.debug("som.draw.highlight is not available; no highlighted image")
        return None
    source = getattr(marks, "source", None)
    try:
        return highlight(source if source is not None else marks.image, marks.regions, labels, marks.style)
    except Exception as e:  # noqa: BLE001 - the paid-for answer matters more than its picture
        log.warning("could not draw the highlight (%s: %s); Answer.highlighted is None", type(e).__name__, e)
        return None


def _prepare(
    image: Any,
    question: str,
    *,
    template: str | PromptTemplate,
    marks: Any,
    client: Any,
    templates: TemplateLibrary | str | Path | None,
    send_clean: bool,
    image2: Any,
    marks2: Any,
    highlight: bool,
    history: Sequence[Mapping[str, Any]],
    mark_options: Mapping[str, Any],
) -> tuple[Any, list[dict[str, Any]], Callable[[str], Answer]]:
    if isinstance(template, PromptTemplate):
        tpl = template
    else:
        lib = templates if isinstance(templates, TemplateLibrary) else load_templates(templates)
        tpl = lib.get(template)
    if tpl.images == 2 and image2 is None and marks2 is None:
        raise ValueError(f"template {tpl.name!r} compares two images: pass image2= (or marks2=)")
    if tpl.images == 1 and (image2 is not None or marks2 is not None):
        raise ValueError(f"template {tpl.name!r} takes one image; image2/marks2 need a two-image template such as 'match'")

    marks = _mark(image, marks, mark_options, "image")
    labels = _labels_of(marks, "marks")
    mode = _label_mode(marks, labels)
    labels2 = None
    mode2 = None
    if tpl.images == 2:
        marks2 = _mark(image2, marks2, mark_options, "image2")
        labels2 = _labels_of(marks2, "marks2")
        mode2 = _label_mode(marks2, labels2)

    regions = getattr(marks, "regions", None)
    prompt = tpl.render(question, labels, mode, labels2, mode2, categories=getattr(regions, "categories", None))
    if client is None:
        from som.llm.client import LLMClient

        client = LLMClient()
    from som.llm.client import build_messages

    images = [marks.image]
    system = prompt.system
    if tpl.images == 2:
        images.append(marks2.image)
    elif send_clean:
        images.append(getattr(marks, "source", None) if getattr(marks, "source", None) is not None else marks.image)
        system = f"{system} {_CLEAN_NOTE}"
    messages = build_messages(system, prompt.user, [np.asarray(im) for im in images], client.config, history)

    def finish(text: str) -> Answer:
        pairs = None
        if tpl.images == 2:
            pairs = parse_pairs(text, labels, labels2, mode, mode2)
            mentioned = list(dict.fromkeys(a for a, _ in pairs)) or parse_marks(text, labels, mode)
        else:
            mentioned = parse_marks(text, labels, mode)
        return Answer(
            text=text,
            labels=mentioned,
            regions=marks.regions.select_labels(mentioned),
            highlighted=_highlight(marks, mentioned) if highlight else None,
            marks=marks,
            template=tpl.name,
            pairs=pairs,
            marks2=marks2 if tpl.images == 2 else None,
        )

    return client, messages, finish


def ask(
    image: Any,
    question: str = "",
    *,
    template: str | PromptTemplate = "chat",
    marks: Any = None,
    client: Any = None,
    templates: TemplateLibrary | str | Path | None = None,
    send_clean: bool = False,
    image2: Any = None,
    marks2: Any = None,
    highlight: bool = True,
    history: Sequence[Mapping[str, Any]] = (),
    on_delta: Callable[[str], None] | None = None,
    **mark_options: Any,
) -> Answer:
    """Mark `image` (unless `marks` is given), ask `question` with `template`, parse the marks named.

    image:        path, bytes, PIL image or (H, W, 3) uint8 RGB array; may be None when marks= is given.
    template:     a name in `templates` (see `som.llm.templates`) or a PromptTemplate.
    client:       an `LLMClient`; None builds one from the environment (OPENAI_API_KEY, OPENAI_BASE_URL, SOM_MODEL).
    templates:    a TemplateLibrary, or a YAML/JSON file merged over the built-ins.
    send_clean:   also send the unmarked image, so marks hide nothing the model needs.
    image2/marks2: the second image of a two-image template ('match').
    history:      earlier chat messages to send before this turn (multi-turn chat).
    on_delta:     when given, the reply is streamed and every text delta is passed to it.
    mark_options: passed to `som.pipeline.mark` (segmenter=, granularity_level=, style=, ...);
                  granularity= and label_mode= ('number' / 'letter' / 'alphabet') are accepted too.
    Raises LLMError for endpoint failures, ValueError for bad arguments.
    """
    client, messages, finish = _prepare(
        image, question, template=template, marks=marks, client=client, templates=templates,
        send_clean=send_clean, image2=image2, marks2=marks2, highlight=highlight, history=history,
        mark_options=mark_options,
    )  # fmt: skip
    if on_delta is None:
        return finish(client.complete(messages))
    stream = AnswerStream(client.stream(messages), finish)
    for delta in stream:
        on_delta(delta)
    return stream.answer()


def ask_stream(
    image: Any,
    question: str = "",
    *,
    template: str | PromptTemplate = "chat",
    marks: Any = None,
    client: Any = None,
    templates: TemplateLibrary | str | Path | None = None,
    send_clean: bool = False,
    image2: Any = None,
    marks2: Any = None,
    highlight: bool = True,
    history: Sequence[Mapping[str, Any]] = (),
    **mark_options: Any,
) -> AnswerStream:
    """Like `ask`, streaming: iterate the result for text deltas, then call `.answer()`.

    Marking and the request happen now (errors raise here); the reply arrives while iterating.
    """
    client, messages, finish = _prepare(
        image, question, template=template, marks=marks, client=client, templates=templates,
        send_clean=send_clean, image2=image2, marks2=marks2, highlight=highlight, history=history,
        mark_options=mark_options,
    )  # fmt: skip
    return AnswerStream(client.stream(messages), finish)
