"""Input checks shared by `envs.metrics` and `envs.trade_stats`: 1-D finite series, equity curves, bars per year."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def as_1d(x: npt.ArrayLike, name: str, min_len: int = 0) -> FloatArray:
    """Convert ``x`` to a finite 1-D float64 array of at least ``min_len`` entries, or raise ValueError."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {a.size}")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{name} must be finite; {name}[{bad}]={a[bad]}")
    return a


def check_periods(periods_per_year: float) -> float:
    """``periods_per_year`` as a float, or ValueError unless finite and > 0."""
    ppy = float(periods_per_year)
    if not (math.isfinite(ppy) and ppy > 0.0):
        raise ValueError(
            f"periods_per_year={periods_per_year} is invalid: must be a finite number > 0 "
            "(bars per year; get it from envs.metrics.bars_per_year(timestamps_ms))"
        )
    return ppy


def equity_array(equity: npt.ArrayLike, min_len: int = 1) -> FloatArray:
    """``equity`` checked: finite, 1-D, > 0 at every point before the last (ruin may end it at <= 0)."""
    e = as_1d(equity, "equity", min_len)
    if e.size > 1 and np.any(e[:-1] <= 0.0):
        bad = int(np.flatnonzero(e[:-1] <= 0.0)[0])
        raise ValueError(
            f"equity must be > 0 before the last bar (returns are undefined after ruin); "
            f"equity[{bad}]={e[bad]}"
        )
    if e.size and e[0] <= 0.0:
        raise ValueError(f"equity must start > 0, got equity[0]={e[0]}")
    return e
