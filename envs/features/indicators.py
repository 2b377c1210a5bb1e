"""Technical indicators (thin wrapper over ``ta`` 0.11 classes) and own numpy return/time features.

Every function is strictly causal: the value at row t uses rows <= t only (rolling windows end at
t, EWMs run forward, no centring, no whole-series normalisation, no backfill). Inputs are reset
to a RangeIndex before ``ta`` sees them (``ta`` is slow with a DatetimeIndex, see STACK.md §5).
ATR and ADX are numba ports of ``ta``'s algorithms (``ta`` runs them as per-row Python loops,
~10 s per 1M rows together); tests check them against ``ta`` to 1e-9. Warm-up rows are NaN
(``ta`` returns 0 there for ATR/ADX). Every
output is scale-free (fractions of price, log returns, 0..1 oscillators), so one model can see
different assets and price eras.

Warm-up (rows that are NaN at the start), with the defaults in brackets:

- ``logret_{w}``: w; ``logret_1_lag{l}``: 1 + l; ``vol_{w}``: w.
- ``rsi``: window - 1 [13]; ``macd_*``: slow + signal - 2 [33], ``macd_hist_slope`` one more [34].
- ``bb_width``: window - 1 [19]; ``bb_squeeze``: window + squeeze_window - 2 [138].
- ``atr_frac``: window - 1 [13]; ``adx``: 2 * window - 1 [27].
- ``obv_roc``: window [60]; ``vwap_dist``: window - 1 [59]; time encodings: none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numba
import numpy as np
import pandas as pd
import ta

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
WEEK_DAYS = 7


def _series(values: np.ndarray) -> pd.Series:
    # copy=False: pandas 3 copies ndarray inputs by default (8 MB per 1M bars); Copy-on-Write still
    # protects ``values`` from anything ``ta`` does to the Series
    return pd.Series(np.asarray(values, dtype=np.float64), copy=False)


def _check_window(name: str, window: int, minimum: int = 1) -> None:
    if int(window) < minimum:
        raise ValueError(f"features.{name}={window} is invalid: must be >= {minimum} bars")


def iter_log_return_features(
    close: np.ndarray,
    windows: tuple[int, ...] = (1, 5, 15, 60),
    lags: tuple[int, ...] = (1, 2),
    vol_windows: tuple[int, ...] = (30, 120),
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, float64 column)`` pairs of ``log_return_features``, one at a time (low peak memory)."""
    for w in windows:
        _check_window("return_windows", w)
    for lag in lags:
        _check_window("return_lags", lag)
    for w in vol_windows:
        _check_window("vol_windows", w, 2)
    c = np.asarray(close, dtype=np.float64)
    lc = np.log(c)
    n = c.size
    r1 = np.full(n, np.nan)
    r1[1:] = lc[1:] - lc[:-1]
    for w in windows:
        r = np.full(n, np.nan)
        r[w:] = lc[w:] - lc[:-w]
        yield f"logret_{w}", r
        del r
    del lc
    for lag in lags:
        r = np.full(n, np.nan)
        r[lag:] = r1[:-lag] if lag < n else r[lag:]
        yield f"logret_1_lag{lag}", r
        del r
    s1 = _series(r1)
    del r1
    for w in vol_windows:
        yield f"vol_{w}", s1.rolling(w, min_periods=w).std(ddof=1).to_numpy()


def log_return_features(
    close: np.ndarray,
    windows: tuple[int, ...] = (1, 5, 15, 60),
    lags: tuple[int, ...] = (1, 2),
    vol_windows: tuple[int, ...] = (30, 120),
    dtype: str = "float64",
) -> pd.DataFrame:
    """Rolling and lagged log returns and rolling volatility of close prices.

    Args:
        close: close prices (quote currency), > 0.
        windows: w >= 1 for ``logret_{w} = ln(close_t / close_{t-w})``.
        lags: l >= 1 for ``logret_1_lag{l}`` = the 1-bar log return of bar t - l.
        vol_windows: w >= 2 for ``vol_{w}`` = sample std (ddof=1) of the last w 1-bar log
            returns (per-bar volatility, not annualised).
        dtype: output dtype (``"float64"`` or ``"float32"``; computed in float64 either way).

    Returns:
        DataFrame (RangeIndex, ``dtype``) with one column per window/lag.
    """
    return _frame(iter_log_return_features(close, windows, lags, vol_windows), dtype)


