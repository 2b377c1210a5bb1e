"""The trading rules 2–8 as one compiled kernel, shared by `TradingEnv` (n = 1) and `VecTradingEnv`.

Layouts (named row/column indices, not positional lists; declared once in `envs.sim.layout` and
available here as ``kernels.S_EQUITY`` etc.):
- market matrix ``M`` (T, M_COLS) float64, one row per bar: open, high, low, close, volume, spread
  (NaN without a column), sigma and mu (per-bar std / mean of 1-bar log returns over the vol
  lookback ending at the bar), funding (rate x funding times inside the bar), the bar's open time
  (ms UTC; exact in float64 below 2^53 ms, i.e. until the year 287,396).
- state ``S`` (S_ROWS, n) float64, one column per env; ``S[S_EQUITY]`` is a contiguous (n,) view.
- params ``P`` (P_LEN,) float64 built once from `EnvConfig` by `make_params`.

Per env and step (decision at bar t, see the README's execution semantics):
  decode action -> size -> target quantity at close t -> (threshold / min notional / participation)
  -> fill at open t+1 with slippage, tick rounding and taker fee -> funding amount on the
  post-fill position -> liquidation / stop / take-profit against bar t+1's range -> funding
  settled -> mark at close t+1 -> reward -> observation.
Risk controls (`RiskConfig`, README "Risk controls", rules in `envs.sim.risk`) limit the decision
at close t with what is known at t: `risk_regime` (kill, drawdown halt, stale feed, daily loss, expiry) and
`risk_cap_exposure` before sizing, `risk_order` on the order quantity; `roll_day` after the mark.
Two state rows are inputs the caller sets between steps: ``S_FEED_LAG`` (bars the feed is behind,
0 in backtests) and ``S_KILL`` (1 = kill switch engaged: flatten and halt).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from envs.sim.accounting import (
    cash_after_fill,
    liquidation_price,
    mark_to_market,
    round_qty_toward_zero,
    target_quantity,
    updated_entry_price,
)
from envs.sim.execution import fill_price, taker_fee_quote
from envs.sim.layout import *  # noqa: F403 - the layouts are part of this module's interface (K.S_EQUITY, ...)
from envs.sim.layout import make_params as make_params  # noqa: F401 - re-exported
from envs.sim.rewards import shaped_reward
from envs.sim.risk import risk_cap_exposure, risk_order, risk_regime, roll_day


@numba.njit(cache=True)
def target_exposure(a: float, P: np.ndarray, levels: np.ndarray, sigma: float, mu: float) -> float:
    """Rule 2: action value -> sized target exposure (position value / equity), capped.

    A discrete ``a`` must be a valid index into ``levels``: the envs check every action at their
    Python boundary (`envs.sim.trading_env.check_actions`), this compiled code cannot report errors.
    """
    max_lev = P[P_MAX_LEV]
    long_only = P[P_LONG_ONLY] > 0.0
    if P[P_DISCRETE] > 0.0:
        av = levels[int(a)]
        if long_only and av < 0.0:
            av = 0.0
        e = av
    else:
        av = min(max(a, -1.0), 1.0)
        if long_only and av < 0.0:
            av = 0.0
        e = av * max_lev
    sizing = int(P[P_SIZING])
    if sizing == SIZING_VOL_TARGET:
        ann = sigma * math.sqrt(P[P_BARS_PER_YEAR])
        e = e * P[P_TARGET_VOL] / ann if (ann > 0.0 and not math.isnan(ann)) else 0.0
    elif sizing == SIZING_RISK:
        e = av * P[P_RISK_PER_TRADE] / P[P_STOP]
    elif sizing == SIZING_KELLY:
        var = sigma * sigma
        e = e * P[P_KELLY_FRACTION] * mu / var if (var > 0.0 and not math.isnan(var)) else 0.0
    e = min(max(e, -max_lev), max_lev)
    if long_only and e < 0.0:
        e = 0.0
    return e


@numba.njit(cache=True)
def _fill(S: np.ndarray, i: int, qty: float, px: float, ref_px: float, P: np.ndarray, bar: int) -> float:
    """Apply a market fill of ``qty`` at ``px`` to env i; returns traded notional (quote)."""
    mult = P[P_MULT]
    fee = taker_fee_quote(abs(qty), px, mult, P[P_TAKER_FEE])
    pos = S[S_POS, i]
    new_pos = pos + qty
    new_entry = updated_entry_price(pos, S[S_ENTRY_PX, i], qty, px)
    if new_pos != 0.0 and (pos == 0.0 or (pos > 0.0) != (new_pos > 0.0)):
        S[S_ENTRY_T, i] = bar
        S[S_BEST_PX, i] = px
    S[S_ENTRY_PX, i] = new_entry
    S[S_CASH, i] = cash_after_fill(S[S_CASH, i], qty, px, mult, fee)
    S[S_POS, i] = new_pos
    S[S_FEES, i] += fee
    S[S_SLIPPAGE, i] += abs(qty) * abs(px - ref_px) * mult
    S[S_N_TRADES, i] += 1.0
    S[S_FILL_PX, i] = px
    S[S_TRADED_QTY, i] += qty
    if new_pos == 0.0:
        S[S_BEST_PX, i] = 0.0
        S[S_ENTRY_T, i] = -1.0
    return abs(qty) * px * mult


@numba.njit(cache=True)
def _liquidate(S: np.ndarray, i: int, px: float, P: np.ndarray) -> float:
    """Close env i's position at ``px`` paying the liquidation fee (no taker fee, no slippage)."""
    mult = P[P_MULT]
    qty = -S[S_POS, i]
    fee = abs(qty) * px * mult * P[P_LIQ_FEE]
    S[S_CASH, i] = cash_after_fill(S[S_CASH, i], qty, px, mult, fee)
    S[S_POS, i] = 0.0
    S[S_ENTRY_PX, i] = 0.0
    S[S_BEST_PX, i] = 0.0
    S[S_ENTRY_T, i] = -1.0
    S[S_FEES, i] += fee
    S[S_N_TRADES, i] += 1.0
    S[S_FILL_PX, i] = px
    S[S_TRADED_QTY, i] += qty
    S[S_LIQUIDATED, i] = 1.0
    return abs(qty) * px * mult


