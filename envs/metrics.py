"""Trading performance metrics: the one place that computes Sharpe, Sortino, drawdown and turnover.

Conventions used by every function in this module:

* **Equity curve** ``equity``: account value in quote currency, shape ``(n + 1,)``. ``equity[0]`` is the
  value before the first bar, ``equity[t + 1]`` the value at the end of bar ``t``. Equity must be > 0 at
  every point except possibly the last: a bankrupt final bar may be 0 or even negative (a gap through the
  liquidation price), giving a last return of -100 % or below and a drawdown of 1 or more.
* **Returns** are *simple* per-bar returns of equity, ``r[t] = equity[t + 1] / equity[t] - 1`` (fractions,
  0.01 = 1 %), shape ``(n,)``. Log returns are never used here; `returns_from_equity` is the only converter.
* **Per-bar series** (``positions``, ``exposure``, ``traded_notional``) have shape ``(n,)`` and are
  aligned with the returns: entry ``t`` describes bar ``t``, the move from ``equity[t]`` to
  ``equity[t + 1]``.
* **Annualisation** uses ``periods_per_year`` (bars per year) from `bars_per_year`, which reads the bar
  spacing of the data: 8766 for hourly 24/7 crypto bars, 252 for daily session bars. 252 is never assumed.
* Ratios use a zero risk-free rate.

Degenerate inputs return documented values rather than raising, so an environment can put a summary in
its final ``info`` without special cases: Sharpe/Sortino are 0.0 when undefined, trade statistics are
NaN when there are no trades, `profit_factor` is ``inf`` when there are no losing trades.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt

from envs.metric_inputs import FloatArray, as_1d, check_periods, equity_array
from envs.trade_stats import average_holding_bars, profit_factor, trade_spans, trades_from_positions, win_rate

logger = logging.getLogger(__name__)

__all__ = [
    "MS_PER_DAY",
    "DAYS_PER_YEAR_24_7",
    "SESSIONS_PER_YEAR",
    "bars_per_year",
    "returns_from_equity",
    "sharpe_from_moments",
    "sortino_from_moments",
    "sharpe",
    "sortino",
    "annual_volatility",
    "total_return",
    "cagr",
    "drawdown_series",
    "max_drawdown",
    "max_drawdown_duration",
    "calmar",
    "turnover",
    "trade_spans",
    "trades_from_positions",
    "win_rate",
    "profit_factor",
    "average_holding_bars",
    "summarize",
]

#: milliseconds in one day
MS_PER_DAY = 86_400_000
#: calendar days per year for markets that trade around the clock (Julian year)
DAYS_PER_YEAR_24_7 = 365.25
#: trading sessions per year for exchange-traded equities and futures
SESSIONS_PER_YEAR = 252.0
#: relative tolerance under which a variance from running sums is treated as zero (cancellation noise)
_VAR_REL_TOL = 1e-12

# --------------------------------------------------------------------------------------------------
# annualisation
# --------------------------------------------------------------------------------------------------
def bars_per_year(timestamps_ms: npt.ArrayLike, calendar: str = "24/7") -> float:
    """Annualisation factor (bars per year) estimated from bar timestamps.

    Args:
        timestamps_ms: bar open times, int64 milliseconds since the epoch (UTC), increasing, at least 2.
        calendar: ``"24/7"`` for markets open around the clock (crypto): 365.25 days x 86,400,000 ms
            divided by the median bar spacing (hourly bars -> 8766.0). ``"sessions"`` for exchange
            sessions (equities, futures): 252 x the median number of bars per UTC calendar day among days
            that have bars (daily bars -> 252.0). Sessions that straddle UTC midnight split across two
            days and bias the ``"sessions"`` estimate; pass daily bars or a 24/7 calendar in that case.

    Returns:
        Bars per year, > 0.

    Raises:
        ValueError: fewer than 2 timestamps, non-increasing median spacing, or an unknown calendar.
    """
    if calendar not in ("24/7", "sessions"):
        raise ValueError(
            f"calendar={calendar!r} is invalid: use '24/7' (crypto) or 'sessions' (exchange trading hours)"
        )
    ts = np.asarray(timestamps_ms)
    if ts.ndim != 1 or ts.size < 2:
        raise ValueError(f"bars_per_year needs at least 2 timestamps (1-D), got shape {ts.shape}")
    ts = ts.astype(np.int64, copy=False)
    spacing_ms = float(np.median(np.diff(ts)))
    if spacing_ms <= 0.0:
        raise ValueError(
            f"timestamps_ms must be increasing: median bar spacing is {spacing_ms} ms; sort the bars by time"
        )
    if calendar == "24/7":
        return DAYS_PER_YEAR_24_7 * MS_PER_DAY / spacing_ms
    _, per_day = np.unique(ts // MS_PER_DAY, return_counts=True)
    return SESSIONS_PER_YEAR * float(np.median(per_day))


# --------------------------------------------------------------------------------------------------
# return-based ratios
# --------------------------------------------------------------------------------------------------
def returns_from_equity(equity: npt.ArrayLike) -> FloatArray:
    """Simple per-bar returns of an equity curve.

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``, > 0 except possibly the last point.

    Returns:
        ``equity[1:] / equity[:-1] - 1`` as fractions per bar, shape ``(n,)`` (empty for one point).
    """
    e = equity_array(equity)
    return e[1:] / e[:-1] - 1.0


def sharpe_from_moments(sum_r: float, sum_r2: float, n: int, periods_per_year: float) -> float:
    """Annualised Sharpe ratio from running sums of per-bar returns (risk-free rate 0).

    ``mean = sum_r / n``, sample variance ``(sum_r2 - sum_r**2 / n) / (n - 1)`` (ddof=1), and
    ``sharpe = mean / std * sqrt(periods_per_year)``. This lets an environment track three scalars
    instead of storing its return history.

    Args:
        sum_r: sum of simple per-bar returns (fractions).
        sum_r2: sum of squared simple per-bar returns.
        n: number of returns summed, >= 0.
        periods_per_year: bars per year (> 0), e.g. from `bars_per_year`.

    Returns:
        Annualised Sharpe ratio. 0.0 when undefined: ``n < 2`` or zero variance (a variance at or below
        ``1e-12 * sum_r2 / n`` is floating-point cancellation noise and counts as zero).
    """
    ppy = check_periods(periods_per_year)
    n = int(n)
    if n < 2:
        return 0.0
    mean_sq = sum_r2 / n
    var = (sum_r2 - sum_r * sum_r / n) / (n - 1)
    if not var > _VAR_REL_TOL * mean_sq:  # also catches var <= 0 and NaN
        return 0.0
    return (sum_r / n) / math.sqrt(var) * math.sqrt(ppy)


def sortino_from_moments(sum_r: float, sum_down_r2: float, n: int, periods_per_year: float) -> float:
    """Annualised Sortino ratio from running sums of per-bar returns (target return 0).

    Downside deviation ``dd = sqrt(sum_down_r2 / n)`` with ``sum_down_r2 = sum(min(r, 0)**2)`` over all
    ``n`` returns (not only the negative ones), and ``sortino = (sum_r / n) / dd * sqrt(periods_per_year)``.

    Args:
        sum_r: sum of simple per-bar returns (fractions).
        sum_down_r2: sum of ``min(r, 0) ** 2`` over all bars.
        n: number of returns summed, >= 0.
        periods_per_year: bars per year (> 0).

    Returns:
        Annualised Sortino ratio. 0.0 when undefined: ``n < 2`` or no downside (``sum_down_r2 == 0``,
        e.g. no losing bar, or a downside variance below 1e-24 x mean² or in the denormal range, which is
        rounding noise). A finite 0.0 keeps logs and reward code free of inf; read it together with
        `max_drawdown`.
    """
    ppy = check_periods(periods_per_year)
    n = int(n)
    if n < 2:
        return 0.0
    mean = sum_r / n
    down_var = sum_down_r2 / n
    if not down_var > max(1e-290, 1e-24 * mean * mean):  # also catches 0 and NaN
        return 0.0
    return mean / math.sqrt(down_var) * math.sqrt(ppy)


def sharpe(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sharpe ratio of simple per-bar returns; see `sharpe_from_moments` (same formula).

    Args:
        returns: simple per-bar returns (fractions), shape ``(n,)``, finite.
        periods_per_year: bars per year (> 0); pass 1.0 for the per-bar (non-annualised) Sharpe.

    Returns:
        Annualised Sharpe ratio; 0.0 for fewer than 2 returns or zero variance.
    """
    r = as_1d(returns, "returns")
    return sharpe_from_moments(float(r.sum()), float(np.dot(r, r)), r.size, periods_per_year)