def _frame(columns: Iterable[tuple[str, np.ndarray]], dtype: str) -> pd.DataFrame:
    """DataFrame of ``(name, values)`` pairs cast to ``dtype``."""
    return pd.DataFrame({k: np.asarray(x).astype(dtype, copy=False) for k, x in columns})


def iter_time_features(timestamp_ms: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, float64 column)`` pairs of ``time_features``, one at a time."""
    ts = np.asarray(timestamp_ms, dtype=np.int64)
    tod = 2.0 * np.pi * (ts % DAY_MS) / DAY_MS
    yield "tod_sin", np.sin(tod)
    yield "tod_cos", np.cos(tod)
    del tod
    dow = 2.0 * np.pi * (((ts // DAY_MS) + 3) % WEEK_DAYS) / WEEK_DAYS  # 1970-01-01 was a Thursday
    yield "dow_sin", np.sin(dow)
    yield "dow_cos", np.cos(dow)


def time_features(timestamp_ms: np.ndarray, dtype: str = "float64") -> pd.DataFrame:
    """Time-of-day and day-of-week of the bar OPEN time as sin/cos pairs (UTC).

    Args:
        timestamp_ms: bar open times, int64 ms UTC.
        dtype: output dtype (``"float64"`` or ``"float32"``).

    Returns:
        DataFrame with ``tod_sin``, ``tod_cos`` (period 1 day) and ``dow_sin``, ``dow_cos``
        (period 7 days, Monday = 0), each in [-1, 1].
    """
    return _frame(iter_time_features(timestamp_ms), dtype)


@numba.njit(cache=True)
def _atr_kernel(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    n = close.shape[0]
    tr = np.empty(n)
    tr[0] = high[0] - low[0]
    for i in range(1, n):
        tr[i] = max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
    out = np.full(n, np.nan)
    out[window - 1] = tr[:window].mean()
    for i in range(window, n):
        out[i] = (out[i - 1] * (window - 1) + tr[i]) / float(window)
    return out


@numba.njit(cache=True)
def _wilder_sum(x: np.ndarray, window: int, m: int) -> np.ndarray:  # pragma: no cover
    # ta's running sum: s[0] = sum(x[1:window+1]); s[i] = s[i-1] - s[i-1]/window + x[window+i]
    s = np.zeros(m)
    s[0] = x[1 : window + 1].sum()
    for i in range(1, m - 1):
        s[i] = s[i - 1] - (s[i - 1] / float(window)) + x[window + i]
    return s


@numba.njit(cache=True)
def _adx_kernel(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    n = close.shape[0]
    tr = np.zeros(n)
    pos = np.zeros(n)
    neg = np.zeros(n)
    for i in range(1, n):
        tr[i] = max(high[i], close[i - 1]) - min(low[i], close[i - 1])
        up = high[i] - high[i - 1]
        down = low[i - 1] - low[i]
        pos[i] = abs(up) if (up > down and up > 0.0) else 0.0
        neg[i] = abs(down) if (down > up and down > 0.0) else 0.0
    m = n - (window - 1)
    trs = _wilder_sum(tr, window, m)
    dip = _wilder_sum(pos, window, m)
    din = _wilder_sum(neg, window, m)
    di = np.zeros(m)
    for i in range(m):
        p = 100.0 * (dip[i] / trs[i]) if trs[i] != 0.0 else 0.0
        q = 100.0 * (din[i] / trs[i]) if trs[i] != 0.0 else 0.0
        di[i] = 100.0 * abs((p - q) / (p + q)) if p + q != 0.0 else 0.0
    out = np.full(n, np.nan)
    a = di[:window].mean()
    out[window + window - 1] = a
    for i in range(window + 1, m):
        a = (a * (window - 1) + di[i - 1]) / float(window)
        out[i + window - 1] = a
    return out


def _arrays(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(x, dtype=np.float64) for x in xs)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """Wilder's Average True Range, quote currency (same algorithm as ``ta.volatility.AverageTrueRange``).

    A numba port of ta's per-row Python loop (equal to it to ~1e-12; ta takes ~3 s per 1M rows).

    Returns:
        float64 array; NaN for the first ``window - 1`` rows (warm-up; ta returns 0 there).
    """
    _check_window("atr_window", window)
    n = len(close)
    if n < window:
        return np.full(n, np.nan)
    h, lo, c = _arrays(high, low, close)
    return _atr_kernel(h, lo, c, int(window))


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """Average Directional Index scaled to [0, 1] (same algorithm as ``ta.trend.ADXIndicator.adx``).

    A numba port of ta's per-row Python loops (equal to it to ~1e-12; ta takes ~6 s per 1M rows).
    Like ta, the value at row t uses the directional index up to row t - 1.

    Returns:
        float64 array; NaN for the first ``2 * window - 1`` rows (warm-up; ta returns 0 there) or
        when the series is too short.
    """
    _check_window("adx_window", window, 2)
    n = len(close)
    if n < 2 * window + 1:
        return np.full(n, np.nan)
    h, lo, c = _arrays(high, low, close)
    return _adx_kernel(h, lo, c, int(window)) / 100.0


def iter_indicator_features(
    df: pd.DataFrame,
    *,
    rsi_window: int = 14,
    macd_fast: int = 12,
    macd_slow: int = 26,
    macd_signal: int = 9,
    bb_window: int = 20,
    bb_dev: float = 2.0,
    squeeze_window: int = 120,
    atr_window: int = 14,
    adx_window: int = 14,
    obv_window: int = 60,
    vwap_window: int = 60,
    atr_values: np.ndarray | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, float64 column)`` pairs of ``indicator_features``, one at a time (low peak memory).

    Temporaries of one indicator are freed before the next one is computed; arguments as in
    ``indicator_features``.
    """
    for name, w, m in (
        ("rsi_window", rsi_window, 1),
        ("macd_fast", macd_fast, 1),
        ("macd_signal", macd_signal, 1),
        ("bb_window", bb_window, 2),
        ("squeeze_window", squeeze_window, 1),
        ("obv_window", obv_window, 1),
        ("vwap_window", vwap_window, 1),
    ):
        _check_window(name, w, m)
    if macd_fast >= macd_slow:
        raise ValueError(f"features.macd_fast={macd_fast} must be < features.macd_slow={macd_slow}")
    if not bb_dev > 0:
        raise ValueError(f"features.bb_dev={bb_dev} is invalid: must be > 0 standard deviations")
    h = df["high"].to_numpy(dtype=np.float64)
    lo = df["low"].to_numpy(dtype=np.float64)
    c = df["close"].to_numpy(dtype=np.float64)
    v = df["volume"].to_numpy(dtype=np.float64)
    cs, vs = _series(c), _series(v)
    yield "rsi", ta.momentum.RSIIndicator(cs, window=rsi_window).rsi().to_numpy() / 100.0
    macd = ta.trend.MACD(cs, window_slow=macd_slow, window_fast=macd_fast, window_sign=macd_signal)
    macd_line, signal_line, diff_line = macd.macd(), macd.macd_signal(), macd.macd_diff()
    del macd  # free ta's EMA series before the outputs are computed (peak memory on 1M bars)
    yield "macd_frac", macd_line.to_numpy() / c
    del macd_line
    yield "macd_signal_frac", signal_line.to_numpy() / c
    del signal_line
    hist = diff_line.to_numpy() / c
    del diff_line
    yield "macd_hist_frac", hist
    slope = np.full(c.size, np.nan)
    slope[1:] = hist[1:] - hist[:-1]
    del hist
    yield "macd_hist_slope", slope
    del slope
    bb = ta.volatility.BollingerBands(cs, window=bb_window, window_dev=bb_dev)  # type: ignore[arg-type]
    width = bb.bollinger_wband().to_numpy() / 100.0
    del bb
    yield "bb_width", width
    wmin = _series(width).rolling(squeeze_window, min_periods=squeeze_window).min().to_numpy()
    with np.errstate(invalid="ignore"):
        squeeze = np.where(np.isnan(wmin), np.nan, (width <= wmin).astype(np.float64))
    del width, wmin
    yield "bb_squeeze", squeeze
    del squeeze
    a = atr(h, lo, c, atr_window) if atr_values is None else atr_values
    yield "atr_frac", a / c
    del a
    yield "adx", adx(h, lo, c, adx_window)
    obv = ta.volume.OnBalanceVolumeIndicator(cs, vs).on_balance_volume().to_numpy(dtype=np.float64)
    d_obv = np.full(c.size, np.nan)
    d_obv[obv_window:] = obv[obv_window:] - obv[:-obv_window]
    del obv
    vol_sum = vs.rolling(obv_window, min_periods=obv_window).sum().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        # rolling sum of the window (t-w, t] matches obv_t - obv_{t-w}
        obv_roc = np.where(vol_sum > 0, d_obv / np.where(vol_sum > 0, vol_sum, 1.0), np.where(np.isnan(d_obv), np.nan, 0.0))
    del d_obv, vol_sum
    yield "obv_roc", obv_roc
    del obv_roc
    with np.errstate(invalid="ignore", divide="ignore"):
        tp = (h + lo + c) / 3.0
        pv = _series(tp * v).rolling(vwap_window, min_periods=vwap_window).sum().to_numpy()
        del tp
        vv = vs.rolling(vwap_window, min_periods=vwap_window).sum().to_numpy()
        vwap = np.where(vv > 0, pv / np.where(vv > 0, vv, 1.0), c)
        del pv
        vwap_dist = np.where(np.isnan(vv), np.nan, np.log(c / vwap))
    del vv, vwap
    yield "vwap_dist", vwap_dist


