"""The ``paths:`` node: run folders and the feature cache go where it says, relative to the working dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agents.config import to_run_config
from agents.paths import FEATURE_CACHE_ENV, PathsConfig
from agents.tune import prepare_experiment, register_tune_configs

REPO = Path(__file__).resolve().parents[2]


def test_feature_cache_defaults_to_the_working_dir_and_moves_by_env_var_or_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(FEATURE_CACHE_ENV, raising=False)
    assert PathsConfig().feature_cache_dir.resolve() == tmp_path.resolve() / "data" / "cache" / "features"
    monkeypatch.setenv(FEATURE_CACHE_ENV, str(tmp_path / "env"))
    assert PathsConfig().feature_cache_dir == tmp_path / "env"
    assert PathsConfig(feature_cache=str(tmp_path / "cfg")).feature_cache_dir == tmp_path / "cfg"


def test_paths_node_sets_the_run_folder_and_reaches_the_typed_config(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg([f"paths.outputs={tmp_path / 'runs'}", f"paths.feature_cache={tmp_path / 'fc'}"])
    assert to_run_config(cfg).paths.feature_cache_dir == tmp_path / "fc"
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        full = compose("config", overrides=[f"paths.outputs={tmp_path / 'runs'}"], return_hydra_config=True)
    assert str(OmegaConf.select(full, "hydra.run.dir")).startswith(str(tmp_path / "runs" / "train") + "/")


def test_tune_trials_share_one_absolute_feature_cache(compose_cfg, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEATURE_CACHE_ENV, raising=False)
    register_tune_configs()
    raw = OmegaConf.to_container(compose_cfg(["tune=smoke", f"tune.storage_path={tmp_path}"], config_name="tune"),
                                 resolve=True)
    assert isinstance(raw, dict)
    exp = prepare_experiment({str(k): v for k, v in raw.items()}, str(tmp_path / "launch"), str(tmp_path))
    # resolved on the driver: Ray runs each trial in a folder of its own
    assert exp.base["paths"]["feature_cache"] == str((tmp_path / "launch" / "data" / "cache" / "features").resolve())


@pytest.mark.slow
def test_a_training_run_writes_where_paths_says_and_nothing_in_the_package(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = {p for p in (REPO / "agents").rglob("*") if "__pycache__" not in p.parts}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop(FEATURE_CACHE_ENV, None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "debug=smoke", "train.total_timesteps=256",
         "train.eval_freq=256", "train.checkpoint_freq=256", f"data.path={REPO / 'data/sample/btcusdt_1h.parquet'}",
         f"paths.outputs={tmp_path / 'runs'}", f"paths.feature_cache={tmp_path / 'fc'}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "train").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())
    assert list((tmp_path / "fc").rglob("*.parquet"))  # the hourly features were cached there
    assert not (cwd / "outputs").exists() and not (cwd / "data").exists()
    assert {p for p in (REPO / "agents").rglob("*") if "__pycache__" not in p.parts} == before
