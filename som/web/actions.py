"""Reading one action out of a model's answer: "click [7]", 'type [3] "hello"', "scroll down",
"done: <answer>".

Pure Python. The `act` prompt asks for the action on the answer's last line; models often think
aloud first ("Thought: … Action: click [7]"), so the parser takes the line after the last
"Action:" when there is one, else the last line that reads as an action. Accepted forms
(case-insensitive, brackets optional around the mark, quotes optional around text):

    click [7]        click on [7]       press [7]
    type [3] "hello"     type "hello" into [3]     type [3]: hello     fill [3] "hello"
    select [5] "Large"   select "Large" in [5]
    hover [4]        hover over [4]
    scroll down      scroll up / left / right
    back             (browser history)
    done: the answer     answer: the answer     done        (finish; the rest is the answer)

Letter marks (alphabet mode) are one to three letters; the mark must stand alone ("type hello
into [c]" reads mark c, not mark "hel").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Action", "ActionError", "ACTION_KINDS", "parse_action", "act_template"]

ACTION_KINDS = ("click", "type", "select", "hover", "scroll", "back", "done")
_MARK = r"\[?\s*(?:mark\s*|element\s*|#)?(?P<mark>[0-9]{1,6}|[a-z]{1,3})(?![a-z0-9])\s*\]?"
_TEXT = r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|“(?P<cq>[^”]*)”|(?P<bare>.+?))"""
_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("done", re.compile(r"^(?:done\b\s*[:\-–]?|(?:final\s+)?answer\s*:)\s*(?P<rest>.*)$", re.I | re.S)),
    ("type", re.compile(rf"^(?:type|fill|enter|input)\s+{_TEXT}\s+(?:in(?:to)?|on|at)\s+{_MARK}\s*\.?$", re.I)),
    ("type", re.compile(rf"^(?:type|fill|enter|input)\s+(?:in(?:to)?\s+)?{_MARK}\s*[:,]?\s*(?:with\s+)?{_TEXT}\s*$", re.I)),
    ("select", re.compile(rf"^(?:select|choose|pick)\s+{_TEXT}\s+(?:in|from|on)\s+{_MARK}\s*\.?$", re.I)),
    ("select", re.compile(rf"^(?:select|choose|pick)\s+(?:in\s+)?{_MARK}\s*[:,]?\s*{_TEXT}\s*$", re.I)),
    ("click", re.compile(rf"^(?:click|tap|press|double[- ]?click)\s+(?:on\s+)?{_MARK}\s*\.?$", re.I)),
    ("hover", re.compile(rf"^(?:hover|mouse\s*over|move\s+to)\s+(?:over\s+|on\s+)?{_MARK}\s*\.?$", re.I)),
    ("scroll", re.compile(r"^scroll\s+(?:the\s+page\s+)?(?P<dir>up|down|left|right)\b.*$", re.I)),
    ("back", re.compile(r"^(?:go\s+)?back\b\s*\.?$", re.I)),
]


class ActionError(ValueError):
    """The answer holds no readable action, or names a mark that is not on the page."""


@dataclass(frozen=True)
class Action:
    """kind: one of ACTION_KINDS. label: the mark acted on (click/type/select/hover). text: what to
    type, or the option to select. direction: for scroll. answer: for done. raw: the line read."""

    kind: str
    label: str | None = None
    text: str | None = None
    direction: str | None = None
    answer: str | None = None
    raw: str = ""

    def __str__(self) -> str:
        if self.kind in ("click", "hover"):
            return f"{self.kind} [{self.label}]"
        if self.kind in ("type", "select"):
            return f'{self.kind} [{self.label}] "{self.text}"'
        if self.kind == "scroll":
            return f"scroll {self.direction}"
        if self.kind == "done":
            return f"done: {self.answer}"
        return self.kind


def _clean(line: str) -> str:
    line = line.strip().strip("`*_ ").strip()
    line = re.sub(r"^(?:[-•>]\s*|\d+[.)]\s+)", "", line)  # list bullets
    return line.strip()


