"""The scripts' entry points: credentials refused before Hydra writes, config errors on one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import looks_like_credential
from agents.config import to_run_config

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-VALUE-9f2c"


def _script(name: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | (env or {})
    return subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_credential_names_are_recognised() -> None:
    for key in ("api_key", "+exchange_secret", "feed.apiKey", "password", "x.passphrase", "auth_token", "key"):
        assert looks_like_credential(key.lstrip("+")), key
    for key in ("train.keep_checkpoints", "hydra.job.config.override_dirname.exclude_keys", "feed.api_url",
                "env.taker_fee", "tune.space"):
        assert not looks_like_credential(key), key


@pytest.mark.parametrize(("script", "override"), [("train", "+exchange_secret"), ("download", "+api_key"),
                                                    ("download", "+feed.password"), ("validate", "+token")])
def test_a_credential_override_is_refused_before_anything_is_written(tmp_path: Path, script: str,
                                                                      override: str) -> None:
    run_dir = tmp_path / "outputs" / "run"
    out = _script(script, f"{override}={SECRET}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "QUANTGYM_<EXCHANGE>_API_KEY" in out.stderr and override.lstrip("+") in out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert not run_dir.exists()
    assert _files_containing(tmp_path, SECRET) == []


@pytest.mark.parametrize("override", ["env.taker_fee=-1", "nosuch=1", "env=nosuch", "env=[spot,perp]",
                                      "+tarin.seed=3", "data.path=missing.parquet"])
def test_config_error_is_one_line_exit_2_and_leaves_no_run_folder(tmp_path: Path, override: str) -> None:
    run_dir = tmp_path / "run"
    out = _script("train", "debug=smoke", override, f"hydra.run.dir={run_dir}")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: "), out.stderr
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()


def test_hydra_full_error_shows_the_traceback(tmp_path: Path) -> None:
    out = _script("train", "debug=smoke", "env.taker_fee=-1", f"hydra.run.dir={tmp_path / 'run'}",
                  env={"HYDRA_FULL_ERROR": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr and "env.taker_fee" in out.stderr


@pytest.mark.parametrize(("override", "key"), [("+tarin.seed=3", "tarin"), ("+foo=bar", "foo"),
                                               ("+train.sead=1", "train.sead"),
                                               ("+evaluation.nboot=5", "evaluation.nboot")])
def test_unknown_keys_are_refused_naming_them(compose_cfg, override: str, key: str) -> None:
    with pytest.raises(ValueError, match=f"unknown config key {key} "):
        to_run_config(compose_cfg([override]), base_dir=str(REPO))


def test_resume_refuses_overrides_that_would_change_the_run(compose_cfg, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_cfg(["debug=smoke"]), run_dir / ".hydra" / "config.yaml")
    out = _script("train", f"train.resume_from={run_dir}", "env.window_size=16", "env.taker_fee=0.05",
                  f"hydra.run.dir={tmp_path / 'again'}")
    assert out.returncode == 2, out.stderr
    assert "env.window_size=16 (the run has 32)" in out.stderr and "env.taker_fee=0.05 (the run has 0.001)" in out.stderr
    out = _script("train", f"train.resume_from={run_dir}", "debug=smoke", "env.window_size=32",
                  "train.checkpoint_freq=5", f"hydra.run.dir={tmp_path / 'again'}")
    assert out.returncode == 2 and "train.checkpoint_freq=5 (the run has 1024)" in out.stderr, out.stderr
    assert "window_size" not in out.stderr  # unchanged values pass
