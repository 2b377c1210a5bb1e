"""The kernel's layouts: market-matrix columns ``M_*``, state rows ``S_*``, parameters ``P_*`` and codes.

`make_params` flattens a validated `EnvConfig` into the parameter vector. The compiled rules
(`envs.sim.kernel`, `envs.sim.risk`) index these arrays by the names defined here.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from envs.sim.config import (  # noqa: F401  (the sizing codes are part of the kernel layout)
    SIZING_CODES,
    SIZING_FIXED,
    SIZING_KELLY,
    SIZING_RISK,
    SIZING_VOL_TARGET,
    EnvConfig,
)
from envs.sim.execution import SLIPPAGE_CODES
from envs.sim.rewards import REWARD_CODES

# Each layout is declared once: a name's index is its position in the unpacking, and the count is stated
# once (Python refuses to import the module when the names and the count disagree). Append new names
# at the end and raise the count; nothing else is numbered.

# market matrix columns
_MARKET = range(10)
M_OPEN, M_HIGH, M_LOW, M_CLOSE, M_VOLUME, M_SPREAD, M_SIGMA, M_MU, M_FUNDING, M_TIME = _MARKET
M_COLS = len(_MARKET)
#: milliseconds per UTC day (the daily loss limit's day is floor(open time / DAY_MS))
DAY_MS = 86_400_000.0

# state rows
_STATE = range(43)
(S_T, S_STEPS, S_CASH, S_POS, S_ENTRY_PX, S_BEST_PX, S_ENTRY_T, S_EQUITY, S_PEAK, S_DRAWDOWN,
 S_EXPOSURE, S_PRICE, S_FILL_PX, S_TRADED_QTY, S_CLIPPED_QTY, S_FEES, S_SLIPPAGE, S_FUNDING,
 S_N_TRADES, S_LIQUIDATED, S_REWARD, S_TERMINATED, S_TRUNCATED, S_EMA_A, S_EMA_B, S_EMA_DD2,
 S_SUM_R, S_SUM_R2, S_SUM_DOWN2, S_N_R, S_SUM_TURNOVER, S_SUM_ABS_EXPOSURE, S_MAX_DD,
 S_START_T, S_STEP_NOTIONAL,
 # risk controls: regime and reason of the last decision, the UTC day and its starting equity,
 # latches, and the two caller-set inputs (feed lag in bars, kill switch)
 S_RISK_STATE, S_RISK_REASON, S_DAY, S_DAY_START_EQ, S_DAY_LOSS_HIT, S_DD_HALT, S_FEED_LAG,
 S_KILL) = _STATE
S_ROWS = len(_STATE)

# params
_PARAMS = range(42)
(P_DISCRETE, P_LONG_ONLY, P_MAX_LEV, P_SIZING, P_TARGET_VOL, P_BARS_PER_YEAR, P_RISK_PER_TRADE,
 P_KELLY_FRACTION, P_LOT, P_MIN_NOTIONAL, P_REBALANCE, P_TAKER_FEE, P_SLIP_MODEL, P_SLIP_BPS,
 P_SLIP_COEF, P_MAX_PART, P_MULT, P_TICK, P_MMR, P_LIQ_FEE, P_STOP, P_TP, P_TRAIL, P_REWARD,
 P_REWARD_ETA, P_TURN_PEN, P_DD_PEN, P_MAX_DD, P_INIT_CASH, P_OBS_CLIP, P_WINDOW, P_EP_LEN,
 P_N_BARS,
 # risk controls (NaN = off)
 P_RISK_MAX_EXPOSURE, P_RISK_MAX_ORDER, P_RISK_DAILY_LOSS, P_RISK_MAX_DD, P_RISK_STALE_AFTER,
 P_RISK_EXPIRES_MS, P_RISK_AGE_EXPIRES_MS,
 # observation: bars whose every feature it holds, features per bar (the feature matrix's first
 # columns; any further columns are bar t's summaries, see envs.sim.observation)
 P_OBS_BARS, P_OBS_FEATURES) = _PARAMS
P_LEN = len(_PARAMS)

#: number of account-state values appended to each observation
N_ACCOUNT_OBS = 4

#: risk regimes (``S_RISK_STATE``): trading freely / orders may only reduce the position / no
#: order except a forced flatten
RISK_STATES = ("ACTIVE", "REDUCING", "HALTED")
RISK_ACTIVE, RISK_REDUCING, RISK_HALTED = range(len(RISK_STATES))
#: why (``S_RISK_REASON``): the rule that set the regime, or (while ACTIVE) the limit that cut the
#: decision's order; ``none`` = nothing limited it
RISK_REASONS = ("none", "max_exposure", "max_order_notional", "daily_loss", "drawdown", "stale_feed", "expired",
                "kill", "model_age")
(REASON_NONE, REASON_MAX_EXPOSURE, REASON_MAX_ORDER, REASON_DAILY_LOSS, REASON_DRAWDOWN, REASON_STALE,
 REASON_EXPIRED, REASON_KILL, REASON_MODEL_AGE) = range(len(RISK_REASONS))
#: what a regime allows the decision's order to do
MODE_FREE, MODE_REDUCE_ONLY, MODE_NO_ORDERS, MODE_FLATTEN = 0, 1, 2, 3


def _opt(x: float | None) -> float:
    return math.nan if x is None else float(x)


def make_params(config: EnvConfig, bars_per_year: float, n_bars: int, n_features: int) -> npt.NDArray[np.float64]:
    """Flatten a validated `EnvConfig` into the kernel's parameter vector (``n_features``: per bar)."""
    p = np.zeros(P_LEN)
    p[P_DISCRETE] = 1.0 if config.action_mode == "discrete" else 0.0
    p[P_LONG_ONLY] = float(config.long_only)
    p[P_MAX_LEV] = config.max_leverage
    p[P_SIZING] = SIZING_CODES[config.sizing]
    p[P_TARGET_VOL] = config.target_vol
    p[P_BARS_PER_YEAR] = bars_per_year
    p[P_RISK_PER_TRADE] = config.risk_per_trade
    p[P_KELLY_FRACTION] = config.kelly_fraction
    p[P_LOT] = config.lot_size
    p[P_MIN_NOTIONAL] = config.min_notional
    p[P_REBALANCE] = config.rebalance_threshold
    p[P_TAKER_FEE] = config.taker_fee
    p[P_SLIP_MODEL] = SLIPPAGE_CODES[config.slippage_model]
    p[P_SLIP_BPS] = config.slippage_bps
    p[P_SLIP_COEF] = config.slippage_coef
    p[P_MAX_PART] = _opt(config.max_participation)
    p[P_MULT] = config.contract_multiplier
    p[P_TICK] = config.tick_size
    p[P_MMR] = config.maintenance_margin_rate
    p[P_LIQ_FEE] = config.liquidation_fee
    p[P_STOP] = _opt(config.stop_loss)
    p[P_TP] = _opt(config.take_profit)
    p[P_TRAIL] = _opt(config.trailing_stop)
    p[P_REWARD] = REWARD_CODES[config.reward]
    p[P_REWARD_ETA] = config.reward_eta
    p[P_TURN_PEN] = config.turnover_penalty
    p[P_DD_PEN] = config.drawdown_penalty
    p[P_MAX_DD] = _opt(config.max_drawdown)
    p[P_INIT_CASH] = config.initial_cash
    p[P_OBS_CLIP] = config.obs_clip
    p[P_WINDOW] = config.window_size
    p[P_EP_LEN] = 0.0 if config.episode_length is None else float(config.episode_length)
    p[P_N_BARS] = n_bars
    p[P_OBS_BARS] = config.compact_bars if config.observation == "compact" else config.window_size
    p[P_OBS_FEATURES] = n_features
    risk = config.risk
    p[P_RISK_MAX_EXPOSURE] = _opt(risk.max_exposure)
    p[P_RISK_MAX_ORDER] = _opt(risk.max_order_notional)
    p[P_RISK_DAILY_LOSS] = _opt(risk.daily_loss_limit)
    p[P_RISK_MAX_DD] = _opt(risk.max_drawdown)
    p[P_RISK_STALE_AFTER] = _opt(risk.stale_after)
    p[P_RISK_EXPIRES_MS] = _opt(risk.expires_ms)
    p[P_RISK_AGE_EXPIRES_MS] = _opt(risk.model_expires_ms)
    return p
