"""Feature pipeline: ``FeatureConfig`` -> ``build_features`` (+ a Parquet ``FeatureCache``).

``build_features(df, config)`` returns the bar columns of ``df`` followed by the feature columns
of the enabled families (see ``envs.features.indicators``, ``levels`` and ``mtf``), all
strictly causal. Feature columns are ``config.dtype`` (float32 by default). NaN appear only in a
prefix of warm-up rows; the actual count is ``df.attrs["warmup_bars"]`` (rows before the first
row where every feature is finite) and ``nominal_warmup_bars(config)`` gives the bound for the
deterministic families (levels/Fibonacci warm-up depends on when the first swings confirm).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from envs.data.resample import parse_timeframe, resample_arrays
from envs.features.cache import FEATURE_VERSION, FeatureCache, data_hash
from envs.features.indicators import (
    INDICATOR_COLUMNS,
    IndicatorParams,
    atr,
    indicator_columns_of,
    indicator_warmup,
    iter_log_return_features,
    iter_time_features,
)
from envs.features.levels import iter_level_features
from envs.features.mtf import iter_join_rows
from envs.market.bars import OHLCV_COLUMNS
from envs.typed_config import from_mapping as typed_from_mapping

logger = logging.getLogger(__name__)

__all__ = ["FEATURE_VERSION", "INDICATOR_COLUMNS", "FeatureCache", "FeatureConfig", "build_features", "compute_features",
           "data_hash", "feature_matrix", "nominal_warmup_bars", "warmup_rows"]

MTF_FAMILIES: tuple[str, ...] = ("returns", "indicators", "levels")
#: The default keeps one MACD line: macd_frac = macd_signal_frac + macd_hist_frac exactly (VIF inf),
#: and macd_hist_slope is the 1-bar change of macd_hist_frac, already in the observation window.
DEFAULT_INDICATOR_COLUMNS: tuple[str, ...] = (
    "rsi", "macd_hist_frac", "bb_width", "bb_squeeze", "atr_frac", "adx", "obv_roc", "vwap_dist",
)
#: On the hourly bars the default keeps the slow regime indicators: trend strength and momentum.
DEFAULT_MTF_INDICATOR_COLUMNS: tuple[str, ...] = ("rsi", "adx")


#: `IndicatorParams`' defaults by name (FeatureConfig's indicator windows take theirs from here)
_IND: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(IndicatorParams)}


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Which feature families to build and their windows (all windows in bars of that frame).

    Attributes:
        returns: log returns, lagged returns and rolling volatility.
        return_windows: w >= 1 of ``logret_{w}``.
        return_lags: l >= 1 of ``logret_1_lag{l}``.
        vol_windows: w >= 2 of ``vol_{w}``.
        time: time-of-day / day-of-week sin/cos.
        indicators: RSI, MACD, Bollinger, ATR, ADX, OBV, VWAP distance.
        rsi_window: bars, >= 1.
        macd_fast: bars, >= 1, < macd_slow.
        macd_slow: bars.
        macd_signal: bars, >= 1.
        bb_window: bars, >= 2.
        bb_dev: Bollinger width in standard deviations, > 0.
        squeeze_window: bars of the squeeze look-back, >= 1.
        atr_window: bars, >= 1 (also the ATR unit of the level features).
        adx_window: bars, >= 2.
        obv_window: bars, >= 1.
        vwap_window: bars, >= 1.
        levels: support/resistance from confirmed swings.
        fibonacci: Fibonacci retracement features.
        swing_k: bars each side of a swing point (confirmation delay), >= 1.
        max_levels: levels kept at once, >= 2.
        cluster_atr: clustering tolerance in ATR units, >= 0.
        max_dist_atr: clip of level distances in ATR units, > 0.
        mtf_timeframes: higher timeframes (``"1h"``, ``"4h"``, ...) joined causally; () = none.
        mtf_families: families computed on each higher timeframe (subset of ``MTF_FAMILIES``).
        mtf_return_windows: ``return_windows`` on the higher timeframes (HTF bars); no lags there.
        mtf_vol_windows: ``vol_windows`` on the higher timeframes (HTF bars).
        mtf_squeeze_window: ``squeeze_window`` on the higher timeframes (HTF bars).
        mtf_volume_window: ``obv_window`` and ``vwap_window`` on the higher timeframes (HTF bars).
        dtype: ``"float32"`` or ``"float64"`` for the feature columns.
        indicator_columns: which outputs of the indicators family to keep (subset of
            ``INDICATOR_COLUMNS``, in any order; the result keeps the family's order).
        mtf_indicator_columns: the same on the higher timeframes.
        prune_vif: if set (> 1, 10 is common), training runs drop feature columns, highest VIF
            first, until every VIF <= it, decided on the training split only (``agents.data.
            prune_features``; a ``collinearity.md`` report lands in the run directory). Not part of
            the computed features nor of the cache key.
        prune_corr: if set (in (0, 1]), first drop the later column of each pair with |corr| above it.
    """

    returns: bool = True
    return_windows: tuple[int, ...] = (1, 15, 60)
    return_lags: tuple[int, ...] = ()
    vol_windows: tuple[int, ...] = (120,)
    time: bool = True
    indicators: bool = True
    # the indicator windows: defaults from `IndicatorParams`, their one home
    rsi_window: int = _IND["rsi_window"]
    macd_fast: int = _IND["macd_fast"]
    macd_slow: int = _IND["macd_slow"]
    macd_signal: int = _IND["macd_signal"]
    bb_window: int = _IND["bb_window"]
    bb_dev: float = _IND["bb_dev"]
    squeeze_window: int = _IND["squeeze_window"]
    atr_window: int = _IND["atr_window"]
    adx_window: int = _IND["adx_window"]
    obv_window: int = _IND["obv_window"]
    vwap_window: int = _IND["vwap_window"]
    levels: bool = True
    fibonacci: bool = True
    swing_k: int = 5
    max_levels: int = 20
    cluster_atr: float = 0.5
    max_dist_atr: float = 10.0
    mtf_timeframes: tuple[str, ...] = ("1h",)
    mtf_families: tuple[str, ...] = ("returns", "indicators")
    mtf_return_windows: tuple[int, ...] = (4, 24)
    mtf_vol_windows: tuple[int, ...] = (24,)
    mtf_squeeze_window: int = 24
    mtf_volume_window: int = 24
    dtype: str = "float32"
    indicator_columns: tuple[str, ...] = DEFAULT_INDICATOR_COLUMNS
    mtf_indicator_columns: tuple[str, ...] = DEFAULT_MTF_INDICATOR_COLUMNS
    prune_vif: float | None = None
    prune_corr: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "return_windows",
            "return_lags",
            "vol_windows",
            "mtf_timeframes",
            "mtf_families",
            "mtf_return_windows",
            "mtf_vol_windows",
            "indicator_columns",
            "mtf_indicator_columns",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for key in ("indicator_columns", "mtf_indicator_columns"):
            unknown = [c for c in getattr(self, key) if c not in INDICATOR_COLUMNS]
            if unknown:
                raise ValueError(f"features.{key} has {unknown}: allowed {list(INDICATOR_COLUMNS)} (conf/features/*.yaml)")
        if self.prune_vif is not None and not self.prune_vif > 1.0:
            raise ValueError(f"features.prune_vif={self.prune_vif} is invalid: must be > 1 (10 is common) or null")
        if self.prune_corr is not None and not 0.0 < self.prune_corr <= 1.0:
            raise ValueError(f"features.prune_corr={self.prune_corr} is invalid: must be in (0, 1] or null")
        bad = [f for f in self.mtf_families if f not in MTF_FAMILIES]
        if bad:
            raise ValueError(f"features.mtf_families has {bad}: allowed {list(MTF_FAMILIES)} (conf/features/*.yaml)")
        for tf in self.mtf_timeframes:
            parse_timeframe(tf)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"features.dtype={self.dtype!r} is invalid: use 'float32' or 'float64'")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"features.macd_fast={self.macd_fast} must be < features.macd_slow={self.macd_slow}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object]) -> FeatureConfig:
        """Build from a plain mapping (a Hydra ``features`` node); unknown keys raise ``ValueError``."""
        return typed_from_mapping(cls, mapping, "features")

    def htf_config(self) -> FeatureConfig:
        """The config used on higher-timeframe bars (``mtf_*`` windows, no lags, no MTF)."""
        return replace(
            self,
            return_windows=self.mtf_return_windows,
            return_lags=(),
            vol_windows=self.mtf_vol_windows,
            squeeze_window=self.mtf_squeeze_window,
            obv_window=self.mtf_volume_window,
            vwap_window=self.mtf_volume_window,
            mtf_timeframes=(),
            indicator_columns=self.mtf_indicator_columns,
        )

    @classmethod
    def none(cls) -> FeatureConfig:
        """No features at all (bar columns only)."""
        return cls(returns=False, time=False, indicators=False, levels=False, fibonacci=False, mtf_timeframes=())


