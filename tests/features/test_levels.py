"""Swing confirmation delay, level clustering, S/R distances and Fibonacci levels on crafted paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs.features.levels import level_features, swing_confirmations


def path(points: list[tuple[int, float]], half_range: float = 0.5) -> pd.DataFrame:
    """Bars whose close follows straight lines through ``points``; high/low = close +- half_range."""
    n = points[-1][0] + 1
    close = np.interp(np.arange(n), [p[0] for p in points], [p[1] for p in points])
    return pd.DataFrame(
        {
            "timestamp": np.arange(n, dtype=np.int64) * 60_000,
            "open": close,
            "high": close + half_range,
            "low": close - half_range,
            "close": close,
            "volume": np.ones(n),
        }
    )


def unit_atr(df: pd.DataFrame) -> np.ndarray:
    return np.ones(len(df))


def test_swing_is_confirmed_exactly_k_bars_later() -> None:
    df = path([(0, 100.0), (10, 120.0), (25, 90.0), (40, 130.0)])
    for k in (1, 3, 5):
        sh, sl = swing_confirmations(df["high"].to_numpy(), df["low"].to_numpy(), k)
        assert np.flatnonzero(~np.isnan(sh)).tolist() == [10 + k]
        assert sh[10 + k] == 120.5
        assert np.flatnonzero(~np.isnan(sl)).tolist() == [25 + k]
        assert sl[25 + k] == 89.5


def test_level_invisible_before_confirmation() -> None:
    df = path([(0, 100.0), (10, 120.0), (30, 100.0)])
    k = 4
    f = level_features(df, swing_k=k, atr_values=unit_atr(df), fibonacci=False)
    assert f.iloc[: 10 + k].isna().all().all()  # no level exists before bar s + k
    row = f.iloc[10 + k]
    assert row["sr_resistance_dist"] == pytest.approx(120.5 - df["close"].iat[10 + k])
    assert row["sr_support_dist"] == -10.0  # nothing below: clipped to -max_dist_atr
    assert (row["sr_resistance_touches"], row["sr_support_touches"]) == (1.0, 0.0)


def test_nearby_swings_cluster_into_one_level() -> None:
    df = path([(0, 100.0), (10, 120.0), (20, 110.0), (30, 120.2), (40, 100.0)])
    f = level_features(df, swing_k=3, atr_values=unit_atr(df), cluster_atr=0.5, fibonacci=False)
    # swing highs 120.5 (bar 10) and 120.7 (bar 30) merge into 120.6; the swing low 109.5 stays apart
    t = 33  # the second high is confirmed here; close 114.14 lies between the levels
    assert f["sr_resistance_touches"].iat[t] == 2.0
    assert f["sr_resistance_dist"].iat[t] == pytest.approx(120.6 - df["close"].iat[t])
    assert f["sr_support_dist"].iat[t] == pytest.approx(109.5 - df["close"].iat[t])
    apart = level_features(df, swing_k=3, atr_values=unit_atr(df), cluster_atr=0.1, fibonacci=False)
    assert apart["sr_resistance_touches"].iat[t] == 1.0
    assert apart["sr_resistance_dist"].iat[t] == pytest.approx(120.5 - df["close"].iat[t])


def test_fibonacci_up_leg() -> None:
    # low 100 (bar 10) then high 200 (bar 30): retracement levels 200 - r * 100
    df = path([(0, 150.5), (10, 100.5), (30, 199.5), (50, 150.0), (60, 138.2)])
    df.loc[:, "high"] = df["close"] + 0.5
    df.loc[:, "low"] = df["close"] - 0.5
    f = level_features(df, swing_k=3, atr_values=unit_atr(df), support_resistance=False)
    assert f.iloc[:33].isna().all().all()  # the high is confirmed at bar 33
    assert f["fib_dist"].iat[50] == pytest.approx(0.0, abs=1e-9)  # 150 = 50 % level
    assert f["fib_pos"].iat[50] == pytest.approx(0.5)
    c60 = df["close"].iat[60]
    assert f["fib_dist"].iat[60] == pytest.approx(c60 - 138.2, abs=1e-9)  # nearest: 61.8 % -> 138.2
    assert f["fib_pos"].iat[60] == pytest.approx((c60 - 100.0) / 100.0)


def test_fibonacci_down_leg() -> None:
    # high 200 (bar 10) then low 100 (bar 30): levels 100 + r * 100
    df = path([(0, 150.0), (10, 199.5), (30, 100.5), (45, 123.6), (50, 130.0)])
    f = level_features(df, swing_k=3, atr_values=unit_atr(df), support_resistance=False)
    assert f["fib_dist"].iat[45] == pytest.approx(0.0, abs=1e-9)
    assert f["fib_pos"].iat[45] == pytest.approx(0.236)


def test_real_sample_ranges_and_speed_path(sample_1m: pd.DataFrame) -> None:
    f = level_features(sample_1m)
    valid = f.iloc[200:]
    assert np.isfinite(valid.to_numpy()).all()
    assert valid["sr_support_dist"].between(-10, 0).all() and valid["sr_resistance_dist"].between(0, 10).all()
    assert valid["fib_pos"].between(-2, 3).all() and valid["fib_dist"].abs().max() <= 10


def test_bad_parameters_name_the_key(sample_1m: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="features.swing_k=0"):
        level_features(sample_1m, swing_k=0)
    with pytest.raises(ValueError, match="features.max_dist_atr=0"):
        level_features(sample_1m, max_dist_atr=0)
