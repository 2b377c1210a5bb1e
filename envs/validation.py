"""Validation of OHLCV bars: the rules every load checks, with messages that say what to fix.

The bar format used everywhere in quantgym: ``timestamp`` (int64, bar open time, ms since the
Unix epoch, UTC), ``open``, ``high``, ``low``, ``close`` (float64, quote currency per base unit)
and ``volume`` (float64, base units), sorted by strictly increasing ``timestamp``.

``check_bars`` raises on the first broken rule (used by ``TradingEnv`` on construction);
``find_violations`` returns all broken rules (used by reports and cleaning policies).
``validate`` builds a full ``ValidationReport`` (gaps, duplicates, ordering, NaN/inf, prices,
OHLC consistency, zero-volume runs, return outliers) with counts and examples; the cleaning
policy (``envs.data.cleaning.CleaningConfig``) decides which problems are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.times import iso_utc

if TYPE_CHECKING:
    from envs.data.cleaning import CleaningConfig

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


# ---------------------------------------------------------------------------------------------
# Full data-quality report: every problem with counts and examples (used by scripts/validate.py
# and envs.data.cleaning). Unlike check_bars, nothing here raises on bad data.
# ---------------------------------------------------------------------------------------------

#: Problem kinds in report order; each is also the key of its policy in ``CleaningConfig``.
PROBLEM_KINDS: tuple[str, ...] = (
    "out_of_order",
    "duplicates",
    "non_finite",
    "non_positive",
    "negative_volume",
    "ohlc_inconsistent",
    "misaligned",
    "gaps",
    "zero_volume_runs",
    "return_outliers",
)

_DESCRIPTIONS: dict[str, str] = {
    "out_of_order": "rows whose timestamp is earlier than a previous row's",
    "duplicates": "rows repeating an earlier row's timestamp",
    "non_finite": "rows with NaN/inf in open/high/low/close/volume",
    "non_positive": "rows with a price <= 0",
    "negative_volume": "rows with volume < 0",
    "ohlc_inconsistent": "rows breaking high >= max(open, close), low <= min(open, close) or high >= low",
    "misaligned": "rows whose timestamp is off the bar grid (first timestamp + k * bar interval)",
    "gaps": "missing bars vs. the contiguous grid of the bar interval",
    "zero_volume_runs": "bars inside runs of >= N consecutive zero-volume bars",
    "return_outliers": "bars whose close-to-close log return has |robust z| above the threshold",
}

N_EXAMPLES = 5


def iso_ms(timestamp_ms: int) -> str:
    """ISO-8601 UTC string of a millisecond timestamp, e.g. ``2024-06-01T00:00:00+00:00``."""
    return iso_utc(timestamp_ms)


@dataclass(frozen=True, slots=True)
class Example:
    """One offending row (or gap) shown in a report.

    Attributes:
        index: positional row index (0-based) in the frame as given.
        timestamp: ``timestamp`` of that row, ms UTC.
        detail: short explanation (values, gap length, ...).
    """

    index: int
    timestamp: int
    detail: str = ""

    @property
    def iso(self) -> str:
        """``timestamp`` as an ISO-8601 UTC string."""
        return iso_ms(self.timestamp)

    def render(self) -> str:
        """``row 12 @ 1717200000000 (2024-06-01T00:00:00+00:00): detail``."""
        tail = f": {self.detail}" if self.detail else ""
        return f"row {self.index} @ {self.timestamp} ({self.iso}){tail}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Result of one check.

    Attributes:
        kind: one of ``PROBLEM_KINDS``.
        count: offending rows (for ``gaps``: missing bars; for ``zero_volume_runs``: bars in runs).
        examples: the first few offending rows (for ``gaps``: the bar before each gap).
        n_events: number of separate events (gaps, zero-volume runs); equals ``count`` for row rules.
        is_error: True when the current cleaning policy for ``kind`` is ``"raise"``.
        note: extra context (thresholds, why a check was skipped).
    """

    kind: str
    count: int
    examples: tuple[Example, ...] = ()
    n_events: int = 0
    is_error: bool = False
    note: str = ""

    @property
    def description(self) -> str:
        """What the check looks for."""
        return _DESCRIPTIONS[self.kind]

    def message(self) -> str:
        """One line naming the problem, its count and the first example."""
        first = f"; first: {self.examples[0].render()}" if self.examples else ""
        events = f" in {self.n_events} event(s)" if self.n_events and self.n_events != self.count else ""
        return f"{self.kind}: {self.count} {self.description}{events}{first}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Data-quality report of a bar frame (see ``validate``).

    Attributes:
        n_rows: rows checked.
        timeframe_ms: bar interval used for grid checks, ms (None when it could not be determined).
        timeframe_inferred: True when ``timeframe_ms`` was inferred from the data.
        first_timestamp: smallest timestamp, ms UTC (None for empty frames).
        last_timestamp: largest timestamp, ms UTC (None for empty frames).
        problems: one ``Problem`` per entry of ``PROBLEM_KINDS`` (count 0 when clean).
    """

    n_rows: int
    timeframe_ms: int | None
    timeframe_inferred: bool
    first_timestamp: int | None
    last_timestamp: int | None
    problems: tuple[Problem, ...]

    @property
    def found(self) -> tuple[Problem, ...]:
        """Problems with a non-zero count."""
        return tuple(p for p in self.problems if p.count > 0)

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Found problems whose policy is ``"raise"``."""
        return tuple(p for p in self.found if p.is_error)

    @property
    def ok(self) -> bool:
        """True when no found problem is an error under the policy."""
        return not self.errors

    def problem(self, kind: str) -> Problem:
        """The ``Problem`` of ``kind`` (one of ``PROBLEM_KINDS``)."""
        for p in self.problems:
            if p.kind == kind:
                return p
        raise KeyError(f"unknown problem kind {kind!r}; expected one of {list(PROBLEM_KINDS)}")

    def _header(self) -> list[str]:
        span = ""
        if self.first_timestamp is not None and self.last_timestamp is not None:
            span = f", {iso_ms(self.first_timestamp)} .. {iso_ms(self.last_timestamp)}"
        tf = "unknown" if self.timeframe_ms is None else f"{self.timeframe_ms} ms"
        how = " (inferred)" if self.timeframe_inferred else ""
        verdict = "OK" if self.ok else f"FAILED ({len(self.errors)} error(s))"
        return [f"{self.n_rows} rows{span}; bar interval {tf}{how}", f"verdict: {verdict}"]

    def to_text(self) -> str:
        """Plain-text rendering: header, one line per check, examples under found problems."""
        lines = self._header()
        for p in self.problems:
            status = "ERROR" if (p.count and p.is_error) else ("warn" if p.count else "ok")
            events = f" in {p.n_events} event(s)" if p.count and p.n_events and p.n_events != p.count else ""
            note = f" [{p.note}]" if p.note else ""
            lines.append(f"  [{status:>5}] {p.kind}: {p.count}{events}{note}")
            lines.extend(f"          {e.render()}" for e in p.examples)
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """Markdown rendering: a table of checks, then the examples of each found problem."""
        head = self._header()
        lines = [f"**{head[0]}**; {head[1]}", "", "| check | status | count | events | note |", "| --- | --- | ---: | ---: | --- |"]
        for p in self.problems:
            status = "error" if (p.count and p.is_error) else ("warning" if p.count else "ok")
            lines.append(f"| {p.kind} | {status} | {p.count} | {p.n_events} | {p.note} |")
        for p in self.found:
            lines += ["", f"{p.kind} (first {len(p.examples)}):"]
            lines.extend(f"- {e.render()}" for e in p.examples)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def infer_timeframe_ms(timestamps: np.ndarray) -> int | None:
    """Most common positive step between sorted unique timestamps, ms (None if < 2 distinct)."""
    ts = np.unique(np.asarray(timestamps, dtype=np.int64))
    if ts.size < 2:
        return None
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    return int(steps[np.argmax(counts)])


