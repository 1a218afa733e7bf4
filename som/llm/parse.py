"""Reading marks back out of an LLM's answer.

The prompts ask the model to write every mark in square brackets ("the cup is
[3]"), but models drift, so the parser also reads the common free forms:

    [3]  [3, 5]  [3 and 5]  [2-4]  [2]-[4]  [mark 3]  #3
    mark 12   marks 3 and 5   regions 3, 4 and 7   objects 2-4   region #3
    [a]  [b, c]  [a-c]  mark b          (letter mode)

Bare numbers and letters elsewhere do not count ("3 cups", "a cup"): without a
bracket or a mark word they are ordinary prose. Only labels in `valid_labels`
count (when given), labels come back in order of first mention without
duplicates, and ranges are expanded through the valid labels, never by
counting, so "[1-999999999]" costs no more than "[1-3]".

Everything here is pure Python: no numpy, no openai.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

MAX_SPAN_WITHOUT_VALID = 1000  # a range with no valid_labels to clip it expands only up to this size
_MAX_DIGITS = 9  # longer digit runs are never labels (and int() of 5000 digits raises)
_BRACKETS = str.maketrans({"【": "[", "】": "]", "［": "[", "］": "]", "〔": "[", "〕": "]"})
_DASHES = r"(?:-|–|—|‒|−|to|through|thru|until)"
_MARK_WORDS = r"(?:mark(?:er)?s?|labels?|regions?|segments?|objects?|items?|areas?|tags?|numbers?|ids?)"
_CONNECTOR_WORDS = ("and", "or", "to", "through", "thru", "until", "nor")


@dataclass(frozen=True)
class Mention:
    """One place in the text that names marks: text[start:end] names `labels` (valid ones, in order)."""

    start: int
    end: int
    labels: tuple[str, ...]


# ---------------------------------------------------------------- label kinds


def label_kind(label_mode: object) -> str:
    """Normalise a label mode ('number', '1', 'numeric', 'letter', 'a', 'alphabet', ...) to 'number' or 'letter'."""
    m = str(label_mode).strip().lower()
    if m in ("number", "numbers", "numeric", "num", "digit", "digits", "1", "int", "integer"):
        return "number"
    if m in ("letter", "letters", "alphabet", "alphabetic", "alpha", "a", "abc", "char"):
        return "letter"
    raise ValueError(f"unknown label mode {label_mode!r}; expected 'number' (1, 2, 3…) or 'letter' (a, b, c…)")


def letters_to_int(s: str) -> int:
    """Bijective base-26: a=1 … z=26, aa=27 … (the order marks are handed out in)."""
    n = 0
    for ch in s.lower():
        n = n * 26 + (ord(ch) - 96)
    return n


def int_to_letters(n: int) -> str:
    """Inverse of `letters_to_int` (n >= 1)."""
    out = []
    while n > 0:
        n, r = divmod(n - 1, 26)
        out.append(chr(97 + r))
    return "".join(reversed(out))


def _ordinal(token: str) -> int | None:
    """Position of a label in its sequence (3 -> 3, 'c' -> 3), or None if it cannot be a label."""
    if token.isdigit():
        return int(token) if len(token) <= _MAX_DIGITS else None
    if token.isascii() and token.isalpha() and len(token) <= 3:
        return letters_to_int(token)
    return None


def _kinds_of(valid_labels: Sequence[str] | None, label_mode: object) -> set[str]:
    if label_mode is not None:
        return {label_kind(label_mode)}
    if valid_labels:
        kinds = set()
        for s in valid_labels:
            kinds.add("number" if s.isdigit() else "letter")
        return kinds
    return {"number"}


# ---------------------------------------------------------------- patterns


def _patterns(kinds: frozenset[str]) -> tuple[re.Pattern, re.Pattern]:
    toks = []
    if "number" in kinds:
        toks.append(r"\d+(?!\w)(?!\.\d)")
    if "letter" in kinds:
        # one or two letters (labels run a..z, aa..zz); never a connector word
        toks.append(r"(?!(?:%s)\b)[a-z]{1,2}\b" % "|".join(_CONNECTOR_WORDS))
    tok = "(?:%s)" % "|".join(toks)
    item = rf"\#?{tok}(?:\s*{_DASHES}\s*\#?{tok})?"
    sep = r"(?:\s*,\s*(?:and\b|or\b|&)?\s*|\s*;\s*|\s+and\s+|\s+or\s+|\s*&\s*|\s*\+\s*)"
    word_list = rf"{item}(?:{sep}{item})*"
    bracket_list = rf"\s*(?:{_MARK_WORDS}\s*)?(?:{item})(?:(?:{sep}|\s+){item})*\s*[.,;:]?\s*"
    alternatives = [
        # [2]-[4]
        rf"\[\s*\#?(?P<r1>{tok})\s*\]\s*{_DASHES}\s*\[\s*\#?(?P<r2>{tok})\s*\]",
        # [anything short]: accepted only if its content is a label list
        r"\[(?P<br>[^\[\]\n]{1,200})\]",
        # mark 12 / regions 3, 4 and 7 / marks a and c / region #3 / mark number 3
        rf"(?<![\w-]){_MARK_WORDS}\s*(?:\#|no\.?|nos\.?|numbers?(?=\s))?\s*(?P<kw>{word_list})",
    ]
    if "number" in kinds:
        alternatives.append(r"(?<![\w#&])\#(?P<hash>\d+)(?!\w)(?!\.\d)")
    combined = re.compile("|".join(alternatives), re.IGNORECASE)
    content = re.compile(bracket_list, re.IGNORECASE)
    return combined, content


_PATTERN_CACHE: dict[frozenset[str], tuple[re.Pattern, re.Pattern]] = {}


def _get_patterns(kinds: set[str]) -> tuple[re.Pattern, re.Pattern]:
    key = frozenset(kinds)
    if key not in _PATTERN_CACHE:
        _PATTERN_CACHE[key] = _patterns(key)
    return _PATTERN_CACHE[key]


# ---------------------------------------------------------------- resolution


class _Resolver:
    """Maps written tokens and ranges to labels, through the valid labels when there are any."""

    def __init__(self, valid_labels: Sequence[str] | None, kinds: set[str]) -> None:
        self.kinds = kinds
        self.valid = None if valid_labels is None else [str(s) for s in valid_labels]
        self.canonical: dict[str, str] = {}
        # per kind: sorted ordinals and their labels, for bisect range lookup
        self.by_kind: dict[str, tuple[list[int], list[str]]] = {}
        if self.valid is not None:
            pairs: dict[str, list[tuple[int, str]]] = {"number": [], "letter": []}
            for s in self.valid:
                key = self._key(s)
                if key is None:
                    continue
                self.canonical.setdefault(key, s)
                kind = "number" if key.isdigit() else "letter"
                pairs[kind].append((_ordinal(key) or 0, s))
            for kind, lst in pairs.items():
                lst.sort()
                self.by_kind[kind] = ([o for o, _ in lst], [s for _, s in lst])

    @staticmethod
    def _key(token: str) -> str | None:
        t = token.strip().lstrip("#").lower()
        if t.isdigit() and t.isascii():
            return t.lstrip("0") or "0"  # no int(): a 5000-digit run would raise
        if t.isascii() and t.isalpha():
            return t
        return None

    def _kind(self, key: str) -> str:
        return "number" if key.isdigit() else "letter"

    def single(self, token: str) -> list[str]:
        key = self._key(token)
        if key is None or self._kind(key) not in self.kinds:
            return []
        if self.valid is None:
            return [key] if _ordinal(key) is not None else []
        hit = self.canonical.get(key)
        return [hit] if hit is not None else []

    def span(self, a: str, b: str, *, clip: bool) -> list[str]:
        """Labels from a to b inclusive (descending if b < a).

        clip=True (inside brackets): valid labels within the span even if an end is missing.
        clip=False (after a mark word, where "mark a to it" is prose): both ends must be labels,
        otherwise only the first item counts.
        """
        ka, kb = self._key(a), self._key(b)
        if ka is None or kb is None:
            return self.single(a)
        kind = self._kind(ka)
        if kind != self._kind(kb) or kind not in self.kinds:
            return self.single(a)
        # a huge number (more digits than any label) leaves the span open on that side
        big = 10**_MAX_DIGITS + 1
        oa, ob = _ordinal(ka), _ordinal(kb)
        oa, ob = big if oa is None else oa, big if ob is None else ob
        lo, hi = min(oa, ob), max(oa, ob)
        if self.valid is None:
            if hi - lo + 1 > MAX_SPAN_WITHOUT_VALID:
                return self.single(a)
            make = str if kind == "number" else int_to_letters
            out = [make(i) for i in range(lo, hi + 1)]
        else:
            if not clip and (self.canonical.get(ka) is None or self.canonical.get(kb) is None):
                return self.single(a)
            ords, labels = self.by_kind.get(kind, ([], []))
            i, j = bisect.bisect_left(ords, lo), bisect.bisect_right(ords, hi)
            out = labels[i:j]
        return out if oa <= ob else out[::-1]


_ITEM_SPLIT = re.compile(rf"\s*{_DASHES}\s*", re.IGNORECASE)


def _tokens(list_text: str, kinds: set[str]) -> list[tuple[str, str | None]]:
    """'3, 4-6 and 7' -> [('3', None), ('4', '6'), ('7', None)]."""
    tok = []
    if "number" in kinds:
        tok.append(r"\d+")
    if "letter" in kinds:
        tok.append(r"(?!(?:%s)\b)[a-z]{1,2}\b" % "|".join(_CONNECTOR_WORDS))
    tok_re = "(?:%s)" % "|".join(tok)
    item = re.compile(rf"\#?(?P<a>{tok_re})(?:\s*{_DASHES}\s*\#?(?P<b>{tok_re}))?", re.IGNORECASE)
    body = re.sub(rf"^\s*{_MARK_WORDS}\b", "", list_text, flags=re.IGNORECASE)
    return [(m.group("a"), m.group("b")) for m in item.finditer(body)]


def find_mentions(
    text: str,
    valid_labels: Sequence[str] | None = None,
    label_mode: str | None = None,
) -> list[Mention]:
    """Every place in `text` that names marks, in text order (see the module docstring for the forms).

    valid_labels: the labels that exist; others are dropped (a mention naming none is not returned).
    label_mode: 'number' or 'letter'; inferred from valid_labels when None ('number' if both are None).
    Never raises on any text; cost is linear in the text length for practical inputs.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    kinds = _kinds_of(valid_labels, label_mode)
    combined, content = _get_patterns(kinds)
    resolver = _Resolver(valid_labels, kinds)
    norm = text.translate(_BRACKETS)
    out: list[Mention] = []
    for m in combined.finditer(norm):
        labels: list[str] = []
        if m.group("r1") is not None:
            labels = resolver.span(m.group("r1"), m.group("r2"), clip=True)
        elif m.group("br") is not None:
            inner = m.group("br")
            if not content.fullmatch(inner):
                continue
            for a, b in _tokens(inner, kinds):
                labels += resolver.single(a) if b is None else resolver.span(a, b, clip=True)
        elif m.group("kw") is not None:
            for a, b in _tokens(m.group("kw"), kinds):
                labels += resolver.single(a) if b is None else resolver.span(a, b, clip=False)
        elif m.groupdict().get("hash") is not None:
            labels = resolver.single(m.group("hash"))
        labels = list(dict.fromkeys(labels))
        if labels:
            out.append(Mention(m.start(), m.end(), tuple(labels)))
    return out


