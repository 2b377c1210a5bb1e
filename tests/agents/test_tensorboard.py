"""TensorBoard scalars are written on their own schedule, even when SB3 would never dump its logger."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.config import to_run_config
from agents.train import run

REPO = Path(__file__).resolve().parents[2]


def _steps(run_dir: Path) -> dict[str, list[int]]:
    ea = EventAccumulator(str(run_dir / "tb" / "run_1"), size_guidance={"scalars": 0})
    ea.Reload()
    return {tag: [e.step for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["sac", "ppo"])
def test_short_run_without_a_finished_episode_writes_trading_and_eval_scalars(compose_cfg, tmp_path: Path,
                                                                              agent: str) -> None:
    overrides = ["debug=smoke", "features=none", f"agent={agent}", "env=spot", "env.episode_length=4096",
                 "train.total_timesteps=1024", "train.eval_freq=512", "train.checkpoint_freq=1024",
                 "train.log_every_steps=256"]
    if agent == "sac":
        overrides += ["agent.algo_kwargs.learning_starts=256", "agent.algo_kwargs.batch_size=64",
                      "agent.algo_kwargs.buffer_size=2048"]
    run(to_run_config(compose_cfg(overrides), base_dir=str(REPO)), tmp_path, test_report=False)
    steps = _steps(tmp_path)
    assert steps["eval/sharpe"] == [512, 1024], steps
    assert steps["eval/total_return"] == [512, 1024]
    assert steps["trading/equity"] == [256, 512, 768, 1024], steps
    assert steps["trading/exposure"] == [256, 512, 768, 1024]
