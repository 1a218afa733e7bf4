"""requirements.txt lists exactly the runtime dependencies of pyproject.toml."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_requirements_txt_matches_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [ln.strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln and not ln.startswith("#")] == deps
