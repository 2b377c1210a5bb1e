"""Validation of OHLCV bars: the rules every load checks, with messages that say what to fix.

The bar format used everywhere in quantgym: ``timestamp`` (int64, bar open time, ms since the
Unix epoch, UTC), ``open``, ``high``, ``low``, ``close`` (float64, quote currency per base unit)
and ``volume`` (float64, base units), sorted by strictly increasing ``timestamp``.

``check_bars`` raises on the first broken rule (used by ``TradingEnv`` on construction);
``find_violations`` returns all broken rules (used by reports and cleaning policies).
The full data-quality report (``validate``, ``ValidationReport``: gaps, duplicates, ordering, NaN/inf,
prices, OHLC consistency, zero-volume runs, return outliers with counts and examples) lives in
`envs.data.quality`; the cleaning policy (``envs.data.cleaning.CleaningConfig``) decides which
problems are errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.market.times import iso_utc

if TYPE_CHECKING:
    pass

OHLCV_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
#: Optional columns with a meaning of their own (not plain observation features).
SPECIAL_COLUMNS: tuple[str, ...] = ("funding_rate", "spread")
#: Largest |funding rate| per funding interval accepted in data and config (0.1 = 10 %; exchanges
#: cap it at a few percent, so a larger value is a unit error such as percent or bps).
MAX_ABS_FUNDING_RATE = 0.1
#: Largest |value| of an extra (feature) column: float32's maximum, the observation dtype.
MAX_FEATURE_ABS = float(np.finfo(np.float32).max)


#: Supported bar times: [1970-01-01, 2100-01-01) as int64 ms UTC.
MIN_TIMESTAMP_MS = 0
MAX_TIMESTAMP_MS = 4_102_444_800_000
#: 2000-01-01 and 2100-01-01 in seconds: a series entirely inside this span with steps of at most a
#: week (in seconds) is a seconds series (as ms it would be bars in January/February 1970).
_SECONDS_SPAN = (946_684_800, 4_102_444_800)
_SECONDS_MAX_STEP = 604_800


def timestamp_unit_error(timestamps: npt.ArrayLike) -> str | None:
    """Why ``timestamps`` are not int64 ms UTC in [1970, 2100), from their magnitude; None when they are.

    Detects seconds (all values in 2000..2100 as seconds, steps <= one week), microseconds
    (max >= 1e14) and nanoseconds (max >= 1e17), and names the conversion to ms. The one
    implementation of the unit rule: the env, the loader, ``validate``, the store and the feeds call it
    (through ``check_timestamp_unit`` or ``check_bars``).
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size == 0:
        return None
    lo, hi = int(ts.min()), int(ts.max())
    unit = fix = ""
    if hi >= 10**17:
        unit, fix = "nanoseconds", "df['timestamp'] //= 1_000_000"
    elif hi >= 10**14:
        unit, fix = "microseconds", "df['timestamp'] //= 1_000"
    elif _SECONDS_SPAN[0] <= lo and hi < _SECONDS_SPAN[1] and (
        ts.size < 2 or float(np.median(np.abs(np.diff(ts)))) <= _SECONDS_MAX_STEP
    ):
        unit, fix = "seconds", "df['timestamp'] *= 1_000"
    if unit:
        return (
            f"column 'timestamp' looks like {unit} since the epoch (values {lo} .. {hi}), but quantgym bars use "
            f"int64 milliseconds UTC; convert it ({fix}) and load again"
        )
    if lo < MIN_TIMESTAMP_MS or hi >= MAX_TIMESTAMP_MS:
        return (
            f"column 'timestamp' has values {lo} .. {hi} outside the supported range [{MIN_TIMESTAMP_MS}, "
            f"{MAX_TIMESTAMP_MS}) = 1970-01-01 .. 2100-01-01 in int64 milliseconds UTC; check the unit and the source"
        )
    return None


