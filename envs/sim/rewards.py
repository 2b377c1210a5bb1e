"""Reward functions (numba-compiled, pure). Chosen by ``EnvConfig.reward``.

All take R = log(equity_{t+1} / equity_t) (equity floored at 1e-6 x initial cash) and, for the
adaptive ones, exponential moving moments with rate ``eta`` held by the caller.
"""

from __future__ import annotations

import math

import numba

REWARD_LOG_RETURN = 0
REWARD_DIFFERENTIAL_SHARPE = 1
REWARD_SORTINO = 2
REWARD_CODES = {"log_return": REWARD_LOG_RETURN, "differential_sharpe": REWARD_DIFFERENTIAL_SHARPE,
                "sortino": REWARD_SORTINO}


@numba.njit(cache=True)
def differential_sharpe(r: float, a_prev: float, b_prev: float) -> float:
    """Moody & Saffell's differential Sharpe ratio of return ``r``.

    D = (B ΔA − ½ A ΔB) / (B − A²)^{3/2} with A, B the EMA of r and r² before this step,
    ΔA = r − A, ΔB = r² − B. Returns 0.0 while the variance B − A² is ~0 (first steps).
    """
    var = b_prev - a_prev * a_prev
    if var <= 1e-12:
        return 0.0
    d_a = r - a_prev
    d_b = r * r - b_prev
    return (b_prev * d_a - 0.5 * a_prev * d_b) / (var * math.sqrt(var))


@numba.njit(cache=True)
def differential_sortino(r: float, a_prev: float, dd2_prev: float) -> float:
    """Moody & Saffell's differential downside deviation ratio of return ``r``.

    With A the EMA of r and DD² the EMA of min(r, 0)²:
    r > 0: (r − ½A) / DD;  r <= 0: (DD² (r − ½A) − ½ A r²) / DD³.
    Returns 0.0 while no downside has been seen (DD ~ 0).
    """
    if dd2_prev <= 1e-12:
        return 0.0
    dd = math.sqrt(dd2_prev)
    if r > 0.0:
        return (r - 0.5 * a_prev) / dd
    return (dd2_prev * (r - 0.5 * a_prev) - 0.5 * a_prev * r * r) / (dd2_prev * dd)


@numba.njit(cache=True)
def shaped_reward(
    code: int,
    log_ret: float,
    a_prev: float,
    b_prev: float,
    dd2_prev: float,
    turnover: float,
    drawdown: float,
    turnover_penalty: float,
    drawdown_penalty: float,
) -> float:
    """Base reward for ``code`` minus turnover_penalty x turnover minus drawdown_penalty x drawdown.

    turnover: traded notional in the step / equity at decision time (fraction).
    drawdown: drawdown from peak after the step (fraction).
    """
    if code == REWARD_LOG_RETURN:
        base = log_ret
    elif code == REWARD_DIFFERENTIAL_SHARPE:
        base = differential_sharpe(log_ret, a_prev, b_prev)
    else:
        base = differential_sortino(log_ret, a_prev, dd2_prev)
    return base - turnover_penalty * turnover - drawdown_penalty * drawdown
