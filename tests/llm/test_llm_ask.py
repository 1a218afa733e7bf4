"""som.llm.ask end to end: hand-made marks on a real photo -> local OpenAI-protocol double -> marks back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import hand_marks
from openai_double import Step

import som
from som.llm import Answer, ask, ask_stream
from som.llm.errors import LLMError
from som.llm.templates import PromptTemplate


def test_ask_maps_the_answer_to_regions(llm_server, llm_client, marks):
    llm_server.enqueue(Step(text="The cat's head is [1]; its body spans [3] and [2]. Mark 9 does not exist."))
    answer = ask(None, "where is the cat?", marks=marks, client=llm_client)
    assert isinstance(answer, Answer)
    assert answer.labels == ["1", "3", "2"]
    assert answer.regions.labels == ["1", "3", "2"]
    np.testing.assert_array_equal(answer.regions.full_masks()[0], marks.regions.full_masks()[0])
    np.testing.assert_array_equal(answer.regions.xyxy[1], [250, 60, 430, 260])
    assert answer.marks is marks and answer.template == "chat"
    assert answer.to_json()[0] == {"label": "1", "xyxy": [30.0, 20.0, 200.0, 120.0], "area": 100 * 170}
    # what the model saw: the rule, the valid labels, the question, the marked picture
    (req,) = llm_server.requests
    assert "square brackets, like [3]" in req.all_text and "(1, 2, 3)" in req.all_text
    assert "where is the cat?" in req.all_text
    assert req.images == [("PNG", (300, 451))]


def test_highlight_uses_the_drawing_code(llm_server, llm_client, marks):
    llm_server.enqueue(Step(text="It is [2]."))
    answer = ask(None, "where is the cushion?", marks=marks, client=llm_client)
    hl = answer.highlighted
    assert hl.shape == marks.source.shape and hl.dtype == np.uint8
    outside = ~marks.regions.full_masks().any(axis=0)
    assert hl[outside].mean() < marks.source[outside].mean()  # everything else is dimmed


def test_nothing_mentioned(llm_server, llm_client, marks):
    llm_server.enqueue(Step(text="I cannot see a dog here. [none]"))
    answer = ask(None, "where is the dog?", template="refer", marks=marks, client=llm_client)
    assert answer.labels == [] and len(answer.regions) == 0 and answer.highlighted is None
    assert answer.to_json() == []


def test_letter_marks(llm_server, llm_client):
    marks = hand_marks("alphabet")
    llm_server.enqueue(Step(text="Mark b is the cushion, [c] the wall, and [3] means nothing."))
    answer = ask(None, "what is where?", marks=marks, client=llm_client, highlight=False)
    assert answer.labels == ["b", "c"] and answer.highlighted is None
    assert "like [c]" in llm_server.requests[0].all_text and "letter" in llm_server.requests[0].all_text


def test_streaming_ask(llm_server, llm_client, marks):
    llm_server.enqueue(Step(text="Head [1], body [3].", chunk_chars=2))
    deltas: list[str] = []
    answer = ask(None, "where?", marks=marks, client=llm_client, on_delta=deltas.append)
    assert len(deltas) > 3 and "".join(deltas) == answer.text == "Head [1], body [3]."
    assert answer.labels == ["1", "3"]

    llm_server.enqueue(Step(text="It is [2]."))
    stream = ask_stream(None, "where?", marks=marks, client=llm_client)
    assert "".join(stream) == "It is [2]."
    assert stream.answer().labels == ["2"] and stream.answer() is stream.answer()


def test_send_clean_and_jpeg(llm_server, make_client, marks):
    client = make_client(image_format="jpeg", max_image_side_px=200)
    ask(None, "describe", marks=marks, client=client, send_clean=True)
    req = llm_server.requests[0]
    assert req.images == [("JPEG", (133, 200)), ("JPEG", (133, 200))]
    assert "without marks" in req.all_text


@pytest.mark.parametrize("template", ["list", "label"])
def test_templates_that_need_no_question(llm_server, llm_client, marks, template):
    llm_server.enqueue(Step(text="[1] cat head\n[2] cushion\n[3] cat body"))
    answer = ask(None, template=template, marks=marks, client=llm_client)
    assert answer.labels == ["1", "2", "3"] and answer.template == template


def test_two_image_match(llm_server, llm_client, marks):
    other = hand_marks("alphabet")
    llm_server.enqueue(Step(text="[1] -> [c]\n[2] -> none\n[3] -> [a]"))
    answer = ask(None, template="match", marks=marks, marks2=other, client=llm_client)
    assert answer.pairs == [("1", "c"), ("2", None), ("3", "a")]
    assert answer.labels == ["1", "2", "3"] and answer.marks2 is other
    req = llm_server.requests[0]
    assert len(req.images) == 2 and "(a, b, c)" in req.all_text and "[3] -> [e]" in req.all_text


def test_custom_template_object_and_file(llm_server, llm_client, marks, tmp_path):
    tpl = PromptTemplate("mine", "test", system="Rule: brackets like [{ex1}].", user="Q: {question}")
    ask(None, "hello", template=tpl, marks=marks, client=llm_client)
    assert llm_server.requests[-1].texts[:2] == ["Rule: brackets like [3].", "Q: hello"]
    f = tmp_path / "t.yaml"
    f.write_text("chat:\n  user: 'PREFIX {question}'\n", encoding="utf-8")
    ask(None, "hello", marks=marks, client=llm_client, templates=f)
    assert "PREFIX hello" in llm_server.requests[-1].all_text


def test_history_is_sent_before_the_turn(llm_server, llm_client, marks):
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "earlier [1]"}]
    ask(None, "and now?", marks=marks, client=llm_client, history=history)
    roles = [m["role"] for m in llm_server.requests[0].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"template": "refer", "question": ""}, "needs a question"),
        ({"template": "nope"}, "unknown template"),
        ({"template": "match"}, "image2"),
        ({"template": "chat", "image2": np.zeros((32, 32, 3), np.uint8)}, "one image"),
        ({"granularity": 2}, "not both"),
    ],
)
def test_caller_mistakes(llm_client, marks, kwargs, match):
    kwargs = {"question": "q", **kwargs}
    with pytest.raises(ValueError, match=match):
        ask(None, marks=marks, client=llm_client, **kwargs)


def test_unlabelled_marks_and_no_image(llm_client, marks):
    with pytest.raises(ValueError, match="no labels"):
        ask(None, "q", marks=type(marks)(marks.image, marks.regions.replace(labels=None), marks.source, marks.style), client=llm_client)
    with pytest.raises(ValueError, match="pass an image"):
        ask(None, "q", client=llm_client)


def test_endpoint_errors_pass_through(llm_server, llm_client, marks):
    llm_server.enqueue(Step(status=400, code="context_length_exceeded", message="maximum context length is 4096 tokens"))
    with pytest.raises(LLMError) as info:
        ask(None, "q", marks=marks, client=llm_client)
    assert info.value.kind == "context_length"


def test_ask_marks_the_image_itself(llm_server, llm_client):
    """No marks given: som.pipeline.mark runs (the superpixel segmenter needs no weights)."""
    import skimage.data

    llm_server.enqueue(Step(text="The cat is [2] and [1]."))
    answer = som.ask(skimage.data.chelsea(), "where is the cat?", client=llm_client, segmenter="superpixel", granularity=3, label_mode="letter")
    assert answer.marks.style.label_mode == "alphabet"
    assert answer.labels == []  # numbers mean nothing in letter mode
    llm_server.enqueue(Step(text="The cat is [b] and [a]."))
    again = som.ask(None, "where is the cat?", marks=answer.marks, client=llm_client)
    assert again.labels == ["b", "a"]
    assert "like [c]" in llm_server.requests[0].all_text


def test_class_names_of_the_marks_reach_the_prompt(llm_server, llm_client, marks):
    """Marks named by the segmenter are listed as '1: cat' (unnamed ones left out); marks without
    names leave the prompt as it was."""
    import dataclasses

    llm_server.enqueue(Step(text="[1]"))
    llm_server.enqueue(Step(text="[1]"))
    ask(None, "where is the cat?", marks=marks, client=llm_client)
    named = dataclasses.replace(marks, regions=marks.regions.replace(categories=["cat", "", "cushion"]))
    ask(None, "where is the cat?", marks=named, client=llm_client)
    plain, with_names = (r.all_text for r in llm_server.requests)
    assert "class name" not in plain
    assert "Marks may carry class names" in with_names and "1: cat, 3: cushion." in with_names
    assert "2: " not in with_names
