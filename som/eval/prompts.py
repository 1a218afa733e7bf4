"""The prompts of each task and condition.

Marked conditions use the library's own templates where one fits (`refer`, `label`, `list`
from `som.llm.templates`), so the eval measures what users of `som ask` get. The eval adds
`ground-phrases` (the phrases to ground are given, so every answer line can be scored) and
the no-marks prompts, which ask for box coordinates. A `--templates-file` overrides any of
them by name, like `som ask --templates-file`.

No-marks prompts may use `{width}` and `{height}`: the size in pixels of the picture as sent.
"""

from __future__ import annotations

from pathlib import Path

from som.llm.templates import PromptTemplate, TemplateLibrary, load_templates

_BOX_RULE = (
    "The image is {width} pixels wide and {height} pixels high. Give every box in pixel coordinates of "
    "this image as [x1, y1, x2, y2]: left, top, right, bottom."
)

EVAL_TEMPLATES: dict[str, dict[str, object]] = {
    "ground-phrases": {
        "extends": "ground",
        "description": "phrase grounding with the phrases given: one line per phrase",
        "user": (
            "Sentence: \"{question}\"\nFor each phrase below, write one line: the phrase exactly as given, a colon, "
            "and the marks it refers to, e.g.\nthe red cup: [{ex1}]\nthe two plates: [{ex2}, {ex3}]\n"
            "Write 'none' after the colon if the phrase is not visible."
        ),
    },
    "refer-box": {
        "description": "referring expression without marks: the object's box",
        "system": "You locate objects in images. " + _BOX_RULE,
        "user": (
            'Where is "{question}"? Answer with its bounding box as [x1, y1, x2, y2] in pixels, then one short '
            "sentence why."
        ),
    },
    "ground-box": {
        "description": "phrase grounding without marks: a box per phrase",
        "system": "You ground language in images. " + _BOX_RULE,
        "user": (
            "Sentence: \"{question}\"\nFor each phrase below, write one line: the phrase exactly as given, a colon, "
            "and its bounding box, e.g.\nthe red cup: [12, 40, 118, 160]\nWrite 'none' after the colon if the phrase "
            "is not visible."
        ),
    },
}


def eval_templates(path: str | Path | None = None) -> TemplateLibrary:
    """The built-in templates, the eval's, then those of `path` (a YAML/JSON templates file)."""
    lib = load_templates().with_templates(EVAL_TEMPLATES, source="som.eval")
    return lib if path is None else lib.with_file(path)


def render_box_prompt(tpl: PromptTemplate, question: str, width: int, height: int) -> tuple[str, str]:
    """(system, user) of a no-marks template with the picture's size filled in."""
    rendered = tpl.render(question, labels=[])
    size = {"{width}": str(width), "{height}": str(height)}
    system, user = rendered.system, rendered.user
    for k, v in size.items():
        system, user = system.replace(k, v), user.replace(k, v)
    return system, user


__all__ = ["EVAL_TEMPLATES", "eval_templates", "render_box_prompt"]
