"""The README's examples run as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _python_block(section: str) -> str:
    text = (REPO / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", body, re.S)
    assert match, f"no python block under '## {section}'"
    return match.group(1)


def test_using_the_environment_snippet_runs_as_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the snippet's paths are relative to the repository
    scope: dict[str, object] = {}
    exec(compile(_python_block("Using the environment"), "README.md", "exec"), scope)  # noqa: S102
    vec, env = scope["vec"], scope["env"]
    assert vec.account["equity"].shape == (16,)  # type: ignore[attr-defined]
    assert env.spec.id == "quantgym/Trading-v0"  # type: ignore[attr-defined]
    obs, _ = env.reset(seed=0)  # type: ignore[attr-defined]
    assert obs.shape == env.observation_space.shape  # type: ignore[attr-defined]
