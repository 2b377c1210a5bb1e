"""Validation of OHLCV bars: the rules every load checks, with messages that say what to fix.

The bar format used everywhere in quantgym: ``timestamp`` (int64, bar open time, ms since the
Unix epoch, UTC), ``open``, ``high``, ``low``, ``close`` (float64, quote currency per base unit)
and ``volume`` (float64, base units), sorted by strictly increasing ``timestamp``.

``check_bars`` raises on the first broken rule (used by ``TradingEnv`` on construction);
``find_violations`` returns all broken rules (used by reports and cleaning policies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

OHLCV_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


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


def _violation(rule: str, bad: np.ndarray, timestamps: np.ndarray | None) -> Violation | None:
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return None
    first = int(idx[0])
    ts = int(timestamps[first]) if timestamps is not None else None
    return Violation(rule=rule, count=int(idx.size), first_index=first, first_timestamp=ts)


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
    ohlcv = np.column_stack([o, h, lo, c, v]) if len(ts) else np.zeros((0, 5))
    found.append(_violation("no NaN/inf in OHLCV", ~np.isfinite(ohlcv).all(axis=1), ts))
    with np.errstate(invalid="ignore"):
        found.append(_violation("prices > 0", (np.column_stack([o, h, lo, c]) <= 0).any(axis=1), ts))
        found.append(_violation("volume >= 0", v < 0, ts))
        found.append(_violation("high >= max(open, close)", h < np.maximum(o, c), ts))
        found.append(_violation("low <= min(open, close)", lo > np.minimum(o, c), ts))
    return [f for f in found if f is not None]


def check_bars(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` for the first broken bar rule; return None when ``df`` is clean.

    The message names the rule, the first offending row (position and timestamp) and how many
    rows break it, plus how to inspect the whole list (``scripts/validate.py``).
    """
    if len(df) == 0:
        raise ValueError("bars are empty: no rows to trade on")
    violations = find_violations(df)
    if violations:
        first = violations[0]
        others = f" ({len(violations) - 1} other rule(s) broken too)" if len(violations) > 1 else ""
        raise ValueError(
            f"invalid market data: {first.message()}{others}. Fix the source or clean it "
            "(see `python scripts/validate.py data.path=...`); nothing is repaired silently."
        )