@numba.njit(cache=True)
def exit_levels(S: np.ndarray, i: int, bar: int, P: np.ndarray) -> tuple[float, float, float]:
    """Env i's exit levels on bar ``bar`` (quote per base unit, NaN = none): ``(stop, take_profit,
    liquidation)``.

    The stop is the nearer of the fixed and the trailing stop (the trailing one from the best price
    before ``bar``); stop and take-profit are live from the bar after the entry. Used by `_exits`, and
    by paper mode's testnet broker to mirror them as exchange orders.
    """
    pos = S[S_POS, i]
    if pos == 0.0:
        return math.nan, math.nan, math.nan
    long = pos > 0.0
    entry = S[S_ENTRY_PX, i]
    best = S[S_BEST_PX, i]
    stop_lvl = math.nan
    tp_lvl = math.nan
    if bar > S[S_ENTRY_T, i]:
        if not math.isnan(P[P_STOP]):
            stop_lvl = entry * (1.0 - P[P_STOP]) if long else entry * (1.0 + P[P_STOP])
        if not math.isnan(P[P_TRAIL]):
            trail = best * (1.0 - P[P_TRAIL]) if long else best * (1.0 + P[P_TRAIL])
            if math.isnan(stop_lvl):
                stop_lvl = trail
            else:
                stop_lvl = max(stop_lvl, trail) if long else min(stop_lvl, trail)
        if not math.isnan(P[P_TP]):
            tp_lvl = entry * (1.0 + P[P_TP]) if long else entry * (1.0 - P[P_TP])
    return stop_lvl, tp_lvl, liquidation_price(S[S_CASH, i], pos, P[P_MULT], P[P_MMR])


