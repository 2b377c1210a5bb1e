"""The compact observation (`env.observation="compact"`): what it holds, no lookahead, the env
checkers, one implementation for TradingEnv / VecTradingEnv, and its config errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import EnvConfig, TradingEnv, VecTradingEnv
from envs.sim.observation import summary_means
from envs.sim.vec_env import NormalizeConfig
from tests.envs.test_lookahead import _perturb_after, _rollout

REALISM = dict(max_leverage=3.0, sizing="vol_target", vol_lookback=24, slippage_model="sqrt_impact",
               slippage_coef=0.5, stop_loss=0.03, take_profit=0.05, trailing_stop=0.02, funding_rate=0.0003)
WINDOW = EnvConfig(window_size=16, **REALISM)
COMPACT = EnvConfig(window_size=16, observation="compact", compact_bars=4, summary_windows=(5, 16), **REALISM)


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    """400 hourly bars with 3 extra feature columns (7 observation features per bar)."""
    df = sample_1h.iloc[:400].reset_index(drop=True).copy()
    rng = np.random.default_rng(1)
    for k in range(3):
        df[f"x{k}"] = rng.normal(0, 2, len(df))
    return df


def test_compact_observation_is_the_short_window_then_window_means(bars: pd.DataFrame) -> None:
    """Step for step, the compact observation equals the last 4 rows of the full 16-bar window, then
    per feature the means of its last 5 and 16 rows, then the same account values."""
    full, compact = TradingEnv(bars, WINDOW), TradingEnv(bars, COMPACT)
    nf = full.sim.features.shape[1]
    assert compact.observation_space.shape == ((4 + 2) * nf + 4,) != full.observation_space.shape
    actions = np.random.default_rng(0).uniform(-1, 1, (150, 1)).astype(np.float32)
    pairs = [(full.reset(seed=0)[0], compact.reset(seed=0)[0])]
    for a in actions:
        pairs.append((full.step(a)[0], compact.step(a)[0]))
    for o_full, o_compact in pairs:
        rows = o_full[:16 * nf].reshape(16, nf)
        expected = np.concatenate([rows[-4:].ravel(), rows[-5:].mean(0), rows.mean(0), o_full[-4:]])
        np.testing.assert_allclose(o_compact, expected, rtol=1e-5, atol=1e-6)
        assert compact.observation_space.contains(o_compact)


@pytest.mark.parametrize("k", [60, 250])
def test_future_bars_do_not_change_compact_observations(bars: pd.DataFrame, k: int) -> None:
    rng = np.random.default_rng(k)
    actions = rng.uniform(-1, 1, (len(bars), 1)).astype(np.float32)
    base = _rollout(bars, COMPACT, actions)
    pert = _rollout(_perturb_after(bars, k, rng), COMPACT, actions)
    k_ts = int(bars.timestamp.iloc[k])
    n_obs = sum(ts <= k_ts for ts in base[0])
    assert n_obs > 0
    for j in range(n_obs):
        np.testing.assert_array_equal(base[1][j], pert[1][j])
    # and the perturbation did change later observations (or ended the episode), so the test can fail
    later = zip(base[1][n_obs:], pert[1][n_obs:], strict=False)
    assert len(base[1]) != len(pert[1]) or any(not np.array_equal(a, b) for a, b in later)


def test_window_means_of_a_tail_equal_the_full_history_bit_for_bit() -> None:
    """A paper session builds observations from a short tail: its means match the backtest's exactly."""
    feats = np.random.default_rng(0).normal(0, 3, (500, 5)).astype(np.float32)
    full = summary_means(feats, (8, 32))
    for end in (32, 100, 500):
        np.testing.assert_array_equal(summary_means(feats[end - 32:end], (8, 32))[-1], full[end - 1])


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_env_checkers_pass_with_the_compact_observation(bars: pd.DataFrame, mode: str) -> None:
    cfg = EnvConfig(window_size=32, observation="compact", action_mode=mode, episode_length=100, **REALISM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(TradingEnv(bars, cfg), skip_render_check=True)
        sb3_check_env(TradingEnv(bars, cfg), warn=True)


def test_vec_env_writes_the_same_compact_observations(bars: pd.DataFrame) -> None:
    """VecTradingEnv (double-buffered, in-env observation normalisation) uses the same observation rows."""
    cfg = COMPACT
    single = TradingEnv(bars, cfg)
    raw = VecTradingEnv(bars, cfg, n_envs=2, seed=0, double_buffer_obs=True)
    normed = VecTradingEnv(bars, cfg, n_envs=2, seed=0, normalize=NormalizeConfig(norm_obs=True))
    assert raw.observation_space.shape == normed.observation_space.shape == single.observation_space.shape
    expected = [single.reset(seed=0)[0]]
    obs, obs_n = raw.reset(), normed.reset()
    assert obs_n.shape == (2, single.observation_space.shape[0]) and normed.obs_rms is not None
    got = [obs[0].copy()]
    for a in np.random.default_rng(0).uniform(-1, 1, (50, 1)).astype(np.float32):
        expected.append(single.step(a)[0])
        got.append(raw.step(np.repeat(a[None], 2, axis=0))[0][0].copy())
        normed.step(np.repeat(a[None], 2, axis=0))
    np.testing.assert_array_equal(np.array(got), np.array(expected))
    assert normed.obs_rms.mean.shape == (single.observation_space.shape[0],)


def test_default_summaries_are_the_short_window_and_the_whole_history() -> None:
    assert EnvConfig(observation="compact").summaries == (8, 32)
    assert EnvConfig(window_size=8, observation="compact").summaries == (8,)
    assert EnvConfig(window_size=16, observation="compact", compact_bars=1).summaries == (16,)
    assert EnvConfig(window_size=64, observation="compact", summary_windows=[4, 64]).summaries == (4, 64)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"observation": "short"}, "env.observation='short' is invalid: must be one of"),
    ({"observation": "compact", "compact_bars": 17}, "env.compact_bars=17 is invalid"),
    ({"observation": "compact", "window_size": 4}, "env.compact_bars=8 is invalid"),
    ({"observation": "compact", "compact_bars": 0}, "env.compact_bars=0 is invalid"),
    ({"observation": "compact", "summary_windows": (8, 32)}, "env.summary_windows=[8, 32] is invalid"),
    ({"observation": "compact", "summary_windows": (8, 4)}, "env.summary_windows=[8, 4] is invalid"),
    ({"observation": "compact", "summary_windows": (1,)}, "env.summary_windows=[1] is invalid"),
])
def test_bad_observation_settings_fail_at_construction(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        EnvConfig(**{"window_size": 16, **overrides})
    assert "\n" not in str(err.value)
