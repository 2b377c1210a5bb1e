"""Numba kernels of the technical indicators: one output array each, no pandas temporaries.

Each kernel is a port of the algorithm of the ``ta`` 0.11 class named in its docstring (and of the
pandas window operation that class calls), so values equal ``ta``'s to ~1e-12 relative; the tests
check every one against ``ta`` on real bars. Why ports rather than ``ta`` itself: ``ta`` builds
each indicator as a chain of pandas Series (RSI holds ~7 full-length temporaries at once, 2x the
raw bars of memory at its peak on 1M rows) and runs ATR/ADX as per-row Python loops (~10 s per 1M
rows); the kernels allocate only their output and run in milliseconds.

All kernels are strictly causal (the value at row t reads rows <= t) and return NaN in the
warm-up rows where ``ta`` (with ``fillna=False``) returns NaN; ATR and ADX return NaN where ``ta``
returns 0.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def ewm_mean(x: np.ndarray, com: float, min_periods: int) -> np.ndarray:  # pragma: no cover - numba
    """pandas ``Series.ewm(com=com, min_periods=min_periods, adjust=False).mean()``.

    pandas turns ``alpha`` into com = 1 / alpha - 1 and ``span`` into com = (span - 1) / 2, then
    uses alpha = 1 / (1 + com): pass com the same way to get the same rounding. Same recursion as
    pandas' ``ewm`` kernel (leading NaN skipped; a NaN later keeps the previous value and decays
    the old weight, ``ignore_na=False``); ``min_periods`` counts observations.
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n == 0:
        return out
    a = 1.0 / (1.0 + com)
    old_wt_factor = 1.0 - a
    weighted = x[0]
    nobs = 1 if x[0] == x[0] else 0
    old_wt = 1.0
    if nobs >= min_periods:
        out[0] = weighted
    for i in range(1, n):
        cur = x[i]
        obs = cur == cur
        if obs:
            nobs += 1
        if weighted == weighted:
            old_wt *= old_wt_factor
            if obs:
                if weighted != cur:
                    weighted = old_wt * weighted + a * cur
                    weighted /= old_wt + a
                old_wt = 1.0
        elif obs:
            weighted = cur
        if nobs >= min_periods:
            out[i] = weighted
    return out