def parse_marks(
    text: str,
    valid_labels: Sequence[str] | None = None,
    label_mode: str | None = None,
) -> list[str]:
    """Labels of the marks `text` names, in order of first mention, each once.

    >>> parse_marks("The cup is [3]; the plates are regions 5 and 7, see also [2-4].", ["1","2","3","4","5","6","7"])
    ['3', '5', '7', '2', '4']
    """
    seen: dict[str, None] = {}
    for mention in find_mentions(text, valid_labels, label_mode):
        for label in mention.labels:
            seen.setdefault(label, None)
    return list(seen)


# ---------------------------------------------------------------- structured replies


def parse_mark_lines(
    text: str,
    valid_labels: Sequence[str] | None = None,
    label_mode: str | None = None,
) -> dict[str, str]:
    """Replies of the 'list' and 'label' templates: one line per mark, '[3] a red cup' -> {'3': 'a red cup'}.

    A line counts when it starts (after list bullets or numbering) with a mention of exactly one mark;
    the first line for a mark wins.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        stripped = re.sub(r"^\s*(?:[-*•]|\d+[.)](?=\s))?\s*(?:\*\*)?", "", line)
        mentions = find_mentions(stripped, valid_labels, label_mode)
        if not mentions or mentions[0].start != 0 or len(mentions[0].labels) != 1:
            continue
        rest = stripped[mentions[0].end :]
        rest = re.sub(r"^\s*(?:\*\*)?\s*[:=\-–—.)]*\s*", "", rest).strip().strip("*").strip()
        out.setdefault(mentions[0].labels[0], rest)
    return out


def parse_grounding(
    text: str,
    valid_labels: Sequence[str] | None = None,
    label_mode: str | None = None,
) -> dict[str, list[str]]:
    """Replies of the 'ground' template: 'phrase: [3, 5]' per line -> {'phrase': ['3', '5']}.

    Phrases whose line names no valid mark map to [] (the model said it is not visible).
    """
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        phrase, _, rest = line.partition(":")
        phrase = phrase.strip().strip("-*•\"'` ").strip()
        if not phrase or len(phrase) > 200:
            continue
        labels = parse_marks(rest, valid_labels, label_mode)
        if labels or re.search(r"\[\s*(?:none|-|)\s*\]|\bnone\b|not visible", rest, re.IGNORECASE):
            out.setdefault(phrase, labels)
    return out


def parse_pairs(
    text: str,
    valid_labels_1: Sequence[str] | None = None,
    valid_labels_2: Sequence[str] | None = None,
    label_mode: str | None = None,
    label_mode_2: str | None = None,
) -> list[tuple[str, str | None]]:
    """Replies of the two-image 'match' template: '[3] -> [7]' per line -> [('3', '7')].

    On each line the first mention is a mark of image 1 and the next one a mark of image 2;
    '[3] -> none' gives ('3', None). Each image-1 mark appears once (first line wins).
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for line in text.splitlines():
        first = find_mentions(line, valid_labels_1, label_mode)
        if not first or len(first[0].labels) != 1:
            continue
        left = first[0].labels[0]
        if left in seen:
            continue
        rest = line[first[0].end :]
        second = find_mentions(rest, valid_labels_2, label_mode_2 or label_mode)
        right = second[0].labels[0] if second else None
        seen.add(left)
        out.append((left, right))
    return out


def labels_text(labels: Iterable[str], max_listed: int = 60) -> str:
    """Valid labels written for a prompt: '1, 2, 3', or '1 to 120' for long consecutive runs."""
    labels = [str(s) for s in labels]
    if not labels:
        return "(none)"
    ords = [_ordinal(s.lower()) for s in labels]
    consecutive = all(o is not None for o in ords) and ords == list(range(ords[0], ords[0] + len(ords)))
    if consecutive and len(labels) > 3:
        return f"{labels[0]} to {labels[-1]}"
    if len(labels) > max_listed:
        return ", ".join(labels[:max_listed]) + f", … ({len(labels)} in all)"
    return ", ".join(labels)
