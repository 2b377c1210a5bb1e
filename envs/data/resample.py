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
import re

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_UNIT_MS: dict[str, int] = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_TF_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_timeframe(timeframe: str | int) -> int:
    """Convert a timeframe to milliseconds.

    Args:
        timeframe: ``"<n><unit>"`` with unit s/m/h/d (``"1m"``, ``"15m"``, ``"4h"``, ``"1d"``), a
            string of digits, or an int, both meaning milliseconds; must be > 0.

    Returns:
        Bar interval in ms, > 0.

    Raises:
        ValueError: unparseable or non-positive timeframe.
    """
    if isinstance(timeframe, (int, np.integer)) and not isinstance(timeframe, bool):
        ms = int(timeframe)
    elif isinstance(timeframe, str) and timeframe.strip().isdigit():
        ms = int(timeframe)
    elif isinstance(timeframe, str) and (m := _TF_RE.match(timeframe)):
        ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    else:
        raise ValueError(
            f"timeframe={timeframe!r} is invalid: use '<n><unit>' with unit s/m/h/d (e.g. '5m', '1h', '1d') "
            "or an integer number of milliseconds"
        )
    if ms <= 0:
        raise ValueError(f"timeframe={timeframe!r} is invalid: must be > 0 ms")
    return ms


def bucket_starts(timestamp_ms: np.ndarray, timeframe_ms: int) -> np.ndarray:
    """Positions where a new bucket starts (first row of each bucket) for sorted timestamps."""
    bucket = timestamp_ms // timeframe_ms
    starts = np.empty(0, dtype=np.int64) if bucket.size == 0 else np.flatnonzero(np.diff(bucket, prepend=bucket[0] - 1))
    return starts


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
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    if ts.size > 1 and not (ts[1:] > ts[:-1]).all():
        first = int(np.flatnonzero(ts[1:] <= ts[:-1])[0]) + 1
        raise ValueError(
            f"resample needs strictly increasing timestamps; row {first} breaks it "
            "(run envs.data.cleaning.clean first)"
        )
    starts = bucket_starts(ts, tf)
    if ts.size == 0:
        out = {c: np.empty(0) for c in ("open", "high", "low", "close", "volume")}
        return pd.DataFrame({"timestamp": np.empty(0, dtype=np.int64), **out, "n_bars": np.empty(0, dtype=np.int64)})
    ends = np.append(starts[1:], ts.size) - 1
    out = pd.DataFrame(
        {
            "timestamp": (ts[starts] // tf) * tf,
            "open": df["open"].to_numpy(dtype=np.float64)[starts],
            "high": np.maximum.reduceat(df["high"].to_numpy(dtype=np.float64), starts),
            "low": np.minimum.reduceat(df["low"].to_numpy(dtype=np.float64), starts),
            "close": df["close"].to_numpy(dtype=np.float64)[ends],
            "volume": np.add.reduceat(df["volume"].to_numpy(dtype=np.float64), starts),
            "n_bars": (ends - starts + 1).astype(np.int64),
        }
    )
    if "filled" in df.columns:
        out["n_filled"] = np.add.reduceat(df["filled"].to_numpy(dtype=np.int64), starts)
    return out
