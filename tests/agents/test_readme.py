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


def _readme_commands() -> list[tuple[str, list[str]]]:
    """(script, overrides) of every ``python scripts/<name>.py ...`` line in the README's bash blocks.

    ``[x]`` marks an optional argument (kept), ``<run>``-style placeholders stay as given, comments are dropped.
    """
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            match = re.match(r"python scripts/(\w+)\.py\s*(.*)", line.split("  #")[0].split(" # ")[0].strip())
            if match:
                args = [a.strip("[]") for a in match.group(2).split()]
                out.append((match.group(1), args))
    return out


def _expand(args: list[str]) -> list[list[str]]:
    """A ``-m`` multirun's comma lists as the runs Hydra would start (one override list each)."""
    if "-m" not in args:
        return [args]
    runs: list[list[str]] = [[]]
    for arg in (a for a in args if a != "-m"):
        key, _, value = arg.partition("=")
        runs = [run + [f"{key}={v}"] for run in runs for v in value.split(",")]
    return runs


COMMANDS = _readme_commands()


def test_the_readme_lists_the_commands_checked_here() -> None:
    scripts = {script for script, _ in COMMANDS}
    assert {"train", "evaluate", "tune", "paper", "paper_report"} <= scripts, scripts


@pytest.mark.parametrize("script, args", COMMANDS, ids=[" ".join([s, *a])[:80] for s, a in COMMANDS])
def test_every_readme_command_composes_and_validates(script: str, args: list[str], compose_cfg,
                                                     tmp_path: Path) -> None:
    """Each README command's overrides are valid for its script (keys, types, values); runs are in other tests.

    Tiny-budget runs of these commands: tests/agents/test_train_e2e.py (main job, multirun, resume),
    test_walk_forward.py, test_tune.py (smoke, resume, a Ray cluster), tests/agents/paper/ (paper, report).
    """
    import importlib

    from omegaconf import OmegaConf

    from agents.config import to_run_config

    name = {"train": "config", "evaluate": "evaluate", "tune": "tune", "paper": "paper",
            "paper_report": "paper_report"}.get(script)
    if name is None:
        pytest.fail(f"scripts/{script}.py in the README has no composition check here: add it")
    importlib.import_module(f"scripts.{script}")  # registers the script's schemas, as running it does
    for overrides in _expand(args):
        concrete = [o.replace("<run>", "run").replace("<name>", "exp").replace("<bars.parquet>", "bars.parquet")
                    for o in overrides]
        cfg = compose_cfg(concrete, config_name=name)
        if script == "train":
            to_run_config(cfg, base_dir=str(REPO))  # typed and range-checked, as the script does at start-up
        elif script == "tune":
            from agents.tune import prepare_experiment

            raw = OmegaConf.to_container(cfg, resolve=False)
            assert isinstance(raw, dict)
            raw["tune"]["storage_path"] = str(tmp_path)
            if raw["tune"].get("resume"):
                continue  # resuming needs a saved experiment: test_tune.py covers it end to end
            prepare_experiment(raw, str(REPO), str(tmp_path))
