"""Bad data and bad config give a ValueError that names the rule/field, the row and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import EnvConfig, TradingEnv


def _bars(n: int = 50) -> pd.DataFrame:
    close = 100 + np.arange(n, dtype=float)
    return pd.DataFrame({
        "timestamp": np.arange(n, dtype=np.int64) * 3_600_000,
        "open": close - 0.5, "high": close + 1, "low": close - 1, "close": close, "volume": np.full(n, 10.0),
    })


def _broken(col: str, rows: list[int], value: float) -> pd.DataFrame:
    df = _bars()
    df.loc[rows, col] = value
    return df


@pytest.mark.parametrize(
    ("df", "rule", "row", "count"),
    [
        (_broken("close", [7, 9], np.nan), "no NaN/inf in OHLCV", 7, 2),
        (_broken("open", [11], np.inf), "no NaN/inf in OHLCV", 11, 1),
        (_broken("low", [3, 4, 5], -1.0), "prices > 0", 3, 3),
        (_broken("volume", [20], -5.0), "volume >= 0", 20, 1),
        (_broken("high", [12], 50.0), "high >= max(open, close)", 12, 1),
        (_broken("low", [30], 1000.0), "low <= min(open, close)", 30, 1),
        (_broken("timestamp", [10], 0), "timestamps strictly increasing", 10, 1),
    ],
)
def test_each_data_rule_names_rule_row_timestamp_and_count(df: pd.DataFrame, rule: str, row: int, count: int) -> None:
    with pytest.raises(ValueError) as err:
        TradingEnv(df, EnvConfig(window_size=4))
    msg = str(err.value)
    assert f"'{rule}'" in msg
    assert f"first at row {row}" in msg
    assert f"timestamp {int(df.timestamp.iloc[row])}" in msg
    assert f"{count} row(s)" in msg


def test_missing_columns_and_bad_timestamp_dtype() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['volume'\]"):
        TradingEnv(_bars().drop(columns="volume"), EnvConfig(window_size=4))
    df = _bars()
    df["timestamp"] = pd.to_datetime(df.timestamp, unit="ms", utc=True)
    with pytest.raises(ValueError, match="int64 milliseconds"):
        TradingEnv(df, EnvConfig(window_size=4))


def test_missing_file_names_the_path_and_the_sample() -> None:
    with pytest.raises(ValueError, match="not found.*data/sample"):
        TradingEnv("no/such/file.parquet", EnvConfig())


def test_non_numeric_extra_column_and_bad_spread() -> None:
    df = _bars()
    df["note"] = "x"
    with pytest.raises(ValueError, match="extra column 'note'"):
        TradingEnv(df, EnvConfig(window_size=4))
    df = _bars()
    df["spread"] = 0.1
    df.loc[5, "spread"] = -1.0
    with pytest.raises(ValueError, match="column 'spread'.*first at row 5"):
        TradingEnv(df, EnvConfig(window_size=4))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"taker_fee": -0.001}, "taker_fee"),
        ({"slippage_bps": -1.0}, "slippage_bps"),
        ({"window_size": 0}, "window_size"),
        ({"sizing": "risk_per_trade"}, "stop_loss"),
        ({"sizing": "martingale"}, "sizing"),
        ({"slippage_model": "magic"}, "slippage_model"),
        ({"reward": "pnl"}, "reward"),
        ({"max_leverage": 0.0}, "max_leverage"),
        ({"max_drawdown": 1.5}, "max_drawdown"),
        ({"stop_loss": 1.2}, "stop_loss"),
        ({"max_participation": 0.0}, "max_participation"),
        ({"exposure_levels": (-2.0, 0.0, 2.0)}, "exposure_levels"),
        ({"action_mode": "hybrid"}, "action_mode"),
        ({"maintenance_margin_rate": 1.0}, "maintenance_margin_rate"),
        ({"initial_cash": float("nan")}, "initial_cash"),
    ],
)
def test_bad_config_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"env\.{field}="):
        EnvConfig(**kwargs)


def test_window_longer_than_data_and_episode_too_long() -> None:
    with pytest.raises(ValueError, match=r"env\.window_size=64 .*50 bars"):
        TradingEnv(_bars(50), EnvConfig(window_size=64))
    with pytest.raises(ValueError, match=r"env\.episode_length=48 .*<= 46"):
        TradingEnv(_bars(50), EnvConfig(window_size=4, episode_length=48))


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown env key\(s\) \['taker_fees'\]"):
        EnvConfig.from_dict({"taker_fees": 0.001})