@numba.njit(cache=True)
def _exits(S: np.ndarray, i: int, bar: int, M: np.ndarray, P: np.ndarray, sigma: float) -> float:
    """Rules 7–8 on bar ``bar``: liquidation, stop / trailing stop, take-profit. Returns notional."""
    pos = S[S_POS, i]
    if pos == 0.0:
        return 0.0
    o = M[bar, M_OPEN]
    hi = M[bar, M_HIGH]
    lo = M[bar, M_LOW]
    long = pos > 0.0
    best = S[S_BEST_PX, i]
    stop_lvl, tp_lvl, liq_lvl = exit_levels(S, i, bar, P)
    if long:
        stop_hit = (not math.isnan(stop_lvl)) and lo <= stop_lvl
        liq_hit = (not math.isnan(liq_lvl)) and lo <= liq_lvl
        tp_gap = (not math.isnan(tp_lvl)) and o >= tp_lvl
        tp_hit = (not math.isnan(tp_lvl)) and hi >= tp_lvl
    else:
        stop_hit = (not math.isnan(stop_lvl)) and hi >= stop_lvl
        liq_hit = (not math.isnan(liq_lvl)) and hi >= liq_lvl
        tp_gap = (not math.isnan(tp_lvl)) and o <= tp_lvl
        tp_hit = (not math.isnan(tp_lvl)) and lo <= tp_lvl
    side = -1.0 if long else 1.0
    qty = -pos
    if tp_gap:
        px = fill_price(side, o, abs(qty), int(P[P_SLIP_MODEL]), P[P_SLIP_BPS], P[P_SLIP_COEF], sigma,
                        M[bar, M_SPREAD], M[bar, M_VOLUME], P[P_TICK])
        return _fill(S, i, qty, px, o, P, bar)
    if stop_hit or liq_hit:
        # the level nearer the open on the adverse path happens first
        stop_first = stop_hit and (not liq_hit or (stop_lvl >= liq_lvl if long else stop_lvl <= liq_lvl))
        if stop_first:
            ref = min(o, stop_lvl) if long else max(o, stop_lvl)
            px = fill_price(side, ref, abs(qty), int(P[P_SLIP_MODEL]), P[P_SLIP_BPS], P[P_SLIP_COEF], sigma,
                            M[bar, M_SPREAD], M[bar, M_VOLUME], P[P_TICK])
            return _fill(S, i, qty, px, ref, P, bar)
        ref = min(o, liq_lvl) if long else max(o, liq_lvl)
        return _liquidate(S, i, ref, P)
    if tp_hit:
        px = fill_price(side, tp_lvl, abs(qty), int(P[P_SLIP_MODEL]), P[P_SLIP_BPS], P[P_SLIP_COEF], sigma,
                        M[bar, M_SPREAD], M[bar, M_VOLUME], P[P_TICK])
        return _fill(S, i, qty, px, tp_lvl, P, bar)
    # still in position: extend the best price with this bar's range (all of it follows the open)
    S[S_BEST_PX, i] = max(best, hi) if long else min(best, lo)
    return 0.0


@numba.njit(cache=True)
def _participation_cap(i: int, dq: float, next_volume: float, S: np.ndarray, P: np.ndarray) -> float:
    """Rule 3's cap: ``dq`` clipped (toward zero, in lots) to ``max_participation`` x the fill bar's volume;
    the clipped part goes to ``S_CLIPPED_QTY``."""
    cap = P[P_MAX_PART] * next_volume
    if abs(dq) <= cap:
        return dq
    clipped = round_qty_toward_zero(math.copysign(cap, dq), P[P_LOT])
    S[S_CLIPPED_QTY, i] = abs(dq) - abs(clipped)
    return clipped


@numba.njit(cache=True)
def _reward_step(i: int, log_ret: float, turnover: float, dd: float, S: np.ndarray, P: np.ndarray) -> None:
    """Rule 9: the shaped reward of env i's step and the update of its running moments (EMAs)."""
    a_prev = S[S_EMA_A, i]
    b_prev = S[S_EMA_B, i]
    dd2_prev = S[S_EMA_DD2, i]
    S[S_REWARD, i] = shaped_reward(int(P[P_REWARD]), log_ret, a_prev, b_prev, dd2_prev, turnover, dd,
                                   P[P_TURN_PEN], P[P_DD_PEN])
    eta = P[P_REWARD_ETA]
    S[S_EMA_A, i] = a_prev + eta * (log_ret - a_prev)
    S[S_EMA_B, i] = b_prev + eta * (log_ret * log_ret - b_prev)
    down = min(log_ret, 0.0)
    S[S_EMA_DD2, i] = dd2_prev + eta * (down * down - dd2_prev)


@numba.njit(cache=True)
def _episode_stats(i: int, r: float, turnover: float, dd: float, S: np.ndarray) -> None:
    """Running sums of env i's episode (simple return ``r``, turnover, exposure, max drawdown)."""
    S[S_SUM_R, i] += r
    S[S_SUM_R2, i] += r * r
    S[S_SUM_DOWN2, i] += min(r, 0.0) ** 2
    S[S_N_R, i] += 1.0
    S[S_SUM_TURNOVER, i] += turnover
    S[S_SUM_ABS_EXPOSURE, i] += abs(S[S_EXPOSURE, i])
    if dd > S[S_MAX_DD, i]:
        S[S_MAX_DD, i] = dd


