"""Multi-timeframe features: compute on resampled bars, join onto base bars without look-ahead.

Visibility rule: a higher-timeframe (HTF) bar with open time T and interval D closes at T + D.
Its features become visible from the first base bar whose OPEN time is >= T + D, i.e. only after
the HTF bar has fully closed. (For 1m base bars and 1h HTF bars, the hour 00:00-01:00 is first
seen by the 01:00 bar; the 00:59 bar still sees the hour 23:00-00:00.) An HTF bucket that is
only partly covered (a gap, or the unfinished last hour) is used as it is, once its close time
has passed. Base bars before the first visible HTF bar get NaN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from envs.data.resample import parse_timeframe, resample

logger = logging.getLogger(__name__)


def visible_index(base_timestamp_ms: np.ndarray, htf_timestamp_ms: np.ndarray, timeframe_ms: int) -> np.ndarray:
    """For each base bar, the row of the latest HTF bar that has closed by the base bar's open.

    Args:
        base_timestamp_ms: base bar open times, int64 ms UTC, increasing.
        htf_timestamp_ms: HTF bar open times, int64 ms UTC, increasing.
        timeframe_ms: HTF bar interval, ms.

    Returns:
        int64 array of HTF row positions, -1 where no HTF bar is visible yet.
    """
    close_ms = np.asarray(htf_timestamp_ms, dtype=np.int64) + int(timeframe_ms)
    return np.searchsorted(close_ms, np.asarray(base_timestamp_ms, dtype=np.int64), side="right") - 1


def join_higher_timeframe(
    base_timestamp_ms: np.ndarray,
    htf_features: pd.DataFrame,
    htf_timestamp_ms: np.ndarray,
    timeframe_ms: int,
    dtype: str = "float64",
) -> pd.DataFrame:
    """Align HTF feature rows to base bars under the visibility rule of this module.

    Args:
        base_timestamp_ms: base bar open times (ms UTC).
        htf_features: one row per HTF bar (numeric columns).
        htf_timestamp_ms: HTF bar open times (ms UTC), same length as ``htf_features``.
        timeframe_ms: HTF interval in ms.
        dtype: output dtype (``"float64"`` or ``"float32"``).

    Returns:
        DataFrame with one row per base bar (RangeIndex), ``dtype``, NaN where nothing is visible.
    """
    n = len(base_timestamp_ms)
    out = np.empty((n, htf_features.shape[1]), dtype=dtype, order="F")
    for col, (_, values) in enumerate(
        iter_join_higher_timeframe(base_timestamp_ms, htf_features, htf_timestamp_ms, timeframe_ms, dtype)
    ):
        out[:, col] = values
    return pd.DataFrame(out, columns=list(htf_features.columns), copy=False)


def iter_join_higher_timeframe(
    base_timestamp_ms: np.ndarray,
    htf_features: pd.DataFrame,
    htf_timestamp_ms: np.ndarray,
    timeframe_ms: int,
    dtype: str = "float64",
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, column)`` pairs of ``join_higher_timeframe`` (same arguments), one column at a time."""
    yield from iter_join_rows(base_timestamp_ms, [str(c) for c in htf_features.columns],
                              htf_features.to_numpy(dtype=dtype), htf_timestamp_ms, timeframe_ms, "", dtype)


def iter_join_rows(
    base_timestamp_ms: np.ndarray,
    names: list[str],
    htf_values: np.ndarray,
    htf_timestamp_ms: np.ndarray,
    timeframe_ms: int,
    prefix: str = "",
    dtype: str = "float64",
) -> Iterator[tuple[str, np.ndarray]]:
    """``(prefix + name, column)`` of the HTF matrix ``htf_values`` (one row per HTF bar) joined to base bars.

    Same rule as `join_higher_timeframe`: base row t gets the row of the latest HTF bar closed by its open.
    """
    j = visible_index(base_timestamp_ms, htf_timestamp_ms, timeframe_ms)
    # one NaN row appended at the end of the HTF values: rows with nothing visible point at it
    vals = np.vstack([htf_values.astype(dtype, copy=False), np.full((1, len(names)), np.nan, dtype=dtype)])
    j = np.where(j >= 0, j, vals.shape[0] - 1)
    for col, name in enumerate(names):
        yield f"{prefix}{name}", vals[j, col]


def mtf_features(
    df: pd.DataFrame,
    timeframe: str | int,
    builder: Callable[[pd.DataFrame], pd.DataFrame],
    prefix: str | None = None,
    dtype: str = "float64",
) -> pd.DataFrame:
    """Resample ``df`` to ``timeframe``, run ``builder`` there and join the result causally.

    Args:
        df: base bars (``timestamp`` ms UTC open time, OHLCV), strictly increasing.
        timeframe: HTF interval (``"1h"``, ``"4h"``, ms, ...), larger than the base interval.
        builder: causal feature function of an OHLCV frame (RangeIndex) returning one row per bar.
        prefix: column prefix; default ``"mtf_<timeframe>_"``.
        dtype: output dtype (``"float64"`` or ``"float32"``).

    Returns:
        Features aligned to ``df`` rows (RangeIndex), columns prefixed.
    """
    feats, htf_ts, tf, prefix = _htf_features(df, timeframe, builder, prefix)
    joined = join_higher_timeframe(df["timestamp"].to_numpy(dtype=np.int64), feats, htf_ts, tf, dtype)
    joined.columns = [f"{prefix}{c}" for c in joined.columns]
    return joined


def _htf_features(
    df: pd.DataFrame, timeframe: str | int, builder: Callable[[pd.DataFrame], pd.DataFrame], prefix: str | None
) -> tuple[pd.DataFrame, np.ndarray, int, str]:
    """Features of the resampled bars, their open times, the HTF interval (ms) and the column prefix."""
    tf = parse_timeframe(timeframe)
    htf = resample(df, tf)
    prefix = f"mtf_{timeframe}_" if prefix is None else prefix
    return builder(htf), htf["timestamp"].to_numpy(), tf, prefix


def iter_mtf_features(
    df: pd.DataFrame,
    timeframe: str | int,
    builder: Callable[[pd.DataFrame], pd.DataFrame],
    prefix: str | None = None,
    dtype: str = "float64",
) -> Iterator[tuple[str, np.ndarray]]:
    """``(prefixed name, column)`` pairs of ``mtf_features`` (same arguments), one column at a time."""
    feats, htf_ts, tf, prefix = _htf_features(df, timeframe, builder, prefix)
    for name, values in iter_join_higher_timeframe(df["timestamp"].to_numpy(dtype=np.int64), feats, htf_ts, tf, dtype):
        yield f"{prefix}{name}", values
