"""Prompt templates: built-ins, label modes, overriding and extending from YAML/JSON files."""

from __future__ import annotations

import json

import pytest

from som.llm.parse import parse_marks
from som.llm.templates import BUILTIN_TEMPLATES, PromptTemplate, TemplateLibrary, load_templates

EXPECTED = {"chat", "list", "refer", "ground", "label", "match"}


def test_builtin_names():
    assert set(load_templates().names()) == EXPECTED
    assert load_templates().get("match").images == 2


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("mode,labels,example", [("number", ["1", "2", "3", "4"], "[3]"), ("alphabet", list("abcd"), "[c]")])
def test_every_template_renders_in_both_label_modes(name, mode, labels, example):
    tpl = BUILTIN_TEMPLATES[name]
    prompt = tpl.render("the red cup left of the laptop", labels, mode, labels2=labels)
    text = prompt.system + "\n" + prompt.user
    assert "{" not in text.replace("{}", ""), text  # every placeholder filled
    assert example in text  # the bracket rule, in the right alphabet
    assert ("1 to 4" if mode == "number" else "a to d") in text  # the valid labels are listed
    assert "square brackets" in prompt.system
    assert "contains the marks of its parts" in prompt.system or "holds the marks of its parts" in prompt.system
    if tpl.needs_question:
        assert "the red cup left of the laptop" in prompt.user


def test_examples_in_prompts_parse_back():
    """The example the prompt shows the model is itself read by the parser."""
    prompt = BUILTIN_TEMPLATES["chat"].render("hi", [str(i) for i in range(1, 9)], "number")
    assert parse_marks(prompt.system, [str(i) for i in range(1, 9)])[:2] == ["3", "5"]


def test_mode_inferred_from_labels():
    assert "[c]" in BUILTIN_TEMPLATES["chat"].render("q", list("abc")).system
    assert "[3]" in BUILTIN_TEMPLATES["chat"].render("q", ["1", "2"]).system


def test_question_required_where_it_matters():
    with pytest.raises(ValueError, match="refer"):
        BUILTIN_TEMPLATES["refer"].render("  ", ["1"])
    assert BUILTIN_TEMPLATES["list"].render("", ["1"]).user  # listing needs no question


def test_user_braces_and_unknown_fields_survive():
    tpl = PromptTemplate("j", "json", system="Reply as {\"mark\": [{ex1}]} {unknown}", user="{question}")
    p = tpl.render('what is {this}? {"a": 1}', ["1", "2", "3"])
    assert p.system == 'Reply as {"mark": [3]} {unknown}'
    assert p.user == 'what is {this}? {"a": 1}'


def test_override_and_extend_from_yaml(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(
        "templates:\n"
        "  chat:\n"
        "    system: 'Terse. Marks in brackets like [{ex1}]. Valid: {labels}.'\n"
        "  count:\n"
        "    extends: refer\n"
        "    description: count things\n"
        "    user: 'How many {question}? List their marks.'\n",
        encoding="utf-8",
    )
    lib = load_templates(f)
    assert set(lib.names()) == EXPECTED | {"count"}
    chat = lib.get("chat")
    assert chat.system.startswith("Terse") and chat.user == BUILTIN_TEMPLATES["chat"].user  # field by field
    count = lib.get("count")
    assert count.system == BUILTIN_TEMPLATES["refer"].system and count.needs_question
    assert count.render("cats", ["1", "2"]).user == "How many cats? List their marks."
    assert load_templates().get("chat").system == BUILTIN_TEMPLATES["chat"].system  # built-ins untouched


def test_json_file_top_level_mapping(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"caption": {"system": "s [{ex1}]", "user": "Caption it. {question}", "needs_question": False}}))
    lib = TemplateLibrary().with_file(f)
    assert lib["caption"].render("", ["1"]).user == "Caption it."


@pytest.mark.parametrize(
    "content,match",
    [
        ("chat:\n  sytem: typo\n", "unknown field"),
        ("new:\n  system: s\n", "needs a 'user'"),
        ("new:\n  extends: nope\n  user: u\n", "extends unknown"),
        ("new:\n  user: u\n  images: 3\n", "images"),
        ("new:\n  user: [1, 2]\n", "must be text"),
        ("- just\n- a list\n", "mapping"),
        ("chat: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, content, match):
    f = tmp_path / "bad.yaml"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_templates(f)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_templates(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="available: chat"):
        load_templates().get("nope")


def test_names_placeholder_lists_named_marks_only():
    from som.llm.templates import load_templates, names_text

    lib = load_templates()
    out = lib.get("refer").render("the mug", ["1", "2", "3"], categories=["mug", "", "table"])
    assert "1: mug, 3: table." in out.system and "{names}" not in out.system
    assert "class names" not in lib.get("refer").render("the mug", ["1", "2", "3"]).system
    assert names_text(["a", "b"], ["", " "]) == "" and names_text(["a"], None) == ""
    many = names_text([str(k) for k in range(1, 101)], ["cat"] * 100)
    assert many.count(": cat") == 80 and "(100 named in all)" in many