def _match(line: str) -> Action | None:
    line = _clean(line)
    for kind, pat in _PATTERNS:
        m = pat.match(line)
        if not m:
            continue
        g = m.groupdict()
        if kind == "done":
            return Action("done", answer=g["rest"].strip().strip('"').strip(), raw=line)
        if kind == "scroll":
            return Action("scroll", direction=g["dir"].lower(), raw=line)
        if kind == "back":
            return Action("back", raw=line)
        label = g["mark"]
        if kind in ("type", "select"):
            text = next((g[k] for k in ("dq", "sq", "cq", "bare") if g.get(k) is not None), "")
            return Action(kind, label=label.lower(), text=text.strip() if g.get("bare") is not None else text, raw=line)
        return Action(kind, label=label.lower(), raw=line)
    return None


def parse_action(text: str, valid_labels: Sequence[str] | None = None) -> Action:
    """The one action an answer asks for (see the module docstring); ActionError when there is
    none, or when its mark is not among `valid_labels` (when given)."""
    text = (text or "").replace("\r\n", "\n")
    if not text.strip():
        raise ActionError("the answer is empty; expected one action such as: click [3]")
    candidates: list[str] = []
    parts = re.split(r"(?im)^\s*(?:\*\*)?(?:next\s+)?action(?:\*\*)?\s*:\s*", text)
    if len(parts) > 1:
        after = parts[-1]
        first = after.split("\n", 1)[0]
        if re.match(r"(?i)\s*(?:done|answer|final answer)\b", first):
            candidates.append(after)  # a final answer may run over several lines
        else:
            candidates.append(first)
    # "done: …" anywhere at a line start ends the task, with everything after it as the answer
    done = re.search(r"(?im)^\s*(?:\*\*)?(?:done|final answer)(?:\*\*)?\s*:", text)
    if done and not candidates:
        candidates.append(text[done.start():])
    candidates += [ln for ln in reversed(text.split("\n")) if ln.strip()]
    for cand in candidates:
        cand = cand.strip()
        action = _match(cand)
        if action is None and "\n" in cand:
            action = _match(cand.split("\n", 1)[0])
        if action is None:
            continue
        if action.label is not None and valid_labels is not None and action.label not in [str(v).lower() for v in valid_labels]:
            raise ActionError(f"{action} names mark [{action.label}], which is not on the page; marks are {_shown(valid_labels)}")
        return action
    raise ActionError(
        f"no action found in the answer {text.strip()[:120]!r}; expected one of: click [N], type [N] \"text\", "
        "select [N] \"option\", hover [N], scroll up/down, back, done: <answer>"
    )


def _shown(labels: Sequence[str]) -> str:
    labels = [str(v) for v in labels]
    if labels and labels == [str(i) for i in range(1, len(labels) + 1)]:
        return f"1 to {len(labels)}"
    return ", ".join(labels) if labels else "none"


def act_template():
    """The `act` prompt (a som.llm PromptTemplate): one agent step on a marked page or screen.
    `{question}` is the task; the agent appends the page's element list and the steps so far."""
    from som.llm.templates import PromptTemplate

    return PromptTemplate(
        name="act",
        description="agent step: the next action on a marked web page or screen (som agent)",
        system=(
            "You operate a web browser to carry out a task for a user. Each turn you get a screenshot of "
            "the page in which every element you can use has a {mark_kind} mark ({labels}) in a small "
            "coloured box beside it, and the element is outlined in the same colour. A list of the marked "
            "elements follows the task. Do one action per turn. Think in one or two short sentences, then "
            "write the action alone on the last line, exactly in one of these forms:\n"
            "click [{ex1}]\n"
            'type [{ex1}] "text to type"\n'
            'select [{ex1}] "option"\n'
            "hover [{ex1}]\n"
            "scroll down   (or: scroll up)\n"
            "back\n"
            "done: <the answer to the task, or what was done>\n"
            "Only use marks that are drawn in the screenshot."
        ),
        user="Task: {question}",
    )
