"""Deploy files: README's front matter for a Gradio Space, the Dockerfile doing exactly README's set-up,
and the server flags a Space or a container sets through the environment."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SETUP = 'python3 -m venv .venv && .venv/bin/pip install -e ".[app,llm]" && .venv/bin/python demo_som.py'


def front_matter() -> tuple[dict, str]:
    m = re.match(r"---\n(.*?)\n---\n", README, re.S)
    assert m, "README starts with a YAML front matter block"
    return yaml.safe_load(m.group(1)), README[m.end():]


def test_readme_front_matter_is_a_gradio_space_and_the_page_still_starts_the_same():
    meta, body = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "demo_som.py" and meta["title"]
    assert (REPO / meta["app_file"]).is_file()
    import gradio

    assert meta["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0] == "6"  # pyproject: gradio>=6,<7
    first = [ln for ln in body.splitlines() if ln.strip()][:2]
    assert first[0] == "# som — Set-of-Mark visual prompting" and first[1].startswith("**Set-of-Mark (SoM)**")
    assert f"```bash\n{SETUP}\n```" in body and "```bash\nbash scripts/test.sh\n```" in body


def test_dockerfile_installs_what_readme_installs_and_serves_on_7860():
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    runs = [ln[len("RUN "):] for ln in lines if ln.startswith("RUN ")]
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD "))[len("CMD "):])
    assert runs == [SETUP.rsplit(" && ", 1)[0]], runs  # the set-up, nothing else installed
    assert " ".join(cmd[:2]) == SETUP.rsplit(" && ", 1)[1] and cmd[2:] == ["--host", "0.0.0.0", "--port", "7860"]
    copied = {p for ln in lines if ln.startswith("COPY ") for p in shlex.split(ln)[1:-1]}
    # what pip install -e . reads (pyproject, its readme, the package) and what the app serves
    assert {"pyproject.toml", "README.md", "som", "assets", "demo_som.py"} <= copied, copied
    assert "EXPOSE 7860" in lines


def test_space_and_container_settings_from_the_environment(monkeypatch):
    import argparse

    from som.app.cli import add_app_options
    from som.app.serving import limits_from_args

    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7870")
    monkeypatch.setenv("GRADIO_ROOT_PATH", "/proxied")
    monkeypatch.setenv("SOM_MAX_JOBS", "3")
    p = argparse.ArgumentParser()
    add_app_options(p)
    args = p.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7870)
    limits = limits_from_args(args)
    assert limits.root_path == "/proxied" and limits.max_jobs == 3
    limits = limits_from_args(p.parse_args(["--root-path", "/som", "--max-jobs", "2"]))
    assert limits.root_path == "/som" and limits.max_jobs == 2
