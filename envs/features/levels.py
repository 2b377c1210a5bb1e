"""Support/resistance levels from confirmed swing points, and Fibonacci retracements (numba).

Causality rules:

- A swing high at bar s (``high[s]`` > the ``k`` highs before it and >= the ``k`` highs after it)
  is CONFIRMED at bar ``s + k``, the first bar at which the ``k`` later bars exist. It is used by
  features from bar ``s + k`` on, never before. Swing lows mirror this with lows.
- Levels: each confirmed swing price joins the nearest existing level within
  ``cluster_atr * ATR_t`` (the level becomes the mean of its swing prices and its touch count
  grows) or starts a new level; at most ``max_levels`` levels are kept (the least recently
  touched one is dropped). Support = the highest level <= close, resistance = the lowest level >
  close.
- Fibonacci: retracement levels (23.6/38.2/50/61.8/78.6 %) of the latest confirmed swing high H
  and latest confirmed swing low L. Up-leg (L confirmed swing before H): levels H - r (H - L);
  down-leg: L + r (H - L).

Features (distances in ATR units, ATR from ``envs.features.indicators.atr``):

- ``sr_support_dist``: (support - close) / ATR, in [-max_dist_atr, 0] (-max_dist_atr when there is
  no level below close); ``sr_resistance_dist``: (resistance - close) / ATR in [0, max_dist_atr].
- ``sr_support_touches``, ``sr_resistance_touches``: swing count of those levels (0 when absent).
- ``fib_dist``: (close - nearest Fibonacci level) / ATR, clipped to +-max_dist_atr.
- ``fib_pos``: (close - min(H, L)) / |H - L|, clipped to [-2, 3] (0.5 when H == L).

Warm-up is data dependent: S/R features are NaN until ATR exists and a first swing is confirmed,
Fibonacci features until both a swing high and a swing low are confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numba
import numpy as np
import pandas as pd

from envs.features.indicators import atr as atr_indicator

logger = logging.getLogger(__name__)

FIB_RATIOS: tuple[float, ...] = (0.236, 0.382, 0.5, 0.618, 0.786)
FIB_POS_CLIP: tuple[float, float] = (-2.0, 3.0)


@numba.njit(cache=True)
def _is_swing(x: np.ndarray, s: int, k: int, sign: float) -> bool:  # pragma: no cover - numba
    # sign=+1: swing high (x[s] > left, >= right); sign=-1: swing low.
    p = sign * x[s]
    for j in range(s - k, s):
        if sign * x[j] >= p:
            return False
    for j in range(s + 1, s + k + 1):
        if sign * x[j] > p:
            return False
    return True


@numba.njit(cache=True)
def swing_confirmations(high: np.ndarray, low: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """Swing price confirmed AT each bar (NaN when none): swing highs and swing lows.

    Element t holds ``high[t - k]`` when bar t - k is a swing high (confirmed at t), else NaN.
    """
    n = high.shape[0]
    sh = np.full(n, np.nan)
    sl = np.full(n, np.nan)
    for t in range(2 * k, n):
        s = t - k
        if _is_swing(high, s, k, 1.0):
            sh[t] = high[s]
        if _is_swing(low, s, k, -1.0):
            sl[t] = low[s]
    return sh, sl


@numba.njit(cache=True)
def _add_level(levels: np.ndarray, counts: np.ndarray, touched: np.ndarray, n_lv: int, p: float, tol: float, t: int) -> int:  # pragma: no cover
    best = -1
    best_d = np.inf
    for j in range(n_lv):
        d = abs(levels[j] - p)
        if d <= tol and d < best_d:
            best, best_d = j, d
    if best >= 0:
        levels[best] = (levels[best] * counts[best] + p) / (counts[best] + 1.0)
        counts[best] += 1.0
        touched[best] = t
        return n_lv
    if n_lv < levels.shape[0]:
        j = n_lv
        n_lv += 1
    else:
        j = 0
        for i in range(1, n_lv):
            if touched[i] < touched[j]:
                j = i
    levels[j] = p
    counts[j] = 1.0
    touched[j] = t
    return n_lv


#: Slots of the levels kernel's scalar state: level count, last swing high/low price and bar.
N_LV, HI_PX, LO_PX, HI_AT, LO_AT = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def _levels_kernel(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    k: int,
    max_levels: int,
    cluster_atr: float,
    max_dist: float,
    ratios: np.ndarray,
    pos_lo: float,
    pos_hi: float,
    out: np.ndarray,
) -> np.ndarray:  # pragma: no cover - numba
    """Fill ``out`` (n x 6, NaN-initialised, float64 or float32: values are computed in float64) and return it.

    `levels_run` over every row from a fresh state (the batch form of the per-bar stream).
    """
    levels, counts, touched, scalars = new_level_state(max_levels)
    levels_run(high, low, close, atr, 0, 0, k, cluster_atr, max_dist, ratios, pos_lo, pos_hi,
               levels, counts, touched, scalars, out)
    return out


@numba.njit(cache=True)
def new_level_state(max_levels: int):  # pragma: no cover - numba
    """Fresh state of `levels_run`: levels, touch counts, last-touch bars, scalars (`N_LV`, ...)."""
    scalars = np.array([0.0, np.nan, np.nan, -1.0, -1.0])
    return np.zeros(max_levels), np.zeros(max_levels), np.zeros(max_levels, dtype=np.int64), scalars


@numba.njit(cache=True)
def levels_run(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    start: int,
    t0: int,
    k: int,
    cluster_atr: float,
    max_dist: float,
    ratios: np.ndarray,
    pos_lo: float,
    pos_hi: float,
    levels: np.ndarray,
    counts: np.ndarray,
    touched: np.ndarray,
    scalars: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - numba
    """Advance the level state over rows ``start ..`` of the arrays and write their rows of ``out``.

    Row i of the arrays is bar ``t0 + i`` of the whole history; rows before ``start`` (at least 2k
    of them, or all bars since the first) are there for the swing test only. The state (``levels``,
    ``counts``, ``touched``, ``scalars``) carries everything older, so running the rows in one call or
    one bar per call gives the same numbers. Swings are detected as they confirm (the rule of
    ``swing_confirmations``, inline: no full-length swing arrays).
    """
    n = close.shape[0]
    n_lv = int(scalars[N_LV])
    hi_px = scalars[HI_PX]
    lo_px = scalars[LO_PX]
    hi_at = int(scalars[HI_AT])
    lo_at = int(scalars[LO_AT])
    for i in range(start, n):
        t = t0 + i
        a = atr[i]
        tol = cluster_atr * a if a == a else 0.0
        if t >= 2 * k and _is_swing(high, i - k, k, 1.0):
            n_lv = _add_level(levels, counts, touched, n_lv, high[i - k], tol, t)
            hi_px = high[i - k]
            hi_at = t - k
        if t >= 2 * k and _is_swing(low, i - k, k, -1.0):
            n_lv = _add_level(levels, counts, touched, n_lv, low[i - k], tol, t)
            lo_px = low[i - k]
            lo_at = t - k
        if not (a == a and a > 0.0):
            continue
        c = close[i]
        if n_lv > 0:
            sup = -np.inf
            sup_n = 0.0
            res = np.inf
            res_n = 0.0
            for j in range(n_lv):
                lv = levels[j]
                if lv <= c:
                    if lv > sup:
                        sup, sup_n = lv, counts[j]
                elif lv < res:
                    res, res_n = lv, counts[j]
            out[i, 0] = max((sup - c) / a, -max_dist) if sup > -np.inf else -max_dist
            out[i, 1] = min((res - c) / a, max_dist) if res < np.inf else max_dist
            out[i, 2] = sup_n
            out[i, 3] = res_n
        if hi_at >= 0 and lo_at >= 0:
            top = max(hi_px, lo_px)
            bot = min(hi_px, lo_px)
            rng = top - bot
            best = np.inf
            for r in ratios:
                lv = top - r * rng if lo_at < hi_at else bot + r * rng
                d = c - lv
                if abs(d) < abs(best):
                    best = d
            out[i, 4] = min(max(best / a, -max_dist), max_dist)
            out[i, 5] = min(max((c - bot) / rng, pos_lo), pos_hi) if rng > 0.0 else 0.5
    scalars[N_LV] = n_lv
    scalars[HI_PX] = hi_px
    scalars[LO_PX] = lo_px
    scalars[HI_AT] = hi_at
    scalars[LO_AT] = lo_at


LEVEL_COLUMNS: tuple[str, ...] = (
    "sr_support_dist", "sr_resistance_dist", "sr_support_touches", "sr_resistance_touches", "fib_dist", "fib_pos",
)


def iter_level_features(
    df: pd.DataFrame | Mapping[str, np.ndarray],
    *,
    swing_k: int = 5,
    max_levels: int = 20,
    cluster_atr: float = 0.5,
    max_dist_atr: float = 10.0,
    atr_window: int = 14,
    atr_values: np.ndarray | None = None,
    support_resistance: bool = True,
    fibonacci: bool = True,
    dtype: str = "float64",
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, column)`` pairs of ``level_features``; columns are ``dtype`` (computed in float64).

    The kernel writes straight into one ``dtype`` matrix (a float32 one is half the size of the
    float64 result it replaces; the values are the float64 results rounded once, as ``astype`` does).
    Arguments as in ``level_features``.
    """
    if int(swing_k) < 1:
        raise ValueError(f"features.swing_k={swing_k} is invalid: must be >= 1 bar")
    if int(max_levels) < 2:
        raise ValueError(f"features.max_levels={max_levels} is invalid: must be >= 2")
    if not cluster_atr >= 0:
        raise ValueError(f"features.cluster_atr={cluster_atr} is invalid: must be >= 0 (ATR units)")
    if not max_dist_atr > 0:
        raise ValueError(f"features.max_dist_atr={max_dist_atr} is invalid: must be > 0 (ATR units)")
    h = np.ascontiguousarray(np.asarray(df["high"], dtype=np.float64))
    lo = np.ascontiguousarray(np.asarray(df["low"], dtype=np.float64))
    c = np.ascontiguousarray(np.asarray(df["close"], dtype=np.float64))
    a = atr_indicator(h, lo, c, atr_window) if atr_values is None else np.asarray(atr_values, dtype=np.float64)
    res = np.full((c.size, len(LEVEL_COLUMNS)), np.nan, dtype=dtype, order="F")
    _levels_kernel(
        h, lo, c, np.ascontiguousarray(a), int(swing_k), int(max_levels), float(cluster_atr),
        float(max_dist_atr), np.asarray(FIB_RATIOS), FIB_POS_CLIP[0], FIB_POS_CLIP[1], res,
    )
    del h, lo, c, a
    for j, name in enumerate(LEVEL_COLUMNS):
        if (support_resistance and j < 4) or (fibonacci and j >= 4):
            yield name, res[:, j]


def level_features(df: pd.DataFrame, **params: Any) -> pd.DataFrame:
    """Support/resistance and Fibonacci features (see the module docstring for definitions).

    Args:
        df: bars with ``high``, ``low``, ``close`` (positions are used).
        params: the keyword arguments of `iter_level_features`:
        swing_k: bars on each side of a swing point, >= 1; a swing is confirmed k bars later.
        max_levels: most levels kept at once, >= 2.
        cluster_atr: swing prices within ``cluster_atr * ATR`` of a level join it, >= 0.
        max_dist_atr: clip of distances in ATR units, > 0.
        atr_window: ATR window in bars when ``atr_values`` is None.
        atr_values: precomputed ATR (quote currency, NaN in warm-up).
        support_resistance: include the ``sr_*`` columns.
        fibonacci: include the ``fib_*`` columns.

    Returns:
        DataFrame (RangeIndex, float64).
    """
    columns = dict(iter_level_features(df, **params))
    return pd.DataFrame(columns, columns=[n for n in LEVEL_COLUMNS if n in columns], index=pd.RangeIndex(len(df)))