def check_timestamp_unit(timestamps: npt.ArrayLike, where: str = "bars") -> None:
    """Raise ``ValueError`` when ``timestamps`` are not ms UTC in [1970, 2100) (see `timestamp_unit_error`).

    Args:
        timestamps: int64 timestamps.
        where: what is being loaded, for the message (e.g. ``"store append binance BTC/USDT 1m"``).
    """
    err = timestamp_unit_error(timestamps)
    if err is not None:
        raise ValueError(f"{where}: {err}")


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule.

    Attributes:
        rule: short rule name, e.g. ``"high >= max(open, close)"``.
        count: number of rows that break it.
        first_index: positional row index (0-based) of the first offending row.
        first_timestamp: ``timestamp`` (ms UTC) of that row, or None when unavailable.
    """

    rule: str
    count: int
    first_index: int
    first_timestamp: int | None

    def message(self) -> str:
        """Human-readable description naming rule, first row and count."""
        when = ""
        if self.first_timestamp is not None:
            iso = pd.Timestamp(int(self.first_timestamp), unit="ms", tz="UTC").isoformat()
            when = f", timestamp {self.first_timestamp} ({iso})"
        return (
            f"data rule '{self.rule}' broken by {self.count} row(s); first at row {self.first_index}{when}"
        )


def _violation(rule: str, bad: npt.ArrayLike, timestamps: np.ndarray | None) -> Violation | None:
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return None
    first = int(idx[0])
    ts = int(timestamps[first]) if timestamps is not None else None
    return Violation(rule=rule, count=int(idx.size), first_index=first, first_timestamp=ts)


#: The per-row value rules of a bar, each as (name, what a good row satisfies). `row_rule_masks` computes
#: them; the load-time check (`find_violations`), the quality report (`envs.data.quality`) and the
#: cleaning policies (`envs.data.cleaning`) all use it, so each rule is written once.
ROW_RULES: tuple[tuple[str, str], ...] = (
    ("non_finite", "no NaN/inf in OHLCV"),
    ("non_positive", "prices > 0"),
    ("negative_volume", "volume >= 0"),
    ("high_below_body", "high >= max(open, close)"),
    ("low_above_body", "low <= min(open, close)"),
)
#: the rules whose breach makes a bar's OHLC inconsistent (high < low implies one of them)
OHLC_RULES = ("high_below_body", "low_above_body")


def row_rule_masks(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Rows breaking each of `ROW_RULES` (True = broken), from float64 OHLCV columns of equal length."""
    ohlcv = np.column_stack([o, h, lo, c, v]) if len(o) else np.zeros((0, 5))
    with np.errstate(invalid="ignore"):
        return {
            "non_finite": ~np.isfinite(ohlcv).all(axis=1),
            "non_positive": (ohlcv[:, :4] <= 0).any(axis=1),
            "negative_volume": v < 0,
            "high_below_body": h < np.maximum(o, c),
            "low_above_body": lo > np.minimum(o, c),
        }


def ohlc_inconsistent(masks: dict[str, np.ndarray]) -> np.ndarray:
    """Rows breaking any of `OHLC_RULES` (``masks`` from `row_rule_masks`)."""
    return masks["high_below_body"] | masks["low_above_body"]


def find_violations(df: pd.DataFrame) -> list[Violation]:
    """Return every broken bar rule of ``df`` (empty list when the bars are clean).

    Rules: required columns present; ``timestamp`` integer and strictly increasing; no NaN/inf in
    OHLCV; prices > 0; volume >= 0; high >= max(open, close); low <= min(open, close).

    Raises:
        ValueError: when required columns are missing or ``timestamp`` is not an integer column
            (nothing else can be checked then).
    """
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"bars are missing column(s) {missing}; expected {list(OHLCV_COLUMNS)} "
            "(timestamp = bar open time in int64 ms UTC)"
        )
    if not pd.api.types.is_integer_dtype(df["timestamp"]):
        raise ValueError(
            f"column 'timestamp' has dtype {df['timestamp'].dtype}; expected int64 milliseconds since the "
            "Unix epoch, UTC (convert with: df.timestamp = pd.to_datetime(df.timestamp).astype('int64') // 10**6)"
        )
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    o, h, lo, c, v = (df[col].to_numpy(dtype=np.float64) for col in OHLCV_COLUMNS[1:])
    found: list[Violation | None] = []
    not_increasing = np.zeros(len(ts), dtype=bool)
    not_increasing[1:] = ts[1:] <= ts[:-1]
    found.append(_violation("timestamps strictly increasing", not_increasing, ts))
    masks = row_rule_masks(o, h, lo, c, v)
    found.extend(_violation(rule, masks[name], ts) for name, rule in ROW_RULES)
    return [f for f in found if f is not None]


