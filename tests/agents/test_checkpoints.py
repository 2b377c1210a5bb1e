"""Checkpoints: only the last few kept, the replay buffer only with the newest, atomic writes, honest resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.checkpoints import write_atomically
from agents.config import to_run_config
from agents.sb3 import load_model
from agents.train import run

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["debug=smoke", "features=none", "train.eval_freq=1024"]
TINY_SAC = ["agent=sac", "env=spot", "agent.algo_kwargs.learning_starts=256", "agent.algo_kwargs.batch_size=64",
            "agent.algo_kwargs.buffer_size=4096"]


@pytest.mark.slow
def test_sac_run_keeps_the_last_checkpoints_and_one_replay_buffer(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg([*SMOKE, *TINY_SAC, "train.total_timesteps=3072", "train.checkpoint_freq=512"]),
                        base_dir=str(REPO))
    assert cfg.train.keep_checkpoints == 2 and cfg.train.save_replay_buffer
    run(cfg, tmp_path, test_report=False)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["model_2560_steps.zip", "model_3072_steps.zip", "model_replay_buffer_3072_steps.pkl",
                     "model_vecnormalize_2560_steps.pkl", "model_vecnormalize_3072_steps.pkl"], files
    rb = (tmp_path / "checkpoints" / "model_replay_buffer_3072_steps.pkl").stat().st_size
    obs = load_model("sac", tmp_path / "final_model.zip").observation_space.shape[0]
    assert rb >= 4096 * obs * 8  # observations and next observations, float32
    total = sum(p.stat().st_size for p in (tmp_path / "checkpoints").iterdir())
    assert total < 1.2 * rb + 2 * (tmp_path / "final_model.zip").stat().st_size + 10_000


@pytest.mark.slow
def test_no_replay_buffer_and_keep_one(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg([*SMOKE, *TINY_SAC, "train.total_timesteps=1536", "train.checkpoint_freq=512",
                                     "train.keep_checkpoints=1", "train.save_replay_buffer=false"]),
                        base_dir=str(REPO))
    run(cfg, tmp_path, test_report=False)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["model_1536_steps.zip", "model_vecnormalize_1536_steps.pkl"], files


def test_a_write_that_fails_midway_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "model_2_steps.zip"
    target.write_bytes(b"previous checkpoint")

    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half of a ch")
        raise KeyboardInterrupt  # the kill arrives mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, crash)
    assert target.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_2_steps.zip"]
    write_atomically(target, lambda tmp: tmp.write_bytes(b"new checkpoint"))
    assert target.read_bytes() == b"new checkpoint"


@pytest.mark.slow
def test_resume_with_a_checkpoint_that_does_not_fit_the_config_names_the_shapes(compose_cfg, tmp_path: Path) -> None:
    """Any load error other than a truncated file fails with the error and the file, no silent fallback."""
    cfg = to_run_config(compose_cfg([*SMOKE, "train.checkpoint_freq=1024"]), base_dir=str(REPO))
    run(cfg, tmp_path, test_report=False)
    # a different observation size with either observation kind (window: 16 bars; compact: 4 bars)
    edited = to_run_config(compose_cfg([*SMOKE, "train.checkpoint_freq=1024", "env.window_size=16",
                                        "env.compact_bars=4"]), base_dir=str(REPO))
    with pytest.raises(ValueError, match=r"model_2048_steps\.zip does not fit this run's config: its observation "
                                         r"space .*shape \(\d+,\)\) but the config gives .*shape \(\d+,\)"):
        run(edited, tmp_path, resume=True, test_report=False)
