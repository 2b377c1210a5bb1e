"""Gymnasium / SB3 API conformance, seeding and determinism of TradingEnv."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import EnvConfig, TradingEnv
from envs.sim.simulation import INFO_KEYS

FULL_REALISM = dict(
    taker_fee=0.0005, slippage_model="volatility", slippage_coef=0.2, max_leverage=3.0,
    funding_rate=0.0001, stop_loss=0.05, take_profit=0.1, trailing_stop=0.04, episode_length=200,
)


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    return sample_1h.iloc[:3000].reset_index(drop=True)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_gymnasium_check_env_passes_without_warnings(bars: pd.DataFrame, mode: str) -> None:
    env = TradingEnv(bars, EnvConfig(action_mode=mode, **FULL_REALISM))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=True)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_sb3_check_env_passes(bars: pd.DataFrame, mode: str) -> None:
    env = TradingEnv(bars, EnvConfig(action_mode=mode, **FULL_REALISM))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env, warn=True)


def test_registered_with_gymnasium(bars: pd.DataFrame) -> None:
    env = gymnasium.make("Trading-v0", data=bars, config=EnvConfig(window_size=8))
    obs, info = env.reset(seed=1)
    assert obs.shape == env.observation_space.shape
    assert set(info) == set(INFO_KEYS)


def _rollout(env: TradingEnv, seed: int, n: int) -> tuple[list, list, list]:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations, rewards, infos = [obs], [], [info]
    for _ in range(n):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            obs, info = env.reset()
            observations.append(obs)
            infos.append(info)
    return observations, rewards, infos


def test_same_seed_same_rollout_and_different_seed_differs(bars: pd.DataFrame) -> None:
    cfg = EnvConfig(**FULL_REALISM)
    a = _rollout(TradingEnv(bars, cfg), seed=7, n=500)
    b = _rollout(TradingEnv(bars, cfg), seed=7, n=500)
    c = _rollout(TradingEnv(bars, cfg), seed=8, n=500)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == b[1] and a[2] == b[2]
    assert a[2][0]["timestamp"] != c[2][0]["timestamp"] or a[1] != c[1]


def test_info_keys_and_first_observation(bars: pd.DataFrame) -> None:
    cfg = EnvConfig(window_size=16)
    env = TradingEnv(bars, cfg)
    obs, info = env.reset(seed=0)
    assert list(info) == list(INFO_KEYS)
    assert info["timestamp"] == int(bars.timestamp.iloc[15])  # first decision at bar W-1
    assert info["price"] == bars.close.iloc[15]
    assert np.all(obs[-4:] == 0.0)  # account state at zero
    assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
    obs, reward, terminated, truncated, info = env.step(np.array([0.0], dtype=np.float32))
    assert list(info) == list(INFO_KEYS)
    assert info["fill_price"] == 0.0 and info["traded_qty"] == 0.0
    assert info["timestamp"] == int(bars.timestamp.iloc[16])


def test_full_pass_truncates_at_last_bar_with_episode_summary(bars: pd.DataFrame) -> None:
    small = bars.iloc[:100].reset_index(drop=True)
    env = TradingEnv(small, EnvConfig(window_size=10))
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, terminated, truncated, info = env.step(np.array([0.5], dtype=np.float32))
        steps += 1
        if terminated or truncated:
            break
    assert truncated and not terminated
    assert steps == 100 - 10  # decisions at bars 9..98, each filled in the next bar
    assert info["timestamp"] == int(small.timestamp.iloc[-1])
    summary = info["episode_summary"]
    assert summary["n_steps"] == steps
    assert summary["final_equity"] == pytest.approx(info["equity"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0], dtype=np.float32))


def test_observations_are_bounded_and_finite_even_with_extreme_extra_column(bars: pd.DataFrame) -> None:
    df = bars.iloc[:500].copy()
    df["signal"] = np.linspace(-1e6, 1e6, len(df))
    env = TradingEnv(df, EnvConfig(window_size=4, obs_clip=5.0))
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
    assert "signal" in env.feature_names
