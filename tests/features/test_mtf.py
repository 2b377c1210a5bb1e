"""MTF join: an hourly bar becomes visible only from the first base bar opening at/after its close."""

from __future__ import annotations

import numpy as np
import pandas as pd

from envs.data.resample import resample
from envs.features.mtf import join_higher_timeframe, mtf_features, visible_index

M, H = 60_000, 3_600_000


def hourly_close(htf: pd.DataFrame) -> pd.DataFrame:
    """Identity 'feature': the HTF bar's own open time and close."""
    return pd.DataFrame({"open_time": htf["timestamp"].astype(float), "close": htf["close"]})


def test_hour_visible_only_after_it_closed(sample_1m: pd.DataFrame) -> None:
    f = mtf_features(sample_1m, "1h", hourly_close)
    ts = sample_1m["timestamp"].to_numpy()
    htf = resample(sample_1m, "1h")
    # the first hour (00:00-01:00) is invisible to every bar before 01:00 ...
    assert f["mtf_1h_open_time"].iloc[:60].isna().all()
    # ... and visible from the 01:00 bar on
    assert f["mtf_1h_open_time"].iat[60] == ts[0]
    assert f["mtf_1h_close"].iat[60] == sample_1m["close"].iat[59]  # the hour's close = its last minute's close
    # the 00:59 bar of any hour still sees the previous hour
    t = 60 * 5 + 59
    assert f["mtf_1h_open_time"].iat[t] == ts[0] + 4 * H
    # everywhere: the visible hour closed at or before the base bar opened, and it is the latest such hour
    seen = f["mtf_1h_open_time"].to_numpy()
    ok = ~np.isnan(seen)
    assert (seen[ok] + H <= ts[ok]).all()
    assert (seen[ok] + 2 * H > ts[ok]).all()
    # the unfinished/last hour is never visible inside the data
    assert htf["timestamp"].iat[-1] not in set(seen[ok].astype(np.int64))


def test_visible_index_with_gaps_and_partial_buckets() -> None:
    base = np.array([0, 1, 59, 60, 61, 179, 180, 300], dtype=np.int64) * M  # minutes, with a gap 61..179
    htf = np.array([0, 60, 120, 180], dtype=np.int64) * M  # hour 120 partial (only minute 179)
    j = visible_index(base, htf, H)
    assert j.tolist() == [-1, -1, -1, 0, 0, 1, 2, 3]


def test_join_returns_nan_before_first_visible() -> None:
    feats = pd.DataFrame({"x": [1.0, 2.0]})
    out = join_higher_timeframe(np.array([0, H - M, H, 2 * H]), feats, np.array([0, H]), H)
    assert np.isnan(out["x"].iat[0]) and np.isnan(out["x"].iat[1])
    assert out["x"].tolist()[2:] == [1.0, 2.0]


def test_four_hour_prefix(sample_1m: pd.DataFrame) -> None:
    f = mtf_features(sample_1m, "4h", hourly_close, prefix="h4_")
    ts = sample_1m["timestamp"].to_numpy()
    first = int(np.flatnonzero(f["h4_close"].notna().to_numpy())[0])
    assert ts[first] == ts[0] + 4 * H  # sample starts at 00:00 UTC, a 4h boundary
