"""Prompt templates: a named, listable library that files can override and extend.

A template is a system text and a user text with `{placeholders}`:

    {question}     what the user typed (the question, expression, sentence or vocabulary)
    {labels}       the valid labels of image 1 ("1 to 12", "a, b, c")
    {labels2}      the valid labels of image 2 (two-image templates)
    {n}            how many marks image 1 has
    {mark_kind}    "number" or "letter";  {mark_kinds}: "numbers" or "letters"
    {ex1} {ex2} {ex3}  example marks in the label mode ("3", "5", "7" or "c", "e", "g")
    {ex_img2}      an example mark of image 2 ("5" or "e"), in image 2's label mode
    {names}        the class names the segmenter gave marks of image 1 ("Some marks carry a class
                   name ...: 1: cup, 3: spoon. "), or "" when it named none (`names_text`)

Unknown `{words}` and other braces are left as written, so a template may
contain JSON examples. Every built-in system text carries the one rule the
parser relies on: each mentioned mark is written in square brackets, like [3].

A file (YAML or JSON) maps names to fields, either at top level or under
`templates:`; a name that exists is overridden field by field, a new name is
added (it may say `extends: chat` to start from another template):

    templates:
      chat:
        system: "You are a terse assistant. Write every mark in brackets like [{ex1}]."
      count:
        extends: chat
        description: count objects
        user: "How many {question} are there? List their marks."
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from som.llm.parse import label_kind, labels_text

_FIELD = re.compile(r"\{(\w+)\}")

_RULE = (
    "Whenever you mention a marked region, write its mark in square brackets, like [{ex1}]; "
    "for several marks write [{ex1}, {ex2}]. Only use marks that are drawn in the image ({labels})."
)
_SEEN = (
    "The image shows {n} regions, each with a {mark_kind} mark ({labels}) drawn on it. "
    "A region can contain other marked regions: a whole object (drawn with a thicker outline) holds "
    "the marks of its parts, and its own mark means the whole object, parts included. {names}"
)

MAX_NAMES_LISTED = 80  # a prompt lists at most this many named marks


def names_text(labels: Sequence[str], categories: Sequence[str] | None) -> str:
    """The `{names}` sentence: marks may carry class names from the segmenter; lists them as
    "3: dog" (marks without a name are left out). "" when no mark has a name."""
    if not categories:
        return ""
    named = [(str(lab), " ".join(str(c).split())) for lab, c in zip(labels, categories) if c and str(c).strip()]
    if not named:
        return ""
    listed = ", ".join(f"{lab}: {name}" for lab, name in named[:MAX_NAMES_LISTED])
    more = f", … ({len(named)} named in all)" if len(named) > MAX_NAMES_LISTED else ""
    return (
        "Marks may carry class names given by the segmenter; they are guesses, so trust the image "
        f"where they disagree: {listed}{more}. "
    )


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt. images: how many marked images it takes (1, or 2 for the matching prompt).
    needs_question: whether `{question}` must be non-empty (a referring expression must exist;
    'list everything' needs no question)."""

    name: str
    description: str
    system: str
    user: str
    images: int = 1
    needs_question: bool = True

    def render(
        self,
        question: str = "",
        labels: Sequence[str] = (),
        label_mode: str | None = None,
        labels2: Sequence[str] | None = None,
        label_mode2: str | None = None,
        categories: Sequence[str] | None = None,
    ) -> "RenderedPrompt":
        """Fill the placeholders. Label modes are inferred from the labels when None.
        categories: image 1's class names, one per label ("" for none), for `{names}`."""
        question = (question or "").strip()
        if self.needs_question and not question:
            raise ValueError(f"template {self.name!r} needs a question/text ({self.description}); got an empty one")
        labels = [str(s) for s in labels]
        kind = _kind(labels, label_mode)
        examples = ["3", "5", "7"] if kind == "number" else ["c", "e", "g"]
        kind2 = _kind(labels if labels2 is None else [str(s) for s in labels2], label_mode2 or (label_mode if labels2 is None else None))
        fields = {
            "question": question,
            "labels": labels_text(labels),
            "labels2": labels_text(labels2 if labels2 is not None else labels),
            "n": str(len(labels)),
            "mark_kind": kind,
            "mark_kinds": kind + "s",
            "ex1": examples[0],
            "ex2": examples[1],
            "ex3": examples[2],
            "ex_img2": "5" if kind2 == "number" else "e",
            "names": names_text(labels, categories),
        }

        def fill(text: str) -> str:
            return _FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), text)

        return RenderedPrompt(system=fill(self.system).strip(), user=fill(self.user).strip())


def _kind(labels: Sequence[str], label_mode: str | None) -> str:
    if label_mode is not None:
        return label_kind(label_mode)
    return "letter" if labels and not any(s.isdigit() for s in labels) else "number"


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str