def _examples(idx: np.ndarray, ts: np.ndarray, detail: Callable[[int], str] | None = None) -> tuple[Example, ...]:
    return tuple(
        Example(int(i), int(ts[i]), detail(int(i)) if detail is not None else "") for i in idx[:N_EXAMPLES]
    )


def _row_problem(kind: str, bad: npt.ArrayLike, ts: np.ndarray, detail: Callable[[int], str] | None = None) -> Problem:
    idx = np.flatnonzero(bad)
    return Problem(kind, int(idx.size), _examples(idx, ts, detail), n_events=int(idx.size))


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of runs of True in ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return starts, ends - starts


def validate(
    df: pd.DataFrame,
    timeframe_ms: int | None = None,
    *,
    zero_volume_min_run: int = 3,
    outlier_z: float = 10.0,
    policy: CleaningConfig | None = None,
) -> ValidationReport:
    """Check ``df`` against every data-quality rule and report counts and examples.

    Row rules are checked on the rows as given (positions are 0-based row positions). Grid rules
    (misaligned, gaps) use the sorted unique finite timestamps; ``timeframe_ms`` is inferred as the
    most common step when not given. Return outliers use close-to-close log returns of consecutive
    rows with finite positive closes, scored by ``|r - median| / (1.4826 * MAD)`` over the whole
    frame (a data check, not a feature: whole-series statistics are fine here).

    Args:
        df: bars with the columns of ``OHLCV_COLUMNS`` (extra columns are ignored).
        timeframe_ms: declared bar interval in ms (> 0); None = infer from the data.
        zero_volume_min_run: shortest run of consecutive zero-volume bars reported, >= 1
            (overridden by ``policy.zero_volume_min_run`` when a policy is given).
        outlier_z: robust z-score threshold for return outliers, > 0 (overridden by
            ``policy.outlier_z`` when a policy is given).
        policy: cleaning policy deciding which problems are errors (``"raise"``); None = the
            defaults of ``envs.data.cleaning.CleaningConfig``.

    Returns:
        A ``ValidationReport`` with one ``Problem`` per kind in ``PROBLEM_KINDS``.

    Raises:
        ValueError: missing columns, non-integer timestamps, timestamps not in ms (seconds, us, ns
            or outside 1970..2100, see `timestamp_unit_error`), or an invalid threshold.
    """
    if policy is None:
        from envs.data.cleaning import CleaningConfig  # local import: cleaning imports this module

        policy = CleaningConfig(zero_volume_min_run=zero_volume_min_run, outlier_z=outlier_z)
    zero_volume_min_run, outlier_z = policy.zero_volume_min_run, policy.outlier_z
    if timeframe_ms is not None and int(timeframe_ms) <= 0:
        raise ValueError(f"timeframe_ms={timeframe_ms} is invalid: must be > 0 ms (set data.timeframe)")
    missing = [c for c in OHLCV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"bars are missing column(s) {missing}; expected {list(OHLCV_COLUMNS)}")
    if not pd.api.types.is_integer_dtype(df["timestamp"]):
        raise ValueError(f"column 'timestamp' has dtype {df['timestamp'].dtype}; expected int64 ms UTC")
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    check_timestamp_unit(ts, "cannot validate the bars")
    o, h, lo, c, v = (df[col].to_numpy(dtype=np.float64) for col in OHLCV_COLUMNS[1:])
    n = len(ts)
    problems: dict[str, Problem] = {}

    # ordering and duplicates (on rows as given)
    prev_max = np.maximum.accumulate(ts)
    behind = np.zeros(n, dtype=bool)
    behind[1:] = ts[1:] < prev_max[:-1]
    problems["out_of_order"] = _row_problem(
        "out_of_order", behind, ts, lambda i: f"timestamp {ts[i]} < earlier max {prev_max[i - 1]}"
    )
    dup = np.zeros(n, dtype=bool)
    if n:
        order = np.argsort(ts, kind="stable")
        same = np.zeros(n, dtype=bool)
        same[1:] = ts[order][1:] == ts[order][:-1]
        dup[order[same]] = True
    problems["duplicates"] = _row_problem("duplicates", dup, ts, lambda i: "repeats an earlier timestamp")

    # values
    ohlcv = np.column_stack([o, h, lo, c, v]) if n else np.zeros((0, 5))
    finite = np.isfinite(ohlcv).all(axis=1)
    problems["non_finite"] = _row_problem(
        "non_finite", ~finite, ts, lambda i: "o/h/l/c/v = " + "/".join(f"{x:g}" for x in ohlcv[i])
    )
    with np.errstate(invalid="ignore"):
        prices = ohlcv[:, :4]
        problems["non_positive"] = _row_problem(
            "non_positive", (prices <= 0).any(axis=1), ts, lambda i: "o/h/l/c = " + "/".join(f"{x:g}" for x in prices[i])
        )
        problems["negative_volume"] = _row_problem("negative_volume", v < 0, ts, lambda i: f"volume = {v[i]:g}")
        bad_h = h < np.maximum(o, c)
        bad_l = lo > np.minimum(o, c)
        bad_hl = h < lo

    def _ohlc_detail(i: int) -> str:
        rules = [r for r, b in (("high < max(open, close)", bad_h), ("low > min(open, close)", bad_l), ("high < low", bad_hl)) if b[i]]
        return f"{', '.join(rules)} (o/h/l/c = {o[i]:g}/{h[i]:g}/{lo[i]:g}/{c[i]:g})"

    problems["ohlc_inconsistent"] = _row_problem("ohlc_inconsistent", bad_h | bad_l | bad_hl, ts, _ohlc_detail)

    # grid: misaligned timestamps and gaps
    inferred = timeframe_ms is None
    tf = infer_timeframe_ms(ts) if inferred else int(timeframe_ms)  # type: ignore[arg-type]
    if tf is None:
        note = "fewer than 2 distinct timestamps: bar interval unknown"
        problems["misaligned"] = Problem("misaligned", 0, note=note)
        problems["gaps"] = Problem("gaps", 0, note=note)
    else:
        uniq, first_pos = np.unique(ts, return_index=True)
        off = (uniq - uniq[0]) % tf != 0
        mis_rows = np.isin(ts, uniq[off])
        problems["misaligned"] = _row_problem(
            "misaligned", mis_rows, ts, lambda i: f"offset {(ts[i] - uniq[0]) % tf} ms from the grid"
        )
        on = uniq[~off]
        on_pos = first_pos[~off]
        steps = np.diff(on)
        gap_at = np.flatnonzero(steps > tf)
        missing_bars = steps[gap_at] // tf - 1
        ex = tuple(
            Example(
                int(on_pos[g]),
                int(on[g]),
                f"{int(m)} missing bar(s) {iso_ms(int(on[g]) + tf)} .. {iso_ms(int(on[g + 1]) - tf)}",
            )
            for g, m in zip(gap_at[:N_EXAMPLES], missing_bars[:N_EXAMPLES], strict=False)
        )
        largest = f"largest gap {int(missing_bars.max())} bar(s)" if missing_bars.size else ""
        problems["gaps"] = Problem("gaps", int(missing_bars.sum()), ex, n_events=int(gap_at.size), note=largest)

    # zero-volume runs
    starts, lengths = true_runs(v == 0)
    keep = lengths >= zero_volume_min_run
    starts, lengths = starts[keep], lengths[keep]
    problems["zero_volume_runs"] = Problem(
        "zero_volume_runs",
        int(lengths.sum()),
        tuple(Example(int(s), int(ts[s]), f"{int(m)} zero-volume bar(s)") for s, m in zip(starts[:N_EXAMPLES], lengths[:N_EXAMPLES], strict=False)),
        n_events=int(starts.size),
        note=f"N = {zero_volume_min_run}",
    )

    # return outliers (robust z of log returns)
    problems["return_outliers"] = _return_outliers(c, ts, outlier_z)

    error_kinds = policy.error_kinds()
    ordered = tuple(
        Problem(p.kind, p.count, p.examples, p.n_events, p.kind in error_kinds, p.note)
        for p in (problems[k] for k in PROBLEM_KINDS)
    )
    return ValidationReport(
        n_rows=n,
        timeframe_ms=tf,
        timeframe_inferred=inferred,
        first_timestamp=int(ts.min()) if n else None,
        last_timestamp=int(ts.max()) if n else None,
        problems=ordered,
    )


