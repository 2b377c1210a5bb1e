"""Execution model: fill prices (slippage models, tick rounding) and taker fees.

Pure, numba-compiled functions shared by `TradingEnv`, `VecTradingEnv`, the evaluator and the
paper broker: one execution model. Prices are quote currency per base unit; quantities base units.
"""

from __future__ import annotations

import math

import numba

from envs.sim.accounting import bps_to_frac, float_ceil, float_floor

SLIP_NONE = 0
SLIP_FIXED_BPS = 1
SLIP_SPREAD = 2
SLIP_VOLATILITY = 3
SLIP_SQRT_IMPACT = 4
#: Slippage never moves a fill more than this fraction of its reference price (so a sell fills > 0).
MAX_SLIPPAGE_FRAC = 0.5
SLIPPAGE_CODES = {"none": SLIP_NONE, "fixed_bps": SLIP_FIXED_BPS, "spread": SLIP_SPREAD,
                  "volatility": SLIP_VOLATILITY, "sqrt_impact": SLIP_SQRT_IMPACT}


@numba.njit(cache=True)
def _raw_slippage_frac(
    model: int,
    ref_px: float,
    qty_abs: float,
    slippage_bps: float,
    slippage_coef: float,
    sigma: float,
    spread: float,
    bar_volume: float,
) -> float:
    """Adverse price move of the slippage model as a fraction of ``ref_px`` (>= 0, uncapped).

    Args:
        model: one of the ``SLIP_*`` codes.
        ref_px: unslipped reference price (the fill bar's open, or a stop's trigger price).
        qty_abs: |order quantity| in base units.
        slippage_bps: fixed slippage in bps ("fixed_bps"; "spread" without a spread column).
        slippage_coef: coefficient for "volatility" and "sqrt_impact".
        sigma: per-bar std of 1-bar log returns at decision time (NaN when unknown: then
            "volatility"/"sqrt_impact" fall back to ``slippage_bps``).
        spread: full quoted spread of the fill bar in quote currency (NaN when no column).
        bar_volume: the fill bar's volume in base units.
    """
    if model == SLIP_NONE:
        return 0.0
    if model == SLIP_FIXED_BPS:
        return bps_to_frac(slippage_bps)
    if model == SLIP_SPREAD:
        if math.isnan(spread):
            return bps_to_frac(slippage_bps)
        return 0.5 * spread / ref_px
    if math.isnan(sigma):
        return bps_to_frac(slippage_bps)
    if model == SLIP_VOLATILITY:
        return slippage_coef * sigma
    # SLIP_SQRT_IMPACT: participation capped at 1 (a zero-volume bar costs as a full-volume one)
    participation = 1.0 if bar_volume <= qty_abs else qty_abs / bar_volume
    return slippage_coef * sigma * math.sqrt(participation)


@numba.njit(cache=True)
def slippage_frac(
    model: int,
    ref_px: float,
    qty_abs: float,
    slippage_bps: float,
    slippage_coef: float,
    sigma: float,
    spread: float,
    bar_volume: float,
) -> float:
    """Adverse price move as a fraction of ``ref_px``, in [0, MAX_SLIPPAGE_FRAC].

    The model's value (see `_raw_slippage_frac` for the arguments) capped at
    ``MAX_SLIPPAGE_FRAC`` = 0.5: a sell fills at >= half its reference price, so fill prices
    and fees are always > 0 whatever the volatility or spread.
    """
    frac = _raw_slippage_frac(model, ref_px, qty_abs, slippage_bps, slippage_coef, sigma, spread, bar_volume)
    return min(frac, MAX_SLIPPAGE_FRAC)


@numba.njit(cache=True)
def round_to_tick(px: float, side: float, tick_size: float) -> float:
    """Round ``px`` to ``tick_size`` in the direction adverse to the trader (buy up, sell down).

    Rounds in floating point (no int64 overflow for any price / tick ratio). A positive price
    never rounds below one tick (the smallest positive price on the grid), so fills stay > 0.
    """
    if tick_size <= 0.0:
        return px
    steps = px / tick_size
    if side > 0:
        steps = float_ceil(steps - 1e-9)
    else:
        steps = float_floor(steps + 1e-9)
    return max(steps, 1.0) * tick_size if px > 0.0 else steps * tick_size


@numba.njit(cache=True)
def fill_price(
    side: float,
    ref_px: float,
    qty_abs: float,
    model: int,
    slippage_bps: float,
    slippage_coef: float,
    sigma: float,
    spread: float,
    bar_volume: float,
    tick_size: float,
) -> float:
    """Market-order fill price: ``ref_px`` moved against the trader, then tick-rounded adversely.

    ``side`` > 0 buys, < 0 sells.
    """
    frac = slippage_frac(model, ref_px, qty_abs, slippage_bps, slippage_coef, sigma, spread, bar_volume)
    px = ref_px * (1.0 + frac) if side > 0 else ref_px * (1.0 - frac)
    return round_to_tick(px, side, tick_size)


@numba.njit(cache=True)
def taker_fee_quote(qty_abs: float, px: float, multiplier: float, taker_fee: float) -> float:
    """Taker fee in quote currency: |qty| x price x multiplier x fee fraction."""
    return qty_abs * px * multiplier * taker_fee
