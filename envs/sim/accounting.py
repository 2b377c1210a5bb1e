"""Accounting: pure, numba-compiled functions over cash (quote) and position (base units).

Equity = cash + position x price x contract_multiplier. Every function here is free of I/O and of
env state, so the env, the vectorized env, the evaluator and the paper broker share them.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def bps_to_frac(bps: float) -> float:
    """Basis points to a fraction (10 bps = 0.001). The only bps conversion in quantgym."""
    return bps * 1e-4


@numba.njit(cache=True)
def float_floor(x: float) -> float:
    """``floor(x)`` as a float64 (exact; never an int64 overflow).

    numba's ``math.floor`` returns int64 and wraps around beyond 2^63 (1e19 -> -9.2e18);
    ``np.floor`` stays in float64 for any magnitude.
    """
    return float(np.floor(x))


@numba.njit(cache=True)
def float_ceil(x: float) -> float:
    """``ceil(x)`` as a float64 (see `float_floor`)."""
    return float(np.ceil(x))


@numba.njit(cache=True)
def round_qty_toward_zero(qty: float, lot_size: float) -> float:
    """Round a quantity toward zero to a multiple of ``lot_size`` (0 = no rounding).

    Rounds in floating point, so any number of lots (even beyond 2^63) keeps its sign.
    """
    if lot_size <= 0.0:
        return qty
    steps = qty / lot_size
    steps = float_floor(steps + 1e-9) if steps >= 0 else float_ceil(steps - 1e-9)
    return steps * lot_size


@numba.njit(cache=True)
def target_quantity(
    target_exposure: float, equity: float, price: float, multiplier: float, lot_size: float
) -> float:
    """Signed base-unit quantity worth ``target_exposure`` x equity at ``price``, lot-rounded."""
    if equity <= 0.0:
        return 0.0
    return round_qty_toward_zero(target_exposure * equity / (price * multiplier), lot_size)


@numba.njit(cache=True)
def cash_after_fill(cash: float, qty: float, px: float, multiplier: float, fee: float) -> float:
    """Cash after buying ``qty`` (negative = selling) at ``px`` and paying ``fee`` (quote)."""
    return cash - qty * px * multiplier - fee


@numba.njit(cache=True)
def mark_to_market(cash: float, position: float, price: float, multiplier: float) -> float:
    """Equity in quote currency: cash + position x price x multiplier."""
    return cash + position * price * multiplier


@numba.njit(cache=True)
def updated_entry_price(position: float, entry_px: float, qty: float, px: float) -> float:
    """Entry price after a fill of ``qty`` at ``px`` on a ``position`` entered at ``entry_px``.

    Opening from flat or flipping sign: the fill price. Adding in the same direction: the
    size-weighted average. Reducing: unchanged. Closing to flat: 0.0.
    """
    new_pos = position + qty
    if new_pos == 0.0:
        return 0.0
    if position == 0.0 or (position > 0.0) != (new_pos > 0.0):
        return px
    if (qty > 0.0) == (position > 0.0):
        return (abs(position) * entry_px + abs(qty) * px) / abs(new_pos)
    return entry_px


@numba.njit(cache=True)
def liquidation_price(cash: float, position: float, multiplier: float, mmr: float) -> float:
    """Price at which equity equals maintenance margin |q| x P x m x mmr.

    Returns NaN when no positive price liquidates the position (flat, or a long with cash >= 0).
    Long q > 0: P = -cash / (q m (1 - mmr)); short q < 0: P = cash / (|q| m (1 + mmr)).
    """
    if position > 0.0:
        if cash >= 0.0:
            return math.nan
        return -cash / (position * multiplier * (1.0 - mmr))
    if position < 0.0:
        if cash <= 0.0:
            return 0.0  # equity below maintenance at every price: liquidated at the open
        return cash / (-position * multiplier * (1.0 + mmr))
    return math.nan