@numba.njit(cache=True)
def step_env(i: int, a: float, S: np.ndarray, M: np.ndarray, P: np.ndarray, levels: np.ndarray) -> None:
    """Advance env i by one decision: decision at close t, fills in bar t+1, mark at close t+1."""
    t = int(S[S_T, i])
    nxt = t + 1
    mult = P[P_MULT]
    eq_t = S[S_EQUITY, i]
    c_t = M[t, M_CLOSE]
    sigma = M[t, M_SIGMA]
    S[S_FILL_PX, i] = 0.0
    S[S_TRADED_QTY, i] = 0.0
    S[S_CLIPPED_QTY, i] = 0.0
    S[S_LIQUIDATED, i] = 0.0
    notional = 0.0

    # rules 2-3: target exposure and quantity, decided at close t (risk controls limit both)
    mode = risk_regime(i, t, S, M, P)
    e = risk_cap_exposure(i, target_exposure(a, P, levels, sigma, M[t, M_MU]), S, P)
    pos = S[S_POS, i]
    q_target = target_quantity(e, eq_t, c_t, mult, P[P_LOT])
    dq = risk_order(i, mode, q_target - pos, pos, c_t, S, P)
    cur_e = pos * c_t * mult / eq_t if eq_t > 0.0 else 0.0
    forced = mode == MODE_FLATTEN  # a risk flatten ignores the rebalance threshold
    send = (dq != 0.0 and (forced or abs(e - cur_e) >= P[P_REBALANCE])
            and abs(dq) * c_t * mult >= P[P_MIN_NOTIONAL])
    if send and not math.isnan(P[P_MAX_PART]):
        dq = _participation_cap(i, dq, M[nxt, M_VOLUME], S, P)
        send = dq != 0.0
    # rule 4-5: fill at the open of t+1
    if send:
        o = M[nxt, M_OPEN]
        side = 1.0 if dq > 0.0 else -1.0
        px = fill_price(side, o, abs(dq), int(P[P_SLIP_MODEL]), P[P_SLIP_BPS], P[P_SLIP_COEF], sigma,
                        M[nxt, M_SPREAD], M[nxt, M_VOLUME], P[P_TICK])
        notional += _fill(S, i, dq, px, o, P, nxt)
    # rule 6: funding on the position after the open fill, at close t+1 prices
    c_next = M[nxt, M_CLOSE]
    funding = S[S_POS, i] * c_next * mult * M[nxt, M_FUNDING]
    # rules 7-8: liquidation, stops and take-profit inside bar t+1
    notional += _exits(S, i, nxt, M, P, sigma)
    S[S_CASH, i] -= funding
    S[S_FUNDING, i] += funding

    # mark at close t+1
    eq = mark_to_market(S[S_CASH, i], S[S_POS, i], c_next, mult)
    S[S_EQUITY, i] = eq
    S[S_PRICE, i] = c_next
    if eq > S[S_PEAK, i]:
        S[S_PEAK, i] = eq
    dd = 1.0 - eq / S[S_PEAK, i] if S[S_PEAK, i] > 0.0 else 1.0
    S[S_DRAWDOWN, i] = dd
    S[S_EXPOSURE, i] = S[S_POS, i] * c_next * mult / eq if eq > 0.0 else 0.0
    S[S_T, i] = nxt
    S[S_STEPS, i] += 1.0
    roll_day(i, nxt, eq_t, S, M)

    # reward and its running state, then the episode statistics (simple returns), no per-step history
    floor = 1e-6 * P[P_INIT_CASH]
    turnover = notional / eq_t if eq_t > 0.0 else 0.0
    S[S_STEP_NOTIONAL, i] = notional
    _reward_step(i, math.log(max(eq, floor) / max(eq_t, floor)), turnover, dd, S, P)
    _episode_stats(i, max(eq, floor) / max(eq_t, floor) - 1.0, turnover, dd, S)

    # episode end
    terminated = eq <= 0.0 or ((not math.isnan(P[P_MAX_DD])) and dd > P[P_MAX_DD])
    truncated = nxt >= P[P_N_BARS] - 1 or (P[P_EP_LEN] > 0.0 and S[S_STEPS, i] >= P[P_EP_LEN])
    S[S_TERMINATED, i] = 1.0 if terminated else 0.0
    S[S_TRUNCATED, i] = 1.0 if truncated else 0.0


