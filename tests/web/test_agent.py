"""The agent loop against the local OpenAI-protocol double (tests/llm/openai_double.py) answering
as a scripted model that reads the prompt's element list, and the action parser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from som.web.actions import ActionError, parse_action
from som.web.agent import host_allowed, run_agent

REPO = Path(__file__).resolve().parents[2]


def mark_of(request, pattern: str) -> str:
    """The label the prompt's element list gives the element matching `pattern` (a regex)."""
    text = request.all_text.split("Marked elements:", 1)[1]
    for line in text.splitlines():
        m = re.match(r"\[(\w+)\] (.*)", line)
        if m and re.search(pattern, m.group(2)):
            return m.group(1)
    raise AssertionError(f"no element like {pattern!r} in the prompt:\n{text[:800]}")


def client_for(server):
    from som.llm.client import LLMClient, LLMConfig

    return LLMClient(LLMConfig(model="test-model", base_url=server.base_url, api_key=server.api_key, timeout_s=10, max_retries=0))


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("click [7]", "click [7]"),
        ("The Submit button sends it.\nAction: click on [12].", "click [12]"),
        ('type [3] "hello world"', 'type [3] "hello world"'),
        ('Type "Ada" into [3]', 'type [3] "Ada"'),
        ("type [3]: hello", 'type [3] "hello"'),
        ('select [5] "Large"', 'select [5] "Large"'),
        ('select "Large" from [5]', 'select [5] "Large"'),
        ("hover over [4]", "hover [4]"),
        ("I need to see more.\nscroll down", "scroll down"),
        ("Scroll the page up a bit", "scroll up"),
        ("back", "back"),
        ("Found it.\ndone: the price is $5", "done: the price is $5"),
        ("Done: two\nlines", "done: two\nlines"),
        ("**Action:** press [2]", "click [2]"),
        ("type hello into [c]", 'type [c] "hello"'),
    ],
)
def test_parse_action(answer, expected):
    assert str(parse_action(answer)) == expected


@pytest.mark.parametrize(
    "answer,message",
    [("", "empty"), ("I am not sure what to do.", "no action found"), ("click [99]", r"\[99\].*not on the page; marks are 1 to 12")],
)
def test_parse_action_errors(answer, message):
    with pytest.raises(ActionError, match=message):
        parse_action(answer, [str(i) for i in range(1, 13)])


def test_host_allowed():
    assert host_allowed("http://a.example.org/x", ["*.example.org"]) and not host_allowed("http://evil.org", ["*.example.org"])
    assert host_allowed("http://anything", None) and host_allowed("about:blank", ["x"])


@pytest.mark.browser
def test_agent_fills_the_form_and_answers(site, browser, llm_server, tmp_path):
    def model(request):
        step = len(llm_server.requests)
        if step == 1:
            return f'The name field comes first.\ntype [{mark_of(request, r"^textbox .Name.")}] "Ada"'
        if step == 2:
            assert re.search(r'1\. type \[\d+\] "Ada"', request.all_text), "the steps so far are in the prompt"
            return f"Action: click [{mark_of(request, r'^button .Submit.')}]"
        return "done: submitted as Ada"

    llm_server.responder = model
    steps = []
    result = run_agent(f"{site}/form.html", "Sign up as Ada", client=client_for(llm_server), browser=browser,
                       max_steps=5, transcript_dir=tmp_path, on_step=steps.append)
    assert result.finished and result.answer == "submitted as Ada" and len(result.steps) == 3
    assert [s.ok for s in result.steps] == [True, True, True] and steps == result.steps
    assert result.steps[2].title == "submitted", "the click on Submit reached the page (its onsubmit set the title)"
    for r in llm_server.requests:  # one marked screenshot per step, scaled to the client's 1024 px
        assert r.images == [("PNG", (640, 1024))]
        assert "click [3]" in r.all_text and "done: <the answer" in r.all_text and "Task: Sign up as Ada" in r.all_text
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"step-0{i}.{x}" for i in (1, 2, 3) for x in ("marked.png", "marks.json", "json")] + ["transcript.json"])
    t = json.loads((tmp_path / "transcript.json").read_text())
    assert t["answer"] == "submitted as Ada" and t["steps"][1]["action"].startswith("click [")
    s1 = json.loads((tmp_path / "step-01.json").read_text())
    assert s1["answer"].endswith('"Ada"') and "Marked elements:" in s1["user"]


@pytest.mark.browser
def test_agent_reports_bad_answers_and_stops_at_the_limit(site, browser, llm_server):
    answers = iter(["I am not sure.", "click [999]", "hover [1]"])
    llm_server.responder = lambda request: next(answers)
    result = run_agent(f"{site}/menu.html", "open the file menu", client=client_for(llm_server), browser=browser, max_steps=3)
    assert not result.finished and result.reason == "step limit" and result.answer is None
    assert [s.ok for s in result.steps] == [False, False, True]
    assert "no action found" in result.steps[0].error and "not on the page" in result.steps[1].error
    assert "failed: no action found" in llm_server.requests[1].all_text, "the model is told what went wrong"


@pytest.mark.browser
def test_agent_allow_list_blocks_other_hosts(site, browser, llm_server):
    def model(request):
        if len(llm_server.requests) == 1:
            return f"click [{mark_of(request, 'Elsewhere')}]"
        assert "blocked" in request.all_text
        return f"click [{mark_of(request, 'The form')}]" if len(llm_server.requests) == 2 else "done: on the form"

    llm_server.responder = model
    result = run_agent(f"{site}/links.html", "go somewhere", client=client_for(llm_server), browser=browser,
                       max_steps=4, allow_hosts=["127.0.0.1"])
    assert result.finished
    assert not result.steps[0].ok and "blocked" in result.steps[0].error and "localhost" in result.steps[0].error
    assert result.steps[1].ok and result.steps[2].url.endswith("/form.html"), "same-host navigation is allowed"
    with pytest.raises(ValueError, match="allow-list"):
        run_agent(f"{site}/links.html", "x", client=client_for(llm_server), browser=browser, allow_hosts=["example.org"])


@pytest.mark.browser
def test_cli_web_and_agent(site, llm_server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "SOM_TEST_KEY": llm_server.api_key}
    out = subprocess.run([sys.executable, "-m", "som.cli", "web", f"{site}/form.html", "-o", str(tmp_path), "--name", "form"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "form.marked.png").exists() and '[1] textbox "Name"' in out.stdout
    doc = json.loads((tmp_path / "form.marks.json").read_text())
    assert doc["marks"][0]["css"] == "#name" and doc["page"]["url"].endswith("/form.html")

    llm_server.responder = lambda r: "click [1]" if len(llm_server.requests) == 1 else "done: clicked the name field"
    out = subprocess.run(
        [sys.executable, "-m", "som.cli", "agent", f"{site}/form.html", "click the name field", "--base-url", llm_server.base_url,
         "--model", "test-model", "--api-key-env", "SOM_TEST_KEY", "--transcript", str(tmp_path / "t"), "--max-steps", "3"],
        capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clicked the name field" and "step 1: click [1] [ok]" in out.stderr
    assert (tmp_path / "t" / "step-02.marked.png").exists() and llm_server.api_key not in out.stderr + out.stdout