BUILTIN_TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in [
        PromptTemplate(
            name="chat",
            description="general chat about the marked image",
            system="You answer questions about an image. " + _SEEN + _RULE,
            user="{question}",
        ),
        PromptTemplate(
            name="list",
            description="list items one by one: describe every mark in order (SoM training data)",
            system="You describe images precisely. " + _SEEN + _RULE,
            user=(
                "Describe the items one by one, in the order of their marks, every mark exactly once. "
                "Write one line per mark: the mark in square brackets, then a short description of what it "
                "covers, e.g.\n[{ex1}] a white ceramic mug\n{question}"
            ),
            needs_question=False,
        ),
        PromptTemplate(
            name="refer",
            description="referring expression: which mark is the described object",
            system="You locate objects in images. " + _SEEN + _RULE,
            user=(
                'Which mark is "{question}"? Answer with the mark in square brackets, e.g. [{ex1}], then one '
                "short sentence why. If the object spans several marks, give them all, e.g. [{ex1}, {ex2}]. "
                "If nothing matches, answer [none]."
            ),
        ),
        PromptTemplate(
            name="ground",
            description="phrase grounding: assign each phrase of a sentence its marks",
            system="You ground language in images. " + _SEEN + _RULE,
            user=(
                'Sentence: "{question}"\n'
                "For every noun phrase of the sentence that names something, write one line: the phrase, "
                "a colon, and the marks it refers to, e.g.\nthe red cup: [{ex1}]\nthe two plates: [{ex2}, {ex3}]\n"
                "Write 'none' after the colon if the phrase is not visible."
            ),
        ),
        PromptTemplate(
            name="label",
            description="open-vocabulary labelling: a class name for every mark",
            system="You name objects in images. " + _SEEN + _RULE,
            user=(
                "Give every mark a short class name (one to three words), one line per mark, in order, e.g.\n"
                "[{ex1}] coffee mug\nUse 'unknown' when you cannot tell. {question}"
            ),
            needs_question=False,
        ),
        PromptTemplate(
            name="match",
            description="two images: find the marks of image 1 again in image 2",
            system=(
                "You compare two images. Image 1 has {mark_kind} marks ({labels}); image 2 has its own marks "
                "({labels2}). A mark can be a whole object that contains the marks of its parts. "
                "Whenever you mention a mark, write it in square brackets, like [{ex1}]."
            ),
            user=(
                "For every mark of image 1, find the same object in image 2. Write one line per mark of image 1: "
                "its mark, an arrow, and the matching mark of image 2, e.g.\n[{ex1}] -> [{ex_img2}]\n"
                "Write 'none' after the arrow if the object is not in image 2. {question}"
            ),
            images=2,
            needs_question=False,
        ),
    ]
}

_FIELDS = {f.name for f in dataclasses.fields(PromptTemplate)} - {"name"}
_ALLOWED_KEYS = _FIELDS | {"extends"}


class TemplateLibrary:
    """Named prompt templates: the built-ins plus whatever files add or override. Immutable;
    `with_file` / `with_templates` return a new library."""

    def __init__(self, templates: Mapping[str, PromptTemplate] | None = None) -> None:
        self._templates = dict(BUILTIN_TEMPLATES if templates is None else templates)

    def names(self) -> list[str]:
        return list(self._templates)

    def get(self, name: str) -> PromptTemplate:
        try:
            return self._templates[name]
        except KeyError:
            raise ValueError(f"unknown template {name!r}; available: {', '.join(self._templates)}") from None

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __iter__(self) -> Iterator[PromptTemplate]:
        return iter(self._templates.values())

    def __len__(self) -> int:
        return len(self._templates)

    def with_templates(self, specs: Mapping[str, Mapping[str, object]], source: str = "templates") -> "TemplateLibrary":
        """A new library with `specs` (name -> fields) merged in (see the module docstring)."""
        if not isinstance(specs, Mapping):
            raise ValueError(f"{source}: expected a mapping of template name -> fields, got {type(specs).__name__}")
        merged = dict(self._templates)
        for name, spec in specs.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{source}: template names must be non-empty strings, got {name!r}")
            if not isinstance(spec, Mapping):
                raise ValueError(f"{source}: template {name!r} must map fields to values, got {type(spec).__name__}")
            unknown = set(spec) - _ALLOWED_KEYS
            if unknown:
                raise ValueError(
                    f"{source}: template {name!r} has unknown field(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}"
                )
            base_name = spec.get("extends", name if name in merged else None)
            if base_name is not None and base_name not in merged:
                raise ValueError(f"{source}: template {name!r} extends unknown template {base_name!r}")
            base = merged.get(base_name) if base_name is not None else None
            fields: dict[str, object] = (
                {f: getattr(base, f) for f in _FIELDS}
                if base is not None
                else {"description": "", "system": "", "images": 1, "needs_question": True}
            )
            fields.update({k: v for k, v in spec.items() if k != "extends"})
            for key in ("description", "system", "user"):
                if key in fields and not isinstance(fields[key], str):
                    raise ValueError(f"{source}: template {name!r} field {key!r} must be text, got {fields[key]!r}")
            if not fields.get("user"):
                raise ValueError(f"{source}: template {name!r} needs a 'user' text (it may contain {{question}})")
            if fields.get("images") not in (1, 2):
                raise ValueError(f"{source}: template {name!r} 'images' must be 1 or 2, got {fields.get('images')!r}")
            if not isinstance(fields.get("needs_question"), bool):
                raise ValueError(f"{source}: template {name!r} 'needs_question' must be true or false")
            merged[name] = PromptTemplate(name=name, **fields)  # type: ignore[arg-type]
        return TemplateLibrary(merged)

    def with_file(self, path: str | Path) -> "TemplateLibrary":
        """A new library with the templates of a .yaml/.yml/.json file merged in."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{path}: cannot read templates file ({e.strerror or e})") from None
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as e:  # yaml.YAMLError / json.JSONDecodeError: report, don't trace
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({first})") from None
        if isinstance(data, Mapping) and isinstance(data.get("templates"), Mapping):
            data = data["templates"]
        return self.with_templates(data, source=str(path))


def load_templates(path: str | Path | None = None) -> TemplateLibrary:
    """The built-in templates, plus those of `path` when given."""
    lib = TemplateLibrary()
    return lib if path is None else lib.with_file(path)