def indicator_features(df: pd.DataFrame, *, dtype: str = "float64", **params: Any) -> pd.DataFrame:
    """Scale-free technical indicators of OHLCV bars.

    Columns: ``rsi`` (0..1), ``macd_frac``, ``macd_signal_frac``, ``macd_hist_frac`` (MACD lines
    divided by close), ``macd_hist_slope`` (1-bar change of ``macd_hist_frac``), ``bb_width``
    (Bollinger band width / middle band, fraction), ``bb_squeeze`` (1.0 when ``bb_width`` is at
    its lowest of the last ``squeeze_window`` bars, else 0.0), ``atr_frac`` (ATR / close),
    ``adx`` (0..1), ``obv_roc`` (change of on-balance volume over ``obv_window`` bars divided by
    the volume traded in them, -1..1; 0 when no volume), ``vwap_dist`` (ln(close / rolling VWAP
    of typical price over ``vwap_window`` bars); 0 when no volume).

    Args:
        df: bars with ``high``, ``low``, ``close``, ``volume`` (any index; positions are used).
        params: the keyword arguments of `iter_indicator_features`:
        rsi_window: RSI window in bars, >= 1.
        macd_fast: MACD fast EMA span in bars, >= 1, < ``macd_slow``.
        macd_slow: MACD slow EMA span in bars.
        macd_signal: MACD signal EMA span in bars, >= 1.
        bb_window: Bollinger window in bars, >= 2.
        bb_dev: Bollinger band width in standard deviations, > 0.
        squeeze_window: look-back of the squeeze flag in bars, >= 1.
        atr_window: ATR window in bars, >= 1.
        adx_window: ADX window in bars, >= 2.
        obv_window: OBV rate-of-change window in bars, >= 1.
        vwap_window: rolling VWAP window in bars, >= 1.
        atr_values: precomputed ``atr(high, low, close, atr_window)`` to avoid recomputing it.
        dtype: output dtype (``"float64"`` or ``"float32"``; computed in float64 either way).

    Returns:
        DataFrame (RangeIndex, ``dtype``).
    """
    return _frame(iter_indicator_features(df, **params), dtype)