def sortino(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised Sortino ratio of simple per-bar returns; see `sortino_from_moments` (same formula).

    Args:
        returns: simple per-bar returns (fractions), shape ``(n,)``, finite.
        periods_per_year: bars per year (> 0).

    Returns:
        Annualised Sortino ratio; 0.0 for fewer than 2 returns or no downside.
    """
    r = as_1d(returns, "returns")
    down = np.minimum(r, 0.0)
    return sortino_from_moments(float(r.sum()), float(np.dot(down, down)), r.size, periods_per_year)


def annual_volatility(returns: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised volatility: sample standard deviation (ddof=1) of per-bar returns x sqrt(periods_per_year).

    Args:
        returns: simple per-bar returns (fractions), shape ``(n,)``.
        periods_per_year: bars per year (> 0).

    Returns:
        Annualised volatility as a fraction (0.5 = 50 % a year); 0.0 for fewer than 2 returns.
    """
    r = as_1d(returns, "returns")
    ppy = check_periods(periods_per_year)
    if r.size < 2:
        return 0.0
    return float(np.std(r, ddof=1)) * math.sqrt(ppy)


# --------------------------------------------------------------------------------------------------
# equity-based metrics
# --------------------------------------------------------------------------------------------------
def total_return(equity: npt.ArrayLike) -> float:
    """Total return over the curve, ``equity[-1] / equity[0] - 1`` (fraction; -1.0 = total loss).

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``, at least one point.
    """
    e = equity_array(equity)
    return float(e[-1] / e[0] - 1.0)


def cagr(equity: npt.ArrayLike, periods_per_year: float) -> float:
    """Compound annual growth rate, ``(equity[-1] / equity[0]) ** (periods_per_year / n) - 1``.

    ``n = len(equity) - 1`` bars, so the curve spans ``n / periods_per_year`` years (the same definition as
    empyrical's ``annual_return``).

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``.
        periods_per_year: bars per year (> 0).

    Returns:
        CAGR as a fraction per year (-1.0 after ruin); 0.0 for a single point (no time elapsed); ``inf``
        when a short, profitable curve compounds beyond float range.
    """
    e = equity_array(equity)
    ppy = check_periods(periods_per_year)
    n = e.size - 1
    if n < 1:
        return 0.0
    growth = float(e[-1] / e[0])
    if growth <= 0.0:
        return -1.0
    try:
        return growth ** (ppy / n) - 1.0
    except OverflowError:  # e.g. +1 % over two 1-minute bars compounds past 1e308 in a year
        return math.inf


def drawdown_series(equity: npt.ArrayLike) -> FloatArray:
    """Drawdown at every point: ``1 - equity / running_max(equity)``.

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``.

    Returns:
        Drawdowns as fractions >= 0 (0.25 = 25 % below the previous peak), same shape as ``equity``.
    """
    e = equity_array(equity)
    return 1.0 - e / np.maximum.accumulate(e)


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Largest peak-to-trough loss of the curve.

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``.

    Returns:
        Maximum drawdown as a positive fraction (0.25 = a 25 % fall from a peak), in [0, 1] unless the
        final bar ends below 0.
    """
    return float(np.max(drawdown_series(equity)))


def max_drawdown_duration(equity: npt.ArrayLike) -> int:
    """Longest time spent below a previous peak, in bars.

    A drawdown period runs from the bar index of a peak to the first index where equity is back at or
    above that peak, or to the last index if it never recovers. Example: ``[1, .9, .95, 1]`` -> 3 (peak at
    0, recovery at 3); ``[1, .9, .95]`` -> 2 (still under water at the end).

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``.

    Returns:
        Longest drawdown duration in bars (0 if the curve never falls below a running peak).
    """
    e = equity_array(equity)
    under = e < np.maximum.accumulate(e)
    if not under.any():
        return 0
    edges = np.diff(np.concatenate(([0], under.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)  # first underwater index of each period (peak = start - 1)
    stops = np.flatnonzero(edges == -1)  # first index after it: the recovery, or len(e) at the end
    recovered = stops < e.size
    durations = np.where(recovered, stops - starts + 1, stops - starts)
    return int(durations.max())


def calmar(equity: npt.ArrayLike, periods_per_year: float) -> float:
    """Calmar ratio: `cagr` divided by `max_drawdown` over the same curve.

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``.
        periods_per_year: bars per year (> 0).

    Returns:
        CAGR / max drawdown (dimensionless). NaN when the curve has no drawdown (undefined, as in
        empyrical).
    """
    mdd = max_drawdown(equity)
    if mdd <= 0.0:
        return math.nan
    return cagr(equity, periods_per_year) / mdd


def turnover(traded_notional: npt.ArrayLike, equity: npt.ArrayLike, periods_per_year: float) -> float:
    """Annualised turnover: mean of ``traded_notional / equity`` per bar x ``periods_per_year``.

    Args:
        traded_notional: absolute traded value per bar in quote currency (``|qty| x fill price``), >= 0,
            shape ``(n,)``.
        equity: equity in quote currency at the time of each bar's trade, shape ``(n,)``, > 0; from a
            full equity curve pass ``equity[:-1]`` (the value before each bar).
        periods_per_year: bars per year (> 0).

    Returns:
        Times the equity is traded per year (1.0 = the account's value traded once a year); 0.0 with no
        bars.
    """
    tn = as_1d(traded_notional, "traded_notional")
    eq = as_1d(equity, "equity")
    ppy = check_periods(periods_per_year)
    if tn.shape != eq.shape:
        raise ValueError(
            f"traded_notional and equity must have the same length, got {tn.size} and {eq.size}; "
            "from an (n + 1)-point equity curve pass equity[:-1]"
        )
    if np.any(tn < 0.0):
        raise ValueError("traded_notional must be >= 0 (absolute traded value per bar, quote currency)")
    if np.any(eq <= 0.0):
        raise ValueError("equity must be > 0 wherever turnover is measured")
    return turnover_from_sum(float(np.sum(tn / eq)), int(tn.size), ppy)


def turnover_from_sum(sum_turnover: float, n: int, periods_per_year: float) -> float:
    """Annualised turnover from the running sum of per-bar ``traded_notional / equity`` over n bars.

    The moment form of `turnover` (one formula), for callers that keep running sums (the env).
    Returns 0.0 with no bars.
    """
    if n <= 0:
        return 0.0
    return sum_turnover / n * check_periods(periods_per_year)


# --------------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------------
def summarize(
    equity: npt.ArrayLike,
    positions: npt.ArrayLike,
    traded_notional: npt.ArrayLike,
    fees: float,
    slippage: float,
    funding: float,
    timestamps_ms: npt.ArrayLike,
    calendar: str = "24/7",
    exposure: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Every performance metric of one evaluation run, from its recorded series.

    Args:
        equity: equity curve in quote currency, shape ``(n + 1,)``: the value before the first bar, then
            at the end of each bar.
        positions: signed position held during each bar, shape ``(n,)`` (quantity, weight or exposure;
            its sign defines the trades).
        traded_notional: absolute traded value per bar in quote currency, shape ``(n,)``, >= 0.
        fees: total fees paid over the run, quote currency (a total, not a per-bar series).
        slippage: total slippage cost over the run, quote currency.
        funding: total funding paid over the run, quote currency (negative = received).
        timestamps_ms: bar timestamps (int64 ms UTC) of the run or its data, at least 2; only their
            spacing is used, through `bars_per_year`.
        calendar: ``"24/7"`` or ``"sessions"``, see `bars_per_year`.
        exposure: signed position value / equity per bar, shape ``(n,)``. If None, ``positions`` is
            taken to already be the exposure (pass ``exposure`` when ``positions`` are quantities).

    Returns:
        Dict of floats: ``total_return``, ``cagr``, ``annual_volatility`` (fractions, per year where
        annualised), ``sharpe``, ``sortino``, ``calmar`` (annualised ratios), ``max_drawdown`` (fraction),
        ``max_drawdown_duration_bars``, ``win_rate``, ``profit_factor``, ``n_round_trips``
        (trades from entry to exit, as ``trades_from_positions`` cuts them; ``win_rate`` is over these),
        ``avg_holding_bars``, ``avg_exposure`` (mean |exposure|, fraction of equity), ``time_in_market``
        (fraction of bars with a position), ``turnover`` (per year), ``fees_paid``, ``slippage_paid``,
        ``funding_paid`` (quote), ``n_bars`` and ``bars_per_year``. Undefined values are NaN or inf as
        documented on each function.
    """
    e = equity_array(equity, min_len=1)
    n = e.size - 1
    pos = as_1d(positions, "positions")
    tn = as_1d(traded_notional, "traded_notional")
    expo = pos if exposure is None else as_1d(exposure, "exposure")
    for name, arr in (("positions", pos), ("traded_notional", tn), ("exposure", expo)):
        if arr.size != n:
            raise ValueError(
                f"{name} must have one value per bar: len(equity) - 1 = {n}, got {arr.size} "
                "(equity includes the value before the first bar)"
            )
    ppy = bars_per_year(timestamps_ms, calendar)
    r = e[1:] / e[:-1] - 1.0
    down = np.minimum(r, 0.0)
    trades = trades_from_positions(pos, e)
    in_market = np.abs(pos) > 1e-12
    return {
        "total_return": total_return(e),
        "cagr": cagr(e, ppy),
        "annual_volatility": annual_volatility(r, ppy),
        "sharpe": sharpe_from_moments(float(r.sum()), float(np.dot(r, r)), n, ppy),
        "sortino": sortino_from_moments(float(r.sum()), float(np.dot(down, down)), n, ppy),
        "calmar": calmar(e, ppy),
        "max_drawdown": max_drawdown(e),
        "max_drawdown_duration_bars": float(max_drawdown_duration(e)),
        "win_rate": win_rate(trades),
        "profit_factor": profit_factor(trades),
        "n_round_trips": float(trades.size),
        "avg_holding_bars": average_holding_bars(pos),
        "avg_exposure": float(np.mean(np.abs(expo))) if n else 0.0,
        "time_in_market": float(np.mean(in_market)) if n else 0.0,
        "turnover": turnover(tn, e[:-1], ppy),
        "fees_paid": float(fees),
        "slippage_paid": float(slippage),
        "funding_paid": float(funding),
        "n_bars": float(n),
        "bars_per_year": ppy,
    }
