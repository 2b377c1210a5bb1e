"""Rewards: the pure reward functions against hand-computed values, and each reward in the env.

Env rewards use R = log(equity_{t+1} / equity_t); differential Sharpe / Sortino use exponential
moving moments with rate ``reward_eta``, updated after the reward is computed; penalties subtract
``turnover_penalty`` x (traded notional / equity at decision) and ``drawdown_penalty`` x drawdown.
"""

from __future__ import annotations

import math

import pytest

from envs.sim.rewards import (
    REWARD_CODES,
    differential_sharpe,
    differential_sortino,
    shaped_reward,
)
from tests.envs.helpers import config, infos, make_bars, run


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "a", "b", "expected"),
    [
        # var = 0.0005 - 0.01^2 = 0.0004; dA = 0.01; dB = 0.0004 - 0.0005 = -0.0001
        # (0.0005 x 0.01 - 0.5 x 0.01 x -0.0001) / 0.0004^1.5 = 5.5e-6 / 8e-6
        (0.02, 0.01, 0.0005, 0.6875),
        # dA = -0.02; dB = 0.0001 - 0.0005 = -0.0004: (-1e-5 + 2e-6) / 8e-6
        (-0.01, 0.01, 0.0005, -1.0),
        # zero variance (first steps): 0
        (0.05, 0.0, 0.0, 0.0),
        (0.05, 0.01, 0.0001, 0.0),
    ],
)
def test_differential_sharpe_values(r: float, a: float, b: float, expected: float) -> None:
    assert differential_sharpe(r, a, b) == approx(expected)


@pytest.mark.parametrize(
    ("r", "a", "dd2", "expected"),
    [
        # r > 0: (r - A/2) / DD = (0.03 - 0.005) / 0.02
        (0.03, 0.01, 0.0004, 1.25),
        # r <= 0: (DD^2 (r - A/2) - A r^2 / 2) / DD^3 = (0.0004 x -0.025 - 2e-6) / 8e-6
        (-0.02, 0.01, 0.0004, -1.5),
        # r = 0: 0.0004 x -0.005 / 8e-6
        (0.0, 0.01, 0.0004, -0.25),
        # no downside seen yet: 0
        (-0.02, 0.01, 0.0, 0.0),
    ],
)
def test_differential_sortino_values(r: float, a: float, dd2: float, expected: float) -> None:
    assert differential_sortino(r, a, dd2) == approx(expected)


def test_shaped_reward_subtracts_both_penalties() -> None:
    log_code = REWARD_CODES["log_return"]
    # 0.01 - 0.01 x 1.5 - 0.5 x 0.2 = -0.105
    assert shaped_reward(log_code, 0.01, 0.0, 0.0, 0.0, 1.5, 0.2, 0.01, 0.5) == approx(-0.105)
    sharpe_code = REWARD_CODES["differential_sharpe"]
    assert shaped_reward(sharpe_code, 0.02, 0.01, 0.0005, 0.0, 1.0, 0.1, 0.1, 1.0) == approx(0.6875 - 0.1 - 0.1)
    sortino_code = REWARD_CODES["sortino"]
    assert shaped_reward(sortino_code, 0.03, 0.01, 0.0, 0.0004, 0.0, 0.0, 0.3, 0.3) == approx(1.25)


# ---------------------------------------------------------------------------------------------
# in the env
# ---------------------------------------------------------------------------------------------

# fully invested long, zero costs, each bar opens at the previous close: q = 100 throughout and
# equity = 100 x close, so R_k = ln(c_k / c_{k-1}): ln 1.1, ln 0.9, ln 1.1, ln(100 / 108.9)
CLOSES = [100.0, 110.0, 99.0, 108.9, 100.0]
RETURNS = [math.log(b / a) for a, b in zip(CLOSES, CLOSES[1:], strict=False)]


def _path_bars():
    rows = [CLOSES[0]] + [(a, max(a, b), min(a, b), b) for a, b in zip(CLOSES, CLOSES[1:], strict=False)]
    return make_bars(rows)


def test_log_return_reward() -> None:
    bars = make_bars([100, (102, 105, 101, 104), (105, 107, 99, 100), (98, 99, 97, 98), 98])
    _, steps = run(bars, config(taker_fee=0.001, slippage_model="fixed_bps", slippage_bps=5.0),
                   [1.0, -0.5, 0.25, 0.0])
    eqs = [10000.0] + [s[4]["equity"] for s in steps]
    assert len(steps) == 4
    for k, s in enumerate(steps):
        assert s[1] == approx(math.log(eqs[k + 1] / eqs[k]))
    assert all(s[1] != 0.0 for s in steps[:3])


def test_env_path_returns() -> None:
    _, steps = run(_path_bars(), config(), [1.0] * 4)
    assert [s[4]["position"] for s in steps] == [approx(100.0)] * 4
    assert [s[1] for s in steps] == [approx(r) for r in RETURNS]