def robust_return_z(close: np.ndarray) -> np.ndarray:
    """Robust z-score of each row's log return vs. the previous row, ``|r - med| / (1.4826 MAD)``.

    Args:
        close: close prices (quote currency); non-finite or non-positive closes give NaN returns.

    Returns:
        Array of len(close): z >= 0, NaN for row 0, rows next to invalid closes, or when MAD = 0.
    """
    c = np.asarray(close, dtype=np.float64)
    r = np.full(c.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(c) & (c > 0)
        lc = np.where(ok, np.log(np.where(ok, c, 1.0)), np.nan)
        r[1:] = lc[1:] - lc[:-1]
    fin = r[np.isfinite(r)]
    if fin.size < 3:
        return np.full(c.shape, np.nan)
    med = np.median(fin)
    mad = np.median(np.abs(fin - med)) * 1.4826
    if mad <= 0:
        return np.full(c.shape, np.nan)
    return np.abs(r - med) / mad


def _return_outliers(c: np.ndarray, ts: np.ndarray, threshold: float) -> Problem:
    z = robust_return_z(c)
    if not np.isfinite(z).any():
        return Problem("return_outliers", 0, note=f"z > {threshold:g}; skipped (too few returns or MAD = 0)")
    with np.errstate(invalid="ignore"):
        bad = z > threshold
    p = _row_problem("return_outliers", bad, ts, lambda i: f"robust z = {z[i]:.1f}, close {c[i - 1]:g} -> {c[i]:g}")
    return Problem(p.kind, p.count, p.examples, p.n_events, note=f"z > {threshold:g}")
