"""Resampling of OHLCV bars to a higher timeframe on UTC epoch boundaries (vectorised numpy).

Buckets are ``timestamp // timeframe_ms``: hours start at :00 UTC, days at 00:00 UTC, 4h at
00/04/08/... UTC. Each output bar takes open = first open, high = max high, low = min low,
close = last close, volume = sum of volume; its ``timestamp`` is the bucket's OPEN time (same
convention as the input). A bucket only partly covered by input bars (gaps, first/last bucket of
the data) is still emitted; its ``n_bars`` column tells how many input bars it aggregates (a
complete bucket has ``n_bars == timeframe_ms // input_interval_ms``). Empty buckets are not
emitted. When the input has a ``filled`` column (see ``envs.data.cleaning``), the output has
``n_filled``: the number of inserted (forward-filled) input bars in the bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from envs.market.times import UNIT_MS
from envs.market.times import parse_timeframe as parse_timeframe  # re-exported: the one parser

logger = logging.getLogger(__name__)

def bucket_starts(timestamp_ms: np.ndarray, timeframe_ms: int) -> np.ndarray:
    """Positions where a new bucket starts (first row of each bucket) for sorted timestamps."""
    bucket = timestamp_ms // timeframe_ms
    starts = np.empty(0, dtype=np.int64) if bucket.size == 0 else np.flatnonzero(np.diff(bucket, prepend=bucket[0] - 1))
    return starts


def resample_arrays(timestamp_ms: np.ndarray, bars: Mapping[str, np.ndarray], timeframe_ms: int) -> dict[str, np.ndarray]:
    """`resample` on arrays (no checks): ``timestamp``, OHLCV (float64) and ``n_bars`` of each bucket.

    Args:
        timestamp_ms: strictly increasing int64 open times.
        bars: float64 ``open``, ``high``, ``low``, ``close``, ``volume`` arrays of the same length.
        timeframe_ms: bucket length, ms.
    """
    ts, tf = timestamp_ms, int(timeframe_ms)
    if ts.size == 0:
        empty = {c: np.empty(0) for c in ("open", "high", "low", "close", "volume")}
        return {"timestamp": np.empty(0, dtype=np.int64), **empty, "n_bars": np.empty(0, dtype=np.int64)}
    starts = bucket_starts(ts, tf)
    ends = np.append(starts[1:], ts.size) - 1
    return {
        "timestamp": (ts[starts] // tf) * tf,
        "open": bars["open"][starts],
        "high": np.maximum.reduceat(bars["high"], starts),
        "low": np.minimum.reduceat(bars["low"], starts),
        "close": bars["close"][ends],
        "volume": np.add.reduceat(bars["volume"], starts),
        "n_bars": (ends - starts + 1).astype(np.int64),
    }


def resample(df: pd.DataFrame, timeframe: str | int) -> pd.DataFrame:
    """Aggregate bars to ``timeframe`` on UTC epoch boundaries.

    Args:
        df: bars with ``timestamp`` (int64 ms UTC, open time, strictly increasing), ``open``,
            ``high``, ``low``, ``close``, ``volume``; optional ``filled`` (0/1). Other columns are
            ignored.
        timeframe: target interval (``"5m"``, ``"15m"``, ``"1h"``, ``"4h"``, ``"1d"`` or ms).

    Returns:
        DataFrame with ``timestamp`` (bucket open time, int64 ms), ``open``, ``high``, ``low``,
        ``close``, ``volume`` (float64), ``n_bars`` (int64, input bars in the bucket) and, if
        the input has ``filled``, ``n_filled`` (int64); fresh RangeIndex.

    Raises:
        ValueError: bad timeframe or timestamps not strictly increasing.
    """
    tf = parse_timeframe(timeframe)
    if tf % UNIT_MS["w"] == 0:
        raise ValueError(f"timeframe={timeframe!r}: weekly buckets on epoch boundaries would start on Thursdays "
                         "(1970-01-01), unlike exchanges' Monday weeks; resample to days ('1d') instead")
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    if ts.size > 1 and not (ts[1:] > ts[:-1]).all():
        first = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(
            f"resample needs strictly increasing timestamps; row {first} breaks it "
            "(run envs.data.cleaning.clean first)"
        )
    cols = {c: df[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")}
    out = pd.DataFrame(resample_arrays(ts, cols, tf))
    if "filled" in df.columns and ts.size:
        starts = bucket_starts(ts, tf)
        out["n_filled"] = np.add.reduceat(df["filled"].to_numpy(dtype=np.int64), starts)
    return out
