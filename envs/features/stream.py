"""Per-bar features: one new bar at a time, equal to the batch features (``build_features``) of the whole history.

``FeatureStream(config).append(bar)`` returns that bar's feature row at a bounded cost per bar, whatever
the length of the history. Each family runs the batch code (``envs.features.pipeline``):

- **returns, time, indicators**: recomputed on the last ``memory`` bars only, where ``memory``
  (`memory_bars`) is the longest memory of the enabled registry entries (``Indicator.memory``: the
  window for a finite window, the window plus the bars an EWM or Wilder average needs to forget its
  start to float64 rounding, ``(1 - alpha)^bars <= 1e-16``); the row equals the batch row to that
  bound (tests/features/test_stream.py checks every registry column against the batch, <= 1e-9).
- **levels, Fibonacci**: their state (the levels, touch counts, last swings) has unbounded memory,
  so it is carried: the batch kernel `envs.features.levels.levels_run` is advanced by one bar with the
  saved state, the same arithmetic in the same order as the batch run.
- **higher timeframes**: the HTF bar is aggregated as base bars arrive; when a base bar opens in a
  later bucket the bucket has closed, its bar is appended to a nested ``FeatureStream`` of the HTF
  config (same rules, once per HTF bar) and its row is what every base bar sees until the next one
  closes (the visibility rule of `envs.features.mtf`).

Cost per bar: O(memory x longest window) numba work, O(1) for levels and the HTF join, plus one HTF
row per closed bucket. The stream must be fed from the history's first bar (or from far enough back
that the carried levels state has forgotten the difference; see docs/features.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from envs.data.resample import parse_timeframe, resample_arrays
from envs.features.indicators import (
    INDICATORS,
    IndicatorParams,
    atr,
    indicator_columns_of,
    iter_log_return_features,
    iter_time_features,
)
from envs.features.levels import FIB_POS_CLIP, FIB_RATIOS, LEVEL_COLUMNS, levels_run, new_level_state
from envs.features.mtf import iter_join_rows
from envs.features.pipeline import (
    BarArrays,
    FeatureConfig,
    bar_arrays,
    base_groups,
    family_columns,
    feature_columns,
    mtf_families,
)
from envs.market.bars import OHLCV_COLUMNS


def memory_bars(config: FeatureConfig, families: set[str] | None = None) -> int:
    """Bars the recomputed families (returns, time, indicators) of ``config`` need for one row (>= 2)."""
    fams = _families(config, families)
    out = [2]
    if "returns" in fams:
        out += [max(config.return_windows, default=0) + 1, 2 + max(config.return_lags, default=0),
                max(config.vol_windows, default=0) + 1]
    if {"indicators", "levels", "fibonacci"} & fams:  # the levels use the ATR of the recomputed bars
        p = IndicatorParams.of(config)
        keep = set(config.indicator_columns) if "indicators" in fams else {"atr_frac"}
        out += [ind.memory(p) + 1 for ind in INDICATORS if keep & set(ind.columns)]
    return max(out)


def _families(config: FeatureConfig, families: set[str] | None) -> set[str]:
    return {f for g in base_groups(config) for f in g} if families is None else set(families)


class Ring:
    """The last ``capacity`` values of ``width`` columns, each a contiguous view (amortised O(1) append)."""

    def __init__(self, width: int, capacity: int) -> None:
        self.capacity = capacity
        self.data = np.empty((width, 2 * capacity))
        self.stop = 0  # one past the newest value
        self.size = 0

    def append(self, values: np.ndarray | tuple[float, ...]) -> None:
        if self.stop == self.data.shape[1]:  # full: move the newest capacity - 1 values to the front
            keep = self.capacity - 1
            self.data[:, :keep] = self.data[:, self.stop - keep : self.stop]
            self.stop = keep
        self.data[:, self.stop] = values
        self.stop += 1
        self.size = min(self.size + 1, self.capacity)

    def view(self, rows: int) -> np.ndarray:
        """``(width, min(rows, size))`` view of the newest values, oldest first."""
        return self.data[:, self.stop - min(rows, self.size) : self.stop]


class _HigherTimeframe:
    """One higher timeframe: the bucket being filled and the stream of its closed bars."""

    def __init__(self, timeframe: str, config: FeatureConfig) -> None:
        self.tf_ms = parse_timeframe(timeframe)
        self.prefix = f"mtf_{timeframe}_"
        self.stream = FeatureStream(config.htf_config(), families=mtf_families(config))
        self.bucket = -1
        self.bars: list[tuple[float, float, float, float, float]] = []  # (open, high, low, close, volume)
        self.row: np.ndarray | None = None  # features of the latest closed HTF bar (None before the first)

    def append(self, ts: int, bar: tuple[float, float, float, float, float]) -> None:
        bucket = ts // self.tf_ms
        if bucket != self.bucket and self.bars:  # the bucket closed before this bar opened: now visible
            x = np.asarray(self.bars)
            self.row = self.stream.append(
                self.bucket * self.tf_ms, x[0, 0], np.maximum.reduceat(x[:, 1], [0])[0],
                np.minimum.reduceat(x[:, 2], [0])[0], x[-1, 3], np.add.reduceat(x[:, 4], [0])[0])
            self.bars = []
        self.bucket = bucket
        self.bars.append(bar)

    def seed(self, b: BarArrays) -> Iterator[tuple[str, np.ndarray]]:
        """Seed with base bars ``b`` (a fresh stream); yield the joined HTF columns of their rows."""
        htf = resample_arrays(b["timestamp"], b, self.tf_ms)
        closed = {k: v[:-1] for k, v in htf.items()}  # the last bucket is still open
        matrix = self.stream.seed(closed)
        if len(matrix):
            self.row = matrix[-1]
        self.bucket = int(b["timestamp"][-1] // self.tf_ms)
        first = int(np.flatnonzero(b["timestamp"] // self.tf_ms == self.bucket)[0])
        self.bars = [(float(b["open"][i]), float(b["high"][i]), float(b["low"][i]), float(b["close"][i]),
                      float(b["volume"][i])) for i in range(first, b["close"].size)]
        yield from iter_join_rows(b["timestamp"], list(self.stream.columns), matrix, closed["timestamp"], self.tf_ms,
                                  self.prefix)

    def columns(self) -> Iterator[tuple[str, float]]:
        names = self.stream.columns
        for j, name in enumerate(names):
            yield self.prefix + name, np.nan if self.row is None else float(self.row[j])


class FeatureStream:
    """The feature row of each new bar, from a bounded amount of work per bar (see the module docstring).

    Args:
        config: the feature config (the same as the batch features it must equal).
        rows: feature rows kept for `latest` (>= 1).
        families: base families to compute (default: the config's enabled ones; the HTF streams pass
            ``mtf_families``).

    Attributes:
        columns: the feature column names, in ``build_features`` order.
        memory: bars the recomputed families are computed on (`memory_bars`).
        n_seen: bars appended so far.
    """

    def __init__(self, config: FeatureConfig, rows: int = 1, families: set[str] | None = None) -> None:
        if rows < 1:
            raise ValueError(f"rows={rows} is invalid: keep at least the newest row")
        self.config = config
        self.families = _families(config, families)
        self.memory = memory_bars(config, self.families)
        self.levels = bool({"levels", "fibonacci"} & self.families)
        self._bars = Ring(len(OHLCV_COLUMNS), max(self.memory, 2 * int(config.swing_k) + 1))
        self._htf = [_HigherTimeframe(tf, config) for tf in config.mtf_timeframes] if families is None else []
        base = _stream_columns(config, self.families) if self.families else ()
        self.columns: tuple[str, ...] = base + tuple(f"{h.prefix}{c}" for h in self._htf for c in h.stream.columns)
        self.rows = rows
        self._rows = Ring(len(self.columns), rows)
        self._lv_state = new_level_state(int(config.max_levels))
        self.n_seen = 0
        self._last_ts = 0

    def append(self, timestamp: int, open_: float, high: float, low: float, close: float, volume: float) -> np.ndarray:
        """Add the newest closed bar; return its feature row (float64, NaN in warm-up), as `columns`."""
        ts = int(timestamp)
        if self.n_seen and ts <= self._last_ts:
            raise ValueError(f"bar {ts} is not after the previous bar {self._last_ts}: bars must be strictly increasing")
        self._last_ts = ts
        self._bars.append((ts, open_, high, low, close, volume))
        values = dict(self._base_values(ts))
        for h in self._htf:
            h.append(ts, (open_, high, low, close, volume))
            values.update(h.columns())
        row = np.array([values[c] for c in self.columns], dtype=np.float64)
        self._rows.append(row)
        self.n_seen += 1
        return row

    def _base_values(self, ts: int) -> Iterator[tuple[str, float]]:
        """(name, value) of the newest bar for the base families."""
        cfg, fams = self.config, self.families
        _, _, h, lo, c, v = self._bars.view(self.memory)
        a = atr(h, lo, c, cfg.atr_window) if {"indicators", "levels", "fibonacci"} & fams else None
        if "returns" in fams:
            for name, col in iter_log_return_features(c, cfg.return_windows, cfg.return_lags, cfg.vol_windows):
                yield name, float(col[-1])
        if "time" in fams:
            for name, col in iter_time_features(np.array([ts], dtype=np.int64)):
                yield name, float(col[-1])
        if "indicators" in fams:
            bars = {"high": h, "low": lo, "close": c, "volume": v, "atr": a}
            for name, col in indicator_columns_of(bars, IndicatorParams.of(cfg), cfg.indicator_columns):  # type: ignore[arg-type]
                yield name, float(col[-1])
        if self.levels:
            yield from self._level_values(float(a[-1]))  # type: ignore[index]

    def _level_values(self, atr_now: float) -> Iterator[tuple[str, float]]:
        """Advance the carried levels state by the newest bar (the batch kernel, one row)."""
        cfg, k = self.config, int(self.config.swing_k)
        _, _, h, lo, c, _ = self._bars.view(2 * k + 1)
        n = c.size
        atr_rows = np.full(n, np.nan)
        atr_rows[-1] = atr_now
        out = np.full((n, len(LEVEL_COLUMNS)), np.nan)
        levels, counts, touched, scalars = self._lv_state
        levels_run(h, lo, c, atr_rows, n - 1, self.n_seen - (n - 1), k, float(cfg.cluster_atr),
                   float(cfg.max_dist_atr), _FIB, FIB_POS_CLIP[0], FIB_POS_CLIP[1], levels, counts, touched,
                   scalars, out)
        for j, name in enumerate(LEVEL_COLUMNS):
            if ("levels" in self.families and j < 4) or ("fibonacci" in self.families and j >= 4):
                yield name, float(out[-1, j])

    def seed(self, bars: BarArrays) -> np.ndarray:
        """Start the stream with many bars at once (the batch code); return their ``(n, F)`` float64 rows.

        The state afterwards is the state after appending them one by one: the carried levels state
        and the HTF bars are the same numbers; the recomputed families' rows are the batch rows, equal
        to the streamed ones to the `memory_bars` bound. Only on a fresh stream.
        """
        if self.n_seen:
            raise RuntimeError("seed a FeatureStream before appending bars")
        b = bar_arrays(bars)
        n, cfg = b["close"].size, self.config
        if n == 0:
            return np.empty((0, len(self.columns)))
        if n > 1 and not (b["timestamp"][1:] > b["timestamp"][:-1]).all():
            raise ValueError("seed bars must have strictly increasing timestamps")
        values: dict[str, np.ndarray] = {}
        need_atr = {"indicators", "levels", "fibonacci"} & self.families
        a = atr(b["high"], b["low"], b["close"], cfg.atr_window) if need_atr else np.empty(0)
        recomputed = self.families - {"levels", "fibonacci"}
        if recomputed:
            values.update(family_columns({**b, "atr": a} if need_atr else b, cfg, recomputed))
        if self.levels:
            out = np.full((n, len(LEVEL_COLUMNS)), np.nan)
            levels, counts, touched, scalars = self._lv_state
            levels_run(b["high"], b["low"], b["close"], a, 0, 0, int(cfg.swing_k), float(cfg.cluster_atr),
                       float(cfg.max_dist_atr), _FIB, FIB_POS_CLIP[0], FIB_POS_CLIP[1], levels, counts, touched,
                       scalars, out)
            values.update((name, out[:, j]) for j, name in enumerate(LEVEL_COLUMNS))
        for h in self._htf:
            values.update(h.seed(b))
        matrix = np.empty((n, len(self.columns)))
        for j, name in enumerate(self.columns):
            matrix[:, j] = values[name]
        for i in range(max(0, n - self._bars.capacity), n):
            self._bars.append(tuple(float(b[c][i]) for c in OHLCV_COLUMNS))
        for i in range(max(0, n - self.rows), n):
            self._rows.append(matrix[i])
        self.n_seen, self._last_ts = n, int(b["timestamp"][-1])
        return matrix

    def latest(self, rows: int) -> np.ndarray:
        """The last ``rows`` feature rows (oldest first), ``config.dtype``; NaN rows before the first bar."""
        if rows > self.rows:
            raise ValueError(f"rows={rows} > the {self.rows} rows this stream keeps (FeatureStream(rows=...))")
        view = self._rows.view(rows)
        out = np.full((rows, len(self.columns)), np.nan, dtype=self.config.dtype)
        out[rows - view.shape[1] :] = view.T
        return out


_FIB = np.asarray(FIB_RATIOS)


def _stream_columns(config: FeatureConfig, families: set[str]) -> tuple[str, ...]:
    """Column names of the base ``families`` of ``config``, as the batch pipeline names them."""
    base = dataclasses.replace(config, mtf_timeframes=(), returns="returns" in families, time="time" in families,
                               indicators="indicators" in families, levels="levels" in families,
                               fibonacci="fibonacci" in families)
    probe: dict[str, np.ndarray] = {"timestamp": np.arange(64, dtype=np.int64) * 60_000}
    for col in OHLCV_COLUMNS[1:]:
        probe[col] = np.linspace(100.0, 101.0, 64)
    return feature_columns(base, probe)