def check_bars(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` for the first broken bar rule; return None when ``df`` is clean.

    The message names the rule, the first offending row (position and timestamp) and how many
    rows break it, plus how to inspect the whole list (``scripts/validate.py``).
    """
    if len(df) == 0:
        raise ValueError("bars are empty: no rows to trade on")
    violations = find_violations(df)
    check_timestamp_unit(df["timestamp"].to_numpy(dtype=np.int64), "invalid market data")
    if violations:
        first = violations[0]
        others = f" ({len(violations) - 1} other rule(s) broken too)" if len(violations) > 1 else ""
        raise ValueError(
            f"invalid market data: {first.message()}{others}. Fix the source or clean it "
            "(see `python scripts/validate.py data.path=...`); nothing is repaired silently."
        )


def _column_error(name: str, what: str, idx: np.ndarray, values: np.ndarray, ts: np.ndarray, fix: str) -> ValueError:
    i = int(idx[0])
    return ValueError(
        f"column '{name}' has {idx.size} value(s) {what}; first at row {i}, timestamp {int(ts[i])} "
        f"({iso_ms(int(ts[i]))}): {float(values[i])!r}. {fix}"
    )


def check_columns(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` for an optional or extra column outside its documented range.

    Ranges (each message names the column, the first offending row and its timestamp):

    - ``funding_rate``: finite, ``|rate| < MAX_ABS_FUNDING_RATE`` (fraction per funding interval).
    - ``spread``: finite, ``0 <= spread < low`` (full bid/ask spread in quote currency).
    - any other column (an observation feature): a real numeric dtype (no complex, no object);
      NaN only in a leading warm-up run (before the column's first value); no +-inf; ``|x| <=``
      float32's maximum (the observation dtype).

    Call after ``check_bars`` (timestamps and prices are valid then).
    """
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    for name in SPECIAL_COLUMNS:
        if name not in df.columns:
            continue
        if not pd.api.types.is_numeric_dtype(df[name]) or pd.api.types.is_complex_dtype(df[name]):
            raise ValueError(f"column '{name}' has dtype {df[name].dtype}; expected float64")
        col = df[name].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            if name == "funding_rate":
                bad = ~(np.abs(col) < MAX_ABS_FUNDING_RATE)
                what = f"outside |rate| < {MAX_ABS_FUNDING_RATE} (or NaN/inf)"
                fix = ("funding_rate is a fraction per funding interval (0.0001 = 0.01 %); convert percent or "
                       "bps, and fill or drop missing rates")
            else:
                bad = ~((col >= 0) & (col < df["low"].to_numpy(dtype=np.float64)))
                what = "outside [0, low) (or NaN/inf)"
                fix = ("spread is the full bid/ask spread in quote currency and must be below the bar's low; "
                       "convert bps or fractions to quote currency, and fill or drop missing values")
        idx = np.flatnonzero(bad)
        if idx.size:
            raise _column_error(name, what, idx, col, ts, fix)
    for name in (c for c in df.columns if c not in OHLCV_COLUMNS and c not in SPECIAL_COLUMNS):
        _check_feature_column(name, df[name], ts)


def _check_feature_column(name: str, series: pd.Series, ts: np.ndarray) -> None:
    if (not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_complex_dtype(series)):
        raise ValueError(
            f"extra column '{name}' has dtype {series.dtype}; every extra column becomes an observation "
            "feature and must be real numbers (drop it or encode it)"
        )
    col = series.to_numpy(dtype=np.float64)
    nan = np.isnan(col)
    idx = np.flatnonzero(np.isinf(col))
    if idx.size:
        raise _column_error(name, "that are inf", idx, col, ts, "Features must be finite; fix or drop the column.")
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(np.abs(col) > MAX_FEATURE_ABS)
    if idx.size:
        raise _column_error(name, f"beyond float32's range (|x| > {MAX_FEATURE_ABS:.3g})", idx, col, ts,
                            "Rescale the feature (observations are float32).")
    if nan.any() and not nan.all():
        first = int(np.argmax(~nan))
        idx = first + np.flatnonzero(nan[first:])
        if idx.size:
            raise _column_error(name, "that are NaN after its first value (only a leading warm-up may be NaN)",
                                idx, col, ts, "Fill or drop the missing values (nothing is zeroed silently).")


def iso_ms(timestamp_ms: int) -> str:
    """ISO-8601 UTC string of a millisecond timestamp, e.g. ``2024-06-01T00:00:00+00:00``."""
    return iso_utc(timestamp_ms)
