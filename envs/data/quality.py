"""Full data-quality report of OHLCV bars: every problem with counts and examples.

Used by ``scripts/validate.py`` and `envs.data.cleaning`. Unlike `envs.market.bars.check_bars`, nothing
here raises on bad data; the cleaning policy decides which problems are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.data.policy import ALLOWED_POLICIES, CleaningConfig
from envs.market.bars import (
    OHLC_RULES,
    OHLCV_COLUMNS,
    ROW_RULES,
    check_timestamp_unit,
    iso_ms,
    ohlc_inconsistent,
    row_rule_masks,
)

#: Problem kinds in report order; each is also the key of its policy in ``CleaningConfig``.
PROBLEM_KINDS: tuple[str, ...] = tuple(ALLOWED_POLICIES)

_DESCRIPTIONS: dict[str, str] = {
    "out_of_order": "rows whose timestamp is earlier than a previous row's",
    "duplicates": "rows repeating an earlier row's timestamp",
    "non_finite": "rows with NaN/inf in open/high/low/close/volume",
    "non_positive": "rows with a price <= 0",
    "negative_volume": "rows with volume < 0",
    "ohlc_inconsistent": "rows breaking high >= max(open, close) or low <= min(open, close) (so high >= low)",
    "misaligned": "rows whose timestamp is off the bar grid (first timestamp + k * bar interval)",
    "gaps": "missing bars vs. the contiguous grid of the bar interval",
    "zero_volume_runs": "bars inside runs of >= N consecutive zero-volume bars",
    "return_outliers": "bars whose close-to-close log return has |robust z| above the threshold",
}

N_EXAMPLES = 5


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


def _order_problems(ts: np.ndarray) -> dict[str, Problem]:
    """Rows earlier than a previous row, and rows repeating an earlier timestamp (rows as given)."""
    n = len(ts)
    prev_max = np.maximum.accumulate(ts)
    behind = np.zeros(n, dtype=bool)
    behind[1:] = ts[1:] < prev_max[:-1]
    dup = np.zeros(n, dtype=bool)
    if n:
        order = np.argsort(ts, kind="stable")
        same = np.zeros(n, dtype=bool)
        same[1:] = ts[order][1:] == ts[order][:-1]
        dup[order[same]] = True
    return {
        "out_of_order": _row_problem("out_of_order", behind, ts,
                                     lambda i: f"timestamp {ts[i]} < earlier max {prev_max[i - 1]}"),
        "duplicates": _row_problem("duplicates", dup, ts, lambda i: "repeats an earlier timestamp"),
    }


def _value_problems(ts: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                    v: np.ndarray) -> dict[str, Problem]:
    """The per-row value rules (`envs.market.bars.ROW_RULES`), the OHLC ones reported as one kind."""
    rules = row_rule_masks(o, h, lo, c, v)
    ohlcv = np.column_stack([o, h, lo, c, v]) if len(ts) else np.zeros((0, 5))
    described = dict(ROW_RULES)

    def ohlc_detail(i: int) -> str:
        broken = [described[r] for r in OHLC_RULES if rules[r][i]]
        return f"breaks {', '.join(broken)} (o/h/l/c = {o[i]:g}/{h[i]:g}/{lo[i]:g}/{c[i]:g})"

    return {
        "non_finite": _row_problem("non_finite", rules["non_finite"], ts,
                                   lambda i: "o/h/l/c/v = " + "/".join(f"{x:g}" for x in ohlcv[i])),
        "non_positive": _row_problem("non_positive", rules["non_positive"], ts,
                                     lambda i: "o/h/l/c = " + "/".join(f"{x:g}" for x in ohlcv[i, :4])),
        "negative_volume": _row_problem("negative_volume", rules["negative_volume"], ts, lambda i: f"volume = {v[i]:g}"),
        "ohlc_inconsistent": _row_problem("ohlc_inconsistent", ohlc_inconsistent(rules), ts, ohlc_detail),
    }


def _grid_problems(ts: np.ndarray, tf: int | None) -> dict[str, Problem]:
    """Timestamps off the bar grid, and missing bars, on the sorted unique timestamps."""
    if tf is None:
        note = "fewer than 2 distinct timestamps: bar interval unknown"
        return {"misaligned": Problem("misaligned", 0, note=note), "gaps": Problem("gaps", 0, note=note)}
    uniq, first_pos = np.unique(ts, return_index=True)
    off = (uniq - uniq[0]) % tf != 0
    misaligned = _row_problem("misaligned", np.isin(ts, uniq[off]), ts,
                              lambda i: f"offset {(ts[i] - uniq[0]) % tf} ms from the grid")
    on, on_pos = uniq[~off], first_pos[~off]
    steps = np.diff(on)
    gap_at = np.flatnonzero(steps > tf)
    missing_bars = steps[gap_at] // tf - 1
    ex = tuple(
        Example(int(on_pos[g]), int(on[g]),
                f"{int(m)} missing bar(s) {iso_ms(int(on[g]) + tf)} .. {iso_ms(int(on[g + 1]) - tf)}")
        for g, m in zip(gap_at[:N_EXAMPLES], missing_bars[:N_EXAMPLES], strict=False)
    )
    largest = f"largest gap {int(missing_bars.max())} bar(s)" if missing_bars.size else ""
    return {"misaligned": misaligned,
            "gaps": Problem("gaps", int(missing_bars.sum()), ex, n_events=int(gap_at.size), note=largest)}


def _zero_volume_problem(ts: np.ndarray, v: np.ndarray, min_run: int) -> Problem:
    """Bars inside runs of >= ``min_run`` consecutive zero-volume bars."""
    starts, lengths = true_runs(v == 0)
    keep = lengths >= min_run
    starts, lengths = starts[keep], lengths[keep]
    return Problem(
        "zero_volume_runs", int(lengths.sum()),
        tuple(Example(int(s), int(ts[s]), f"{int(m)} zero-volume bar(s)")
              for s, m in zip(starts[:N_EXAMPLES], lengths[:N_EXAMPLES], strict=False)),
        n_events=int(starts.size), note=f"N = {min_run}",
    )


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
    inferred = timeframe_ms is None
    tf = infer_timeframe_ms(ts) if inferred else int(timeframe_ms)  # type: ignore[arg-type]
    problems = {**_order_problems(ts), **_value_problems(ts, o, h, lo, c, v), **_grid_problems(ts, tf),
                "zero_volume_runs": _zero_volume_problem(ts, v, zero_volume_min_run),
                "return_outliers": _return_outliers(c, ts, outlier_z)}
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
