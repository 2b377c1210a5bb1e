"""Risk controls as compiled rules over the kernel's state (`RiskConfig`, README "Risk controls").

They limit the decision at close t with what is known at t: `risk_regime` (kill, drawdown halt,
stale feed, daily loss, expiry, model age) and `risk_cap_exposure` before sizing, `risk_order` on the order
quantity; `roll_day` after the mark. Called from `envs.sim.kernel.step_env`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from envs.sim.accounting import round_qty_toward_zero
from envs.sim.layout import *  # noqa: F403 - the named rows, params and codes these rules index by


@numba.njit(cache=True)
def _set_regime(S: np.ndarray, i: int, state: int, reason: int, mode: int) -> int:
    S[S_RISK_STATE, i] = state
    S[S_RISK_REASON, i] = reason
    return mode


@numba.njit(cache=True)
def risk_regime(i: int, t: int, S: np.ndarray, M: np.ndarray, P: np.ndarray) -> int:
    """Risk regime of env i's decision at close t (state marked at t); writes the state/reason rows.

    In priority order: kill switch (``S_KILL`` set by the caller) -> HALTED, flatten; drawdown
    from the peak >= ``max_drawdown`` (latched for the episode) -> HALTED, flatten; feed lag >
    ``stale_after`` bars -> HALTED, no order; loss since the UTC day's start >=
    ``daily_loss_limit`` (latched until the next UTC day) -> REDUCING; bar t opening at or after
    ``expires_at`` -> REDUCING (expired); bar t opening at or after the training end plus
    ``max_model_age`` -> REDUCING (model_age); else ACTIVE.

    Returns:
        MODE_FREE, MODE_REDUCE_ONLY, MODE_NO_ORDERS or MODE_FLATTEN.
    """
    if not math.isnan(P[P_RISK_MAX_DD]) and S[S_DRAWDOWN, i] >= P[P_RISK_MAX_DD]:
        S[S_DD_HALT, i] = 1.0
    start_eq = S[S_DAY_START_EQ, i]
    if (not math.isnan(P[P_RISK_DAILY_LOSS]) and start_eq > 0.0
            and 1.0 - S[S_EQUITY, i] / start_eq >= P[P_RISK_DAILY_LOSS]):
        S[S_DAY_LOSS_HIT, i] = 1.0
    if S[S_KILL, i] > 0.0:
        return _set_regime(S, i, RISK_HALTED, REASON_KILL, MODE_FLATTEN)
    if S[S_DD_HALT, i] > 0.0:
        return _set_regime(S, i, RISK_HALTED, REASON_DRAWDOWN, MODE_FLATTEN)
    if not math.isnan(P[P_RISK_STALE_AFTER]) and S[S_FEED_LAG, i] > P[P_RISK_STALE_AFTER]:
        return _set_regime(S, i, RISK_HALTED, REASON_STALE, MODE_NO_ORDERS)
    if S[S_DAY_LOSS_HIT, i] > 0.0:
        return _set_regime(S, i, RISK_REDUCING, REASON_DAILY_LOSS, MODE_REDUCE_ONLY)
    if not math.isnan(P[P_RISK_EXPIRES_MS]) and M[t, M_TIME] >= P[P_RISK_EXPIRES_MS]:
        return _set_regime(S, i, RISK_REDUCING, REASON_EXPIRED, MODE_REDUCE_ONLY)
    if not math.isnan(P[P_RISK_AGE_EXPIRES_MS]) and M[t, M_TIME] >= P[P_RISK_AGE_EXPIRES_MS]:
        return _set_regime(S, i, RISK_REDUCING, REASON_MODEL_AGE, MODE_REDUCE_ONLY)
    return _set_regime(S, i, RISK_ACTIVE, REASON_NONE, MODE_FREE)


@numba.njit(cache=True)
def risk_cap_exposure(i: int, e: float, S: np.ndarray, P: np.ndarray) -> float:
    """``max_exposure``: the target exposure ``e`` capped to ±max_exposure (reason noted while ACTIVE)."""
    cap = P[P_RISK_MAX_EXPOSURE]
    if math.isnan(cap) or abs(e) <= cap:
        return e
    if S[S_RISK_STATE, i] == RISK_ACTIVE:
        S[S_RISK_REASON, i] = REASON_MAX_EXPOSURE
    return math.copysign(cap, e)


@numba.njit(cache=True)
def risk_order(i: int, mode: int, dq: float, pos: float, px: float, S: np.ndarray, P: np.ndarray) -> float:
    """The order quantity ``dq`` (base units, from position ``pos``) allowed by regime ``mode``.

    Flatten: ``-pos``; no orders: 0; reduce-only: toward flat and no further (no flip); then the
    ``max_order_notional`` cap at price ``px`` (close t), rounded toward zero to the lot size.
    """
    if mode == MODE_FLATTEN:
        dq = -pos
    elif mode == MODE_NO_ORDERS:
        dq = 0.0
    elif mode == MODE_REDUCE_ONLY:
        if pos == 0.0 or (dq > 0.0) == (pos > 0.0):
            dq = 0.0
        elif abs(dq) > abs(pos):
            dq = -pos
    cap = P[P_RISK_MAX_ORDER]
    notional = abs(dq) * px * P[P_MULT]
    if not math.isnan(cap) and notional > cap:
        dq = round_qty_toward_zero(math.copysign(cap / (px * P[P_MULT]), dq), P[P_LOT])
        if S[S_RISK_STATE, i] == RISK_ACTIVE:
            S[S_RISK_REASON, i] = REASON_MAX_ORDER
    return dq


@numba.njit(cache=True)
def roll_day(i: int, bar: int, prev_equity: float, S: np.ndarray, M: np.ndarray) -> None:
    """After marking ``bar``: on a new UTC day, its starting equity is ``prev_equity`` (the close
    before the day's first bar) and the daily loss latch clears."""
    day = math.floor(M[bar, M_TIME] / DAY_MS)
    if day != S[S_DAY, i]:
        S[S_DAY, i] = day
        S[S_DAY_START_EQ, i] = prev_equity
        S[S_DAY_LOSS_HIT, i] = 0.0
