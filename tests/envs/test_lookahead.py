"""No lookahead: changing any bar after k leaves every observation for decision bars <= k and every
reward marked at bars <= k unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import EnvConfig, TradingEnv

CONFIGS = {
    "full_realism": EnvConfig(
        window_size=16, max_leverage=3.0, sizing="vol_target", vol_lookback=24, slippage_model="sqrt_impact",
        slippage_coef=0.5, max_participation=0.5, stop_loss=0.03, take_profit=0.05, trailing_stop=0.02,
        maintenance_margin_rate=0.05, reward="differential_sharpe", turnover_penalty=0.01, drawdown_penalty=0.1,
    ),
    "kelly_spread": EnvConfig(window_size=4, sizing="kelly", slippage_model="spread", reward="sortino"),
}


def _perturb_after(df: pd.DataFrame, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """Scale prices/volume of every bar after k by random factors (OHLC stays consistent)."""
    out = df.copy()
    tail = slice(k + 1, len(df))
    m = len(df) - k - 1
    scale = rng.uniform(0.5, 1.5, m)
    for col in ("open", "high", "low", "close"):
        out.loc[out.index[tail], col] = df[col].to_numpy()[tail] * scale
    out.loc[out.index[tail], "high"] = out[["open", "high", "close"]].to_numpy()[tail].max(axis=1) * rng.uniform(1, 1.05, m)
    out.loc[out.index[tail], "low"] = out[["open", "low", "close"]].to_numpy()[tail].min(axis=1) * rng.uniform(0.95, 1, m)
    out.loc[out.index[tail], "volume"] = df["volume"].to_numpy()[tail] * rng.uniform(0, 3, m)
    for col in ("signal", "funding_rate", "spread"):
        if col in out:
            out.loc[out.index[tail], col] = np.abs(rng.normal(0, 1e-3, m)) if col != "signal" else rng.normal(0, 5, m)
    return out


def _rollout(df: pd.DataFrame, cfg: EnvConfig, actions: np.ndarray) -> tuple[list[int], list, list]:
    env = TradingEnv(df, cfg)
    obs, info = env.reset(seed=0)
    decision_bars, observations, marked = [info["timestamp"]], [obs], []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        marked.append((info["timestamp"], reward, info["equity"]))
        if terminated or truncated:
            break
        decision_bars.append(info["timestamp"])
        observations.append(obs)
    return decision_bars, observations, marked


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("k", [40, 150, 299])
def test_future_bars_do_not_change_the_past(sample_1h: pd.DataFrame, name: str, k: int) -> None:
    cfg = CONFIGS[name]
    df = sample_1h.iloc[:400].reset_index(drop=True).copy()
    rng = np.random.default_rng(k)
    df["signal"] = rng.normal(0, 1, len(df))
    df["funding_rate"] = rng.normal(0, 2e-4, len(df))
    df["spread"] = df["close"] * 1e-4
    actions = rng.uniform(-1, 1, (len(df), 1)).astype(np.float32)
    base = _rollout(df, cfg, actions)
    pert = _rollout(_perturb_after(df, k, rng), cfg, actions)
    k_ts = int(df.timestamp.iloc[k])
    n_obs = sum(ts <= k_ts for ts in base[0])
    n_marked = sum(ts <= k_ts for ts, _, _ in base[2])
    assert n_obs > 0 and n_marked > 0
    for j in range(n_obs):
        assert base[0][j] == pert[0][j]
        np.testing.assert_array_equal(base[1][j], pert[1][j])
    assert base[2][:n_marked] == pert[2][:n_marked]
    # and the perturbation did change something later, so the test can fail
    assert base[2][n_marked:] != pert[2][n_marked:]
