"""Answer text -> marks: table-driven cases and hypothesis properties."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from som.llm.parse import (
    find_mentions,
    int_to_letters,
    label_kind,
    labels_text,
    letters_to_int,
    parse_grounding,
    parse_mark_lines,
    parse_marks,
    parse_pairs,
)

NUM = [str(i) for i in range(1, 21)]
LET = [int_to_letters(i) for i in range(1, 31)]  # a..z, aa..ad

NUMBER_CASES = [
    ("The cup is [3].", ["3"]),
    ("[3, 5]", ["3", "5"]),
    ("[3,5]", ["3", "5"]),
    ("[3 and 5]", ["3", "5"]),
    ("[2]-[4]", ["2", "3", "4"]),
    ("[2] to [4]", ["2", "3", "4"]),
    ("[2-4]", ["2", "3", "4"]),
    ("[2–4]", ["2", "3", "4"]),  # en dash
    ("[4-2]", ["4", "3", "2"]),  # as written
    ("[0-2]", ["1", "2"]),
    ("marks 3 and 5", ["3", "5"]),
    ("regions 3, 4 and 7", ["3", "4", "7"]),
    ("Regions 3, 4, and 7 are plates", ["3", "4", "7"]),
    ("mark 12", ["12"]),
    ("Mark #12", ["12"]),
    ("region number 6", ["6"]),
    ("objects 2-4", ["2", "3", "4"]),
    ("marks 2 to 4", ["2", "3", "4"]),
    ("[mark 3]", ["3"]),
    ("[3][5]", ["3", "5"]),
    ("#3 and #4", ["3", "4"]),
    ("【7】 is the dog", ["7"]),
    ("[03]", ["3"]),
    ("**[3]** the cup", ["3"]),
    ("[5] then [3] then [5] again, and mark 3", ["5", "3"]),  # first mention order, no repeats
    ("[3, 3, 3]", ["3"]),
    # not marks
    ("3 cups and 5 plates", []),
    ("There are 12 objects.", []),
    ("the [red cup] on the left", []),
    ("[25] and [0]", []),  # not valid labels
    ("mark 3.5 meters", []),
    ("remark 3", []),
    ("[a]", []),  # a letter in number mode
    ("", []),
    ("[]", []),
    ("[ ]", []),
    # ranges: clipped to labels that exist, never enumerated
    ("[1-999999999]", NUM),
    ("[18-99999999999999999999]", ["18", "19", "20"]),
    ("[19]-[999999999999]", ["19", "20"]),
    ("marks 19 to 25", ["19"]),  # after a mark word a range needs both ends to exist
]

LETTER_CASES = [
    ("[a]", ["a"]),
    ("[b, c]", ["b", "c"]),
    ("[a-c]", ["a", "b", "c"]),
    ("[a]-[c]", ["a", "b", "c"]),
    ("[A] and [B]", ["a", "b"]),
    ("mark b", ["b"]),
    ("marks c and e", ["c", "e"]),
    ("regions a, b and d", ["a", "b", "d"]),
    ("[y-ab]", ["y", "z", "aa", "ab"]),
    ("[ad]", ["ad"]),
    # bare letters outside brackets or mark words are prose
    ("a cup is on the table", []),
    ("I see b and c", []),
    ("[the cup]", []),
    ("[3]", []),  # a number in letter mode
    ("[zz]", []),  # not a label here
]


@pytest.mark.parametrize("text,expected", NUMBER_CASES)
def test_number_mode(text, expected):
    assert parse_marks(text, NUM) == expected


@pytest.mark.parametrize("text,expected", LETTER_CASES)
def test_letter_mode(text, expected):
    assert parse_marks(text, LET) == expected
    assert parse_marks(text, LET, label_mode="alphabet") == expected


def test_mode_inferred_and_explicit():
    assert parse_marks("[3] and [c]") == ["3"]  # no labels, no mode: numbers
    assert parse_marks("[3] and [c]", label_mode="letter") == ["c"]
    assert parse_marks("[1-3]") == ["1", "2", "3"]  # small range without valid labels
    assert parse_marks("[1-999999999]") == ["1"]  # huge range without labels: its start only
    assert parse_marks("[12345678901234567890]") == []


def test_mentions_have_spans():
    text = "Cup [3], plates regions 4 and 5."
    ms = find_mentions(text, NUM)
    assert [text[m.start : m.end] for m in ms] == ["[3]", "regions 4 and 5"]
    assert [m.labels for m in ms] == [("3",), ("4", "5")]


def test_non_str_text_is_a_caller_mistake():
    with pytest.raises(ValueError, match="str"):
        parse_marks(None, NUM)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mode,kind", [("number", "number"), ("1", "number"), ("alphabet", "letter"), ("letter", "letter"), ("a", "letter")]
)
def test_label_kind(mode, kind):
    assert label_kind(mode) == kind


def test_label_kind_rejects_unknown():
    with pytest.raises(ValueError, match="number"):
        label_kind("roman")


def test_letters_roundtrip():
    for n in range(1, 800):
        assert letters_to_int(int_to_letters(n)) == n
    assert [int_to_letters(n) for n in (1, 26, 27, 52, 53)] == ["a", "z", "aa", "az", "ba"]


def test_labels_text():
    assert labels_text([str(i) for i in range(1, 13)]) == "1 to 12"
    assert labels_text(["1", "2"]) == "1, 2"
    assert labels_text(["2", "5", "9"]) == "2, 5, 9"
    assert labels_text(list("abcdef")) == "a to f"
    assert labels_text([]) == "(none)"


def test_structured_replies():
    listing = "1. [1] a tabby cat\n- [2]: a sofa cushion\n[3] **wall**\nThe end, see [2]."
    assert parse_mark_lines(listing, NUM) == {"1": "a tabby cat", "2": "a sofa cushion", "3": "wall"}
    grounding = 'the cat: [1]\n"the two cushions": [2, 3]\nthe dog: none\nno colon here [4]'
    assert parse_grounding(grounding, NUM) == {"the cat": ["1"], "the two cushions": ["2", "3"], "the dog": []}
    assert parse_pairs("[1] -> [3]\n[2] -> none\n[1] -> [4]\n[9] -> [2]", ["1", "2"], ["3", "4"]) == [
        ("1", "3"),
        ("2", None),
    ]


# ---------------------------------------------------------------- adversarial and properties


def test_huge_and_adversarial_inputs_are_fast():
    texts = [
        "[1-999999999]" * 2000,
        "mark " + "1, " * 20000 + "x",
        "[" * 50000 + "3" + "]" * 50000,
        "regions " + " and ".join(["7"] * 10000),
        "[" + "1-" * 5000 + "2]",
        "9" * 100000,
        "mark " + "9" * 100000,
        "[" + "9" * 5000 + "-" + "9" * 5000 + "]",
    ]
    labels = [str(i) for i in range(1, 1001)]
    for text in texts:
        t = time.perf_counter()
        got = parse_marks(text, labels)
        assert time.perf_counter() - t < 2.0, text[:40]
        assert set(got) <= set(labels)


label_alphabet = st.sampled_from(list("[]-–,;#&0123456789abcABC ") + ["mark ", "regions ", " and ", " to ", "\n"])
texts = st.one_of(st.text(max_size=200), st.lists(label_alphabet, max_size=60).map("".join))
valid_sets = st.one_of(
    st.none(),
    st.lists(st.integers(1, 60).map(str), max_size=30),
    st.lists(st.integers(1, 60).map(int_to_letters), max_size=30),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, valid=valid_sets, mode=st.sampled_from([None, "number", "letter"]))
def test_properties(text, valid, mode):
    got = parse_marks(text, valid, label_mode=mode)
    assert isinstance(got, list) and all(isinstance(s, str) for s in got)
    assert len(got) == len(set(got)), "duplicates"
    if valid is not None:
        assert set(got) <= set(valid), "a label that does not exist"
    for m in find_mentions(text, valid, label_mode=mode):
        assert 0 <= m.start < m.end <= len(text)


@settings(max_examples=200, deadline=None)
@given(labels=st.lists(st.integers(1, 500), min_size=1, max_size=20, unique=True))
def test_every_bracketed_label_is_found_in_order(labels):
    valid = [str(i) for i in range(1, 501)]
    text = " then ".join(f"[{n}]" for n in labels)
    assert parse_marks(text, valid) == [str(n) for n in labels]


@settings(max_examples=200, deadline=None)
@given(lo=st.integers(1, 10**12), hi=st.integers(1, 10**12))
def test_ranges_stay_inside_valid_labels(lo, hi):
    got = parse_marks(f"[{lo}-{hi}] and [{lo}]-[{hi}]", NUM)
    a, b = sorted((lo, hi))
    assert got == [s for s in (NUM if lo <= hi else NUM[::-1]) if a <= int(s) <= b]