@numba.njit(cache=True)
def rsi(close: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover - numba
    """``ta.momentum.RSIIndicator(close, window).rsi()`` (0..100); NaN for the first window - 1 rows."""
    n = close.shape[0]
    up = np.zeros(n)
    for i in range(1, n):
        d = close[i] - close[i - 1]
        up[i] = d if d > 0.0 else 0.0
    com = 1.0 / (1.0 / window) - 1.0  # ta passes alpha = 1 / window
    ema_up = ewm_mean(up, com, window)
    for i in range(1, n):  # reuse ``up`` for the down moves (the up EMA is already computed)
        d = close[i] - close[i - 1]
        up[i] = -d if d < 0.0 else 0.0
    ema_dn = ewm_mean(up, com, window)
    out = np.full(n, np.nan)
    for i in range(n):
        if ema_dn[i] == 0.0:
            out[i] = 100.0
        elif ema_dn[i] == ema_dn[i] and ema_up[i] == ema_up[i]:
            out[i] = 100.0 - 100.0 / (1.0 + ema_up[i] / ema_dn[i])
    return out


@numba.njit(cache=True)
def macd_lines(close: np.ndarray, fast: int, slow: int, signal: int):  # pragma: no cover - numba
    """``ta.trend.MACD``: (macd line, signal line), quote currency; EMAs of spans fast, slow, signal."""
    line = ewm_mean(close, (fast - 1.0) / 2.0, fast)
    slow_ema = ewm_mean(close, (slow - 1.0) / 2.0, slow)
    for i in range(line.shape[0]):
        line[i] -= slow_ema[i]
    return line, ewm_mean(line, (signal - 1.0) / 2.0, signal)


@numba.njit(cache=True)
def rolling_mean_std(x: np.ndarray, window: int, ddof: int):  # pragma: no cover - numba
    """Rolling mean and standard deviation (``ddof``) over the last ``window`` rows; NaN if any is NaN.

    Two-pass per window (O(window) per row): no drift over long series.
    """
    n = x.shape[0]
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    for t in range(window - 1, n):
        s = 0.0
        for j in range(t - window + 1, t + 1):
            s += x[j]
        if s != s:
            continue
        m = s / window
        q = 0.0
        for j in range(t - window + 1, t + 1):
            q += (x[j] - m) * (x[j] - m)
        mean[t] = m
        std[t] = np.sqrt(q / (window - ddof)) if window > ddof else np.nan
    return mean, std


@numba.njit(cache=True)
def rolling_std(x: np.ndarray, window: int, ddof: int) -> np.ndarray:  # pragma: no cover - numba
    """Rolling standard deviation only (see ``rolling_mean_std``)."""
    return rolling_mean_std(x, window, ddof)[1]


@numba.njit(cache=True)
def bollinger_width(close: np.ndarray, window: int, dev: float) -> np.ndarray:  # pragma: no cover - numba
    """``ta.volatility.BollingerBands(close, window, dev).bollinger_wband() / 100``: 2·dev·σ / mean.

    σ is the population std (ddof=0) of the last ``window`` closes, as in ``ta``.
    """
    mean, width = rolling_mean_std(close, window, 0)
    for t in range(width.shape[0]):
        width[t] = 2.0 * dev * width[t] / mean[t]
    return width


@numba.njit(cache=True)
def is_rolling_min(x: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover - numba
    """1.0 where x[t] <= min(x[t-window+1 .. t]) (i.e. x[t] is that minimum), else 0.0.

    NaN while the window holds a NaN (pandas ``rolling(window, min_periods=window).min()``).
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        m = np.inf
        bad = False
        for j in range(t - window + 1, t + 1):
            if x[j] != x[j]:
                bad = True
                break
            if x[j] < m:
                m = x[j]
        if not bad:
            out[t] = 1.0 if x[t] <= m else 0.0
    return out


@numba.njit(cache=True)
def obv_roc(close: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover - numba
    """Change of ``ta.volume.OnBalanceVolumeIndicator`` over ``window`` rows / volume traded in them.

    OBV adds the bar's volume when close >= the previous close (the first bar included, as in
    ``ta``) and subtracts it otherwise; the value at t is (OBV_t - OBV_{t-window}) / sum of the
    volume of rows t-window+1 .. t, in -1..1, and 0 when that volume is 0. NaN for t < window.
    """
    n = close.shape[0]
    obv = np.empty(n)
    run = 0.0
    for i in range(n):
        v = volume[i]
        run += -v if (i > 0 and close[i] < close[i - 1]) else v
        obv[i] = run
    out = np.full(n, np.nan)
    for t in range(window, n):
        vs = 0.0
        for j in range(t - window + 1, t + 1):
            vs += volume[j]
        out[t] = (obv[t] - obv[t - window]) / vs if vs > 0.0 else 0.0
    return out


@numba.njit(cache=True)
def vwap_dist(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """ln(close / VWAP) with VWAP = Σ typical·volume / Σ volume over the last ``window`` rows.

    Typical price = (high + low + close) / 3; 0 when the window traded no volume; NaN for the
    first window - 1 rows.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        pv = 0.0
        vv = 0.0
        for j in range(t - window + 1, t + 1):
            pv += (high[j] + low[j] + close[j]) / 3.0 * volume[j]
            vv += volume[j]
        out[t] = np.log(close[t] / (pv / vv)) if vv > 0.0 else 0.0
    return out


@numba.njit(cache=True)
def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover - numba
    """``ta.volatility.AverageTrueRange`` (Wilder); NaN for the first window - 1 rows."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    s = 0.0
    prev = np.nan
    for i in range(n):
        tr = high[i] - low[i] if i == 0 else max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        if i < window:
            s += tr
            if i == window - 1:
                prev = s / window
                out[i] = prev
        else:
            prev = (prev * (window - 1) + tr) / float(window)
            out[i] = prev
    return out


@numba.njit(cache=True)
def _directional(high: np.ndarray, low: np.ndarray, close: np.ndarray, i: int):  # pragma: no cover - numba
    # true range, +DM and -DM of row i >= 1, as ta's ADXIndicator computes them
    tr = max(high[i], close[i - 1]) - min(low[i], close[i - 1])
    up = high[i] - high[i - 1]
    down = low[i - 1] - low[i]
    pos = abs(up) if (up > down and up > 0.0) else 0.0
    neg = abs(down) if (down > up and down > 0.0) else 0.0
    return tr, pos, neg


@numba.njit(cache=True)
def _dx(trs: float, dip: float, din: float) -> float:  # pragma: no cover - numba
    p = 100.0 * (dip / trs) if trs != 0.0 else 0.0
    q = 100.0 * (din / trs) if trs != 0.0 else 0.0
    return 100.0 * abs((p - q) / (p + q)) if p + q != 0.0 else 0.0


@numba.njit(cache=True)
def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover - numba
    """``ta.trend.ADXIndicator.adx`` (0..100); NaN for the first 2·window - 1 rows; needs n >= 2·window.

    ta's Wilder sums (start: the sum of rows 1..window; then s -= s / window, s += x) and its
    smoothing of DX, streamed: no full-length temporaries. Like ta, the value at row t uses DX up
    to row t - 1.
    """
    n = close.shape[0]
    out = np.full(n, np.nan)
    trs = 0.0
    dip = 0.0
    din = 0.0
    for j in range(1, window + 1):
        tr, pos, neg = _directional(high, low, close, j)
        trs += tr
        dip += pos
        din += neg
    acc = _dx(trs, dip, din)  # DX of Wilder row 0
    a = 0.0
    for i in range(1, n - window):  # Wilder rows 1 .. m - 2 (m = n - window + 1)
        tr, pos, neg = _directional(high, low, close, window + i)
        trs = trs - trs / float(window) + tr
        dip = dip - dip / float(window) + pos
        din = din - din / float(window) + neg
        dx = _dx(trs, dip, din)
        if i < window:
            acc += dx
            if i == window - 1:
                a = acc / window
                out[2 * window - 1] = a
        else:
            a = (a * (window - 1) + dx) / float(window)
            out[i + window] = a
    return out