Columns: TypeAlias = Iterator[tuple[str, np.ndarray]]
#: Bars as arrays: ``timestamp`` (int64 ms) and float64 ``open``, ``high``, ``low``, ``close``, ``volume``.
BarArrays: TypeAlias = Mapping[str, np.ndarray]


def bar_arrays(df: pd.DataFrame | BarArrays) -> dict[str, np.ndarray]:
    """The bar columns of ``df`` as contiguous arrays (int64 ``timestamp``, float64 OHLCV)."""
    out = {"timestamp": np.ascontiguousarray(np.asarray(df["timestamp"], dtype=np.int64))}
    for col in OHLCV_COLUMNS[1:]:
        out[col] = np.ascontiguousarray(np.asarray(df[col], dtype=np.float64))
    return out


def family_columns(bars: BarArrays, cfg: FeatureConfig, families: set[str], dtype: str = "float64") -> Columns:
    """``(name, column)`` pairs of the enabled ``families``, one column at a time (ATR from ``bars["atr"]`` if given).

    Columns come out as float64 (or already ``dtype`` for the levels kernel); each family's
    temporaries are freed before the next column is computed, so the caller can copy each column
    into its result and keep the working memory to one indicator's temporaries.
    """
    h, lo, c = bars["high"], bars["low"], bars["close"]
    need_atr = "indicators" in families or "levels" in families or "fibonacci" in families
    a = bars["atr"] if "atr" in bars else atr(h, lo, c, cfg.atr_window) if need_atr else None
    if "returns" in families:
        yield from iter_log_return_features(c, cfg.return_windows, cfg.return_lags, cfg.vol_windows)
    if "time" in families:
        yield from iter_time_features(bars["timestamp"])
    if "indicators" in families:
        with_atr = {**bars, "atr": a} if a is not None else bars
        yield from indicator_columns_of(with_atr, IndicatorParams.of(cfg), cfg.indicator_columns)
    sr, fib = "levels" in families, "fibonacci" in families
    if sr or fib:
        yield from iter_level_features(
            bars,
            swing_k=cfg.swing_k,
            max_levels=cfg.max_levels,
            cluster_atr=cfg.cluster_atr,
            max_dist_atr=cfg.max_dist_atr,
            atr_values=a,
            support_resistance=sr,
            fibonacci=fib,
            dtype=dtype,
        )


