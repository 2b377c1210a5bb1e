"""Baselines through the real env: hand-checkable outcomes, and a random policy judged as luck."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.config import EvaluationConfig
from agents.evaluation.baselines import ma_crossover_policy, run_baselines
from agents.evaluation.suite import judge
from envs import EnvConfig, MarketData, metrics


def _monotonic(n: int = 200) -> pd.DataFrame:
    close = 100.0 * 1.001 ** np.arange(n)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({
        "timestamp": np.arange(n, dtype=np.int64) * 3_600_000, "open": open_,
        "high": np.maximum(open_, close) * 1.0005, "low": np.minimum(open_, close) * 0.9995, "close": close,
        "volume": np.full(n, 1e6),
    })


def test_buy_and_hold_returns_price_ratio_minus_costs_and_flat_returns_zero() -> None:
    df = _monotonic()
    w, fee, slip_bps = 8, 0.001, 5.0
    cfg = EnvConfig(window_size=w, taker_fee=fee, slippage_model="fixed_bps", slippage_bps=slip_bps)
    recs = run_baselines(MarketData.load(df), cfg, None, n_random_seeds=2, ma_fast=3, ma_slow=10)
    bh, flat = recs.buy_and_hold, recs.flat
    # decision at close of bar w-1, one fill at the open of bar w, held to the last close
    qty = 10_000.0 / df.close.iloc[w - 1]
    px = df.open.iloc[w] * (1 + slip_bps / 1e4)
    expected = 10_000.0 - qty * px * (1 + fee) + qty * df.close.iloc[-1]
    assert bh.n_fills == 1
    assert bh.equity[-1] == pytest.approx(expected, rel=1e-12)
    # i.e. the price ratio over the holding span, less the entry costs
    ratio = df.close.iloc[-1] / df.close.iloc[w - 1]
    assert bh.equity[-1] / 10_000.0 == pytest.approx(ratio - qty * (px * (1 + fee) - df.close.iloc[w - 1]) / 1e4)
    assert np.all(flat.equity == 10_000.0) and flat.n_fills == 0
    assert metrics.total_return(flat.equity) == 0.0


def test_ma_crossover_uses_only_past_closes() -> None:
    close = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 3, 4], dtype=float)
    policy = ma_crossover_policy(close, 2, 4, 1.0)
    before = [float(policy(None, {}, t)[0]) for t in range(len(close))]
    changed = close.copy()
    changed[8:] = 100.0  # the future changes
    policy2 = ma_crossover_policy(changed, 2, 4, 1.0)
    assert [float(policy2(None, {}, t)[0]) for t in range(8)] == before[:8]


@pytest.mark.slow
def test_bootstrap_calls_random_policy_luck_on_sample_data(sample_1h: pd.DataFrame) -> None:
    data = MarketData.load(sample_1h.iloc[-4000:].reset_index(drop=True))
    cfg = EnvConfig(window_size=16, taker_fee=0.0, slippage_model="none", rebalance_threshold=0.0)
    recs = run_baselines(data, cfg, None, n_random_seeds=3, ma_fast=24, ma_slow=96, seed=11)
    ecfg = EvaluationConfig(n_boot=500)
    ppy = metrics.bars_per_year(data.timestamp)
    for rec in recs.random:
        j = judge(rec.returns, recs.buy_and_hold.returns, ppy, ecfg, seed=3)
        assert j.sharpe_ci[1] < 0.0 < j.sharpe_ci[2], j.sharpe_ci
        assert "not distinguishable from luck" in j.text


def test_deflated_sharpe_falls_with_the_number_of_trials(sample_1h: pd.DataFrame) -> None:
    close = sample_1h.close.to_numpy()[-3000:]
    r = np.diff(close) / close[:-1]
    ppy = 8766.0
    one = judge(r, r, ppy, EvaluationConfig(n_boot=200, n_trials=1))
    many = judge(r, r, ppy, EvaluationConfig(n_boot=200, n_trials=50))
    listed = judge(r, r, ppy, EvaluationConfig(n_boot=200), trial_sharpes=[0.5, 1.0, 2.5, -0.3, 1.7])
    assert many.deflated_sharpe < one.deflated_sharpe
    assert listed.n_trials == 5 and listed.deflated_sharpe < one.deflated_sharpe
