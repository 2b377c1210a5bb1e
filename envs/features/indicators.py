"""Technical indicators, return and time features, one float64 column at a time.

Every function is strictly causal: the value at row t uses rows <= t only (rolling windows end at
t, EWMs run forward, no centring, no whole-series normalisation, no backfill). The indicators
are the algorithms of ``ta`` 0.11's classes (RSIIndicator, MACD, BollingerBands,
AverageTrueRange, ADXIndicator, OnBalanceVolumeIndicator), run by the numba kernels of
``envs.features.kernels``: ``ta`` itself chains pandas Series (several full-length temporaries
per indicator) and loops in Python for ATR/ADX, which breaks the memory and speed budgets on
millions of bars; tests check every kernel against the ``ta`` class to 1e-9. Warm-up rows are
NaN (``ta`` returns 0 there for ATR/ADX). Every output is scale-free (fractions of price, log
returns, 0..1 oscillators), so one model can see different assets and price eras.

Warm-up (rows that are NaN at the start), with the defaults in brackets:

- ``logret_{w}``: w; ``logret_1_lag{l}``: 1 + l; ``vol_{w}``: w.
- ``rsi``: window - 1 [13]; ``macd_*``: slow + signal - 2 [33], ``macd_hist_slope`` one more [34].
- ``bb_width``: window - 1 [19]; ``bb_squeeze``: window + squeeze_window - 2 [138].
- ``atr_frac``: window - 1 [13]; ``adx``: 2 * window - 1 [27].
- ``obv_roc``: window [60]; ``vwap_dist``: window - 1 [59]; time encodings: none.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from envs.features import kernels

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
WEEK_DAYS = 7


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
    for w in vol_windows:
        yield f"vol_{w}", kernels.rolling_std(r1, int(w), 1)


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


def _arrays(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(x, dtype=np.float64) for x in xs)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """Wilder's Average True Range, quote currency (same algorithm as ``ta.volatility.AverageTrueRange``).

    ``envs.features.kernels.atr`` (ta runs it as a per-row Python loop, ~3 s per 1M rows).

    Returns:
        float64 array; NaN for the first ``window - 1`` rows (warm-up; ta returns 0 there).
    """
    _check_window("atr_window", window)
    n = len(close)
    if n < window:
        return np.full(n, np.nan)
    h, lo, c = _arrays(high, low, close)
    return kernels.atr(h, lo, c, int(window))


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """Average Directional Index scaled to [0, 1] (same algorithm as ``ta.trend.ADXIndicator.adx``).

    ``envs.features.kernels.adx`` (ta runs it as per-row Python loops, ~6 s per 1M rows).
    Like ta, the value at row t uses the directional index up to row t - 1.

    Returns:
        float64 array; NaN for the first ``2 * window - 1`` rows (warm-up; ta returns 0 there). The
        value of a row never depends on how many rows follow it (a series of 2 * window rows has its
        last value, as the stream of ``envs.features.stream`` computes it).
    """
    _check_window("adx_window", window, 2)
    n = len(close)
    if n < 2 * window:
        return np.full(n, np.nan)
    h, lo, c = _arrays(high, low, close)
    return kernels.adx(h, lo, c, int(window)) / 100.0


@dataclass(frozen=True, slots=True)
class IndicatorParams:
    """Windows of the indicators family (the same names and defaults as in ``FeatureConfig``).

    Attributes: as the keyword arguments of `indicator_features`.
    """

    rsi_window: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_window: int = 20
    bb_dev: float = 2.0
    squeeze_window: int = 120
    atr_window: int = 14
    adx_window: int = 14
    obv_window: int = 60
    vwap_window: int = 60

    def __post_init__(self) -> None:
        for name, m in (("rsi_window", 1), ("macd_fast", 1), ("macd_signal", 1), ("bb_window", 2),
                        ("squeeze_window", 1), ("obv_window", 1), ("vwap_window", 1)):
            _check_window(name, getattr(self, name), m)
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"features.macd_fast={self.macd_fast} must be < features.macd_slow={self.macd_slow}")
        if not self.bb_dev > 0:
            raise ValueError(f"features.bb_dev={self.bb_dev} is invalid: must be > 0 standard deviations")

    @classmethod
    def of(cls, config: Any) -> IndicatorParams:
        """The indicator fields of ``config`` (a ``FeatureConfig`` or anything with those attributes)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


#: Bars of one frame as float64 arrays: ``high``, ``low``, ``close``, ``volume`` (and ``atr`` when
#: the pipeline computed it once for several families).
Bars: TypeAlias = Mapping[str, np.ndarray]
Columns: TypeAlias = Iterator[tuple[str, np.ndarray]]


def _rsi(b: Bars, p: IndicatorParams) -> Columns:
    r = kernels.rsi(b["close"], int(p.rsi_window))
    r /= 100.0
    yield "rsi", r


def _macd(b: Bars, p: IndicatorParams) -> Columns:
    c = b["close"]
    line, signal = kernels.macd_lines(c, int(p.macd_fast), int(p.macd_slow), int(p.macd_signal))
    yield "macd_frac", line / c
    yield "macd_signal_frac", signal / c
    line -= signal  # the MACD histogram (ta's macd_diff), in place
    del signal
    line /= c
    yield "macd_hist_frac", line
    slope = np.full(c.size, np.nan)
    slope[1:] = line[1:] - line[:-1]
    del line
    yield "macd_hist_slope", slope


def _bollinger(b: Bars, p: IndicatorParams) -> Columns:
    width = kernels.bollinger_width(b["close"], int(p.bb_window), float(p.bb_dev))
    yield "bb_width", width
    yield "bb_squeeze", kernels.is_rolling_min(width, int(p.squeeze_window))


