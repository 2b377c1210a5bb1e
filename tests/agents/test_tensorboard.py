"""TensorBoard scalars are written on their own schedule, even when SB3 would never dump its logger."""

from __future__ import annotations

import json
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
    history = json.loads((tmp_path / "eval_history.json").read_text())
    assert [h["timesteps"] for h in history] == steps["eval/sharpe"]  # logged steps are TensorBoard's


def test_progress_bar_stops_at_its_total_while_sb3_finishes_its_rollout(sample_1h) -> None:
    from stable_baselines3 import PPO

    from agents.callbacks import BoundedProgressBar
    from envs import EnvConfig, VecTradingEnv

    vec = VecTradingEnv(sample_1h.iloc[:3000], EnvConfig(window_size=8, episode_length=200), n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=256, batch_size=128, n_epochs=1, seed=0, device="cpu")
    bar = BoundedProgressBar()
    model.learn(total_timesteps=1000, callback=bar)
    assert model.num_timesteps == 1024  # two whole 2 x 256-step rollouts
    assert bar.pbar.n == bar.pbar.total == 1000


@pytest.mark.parametrize(("risk", "limited", "halted"), [({}, 0.0, 0.0), ({"expires_at": "2000-01-01"}, 1.0, 0.0)])
def test_risk_scalars_count_the_env_steps_a_risk_control_limited(sample_1h, tmp_path: Path, risk: dict,
                                                                 limited: float, halted: float) -> None:
    from stable_baselines3 import PPO

    from agents.callbacks import TradingMetricsCallback
    from envs import EnvConfig, VecTradingEnv

    # an expired model (expires_at before the data): every decision is REDUCING, reason "expired"
    vec = VecTradingEnv(sample_1h, EnvConfig(window_size=8, episode_length=256, risk=risk), n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, tensorboard_log=str(tmp_path / "tb"))
    model.learn(128, callback=TradingMetricsCallback(log_every_steps=64))
    ea = EventAccumulator(str(tmp_path / "tb" / "PPO_1"), size_guidance={"scalars": 0})
    ea.Reload()
    assert [e.step for e in ea.Scalars("trading/risk_limited")] == [64, 128]
    assert [e.value for e in ea.Scalars("trading/risk_limited")] == [limited, limited]
    assert [e.value for e in ea.Scalars("trading/risk_halted")] == [halted, halted]