@numba.njit(cache=True)
def reset_env(i: int, start: int, S: np.ndarray, M: np.ndarray, P: np.ndarray) -> None:
    """Put env i flat with initial cash at decision bar ``start``."""
    for k in range(S_ROWS):
        S[k, i] = 0.0
    cash = P[P_INIT_CASH]
    S[S_T, i] = start
    S[S_START_T, i] = start
    S[S_CASH, i] = cash
    S[S_EQUITY, i] = cash
    S[S_PEAK, i] = cash
    S[S_ENTRY_T, i] = -1.0
    S[S_PRICE, i] = M[start, M_CLOSE]
    S[S_DAY, i] = math.floor(M[start, M_TIME] / DAY_MS)
    S[S_DAY_START_EQ, i] = cash


@numba.njit(cache=True)
def write_obs(i: int, S: np.ndarray, M: np.ndarray, F: np.ndarray, P: np.ndarray, out: np.ndarray) -> None:
    """Observation of env i into ``out[i]``: features of bars t-B+1..t, bar t's summaries, 4 account values.

    ``F`` is the observation matrix (`envs.sim.observation`): its first ``P[P_OBS_FEATURES]`` columns are
    a bar's features, copied for the last B = ``P[P_OBS_BARS]`` bars; any further columns are summaries
    of the history, copied from row t only (none for the "window" observation). Account values:
    exposure, unrealised P&L / equity, bars since entry / window_size, drawdown — all clipped to
    ±obs_clip (features were clipped when the matrix was built). ``F`` must be C-contiguous: without
    summaries the window's rows are one contiguous block, copied as such.
    """
    t = int(S[S_T, i])
    w = int(P[P_OBS_BARS])
    nf = int(P[P_OBS_FEATURES])
    nc = F.shape[1]
    k = w * nf
    if nc == nf:
        first = (t - w + 1) * nf
        out[i, :k] = F.reshape(F.shape[0] * nf)[first:first + k]
    else:
        for r in range(w):
            out[i, r * nf:(r + 1) * nf] = F[t - w + 1 + r, :nf]
        out[i, k:k + nc - nf] = F[t, nf:]
        k += nc - nf
    clip = P[P_OBS_CLIP]
    eq = S[S_EQUITY, i]
    pos = S[S_POS, i]
    upnl = 0.0
    since = 0.0
    if pos != 0.0 and eq > 0.0:
        upnl = pos * (M[t, M_CLOSE] - S[S_ENTRY_PX, i]) * P[P_MULT] / eq
        since = (t - S[S_ENTRY_T, i]) / P[P_WINDOW]
    vals = (S[S_EXPOSURE, i], upnl, since, S[S_DRAWDOWN, i])
    for v in vals:
        out[i, k] = min(max(v, -clip), clip)
        k += 1


@numba.njit(cache=True)
def step_batch(actions: np.ndarray, S: np.ndarray, M: np.ndarray, P: np.ndarray, levels: np.ndarray,
               F: np.ndarray, timestamps: np.ndarray, obs: np.ndarray, rewards: np.ndarray, dones: np.ndarray,
               ts_out: np.ndarray) -> int:
    """Step every env (column of S) with its action; write its next observation, float32 reward,
    done flag and marked bar's timestamp. Returns the number of finished envs."""
    n_done = 0
    for i in range(S.shape[1]):
        step_env(i, actions[i], S, M, P, levels)
        write_obs(i, S, M, F, P, obs)
        rewards[i] = S[S_REWARD, i]
        done = S[S_TERMINATED, i] > 0.0 or S[S_TRUNCATED, i] > 0.0
        dones[i] = done
        n_done += done
        ts_out[i] = timestamps[int(S[S_T, i])]
    return n_done


def compiled_entry(dispatcher: Any, *args: object) -> Callable[..., Any]:
    """The compiled entry point of ``dispatcher`` for exactly the types of ``args``.

    Calling it skips numba's per-call type resolution (about 60 ns per argument). The caller must
    pass arguments of the same types on every call (fixed arrays prepared once, a Python float):
    the entry point does not check them.
    """
    if not isinstance(dispatcher, numba.core.dispatcher.Dispatcher):  # NUMBA_DISABLE_JIT=1: a plain function
        return dispatcher  # type: ignore[no-any-return]
    return dispatcher.compile(tuple(numba.typeof(a) for a in args))  # from the on-disk cache when present