def _atr_frac(b: Bars, p: IndicatorParams) -> Columns:
    a = b["atr"] if "atr" in b else atr(b["high"], b["low"], b["close"], p.atr_window)
    yield "atr_frac", a / b["close"]


def _adx(b: Bars, p: IndicatorParams) -> Columns:
    yield "adx", adx(b["high"], b["low"], b["close"], p.adx_window)


def _obv_roc(b: Bars, p: IndicatorParams) -> Columns:
    yield "obv_roc", kernels.obv_roc(b["close"], b["volume"], int(p.obv_window))


def _vwap_dist(b: Bars, p: IndicatorParams) -> Columns:
    yield "vwap_dist", kernels.vwap_dist(b["high"], b["low"], b["close"], b["volume"], int(p.vwap_window))


@dataclass(frozen=True, slots=True)
class Indicator:
    """One entry of the indicator registry.

    Attributes:
        columns: the output columns, in the order ``compute`` yields them.
        compute: ``compute(bars, params)`` yields ``(column, float64 array)`` pairs, strictly causal.
        warmup: ``warmup(params)`` = rows that may be NaN at the start of the longest column.
        memory: ``memory(params)`` = bars of history a value depends on: the per-bar path
            (``envs.features.stream``) recomputes the value on that many bars. A finite window: its
            length; an EWM or Wilder average: its window plus `ewm_memory` (the bars after which its
            start weighs <= `EWM_FORGET`).
    """

    columns: tuple[str, ...]
    compute: Callable[[Bars, IndicatorParams], Columns]
    warmup: Callable[[IndicatorParams], int]
    memory: Callable[[IndicatorParams], int]


#: Relative weight below which an EWM's start no longer shows in float64 (``(1 - alpha)^bars``).
EWM_FORGET = 1e-16


def ewm_memory(alpha: float) -> int:
    """Bars after which an EWM of smoothing ``alpha`` weighs its start by <= `EWM_FORGET`."""
    return math.ceil(math.log(EWM_FORGET) / math.log(1.0 - alpha))


def _span(window: int) -> float:
    return 2.0 / (window + 1.0)


#: The indicators family. A new indicator = its function (a kernel in ``envs.features.kernels`` when it
#: loops) + one entry here; ``FeatureConfig.indicator_columns`` selects columns by name, the per-bar path
#: (``envs.features.tail``) and the tests (tests/features/test_tail.py) pick every entry up from here.
INDICATORS: tuple[Indicator, ...] = (
    Indicator(("rsi",), _rsi, lambda p: p.rsi_window - 1, lambda p: p.rsi_window + ewm_memory(1 / p.rsi_window)),
    Indicator(("macd_frac", "macd_signal_frac", "macd_hist_frac", "macd_hist_slope"), _macd,
              lambda p: p.macd_slow + p.macd_signal - 1,
              lambda p: p.macd_slow + p.macd_signal + 1 + ewm_memory(_span(p.macd_slow)) + ewm_memory(_span(p.macd_signal))),
    Indicator(("bb_width", "bb_squeeze"), _bollinger, lambda p: p.bb_window + p.squeeze_window - 2,
              lambda p: p.bb_window + p.squeeze_window),
    Indicator(("atr_frac",), _atr_frac, lambda p: p.atr_window - 1, lambda p: p.atr_window + ewm_memory(1 / p.atr_window)),
    Indicator(("adx",), _adx, lambda p: 2 * p.adx_window - 1,
              lambda p: 2 * p.adx_window + 2 * ewm_memory(1 / p.adx_window)),  # two Wilder stages
    Indicator(("obv_roc",), _obv_roc, lambda p: p.obv_window, lambda p: p.obv_window + 1),
    Indicator(("vwap_dist",), _vwap_dist, lambda p: p.vwap_window - 1, lambda p: p.vwap_window),
)
INDICATOR_COLUMNS: tuple[str, ...] = tuple(c for ind in INDICATORS for c in ind.columns)


def indicator_warmup(params: IndicatorParams, columns: Iterable[str] = INDICATOR_COLUMNS) -> int:
    """Warm-up rows of the registry entries that produce any of ``columns`` (0 if none)."""
    keep = set(columns)
    return max((ind.warmup(params) for ind in INDICATORS if keep & set(ind.columns)), default=0)


def indicator_columns_of(bars: Bars, params: IndicatorParams, columns: Iterable[str] = INDICATOR_COLUMNS) -> Columns:
    """``(name, float64 column)`` of the registry's ``columns`` (in registry order) over float64 ``bars``.

    Entries with no wanted column are not computed; temporaries of one entry are freed before the next.
    """
    keep = set(columns)
    for ind in INDICATORS:
        if keep & set(ind.columns):
            for name, values in ind.compute(bars, params):
                if name in keep:
                    yield name, values
                del values


def iter_indicator_features(df: pd.DataFrame | Bars, *, atr_values: np.ndarray | None = None,
                            **params: Any) -> Columns:
    """``(name, float64 column)`` pairs of ``indicator_features``, one at a time (low peak memory).

    Temporaries of one indicator are freed before the next one is computed; arguments as in
    ``indicator_features``.
    """
    p = IndicatorParams(**params)
    h, lo, c, v = _arrays(df["high"], df["low"], df["close"], df["volume"])
    bars = {"high": h, "low": lo, "close": c, "volume": v}
    if atr_values is not None:
        bars["atr"] = atr_values
    yield from indicator_columns_of(bars, p)


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
