"""resample(): matches a pandas reference on the real 1m sample; partial buckets; timeframes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs.data.cleaning import CleaningConfig, clean
from envs.data.resample import parse_timeframe, resample

M = 60_000


def pandas_reference(df: pd.DataFrame, rule: str) -> pd.DataFrame:
    idx = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
    g = df.set_index(idx)[["open", "high", "low", "close", "volume"]].resample(rule, label="left", closed="left")
    ref = g.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    ref["n_bars"] = g["close"].count()
    ref = ref[ref["n_bars"] > 0]
    ref.insert(0, "timestamp", ref.index.as_unit("ms").asi8)
    return ref.reset_index(drop=True)


@pytest.mark.parametrize(("tf", "rule"), [("5m", "5min"), ("15m", "15min"), ("1h", "1h"), ("4h", "4h"), ("1d", "1D")])
def test_matches_pandas_on_real_sample(sample_1m: pd.DataFrame, tf: str, rule: str) -> None:
    out = resample(sample_1m, tf)
    ref = pandas_reference(sample_1m, rule)
    pd.testing.assert_frame_equal(out, ref, check_dtype=False)
    assert out["timestamp"].dtype == np.int64 and (out["timestamp"] % parse_timeframe(tf) == 0).all()


def test_partial_buckets_are_emitted_and_counted(sample_1m: pd.DataFrame) -> None:
    df = sample_1m.iloc[37:3000].drop(index=range(100, 130)).reset_index(drop=True)  # starts mid-hour, has a gap
    out = resample(df, "1h")
    pd.testing.assert_frame_equal(out, pandas_reference(df, "1h"), check_dtype=False)
    assert out["n_bars"].iloc[0] == 60 - 37
    assert (out["n_bars"] < 60).sum() == 3  # first, the gap's hour, last
    assert out["n_bars"].sum() == len(df)


def test_filled_bars_are_counted(sample_1h: pd.DataFrame) -> None:
    cleaned, _ = clean(sample_1h, CleaningConfig(gaps="forward_fill"))
    out = resample(cleaned, "1d")
    day = out[out["n_filled"] > 0]
    assert len(day) == 1 and int(day["n_bars"].iat[0]) == 24
    assert pd.Timestamp(int(day["timestamp"].iat[0]), unit="ms", tz="UTC").isoformat() == "2023-03-24T00:00:00+00:00"


def test_ms_timeframe_equals_string(sample_1m: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(resample(sample_1m, 3_600_000), resample(sample_1m, "1h"))


@pytest.mark.parametrize(("tf", "ms"), [("1m", M), ("15m", 15 * M), ("4h", 240 * M), ("1d", 1440 * M), ("30s", 30_000), ("60000", M), (M, M),
                                        ("1w", 7 * 1440 * M)])
def test_parse_timeframe(tf: str | int, ms: int) -> None:
    assert parse_timeframe(tf) == ms


@pytest.mark.parametrize("tf", ["1mo", "h1", "", "0m", 0, -5])
def test_parse_timeframe_rejects(tf: str | int) -> None:
    with pytest.raises(ValueError, match="timeframe="):
        parse_timeframe(tf)


def test_rejects_unsorted(sample_1m: pd.DataFrame) -> None:
    df = sample_1m.iloc[[0, 2, 1, 3]].reset_index(drop=True)
    with pytest.raises(ValueError, match="strictly increasing timestamps; row 2"):
        resample(df, "5m")


def test_empty() -> None:
    empty = pd.DataFrame({c: np.empty(0) for c in ("open", "high", "low", "close", "volume")}).assign(
        timestamp=np.empty(0, dtype=np.int64)
    )
    assert len(resample(empty, "1h")) == 0


def test_weekly_resampling_is_refused(sample_1h: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="Thursdays"):
        resample(sample_1h, "1w")