#: kinds of info values in an info record (`write_info`): the Python type a reader gets back
INFO_FLOAT, INFO_INT, INFO_BOOL, INFO_TIMESTAMP = 0, 1, 2, 3


@numba.njit(cache=True)
def write_info(i: int, S: np.ndarray, timestamps: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """Snapshot env i's info values into the record ``out`` ((K,) int64 words).

    Value k comes from state row ``table[0, k]`` as kind ``table[1, k]``: `INFO_FLOAT` (stored bit
    for bit as a float64), `INFO_INT` (truncated to int64), `INFO_BOOL` (1 when > 0, else 0) or
    `INFO_TIMESTAMP` (the int64 ms time of the bar in that row). Readers view the record through a
    structured dtype (`envs.sim.simulation.INFO_DTYPE`), whose ``.item()`` gives Python scalars.
    """
    outf = out.view(np.float64)
    for k in range(out.shape[0]):
        v = S[int(table[0, k]), i]
        kind = int(table[1, k])
        if kind == INFO_TIMESTAMP:
            out[k] = timestamps[int(v)]
        elif kind == INFO_INT:
            out[k] = int(v)
        elif kind == INFO_BOOL:
            out[k] = 1 if v > 0.0 else 0
        else:
            outf[k] = v


@numba.njit(cache=True)
def step_single(a: float, W: np.ndarray, M: np.ndarray, PL: np.ndarray, F: np.ndarray, timestamps: np.ndarray,
                obs: np.ndarray) -> tuple[float, bool, bool]:
    """One decision of a single env with few arguments (numba's per-argument cost dominates a step).

    ``W`` is the env's float64 workspace: its state column ``W[:S_ROWS]``, then its info record (K
    int64 words, see `write_info`), then the record's (2, K) source table. ``PL`` is the parameter
    vector followed by the discrete exposure levels. The observation is written into ``obs`` (1-D).
    Returns (reward, terminated, truncated).
    """
    S = W[:S_ROWS].reshape((S_ROWS, 1))
    nk = (W.shape[0] - S_ROWS) // 3
    P = PL[:P_LEN]
    step_env(0, a, S, M, P, PL[P_LEN:])
    write_obs(0, S, M, F, P, obs.reshape((1, obs.shape[0])))
    write_info(0, S, timestamps, W[S_ROWS + nk:].reshape((2, nk)), W[S_ROWS:S_ROWS + nk].view(np.int64))
    return S[S_REWARD, 0], S[S_TERMINATED, 0] > 0.0, S[S_TRUNCATED, 0] > 0.0


@numba.njit(cache=True)
def reset_batch(idx: np.ndarray, starts: np.ndarray, S: np.ndarray, M: np.ndarray, P: np.ndarray,
                F: np.ndarray, timestamps: np.ndarray, obs: np.ndarray, ts_out: np.ndarray) -> None:
    """Reset envs ``idx`` to decision bars ``starts``; write their first observations and timestamps."""
    for j in range(idx.shape[0]):
        i = idx[j]
        reset_env(i, starts[j], S, M, P)
        write_obs(i, S, M, F, P, obs)
        ts_out[i] = timestamps[starts[j]]


def build_market_matrix(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
    spread: np.ndarray | None, sigma: np.ndarray, mu: np.ndarray, funding: np.ndarray, timestamp: np.ndarray,
) -> npt.NDArray[np.float64]:
    """Stack per-bar arrays into the kernel's (T, M_COLS) market matrix (``timestamp``: int64 bar
    open times, ms UTC)."""
    m = np.empty((close.shape[0], M_COLS), dtype=np.float64)
    m[:, M_OPEN] = open_
    m[:, M_HIGH] = high
    m[:, M_LOW] = low
    m[:, M_CLOSE] = close
    m[:, M_VOLUME] = volume
    m[:, M_SPREAD] = np.nan if spread is None else spread
    m[:, M_SIGMA] = sigma
    m[:, M_MU] = mu
    m[:, M_FUNDING] = funding
    m[:, M_TIME] = timestamp
    return m
