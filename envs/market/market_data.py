"""`MarketData`: bars converted once into contiguous numpy arrays, plus causal observation features.

Input format (a DataFrame or a Parquet path): ``timestamp`` (int64 ms UTC, bar open time),
``open``, ``high``, ``low``, ``close`` (quote currency per base unit), ``volume`` (base units),
optional ``funding_rate`` (fraction per funding interval, |rate| < 0.1), optional ``spread`` (quote
currency, full bid/ask spread, 0 <= spread < low) and any other real numeric columns, which become
observation features as they are (finite and within float32's range; NaN only in a leading warm-up,
shown as 0). `envs.market.bars.check_columns` enforces these ranges.

Every derived feature at bar t uses bars <= t only: the normalisation is an exponentially
weighted mean/variance of *past* values (bars < t), never statistics of the whole series.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.market.bars import OHLCV_COLUMNS, SPECIAL_COLUMNS, check_bars, check_columns, check_timestamp_unit

logger = logging.getLogger(__name__)

DERIVED_FEATURES = ("ret_1", "range_hl", "body_co", "volume_z")
#: Half-life in bars of the causal EWM z-score normalisation of derived features.
NORM_HALFLIFE_BARS = 64.0
#: Bars before a causal z-score is emitted (0.0 before that).
NORM_WARMUP_BARS = 8


@numba.njit(cache=True)
def causal_zscore(x: npt.NDArray[np.float64], halflife: float, warmup: int) -> npt.NDArray[np.float64]:
    """Z-score of x[t] against the EWM mean/variance of x[0..t-1] (strictly past values).

    Args:
        x: input series; NaN values are skipped (output 0.0, statistics unchanged).
        halflife: EWM half-life in bars, > 0.
        warmup: number of past values required before a z-score is emitted (0.0 before).

    Returns:
        Array of z-scores, same length as x, 0.0 where undefined.
    """
    alpha = 1.0 - np.exp(np.log(0.5) / halflife)
    out = np.zeros(x.shape[0])
    mean = 0.0
    var = 0.0
    seen = 0
    for t in range(x.shape[0]):
        v = x[t]
        if not np.isfinite(v):
            continue
        if seen >= warmup and var > 1e-18:
            out[t] = (v - mean) / np.sqrt(var)
        if seen == 0:
            mean = v
        else:
            delta = v - mean
            mean += alpha * delta
            var = (1.0 - alpha) * (var + alpha * delta * delta)
        seen += 1
    return out


@dataclass(frozen=True, slots=True)
class FeatureNormalizer:
    """Per-feature affine normalisation ``(x - mean) / std`` fitted on a training split only.

    Attributes:
        names: feature names, in matrix column order.
        mean: per-feature mean.
        std: per-feature standard deviation (>= 1e-12).
    """

    names: tuple[str, ...]
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, data: MarketData) -> FeatureNormalizer:
        """Fit on ``data`` (pass the TRAINING split's `MarketData`; never the evaluation span)."""
        feats = data.raw_features.astype(np.float64)
        feats[~np.isfinite(feats)] = np.nan  # warm-up rows of indicators are NaN: ignore them
        seen = np.isfinite(feats).any(axis=0)
        safe = np.where(seen, feats, 0.0) if not seen.all() else feats
        mean = np.where(seen, np.nanmean(safe, axis=0), 0.0)
        std = np.where(seen, np.nanstd(safe, axis=0), 1.0)
        return cls(names=data.feature_names, mean=mean, std=np.where(std < 1e-12, 1.0, std))

    def to_dict(self) -> dict[str, list[float] | list[str]]:
        """Plain-container form (for JSON / saving beside a model)."""
        return {"names": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> FeatureNormalizer:
        """Inverse of `to_dict`."""
        return cls(tuple(d["names"]), np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


def derived_features(
    open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The env's own price features, shape (T, 4), each causal and scale-free.

    Columns (`DERIVED_FEATURES`): ``ret_1`` = causal z-score of log(close_t / close_{t-1});
    ``range_hl`` = z-score of log(high_t / low_t); ``body_co`` = z-score of log(close_t / open_t);
    ``volume_z`` = z-score of log(1 + volume_t).
    """
    logc = np.log(close)
    ret = np.empty_like(close)
    ret[0] = np.nan
    ret[1:] = logc[1:] - logc[:-1]
    raw = (ret, np.log(high / low), logc - np.log(open_), np.log1p(volume))
    return np.column_stack([causal_zscore(x, NORM_HALFLIFE_BARS, NORM_WARMUP_BARS) for x in raw])


def _rolling_log_return_stats(
    close: npt.NDArray[np.float64], lookback: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-bar mean and sample std of 1-bar log returns over ``lookback`` bars ending at t.

    Uses fewer returns while fewer exist (at least 2); NaN before that.
    """
    ret = pd.Series(np.concatenate([[np.nan], np.diff(np.log(close))]))
    roll = ret.rolling(lookback, min_periods=2)
    return roll.mean().to_numpy(np.float64), roll.std(ddof=1).to_numpy(np.float64)


@dataclass(frozen=True, slots=True)
class MarketData:
    """Bars as contiguous arrays; built once, read by the env's compiled kernels.

    Attributes:
        timestamp: int64 bar open times, ms UTC, strictly increasing.
        open, high, low, close: float64 prices, quote currency per base unit.
        volume: float64 base units.
        funding_rate: float64 per-bar funding rate (fraction per interval), or None.
        spread: float64 full spread in quote currency, or None.
        feature_names: names of the observation features (derived first, then data columns).
        raw_features: float32 (T, F) feature matrix before normalisation and clipping.
    """

    timestamp: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    funding_rate: npt.NDArray[np.float64] | None
    spread: npt.NDArray[np.float64] | None
    feature_names: tuple[str, ...]
    raw_features: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @property
    def median_bar_ms(self) -> float:
        """Median spacing of bar open times in ms (the bar interval)."""
        if len(self) < 2:
            raise ValueError("need at least 2 bars to infer the bar interval")
        return float(np.median(np.diff(self.timestamp)))

    @classmethod
    def load(cls, data: pd.DataFrame | str | Path | MarketData) -> MarketData:
        """Validate and convert a DataFrame or Parquet path (a `MarketData` passes through)."""
        if isinstance(data, MarketData):
            return data
        if isinstance(data, (str, Path)):
            path = Path(data)
            if not path.is_file():
                raise ValueError(
                    f"market data file {str(path)!r} {'is a folder' if path.is_dir() else 'not found'}; pass one "
                    f"Parquet file with columns "
                    f"{list(OHLCV_COLUMNS)} (the repo ships data/sample/btcusdt_1h.parquet)"
                )
            data = pd.read_parquet(path)
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"market data must be a DataFrame, a Parquet path or MarketData, got {type(data).__name__}")
        return cls.from_frame(data)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> MarketData:
        """Validate bars (see `envs.market.bars.check_bars`) and build the arrays and features."""
        check_bars(df)
        check_columns(df)
        arrays = {c: np.ascontiguousarray(df[c].to_numpy(dtype=np.float64)) for c in OHLCV_COLUMNS[1:]}
        timestamp = np.ascontiguousarray(df["timestamp"].to_numpy(dtype=np.int64))
        special = {name: np.ascontiguousarray(df[name].to_numpy(dtype=np.float64)) if name in df.columns else None
                   for name in SPECIAL_COLUMNS}
        extra_names = [c for c in df.columns if c not in OHLCV_COLUMNS and c not in SPECIAL_COLUMNS]
        blocks = [derived_features(arrays["open"], arrays["high"], arrays["low"], arrays["close"], arrays["volume"])]
        names = list(DERIVED_FEATURES)
        if special["funding_rate"] is not None:
            blocks.append((special["funding_rate"] * 1e4)[:, None])  # bps per interval
            names.append("funding_rate_bps")
        if special["spread"] is not None:
            blocks.append((special["spread"] / arrays["close"] * 1e4)[:, None])  # bps of close
            names.append("spread_bps")
        if extra_names:
            blocks.append(df[extra_names].to_numpy(dtype=np.float64))
            names.extend(extra_names)
        raw = np.ascontiguousarray(np.column_stack(blocks).astype(np.float32))
        return cls(
            timestamp=timestamp,
            open=arrays["open"],
            high=arrays["high"],
            low=arrays["low"],
            close=arrays["close"],
            volume=arrays["volume"],
            funding_rate=special["funding_rate"],
            spread=special["spread"],
            feature_names=tuple(names),
            raw_features=raw,
        )

    def slice(self, start: int, stop: int) -> MarketData:
        """Rows [start, stop) as a new `MarketData` (features were computed causally, so a slice
        of the full series equals what the slice alone would see plus its warm-up)."""
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[start:stop])

        return MarketData(
            timestamp=cut(self.timestamp), open=cut(self.open), high=cut(self.high), low=cut(self.low),  # type: ignore[arg-type]
            close=cut(self.close), volume=cut(self.volume), funding_rate=cut(self.funding_rate),  # type: ignore[arg-type]
            spread=cut(self.spread), feature_names=self.feature_names, raw_features=cut(self.raw_features),  # type: ignore[arg-type]
        )

    def select_features(self, names: Sequence[str]) -> MarketData:
        """The same bars with only the observation features ``names`` (kept in this data's order).

        Used to apply a column selection decided elsewhere (collinearity pruning on the training
        split) to every split; unknown names raise ``ValueError`` listing the available ones.
        """
        wanted = set(names)
        unknown = sorted(wanted - set(self.feature_names))
        if unknown:
            raise ValueError(f"features {unknown} are not in this data; it has {list(self.feature_names)}")
        idx = [i for i, n in enumerate(self.feature_names) if n in wanted]
        return replace(
            self,
            feature_names=tuple(self.feature_names[i] for i in idx),
            raw_features=np.ascontiguousarray(self.raw_features[:, idx]),
        )

    def observation_features(
        self, obs_clip: float, normalizer: FeatureNormalizer | None = None
    ) -> npt.NDArray[np.float32]:
        """Feature matrix (T, F) float32 for observations: normalised (if given), NaN -> 0, clipped."""
        feats = self.raw_features.astype(np.float64)
        if normalizer is not None:
            if tuple(normalizer.names) != self.feature_names:
                raise ValueError(
                    f"normalizer was fitted on features {list(normalizer.names)} but the data has "
                    f"{list(self.feature_names)}; refit it on the training split of this data"
                )
            feats = (feats - normalizer.mean) / normalizer.std
        feats = np.nan_to_num(feats, nan=0.0, posinf=obs_clip, neginf=-obs_clip)
        return np.ascontiguousarray(np.clip(feats, -obs_clip, obs_clip).astype(np.float32))

    def log_return_stats(self, lookback: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(mean, std) of 1-bar log returns over ``lookback`` bars ending at each t (causal)."""
        return _rolling_log_return_stats(self.close, lookback)

    def funding_per_bar(self, constant_rate: float, interval_h: float) -> npt.NDArray[np.float64]:
        """Funding rate charged in each bar: (number of funding times in the bar) x rate.

        Funding times are multiples of ``interval_h`` hours since the Unix epoch (UTC). Bar j
        covers [open_j, open_{j+1}); the last bar covers one median bar interval. The rate is the
        bar's ``funding_rate`` column when present, else ``constant_rate``.
        """
        interval_ms = interval_h * 3_600_000.0
        ends = np.empty(len(self), dtype=np.float64)
        ends[:-1] = self.timestamp[1:]
        ends[-1] = self.timestamp[-1] + (self.median_bar_ms if len(self) > 1 else interval_ms)
        starts = self.timestamp.astype(np.float64)
        counts = np.ceil(ends / interval_ms) - np.ceil(starts / interval_ms)
        rate = self.funding_rate if self.funding_rate is not None else np.full(len(self), constant_rate)
        return np.ascontiguousarray(counts * rate)


def attach_funding(bars: pd.DataFrame, funding: pd.DataFrame, round_ms: int = 1000) -> pd.DataFrame:
    """Return ``bars`` with a ``funding_rate`` column from a funding-event table.

    Each bar carries the rate of the latest funding event at or before its close
    (open of the next bar), forward-filled, so the bar that contains a funding time carries that
    event's rate. Event timestamps are rounded to ``round_ms`` first (exchanges publish a few ms of
    jitter). Bars before the first event get the first event's rate is NOT done: they get 0.0 and
    a warning says how many.
    """
    check_timestamp_unit(funding["timestamp"].to_numpy(dtype=np.int64), "funding events")
    events = funding[["timestamp", "funding_rate"]].copy()
    events["timestamp"] = (events["timestamp"] + round_ms // 2) // round_ms * round_ms
    events = events.sort_values("timestamp").drop_duplicates("timestamp", keep="last")
    ts = bars["timestamp"].to_numpy(np.int64)
    bar_end = np.empty_like(ts)
    bar_end[:-1] = ts[1:]
    bar_end[-1] = ts[-1] + (int(np.median(np.diff(ts))) if len(ts) > 1 else 1)
    pos = np.searchsorted(events["timestamp"].to_numpy(np.int64), bar_end, side="left") - 1
    rates = events["funding_rate"].to_numpy(np.float64)
    out = bars.copy()
    out["funding_rate"] = np.where(pos >= 0, rates[np.clip(pos, 0, None)], 0.0)
    n_before = int((pos < 0).sum())
    if n_before:
        logger.warning("%d bar(s) precede the first funding event; their funding_rate is set to 0.0", n_before)
    return out