def test_differential_sharpe_reward() -> None:
    eta = 0.5
    _, steps = run(_path_bars(), config(reward="differential_sharpe", reward_eta=eta), [1.0] * 4)
    rewards = [s[1] for s in steps]
    r1, r2 = RETURNS[0], RETURNS[1]
    # step 1: A = B = 0 -> zero variance -> 0; then A1 = 0.5 R1, B1 = 0.5 R1^2
    assert rewards[0] == 0.0
    # step 2: var = B1 - A1^2 = 0.25 R1^2; D = (B1 (R2 - A1) - A1 (R2^2 - B1) / 2) / var^1.5
    a1, b1 = 0.5 * r1, 0.5 * r1 * r1
    d2 = (b1 * (r2 - a1) - 0.5 * a1 * (r2 * r2 - b1)) / (0.25 * r1 * r1) ** 1.5
    assert rewards[1] == approx(d2)
    # the rest by the recurrence (moments updated after each reward)
    a, b = 0.0, 0.0
    for r, got in zip(RETURNS, rewards, strict=True):
        var = b - a * a
        expected = 0.0 if var <= 1e-12 else (b * (r - a) - 0.5 * a * (r * r - b)) / var**1.5
        assert got == approx(expected)
        a += eta * (r - a)
        b += eta * (r * r - b)
    # reward_eta matters
    _, other = run(_path_bars(), config(reward="differential_sharpe", reward_eta=0.1), [1.0] * 4)
    assert other[1][1] != pytest.approx(rewards[1])


def test_sortino_reward() -> None:
    eta = 0.5
    _, steps = run(_path_bars(), config(reward="sortino", reward_eta=eta), [1.0] * 4)
    rewards = [s[1] for s in steps]
    r1, r2, r3 = RETURNS[:3]
    # steps 1-2: no downside in the moments yet (R1 > 0; R2 < 0 only enters after step 2) -> 0
    assert rewards[:2] == [0.0, 0.0]
    # step 3: A2 = 0.25 R1 + 0.5 R2, DD2 = 0.5 R2^2; R3 > 0 -> (R3 - A2 / 2) / DD
    a2 = 0.25 * r1 + 0.5 * r2
    dd = math.sqrt(0.5 * r2 * r2)
    assert rewards[2] == approx((r3 - 0.5 * a2) / dd)
    # step 4: R4 < 0 -> (DD^2 (R4 - A3/2) - A3 R4^2 / 2) / DD^3
    r4 = RETURNS[3]
    a3 = a2 + eta * (r3 - a2)
    dd2 = 0.5 * r2 * r2 * (1 - eta)  # R3 > 0 adds no downside
    expected = (dd2 * (r4 - 0.5 * a3) - 0.5 * a3 * r4 * r4) / dd2**1.5
    assert rewards[3] == approx(expected)


def test_turnover_penalty() -> None:
    bars = make_bars([100, (102, 105, 101, 104), 104])
    _, steps = run(bars, config(taker_fee=0.001, turnover_penalty=0.01), [1.0])
    # buy 100 at 102: turnover = 10200 / 10000 = 1.02; equity 10189.8 (see test_rules)
    assert steps[0][1] == approx(math.log(10189.8 / 10000) - 0.01 * 1.02)
    # a stop exit counts too: 100 x 95 = 9500 traded against equity 10000 at the decision
    bars = make_bars([100, 100, (100, 101, 90, 100), 100])
    cfg = config(stop_loss=0.05, rebalance_threshold=0.5, turnover_penalty=0.2)
    _, steps = run(bars, cfg, [1.0, 1.0])
    assert steps[0][1] == approx(0.0 - 0.2 * 1.0)
    assert steps[1][1] == approx(math.log(0.95) - 0.2 * 0.95)
    # a flip trades |dq| = 200 at 100: turnover 2
    _, steps = run(make_bars([100, 100, 100]), config(turnover_penalty=0.1), [1.0, -1.0])
    assert steps[1][1] == approx(-0.1 * 2.0)


def test_drawdown_penalty() -> None:
    bars = make_bars([100, 100, (100, 100, 90, 90), (90, 95, 90, 95), 95])
    _, steps = run(bars, config(drawdown_penalty=0.5), [1.0, 1.0, 1.0])
    i = infos(steps)
    # equity 10000, 9000 (dd 0.1), 9500 (dd 0.05 from the peak 10000)
    assert [x["drawdown"] for x in i] == [approx(0.0), approx(0.1), approx(0.05)]
    assert steps[0][1] == approx(0.0)
    assert steps[1][1] == approx(math.log(0.9) - 0.5 * 0.1)
    assert steps[2][1] == approx(math.log(95 / 90) - 0.5 * 0.05)


def test_penalties_apply_to_adaptive_rewards() -> None:
    # differential Sharpe is 0 on the first step: the reward is the penalties alone
    bars = make_bars([100, (100, 100, 90, 90), 90])
    cfg = config(reward="differential_sharpe", turnover_penalty=0.1, drawdown_penalty=0.5)
    _, steps = run(bars, cfg, [1.0])
    # turnover 1.0, drawdown 0.1
    assert steps[0][1] == approx(-0.1 * 1.0 - 0.5 * 0.1)
    cfg = config(reward="sortino", turnover_penalty=0.1, drawdown_penalty=0.5)
    _, steps = run(bars, cfg, [1.0])
    assert steps[0][1] == approx(-0.1 * 1.0 - 0.5 * 0.1)