def _enabled(cfg: FeatureConfig) -> set[str]:
    return {f for f in ("returns", "time", "indicators", "levels", "fibonacci") if getattr(cfg, f)}


def mtf_families(config: FeatureConfig) -> set[str]:
    """The families computed on the higher timeframes (``mtf_families``, Fibonacci with levels)."""
    fams = set(config.mtf_families)
    if "levels" in fams:
        fams.add("fibonacci")
    return fams


def htf_matrix(htf: BarArrays, config: FeatureConfig) -> tuple[list[str], np.ndarray]:
    """Column names and float64 ``(n_htf, F)`` matrix of the features ``config`` computes on resampled bars."""
    cols = list(family_columns(htf, config.htf_config(), mtf_families(config)))
    matrix = np.empty((len(htf["close"]), len(cols)))
    for j, (_, values) in enumerate(cols):
        matrix[:, j] = values
    return [name for name, _ in cols], matrix


def _family_builders(config: FeatureConfig) -> list[Callable[[BarArrays], Columns]]:
    """One callable per family group (and per MTF timeframe), each yielding ``(name, column)`` pairs."""
    builders: list[Callable[[BarArrays], Columns]] = []
    for group in base_groups(config):

        def build(bars: BarArrays, fams: set[str] = group) -> Columns:
            return family_columns(bars, config, fams, config.dtype)

        builders.append(build)
    for tf in config.mtf_timeframes:

        def build_mtf(bars: BarArrays, tf: str = tf) -> Columns:
            tf_ms = parse_timeframe(tf)
            htf = resample_arrays(bars["timestamp"], bars, tf_ms)
            names, matrix = htf_matrix(htf, config)
            yield from iter_join_rows(bars["timestamp"], names, matrix, htf["timestamp"], tf_ms, f"mtf_{tf}_",
                                      config.dtype)

        builders.append(build_mtf)
    return builders


def base_groups(config: FeatureConfig) -> list[set[str]]:
    """The enabled families computed on the base bars, in column order (levels and Fibonacci together)."""
    enabled = _enabled(config)
    groups = [{"returns"}, {"time"}, {"indicators"}, {"levels", "fibonacci"}]
    return [g & enabled for g in groups if g & enabled]


_COLUMNS: dict[FeatureConfig, tuple[str, ...]] = {}


def feature_columns(config: FeatureConfig, bars: BarArrays) -> tuple[str, ...]:
    """The feature column names of ``config``, found once per config on a short prefix of ``bars``."""
    cols = _COLUMNS.get(config)
    if cols is None:
        probe = {k: v[: min(len(v), 300)] for k, v in bars.items()}
        cols = tuple(name for b in _family_builders(config) for name, _ in b(probe))
        if len(_COLUMNS) > 64:
            _COLUMNS.clear()
        _COLUMNS[config] = cols
    return cols


