"""Instruction pools and answers for the two tasks, as pure functions of the marks.

`listing` ("list items one by one", the SoM-LLaVA recipe): one instruction sampled
per image; the answer names every mark 1..N in order, `[k] <category>` when the
category is known (ground truth, or the class name a segmenter such as seem gave the
mark: as right as that segmenter), else where the region lies, so every record is
correct without an LLM. `qa`: questions answerable from the annotations alone.

Randomness comes only from `rng_for(seed, task, image_name)`: a `random.Random`
seeded with a string (hashed with SHA-512 by Python, not with the per-process
`hash()`), so any engine, worker or resumed run draws the same choices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

TASKS = ("listing", "qa")

LISTING_INSTRUCTIONS = (
    "List the items in the image one by one, in the order of their marks.",
    "Each region of the image carries a {kind} mark. Name what is under every mark, from {first} to {last}.",
    "I have drawn {n} {kind} marks on the image. Describe the items one by one, in the order of the marks.",
    "Go through the marks {first} to {last} in order and say what each one is.",
    "Name every marked item in the image, one line per mark, in mark order.",
    "There are {n} marks in this image ({first} to {last}). What does each mark point at? Answer one by one.",
    "Enumerate the marked objects: for each mark, in order, give the mark and what it covers.",
    "Please list all marked regions in order, writing each mark in square brackets followed by its content.",
)

QA_TEMPLATES = {
    "what": ("What is mark {label}?", "What does the region marked {label} show?", "Which object carries mark {label}?"),
    "where": ("Where in the image is mark {label}?", "In which part of the image is the region marked {label}?"),
    "which_one": ("Which mark is the {cat}?", "Which mark points at the {cat}?", "Find the {cat}: which mark is it on?"),
    "which_all": ("Which marks show {a_cat}?", "Name every mark that is on {a_cat}."),
    "count_cat": ("How many marked regions show {a_cat}?", "How many of the marks are on {a_cat}?"),
    "count_all": ("How many marks are in the image?", "How many regions are marked?"),
}


@dataclass(frozen=True)
class MarkInfo:
    """What a record may say about one mark: its label, category (None when unknown), position,
    and the label of the mark it is a part of (None for a whole or a flat mark)."""

    label: str
    category: str | None
    position: str
    part_of: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    """Everything the tasks need about one marked image.

    complete: categories whose every annotation in the image became exactly one mark, so
    counting and "which mark is the X" have one right answer. Crowds, broken or dropped
    annotations make their category incomplete.
    """

    marks: tuple[MarkInfo, ...]
    label_mode: str = "number"
    complete: frozenset[str] = frozenset()


def rng_for(seed: int, task: str, image_name: str) -> random.Random:
    return random.Random(f"som.dataset/{seed}/{task}/{image_name}")


def article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def position_phrase(x: float, y: float, width: int, height: int) -> str:
    """Where a point lies on a 3x3 grid of the image: 'top left', 'center', 'bottom right'..."""
    col = ("left", "center", "right")[min(2, int(3 * x / max(width, 1)))]
    row = ("top", "middle", "bottom")[min(2, int(3 * y / max(height, 1)))]
    if row == "middle":
        return "center" if col == "center" else f"middle {col}"
    return row if col == "center" else f"{row} {col}"


def describe(m: MarkInfo) -> str:
    """The listing line's text for a mark without an LLM description."""
    return m.category if m.category else f"a region at the {m.position} of the image"


def join_marks(labels: Sequence[str]) -> str:
    items = [f"[{s}]" for s in labels]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def listing_instruction(facts: ImageFacts, rng: random.Random) -> str:
    labels = [m.label for m in facts.marks]
    text = rng.choice(LISTING_INSTRUCTIONS)
    kind = "letter" if facts.label_mode == "alphabet" else "numeric"
    return text.format(n=len(labels), first=labels[0], last=labels[-1], kind=kind)


def listing_answer(facts: ImageFacts, descriptions: dict[str, str] | None = None) -> str:
    """One line per mark, in order: `[k] text`, with ` (part of [j])` for a part of mark j
    (parseable by som.llm.parse_mark_lines)."""
    descriptions = descriptions or {}
    return "\n".join(
        f"[{m.label}] {descriptions.get(m.label) or describe(m)}" + (f" (part of [{m.part_of}])" if m.part_of else "")
        for m in facts.marks
    )


def qa_candidates(facts: ImageFacts) -> list[tuple[str, dict]]:
    """Every (kind, fields) question this image can answer for sure, in a fixed order."""
    out: list[tuple[str, dict]] = [("count_all", {})]
    by_cat: dict[str, list[str]] = {}
    for m in facts.marks:
        if m.category:
            by_cat.setdefault(m.category, []).append(m.label)
            out.append(("what", {"label": m.label}))
        out.append(("where", {"label": m.label}))
    for cat in sorted(by_cat):
        if cat not in facts.complete:
            continue
        out.append(("which_one" if len(by_cat[cat]) == 1 else "which_all", {"cat": cat}))
        out.append(("count_cat", {"cat": cat}))
    return out


def qa_answer(kind: str, fields: dict, facts: ImageFacts) -> str:
    marks = {m.label: m for m in facts.marks}
    if kind == "count_all":
        n = len(facts.marks)
        return f"{n} mark{'s' if n != 1 else ''}: {join_marks([m.label for m in facts.marks])}."
    if kind == "what":
        m = marks[fields["label"]]
        return f"Mark [{m.label}] is {article(m.category)}."
    if kind == "where":
        m = marks[fields["label"]]
        return f"Mark [{m.label}] is at the {m.position} of the image."
    labels = [m.label for m in facts.marks if m.category == fields["cat"]]
    if kind == "which_one":
        return f"The {fields['cat']} is mark [{labels[0]}]."
    if kind == "which_all":
        return f"Marks {join_marks(labels)} show {article(fields['cat'])}."
    if kind == "count_cat":
        n = len(labels)
        return f"{n}: {join_marks(labels)}."
    raise ValueError(f"unknown question kind {kind!r}")


def qa_turns(facts: ImageFacts, rng: random.Random, per_image: int) -> list[tuple[str, str]]:
    """Up to `per_image` (question, answer) pairs sampled without replacement."""
    pool = qa_candidates(facts)
    picked = rng.sample(pool, min(per_image, len(pool)))
    turns = []
    for kind, fields in picked:
        cat = fields.get("cat")
        q = rng.choice(QA_TEMPLATES[kind]).format(
            label=fields.get("label", ""), cat=cat or "", a_cat=article(cat) if cat else ""
        )
        turns.append((q, qa_answer(kind, fields, facts)))
    return turns


def conversation(turns: Sequence[tuple[str, str]]) -> list[dict]:
    """LLaVA conversation: `<image>\\n` leads the first human turn only."""
    conv = []
    for i, (q, a) in enumerate(turns):
        conv.append({"from": "human", "value": ("<image>\n" + q) if i == 0 else q})
        conv.append({"from": "gpt", "value": a})
    return conv
