"""`som agent URL "task"`: page -> marks -> model -> action -> repeat.

Each step marks the page (`mark_page`), sends the marked screenshot with the `act` prompt, the
element list and the steps so far to an OpenAI-compatible model (`som.llm.LLMClient`), reads one
action (`parse_action`) and performs it on the marks. The loop ends on "done: <answer>" or after
`max_steps`. With `allow_hosts`, navigations of the top frame to any other host are blocked,
redirects included (the step reports it and the model is told). With `transcript_dir`, every step leaves
step-NN.marked.png, step-NN.marks.json and step-NN.json (prompt, answer, action, result), and
transcript.json holds the run.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from som.web.actions import Action, ActionError, act_template, parse_action
from som.web.page import ElementGone, PageMarks, mark_page, open_page
from som.web.redirects import forward_unless_redirected

__all__ = ["AgentStep", "AgentResult", "run_agent", "host_allowed"]

_MAX_LISTED = 150  # elements listed in the prompt (the picture shows them all)


@dataclass
class AgentStep:
    """One turn: the page it saw, what the model said, the action read and how it went."""

    step: int
    url: str
    title: str
    marks: int
    answer: str
    action: str | None
    ok: bool
    error: str | None = None
    seconds: float = 0.0


@dataclass
class AgentResult:
    """answer: the model's final answer ("done: …"), or None when it never finished.
    reason: "done" or "step limit"."""

    task: str
    answer: str | None
    reason: str
    steps: list[AgentStep] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.reason == "done"

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "answer": self.answer, "reason": self.reason, "steps": [asdict(s) for s in self.steps]}


def host_allowed(url: str, allow_hosts: Sequence[str] | None) -> bool:
    """Whether the agent may load `url`: always with no allow-list; else its host must match an
    entry (exact, or a pattern such as *.example.org). Non-network URLs (about:, data:) pass."""
    if allow_hosts is None:
        return True
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file"):
        return True
    host = (parts.hostname or "").lower() if parts.scheme != "file" else "file"
    return any(fnmatch.fnmatch(host, pattern.lower()) for pattern in allow_hosts)


def _element_list(marks: PageMarks) -> str:
    lines = [e.describe() for e in marks.elements[:_MAX_LISTED]]
    if len(marks.elements) > _MAX_LISTED:
        lines.append(f"… and {len(marks.elements) - _MAX_LISTED} more marks in the screenshot")
    return "\n".join(lines) if lines else "(no marked elements in view; scroll or go back)"


def _user_text(prompt_user: str, marks: PageMarks, history: list[AgentStep], blocked: list[str]) -> str:
    parts = [prompt_user, f"Page: {marks.title or '(no title)'} — {marks.url}", "Marked elements:\n" + _element_list(marks)]
    if history:
        done = []
        for s in history[-8:]:
            note = "" if s.ok else f" -> failed: {s.error}"
            done.append(f"{s.step}. {s.action or '(no action read)'}{note}")
        parts.append("Steps so far:\n" + "\n".join(done))
    if blocked:
        parts.append("Blocked (host not allowed): " + ", ".join(blocked[-3:]))
    parts.append("What is the next action?")
    return "\n\n".join(parts)


def _perform(marks: PageMarks, action: Action) -> None:
    if action.kind == "click":
        marks.click(action.label)
    elif action.kind == "type":
        marks.type(action.label, action.text or "")
    elif action.kind == "select":
        marks.select(action.label, action.text or "")
    elif action.kind == "hover":
        marks.hover(action.label)
    elif action.kind == "scroll":
        marks.scroll(action.direction or "down")
    elif action.kind == "back":
        marks.page.go_back(wait_until="load", timeout=15000)


def _return_to(page: Any, url: str) -> None:
    """After a blocked navigation (Chromium shows its error page) go back to where the agent was."""
    try:
        if page.url != url:
            page.go_back(wait_until="load", timeout=10000)
        if page.url != url:
            page.goto(url, wait_until="load", timeout=15000)
    except Exception:  # noqa: BLE001 - the next step marks whatever page is there
        pass


def run_agent(
    url: str,
    task: str,
    *,
    client: Any = None,
    max_steps: int = 10,
    allow_hosts: Sequence[str] | None = None,
    transcript_dir: str | Path | None = None,
    browser: Any = None,
    viewport: tuple[int, int] = (1280, 800),
    device_scale_factor: float = 1.0,
    template: Any = None,
    mark_options: dict[str, Any] | None = None,
    on_step: Callable[[AgentStep], None] | None = None,
) -> AgentResult:
    """Run the loop on `url` until the model answers "done: …" or `max_steps` steps have run.

    client: a `som.llm.LLMClient` (default: one from the environment, like `som ask`).
    allow_hosts: hosts the browser may navigate to (None: any); the start URL must be one.
    template: a PromptTemplate to use instead of the built-in `act` prompt.
    mark_options: keyword arguments for `mark_page` (full_page, kinds, style).
    on_step: called after every step (the CLI prints it).
    """
    if not task or not task.strip():
        raise ValueError("the agent needs a task, e.g. 'find the price of the blue mug'")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not host_allowed(url if "://" in url else "file:///", allow_hosts):
        raise ValueError(f"the start URL's host is not in the allow-list {list(allow_hosts or [])}: {url}")
    if client is None:
        from som.llm.client import LLMClient

        client = LLMClient()
    from som.llm.client import build_messages

    tpl = template or act_template()
    out = Path(transcript_dir) if transcript_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    result = AgentResult(task=task, answer=None, reason="step limit")
    page, session = open_page(url, browser=browser, viewport=viewport, device_scale_factor=device_scale_factor)
    blocked: list[str] = []

    def guard(route, request):
        if not (request.is_navigation_request() and request.frame == page.main_frame):
            return route.continue_()
        target = request.url
        if host_allowed(target, allow_hosts):
            if urlsplit(target).scheme not in ("http", "https"):
                return route.continue_()
            target = forward_unless_redirected(route, lambda url: host_allowed(url, allow_hosts))
            if target is None:  # answered (a redirect to an allowed host comes back through here)
                return None
        blocked.append(target)
        return route.abort("blockedbyclient")

    try:
        if allow_hosts is not None:
            page.route("**/*", guard)
        for n in range(1, int(max_steps) + 1):
            t0 = time.perf_counter()
            marks = mark_page(page, **(mark_options or {}))
            labels = [e.label for e in marks.elements]
            prompt = tpl.render(task, labels, marks.settings.get("label_mode"))
            user = _user_text(prompt.user, marks, result.steps, blocked)
            messages = build_messages(prompt.system, user, [marks.image], client.config)
            answer = client.complete(messages)
            step = AgentStep(step=n, url=marks.url, title=marks.title, marks=len(marks), answer=answer, action=None, ok=True)
            n_blocked, before_url = len(blocked), page.url
            try:
                action = parse_action(answer, labels)
                step.action = str(action)
                if action.kind == "done":
                    result.answer, result.reason = action.answer or "", "done"
                else:
                    _perform(marks, action)
                    if len(blocked) > n_blocked:
                        step.ok, step.error = False, f"navigation to {blocked[-1]} blocked: host not in the allow-list"
            except (ActionError, ElementGone, ValueError) as e:
                step.ok, step.error = False, str(e)
            except Exception as e:  # noqa: BLE001 - a Playwright timeout or a blocked navigation: tell the model, go on
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if len(blocked) > n_blocked:
                    first = f"navigation to {blocked[-1]} blocked: host not in the allow-list"
                step.ok, step.error = False, first
            if len(blocked) > n_blocked:
                _return_to(page, before_url)
            step.seconds = round(time.perf_counter() - t0, 3)
            result.steps.append(step)
            if out is not None:
                name = f"step-{n:02d}"
                marks.save(out, name)
                (out / f"{name}.json").write_text(
                    json.dumps({**asdict(step), "system": prompt.system, "user": user}, indent=1, ensure_ascii=False)
                )
            if on_step is not None:
                on_step(step)
            if result.reason == "done":
                break
    finally:
        if out is not None:
            (out / "transcript.json").write_text(json.dumps(result.to_json(), indent=1, ensure_ascii=False))
        session.close()
    return result