def feature_matrix(bars: BarArrays, config: FeatureConfig) -> tuple[tuple[str, ...], np.ndarray]:
    """Column names and ``(n, F)`` ``config.dtype`` matrix (Fortran order) of the features of ``bars``.

    ``bars`` as `bar_arrays` returns. Each column is written into one preallocated matrix as it is
    computed, cast as it is copied in (values identical to ``astype``). Peak memory: the result plus one
    indicator's float64 temporaries (see docs/features.md for the measured numbers).
    """
    builders = _family_builders(config)
    columns = feature_columns(config, bars)
    matrix = np.empty((len(bars["close"]), len(columns)), dtype=config.dtype, order="F")
    j = 0
    for b in builders:
        for name, values in b(bars):
            if j >= len(columns) or name != columns[j]:
                raise RuntimeError(f"feature columns changed between probe and run at {j}: {name!r}")
            matrix[:, j] = values
            del values
            j += 1
    if j != len(columns):
        raise RuntimeError(f"feature columns changed between probe and run: {j} of {len(columns)} computed")
    return columns, matrix


def compute_features(df: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Feature columns only (no caching), one row per bar of ``df``, RangeIndex, ``config.dtype``."""
    columns, matrix = feature_matrix(bar_arrays(df), config)
    return pd.DataFrame(matrix, columns=list(columns), copy=False)


def warmup_rows(features: pd.DataFrame) -> int:
    """Rows before the first row from which every feature value is finite (len(df) if none)."""
    bad = np.zeros(len(features), dtype=bool)
    for col in features.columns:  # column by column: no full float64 copy of the matrix
        bad |= ~np.isfinite(features[col].to_numpy())
    idx = np.flatnonzero(bad)
    return 0 if idx.size == 0 else int(idx[-1]) + 1


def nominal_warmup_bars(config: FeatureConfig, base_interval_ms: int = 60_000) -> int:
    """Warm-up bound (rows) of the deterministic families: returns, time, indicators, mtf.

    The MTF part is ``(htf_warmup + 2) * ratio`` base bars (one extra HTF bar for a partial first
    bucket, one for the close-time delay), ratio = HTF interval / base interval.
    """

    def single(cfg: FeatureConfig, fams: set[str]) -> int:
        w = [0]
        if "returns" in fams:
            w += [max(cfg.return_windows, default=0), 1 + max(cfg.return_lags, default=0), max(cfg.vol_windows, default=0)]
        if "indicators" in fams:
            w.append(indicator_warmup(IndicatorParams.of(cfg)))  # every entry, selected or not
        return max(w)

    out = single(config, _enabled(config))
    for tf in config.mtf_timeframes:
        ratio = -(-parse_timeframe(tf) // int(base_interval_ms))
        out = max(out, (single(config.htf_config(), set(config.mtf_families)) + 2) * ratio)
    return out


def build_features(df: pd.DataFrame, config: FeatureConfig | None = None, cache: FeatureCache | None = None) -> pd.DataFrame:
    """Bar columns of ``df`` followed by the configured feature columns.

    Args:
        df: clean bars (``timestamp`` strictly increasing, OHLCV; ``filled`` and other extra
            columns are passed through as bar columns).
        config: feature selection; None = ``FeatureConfig()`` (the ``default`` preset).
        cache: optional ``FeatureCache``; a hit skips all computation.

    Returns:
        DataFrame with RangeIndex; ``attrs["warmup_bars"]`` = rows with any NaN feature (a
        prefix) and ``attrs["feature_columns"]`` = the feature column names.
    """
    config = config or FeatureConfig()
    key = FeatureCache.key(df, config) if cache is not None else ""
    feats: pd.DataFrame | None = None
    if cache is not None:
        feats = cache.load(key, n_rows=len(df))
        if feats is not None:
            cache.hits += 1
            logger.info("features: cache hit %s", cache.path(key))
        else:
            cache.misses += 1
    if feats is None:
        feats = compute_features(df, config)
        if cache is not None:
            logger.info("features: cached to %s", cache.save(key, feats))
    bars = df.reset_index(drop=True)
    out = pd.concat([bars, feats], axis=1)
    warm = warmup_rows(feats)
    out.attrs["warmup_bars"] = warm
    out.attrs["feature_columns"] = list(feats.columns)
    logger.info("features: %d columns, %d warm-up rows of %d", feats.shape[1], warm, len(out))
    return out
