"""Trade statistics of a per-bar position series: round trips, their returns, win rate, profit factor, holding time.

Conventions as `envs.metrics` (which re-exports every name here): positions and equity are aligned as
there; trade statistics are NaN when there are no trades, `profit_factor` is ``inf`` with no losing trade.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from envs.metric_inputs import FloatArray, as_1d, equity_array


def trade_spans(positions: npt.ArrayLike, flat_tol: float = 1e-12) -> npt.NDArray[np.int64]:
    """Bar ranges of the trades in a per-bar position series.

    A trade is a maximal run of consecutive bars whose position has the same non-zero sign: it opens
    when the position leaves flat or flips sign and closes when it returns to flat or flips.

    Args:
        positions: signed position held during each bar (quantity, weight or exposure; only the sign is
            used), shape ``(n,)``.
        flat_tol: absolute positions at or below this count as flat (>= 0).

    Returns:
        int64 array of shape ``(k, 2)``: ``[start, stop)`` bar indices of each trade, in time order.
    """
    p = as_1d(positions, "positions")
    s = np.where(np.abs(p) <= flat_tol, 0, np.sign(p)).astype(np.int8)
    if s.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    change = np.flatnonzero(np.diff(s) != 0) + 1
    bounds = np.concatenate(([0], change, [s.size]))
    starts, stops = bounds[:-1], bounds[1:]
    held = s[starts] != 0
    return np.stack([starts[held], stops[held]], axis=1).astype(np.int64)


def trades_from_positions(
    positions: npt.ArrayLike,
    equity: npt.ArrayLike,
    include_exit_bar: bool = True,
    flat_tol: float = 1e-12,
) -> FloatArray:
    """Per-trade returns from a per-bar position series and the equity curve.

    Trades are the runs from `trade_spans`. A trade over bars ``[start, stop)`` returns
    ``equity[stop] / equity[start] - 1``: the compounded equity return while it was held, so fees,
    slippage and funding booked in those bars are included.

    With ``include_exit_bar=True`` (the default), a trade followed by a *flat* bar also takes that bar's
    return (``equity[stop + 1] / equity[start] - 1``). This matches our fill timing: a decision at the close
    of bar t fills at the open of t+1, so the bar in which the position reads flat still carries the old
    position's close-to-open move and the exit fee. A trade ended by a sign flip never takes the next bar
    (that bar opens the next trade), and neither does a trade still open at the end.

    Args:
        positions: signed position held during each bar, shape ``(n,)``; ``positions[t]`` is the position
            in effect for the move ``equity[t] -> equity[t + 1]``.
        equity: equity curve in quote currency, shape ``(n + 1,)``.
        include_exit_bar: attribute the flat bar after a trade to that trade (see above).
        flat_tol: absolute positions at or below this count as flat.

    Returns:
        Per-trade simple returns (fractions of equity at entry), shape ``(k,)``, in time order.
    """
    e = equity_array(equity)
    spans = trade_spans(positions, flat_tol)
    if e.size != np.asarray(positions).size + 1:
        raise ValueError(
            f"equity must have one more point than positions (value before the first bar), got "
            f"{e.size} and {np.asarray(positions).size}"
        )
    if spans.size == 0:
        return np.empty(0, dtype=np.float64)
    starts, stops = spans[:, 0], spans[:, 1].copy()
    if include_exit_bar:
        p = np.asarray(positions, dtype=np.float64)
        n = p.size
        nxt = np.minimum(stops, n - 1)
        followed_by_flat = (stops < n) & (np.abs(p[nxt]) <= flat_tol)
        stops = stops + followed_by_flat.astype(np.int64)
    return e[stops] / e[starts] - 1.0


def win_rate(trade_returns: npt.ArrayLike) -> float:
    """Fraction of trades with a positive return.

    Args:
        trade_returns: per-trade returns (fractions), e.g. from `trades_from_positions`.

    Returns:
        Win rate in [0, 1]; NaN when there are no trades (undefined).
    """
    t = as_1d(trade_returns, "trade_returns")
    if t.size == 0:
        return math.nan
    return float(np.mean(t > 0.0))


def profit_factor(trade_returns: npt.ArrayLike) -> float:
    """Gross profit divided by gross loss over trades: ``sum(t[t > 0]) / -sum(t[t < 0])``.

    Args:
        trade_returns: per-trade returns (fractions).

    Returns:
        Profit factor >= 0. ``inf`` when there are winning trades but no losing ones; NaN when there are
        no trades or every trade returned exactly 0 (undefined); 0.0 when there are only losses.
    """
    t = as_1d(trade_returns, "trade_returns")
    gross_profit = float(t[t > 0.0].sum())
    gross_loss = float(-t[t < 0.0].sum())
    if gross_loss > 0.0:
        return gross_profit / gross_loss
    return math.inf if gross_profit > 0.0 else math.nan


def average_holding_bars(positions: npt.ArrayLike, flat_tol: float = 1e-12) -> float:
    """Mean number of bars a trade is held (trades as in `trade_spans`).

    Args:
        positions: signed position held during each bar, shape ``(n,)``.
        flat_tol: absolute positions at or below this count as flat.

    Returns:
        Mean trade length in bars; NaN when there are no trades.
    """
    spans = trade_spans(positions, flat_tol)
    if spans.size == 0:
        return math.nan
    return float(np.mean(spans[:, 1] - spans[:, 0]))
