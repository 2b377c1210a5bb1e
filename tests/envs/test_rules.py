"""Hand-computed scenarios pinning each execution rule of the trading env (issue 2, rules 1–8).

Every scenario runs a tiny synthetic bar series through `TradingEnv` with costs switched on
explicitly (`helpers.BASE` switches everything off) and compares with arithmetic written in the
comments. Bars are ``(open, high, low, close)``; a bare number is a flat bar. Unless noted: hourly
bars from the epoch, initial cash 10 000, contract multiplier 1, continuous actions that float32
represents exactly (so exposures are exact).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs import TradingEnv
from tests.envs.helpers import HOUR_MS, config, infos, make_bars, run, sample_std


def approx(x: float) -> object:
    """Relative 1e-9 (absolute 1e-9 near zero)."""
    return pytest.approx(x, rel=1e-9, abs=1e-9)


INFO_KEYS = {
    "timestamp", "price", "equity", "cash", "position", "exposure", "fill_price", "traded_qty",
    "fees_paid", "slippage_paid", "funding_paid", "n_fills", "liquidated", "drawdown",
    "participation_clipped", "risk_state", "risk_reason",
}


# ---------------------------------------------------------------------------------------------
# Rule 1: timing, first observation, info, episode end
# ---------------------------------------------------------------------------------------------


def test_fill_at_next_open_fee_and_mark_at_close() -> None:
    bars = make_bars([(100, 101, 99, 100), (102, 105, 101, 104), (105, 107, 104, 106), (106, 107, 105, 106)])
    info0, steps = run(bars, config(taker_fee=0.001), [1.0, 0.0, 0.0])
    i1, i2, i3 = infos(steps)
    # decision at close 100: q = 1 x 10000 / 100 = 100; fill at bar 1's open 102 (not close 100)
    # fee = 100 x 102 x 0.001 = 10.2; cash = 10000 - 10200 - 10.2 = -210.2
    # equity at close 104 = -210.2 + 100 x 104 = 10189.8
    assert i1["timestamp"] == HOUR_MS and i1["price"] == 104.0
    assert i1["fill_price"] == approx(102.0)
    assert i1["traded_qty"] == approx(100.0)
    assert i1["position"] == approx(100.0)
    assert i1["fees_paid"] == approx(10.2)
    assert i1["cash"] == approx(-210.2)
    assert i1["equity"] == approx(10189.8)
    assert i1["exposure"] == approx(10400.0 / 10189.8)
    assert i1["n_fills"] == 1 and i1["slippage_paid"] == 0.0 and i1["drawdown"] == 0.0
    assert steps[0][1] == approx(math.log(10189.8 / 10000.0))
    # target 0: sell 100 at bar 2's open 105; fee 10.5; cash = -210.2 + 10500 - 10.5 = 10279.3
    assert i2["fill_price"] == approx(105.0) and i2["traded_qty"] == approx(-100.0)
    assert i2["cash"] == approx(10279.3) and i2["equity"] == approx(10279.3)
    assert i2["fees_paid"] == approx(20.7) and i2["n_fills"] == 2 and i2["position"] == 0.0
    assert steps[1][1] == approx(math.log(10279.3 / 10189.8))
    # flat and target 0: nothing fills, fill_price is 0.0, reward 0; bar 3 is the last bar
    assert i3["fill_price"] == 0.0 and i3["traded_qty"] == 0.0 and i3["n_fills"] == 2
    assert steps[2][1] == 0.0
    assert [s[3] for s in steps] == [False, False, True]
    assert [s[2] for s in steps] == [False, False, False]


def test_first_observation_at_bar_w_minus_1_with_zero_account_state() -> None:
    bars = make_bars([100, 101, 102, 103, 104], feat=[1.0, 2.0, 3.0, 4.0, 5.0])
    env = TradingEnv(bars, config(window_size=2))
    obs, info = env.reset(seed=0)
    # F = 4 derived features (0.0 during their warm-up) + the extra column 'feat'
    assert env.feature_names[-1] == "feat" and len(env.feature_names) == 5
    assert obs.shape == (2 * 5 + 4,) and obs.dtype == np.float32
    assert obs[4] == 1.0 and obs[9] == 2.0  # bars 0 and 1 = t-W+1 .. t with t = W-1 = 1
    assert obs[-4:].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert info == {
        "timestamp": HOUR_MS, "price": 101.0, "equity": 10000.0, "cash": 10000.0, "position": 0.0,
        "exposure": 0.0, "fill_price": 0.0, "traded_qty": 0.0, "fees_paid": 0.0, "slippage_paid": 0.0,
        "funding_paid": 0.0, "n_fills": 0, "liquidated": False, "drawdown": 0.0, "participation_clipped": 0.0,
        "risk_state": 0, "risk_reason": 0,
    }
    obs, *_ = env.step(np.array([0.5], dtype=np.float32))
    assert obs[4] == 2.0 and obs[9] == 3.0  # window moved to bars 1, 2
    # q = 0.5 x 10000 / 101 filled at 102, marked at 102: exposure = q x 102 / equity
    q = 0.5 * 10000 / 101
    eq = 10000 - q * 102 + q * 102
    assert obs[-4] == pytest.approx(q * 102 / eq, rel=1e-6)


def test_observation_account_state() -> None:
    # W = 2: first decision at bar 1; long 100 at bar 2's open 100
    bars = make_bars([100, 100, (100, 110, 100, 110), (110, 110, 99, 99), 99])
    env = TradingEnv(bars, config(window_size=2, rebalance_threshold=0.5))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))
    # equity 11000: exposure 11000 / 11000 = 1, unrealised (110 - 100) x 100 / 11000, 0 bars since entry, dd 0
    assert obs[-4:] == pytest.approx([1.0, 1000 / 11000, 0.0, 0.0], rel=1e-6, abs=1e-7)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))
    # equity 9900: exposure 1, unrealised -100 / 9900, 1 bar since entry / W = 0.5, dd 1 - 9900 / 11000
    assert obs[-4:] == pytest.approx([1.0, -100 / 9900, 0.5, 0.1], rel=1e-6, abs=1e-7)
    # values are clipped to obs_clip: 5x exposure with obs_clip 2
    env = TradingEnv(bars, config(window_size=2, max_leverage=5.0, obs_clip=2.0))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))
    assert obs[-4] == 2.0 and np.all(np.abs(obs) <= 2.0)


def test_info_keys_exactly_as_specified() -> None:
    bars = make_bars([100, 101, 102])
    env = TradingEnv(bars, config())
    _, info = env.reset(seed=0)
    assert set(info) == INFO_KEYS
    _, _, _, truncated, info = env.step(np.array([1.0], dtype=np.float32))
    assert not truncated and set(info) == INFO_KEYS
    _, _, _, truncated, info = env.step(np.array([1.0], dtype=np.float32))
    assert truncated and set(info) == INFO_KEYS | {"episode_summary"}


def test_truncation_at_end_of_data() -> None:
    bars = make_bars([100, 101, 102, 103, 104])
    for w, n_steps in ((1, 4), (2, 3), (4, 1)):
        info0, steps = run(bars, config(window_size=w), [0.0] * 10)
        assert info0["timestamp"] == (w - 1) * HOUR_MS
        assert len(steps) == n_steps
        assert [s[3] for s in steps] == [False] * (n_steps - 1) + [True]
        assert not any(s[2] for s in steps)
        assert steps[-1][4]["timestamp"] == 4 * HOUR_MS


def test_episode_length_start_range_and_truncation() -> None:
    bars = make_bars([100 + i for i in range(10)])
    cfg = config(window_size=2, episode_length=3)
    env = TradingEnv(bars, cfg)
    starts = set()
    for seed in range(200):
        _, info = env.reset(seed=seed)
        start = info["timestamp"] // HOUR_MS
        starts.add(start)
        for k in range(1, 4):
            _, _, term, trunc, info = env.step(np.array([0.0], dtype=np.float32))
            assert info["timestamp"] // HOUR_MS == start + k
            assert not term and trunc == (k == 3)
    # uniform over [W-1, n-1-L] = [1, 6]
    assert starts == {1, 2, 3, 4, 5, 6}
    # L = n - W: the only start is W - 1
    env = TradingEnv(bars, config(window_size=2, episode_length=8))
    assert {env.reset(seed=s)[1]["timestamp"] for s in range(20)} == {HOUR_MS}


def test_max_drawdown_termination() -> None:
    # long 1x, fully invested with zero costs (cash 0): equity = 100 x close
    bars = make_bars([100, 100, 110, 100, 96, 95])
    _, steps = run(bars, config(max_drawdown=0.1), [1.0] * 5)
    dds = [s[4]["drawdown"] for s in steps]
    # closes 100, 110 (peak 11000), 100 (dd 1/11 = 0.0909 <= 0.1), 96 (dd 1 - 9600/11000 = 0.1273)
    assert dds == [approx(0.0), approx(0.0), approx(1 - 10000 / 11000), approx(1 - 9600 / 11000)]
    assert [s[2] for s in steps] == [False, False, False, True]
    assert not steps[-1][3]
    assert "episode_summary" in steps[-1][4]
    # measured at closes: a bar dipping to 50 that closes at 100 is no drawdown
    _, steps = run(make_bars([100, 100, (100, 100, 50, 100), 100]), config(max_drawdown=0.1), [1.0] * 3)
    assert [s[4]["drawdown"] for s in steps] == [0.0, 0.0, 0.0] and not any(s[2] for s in steps)


# ---------------------------------------------------------------------------------------------
# Rule 2: action -> target exposure, sizing
# ---------------------------------------------------------------------------------------------


def test_continuous_action_scaled_by_max_leverage() -> None:
    bars = make_bars([100, 100, 100])
    _, steps = run(bars, config(max_leverage=2.0), [0.5, -1.0])
    # 0.5 x 2 = exposure 1 -> q = 100; then -1 x 2 = -2 -> q = -200 (sell 300)
    assert steps[0][4]["position"] == approx(100.0)
    assert steps[1][4]["traded_qty"] == approx(-300.0)
    assert steps[1][4]["position"] == approx(-200.0)


def test_discrete_levels_are_exposures() -> None:
    bars = make_bars([100, 100, 100, 100])
    cfg = config(action_mode="discrete", exposure_levels=(-1.0, 0.0, 0.5, 2.0), max_leverage=2.0)
    _, steps = run(bars, cfg, [2, 0, 3])
    # level 0.5 is the exposure itself (not 0.5 x max_leverage): q = 50; then -1 -> -100; then 2 -> 200
    assert [s[4]["position"] for s in steps] == [approx(50.0), approx(-100.0), approx(200.0)]


def test_long_only_clips_short_targets_to_flat() -> None:
    bars = make_bars([100, 100, 100, 100])
    _, steps = run(bars, config(long_only=True), [-1.0, 0.5, -0.5])
    # -1 -> exposure 0: no order; 0.5 -> q = 50; -0.5 -> 0: sell everything
    assert steps[0][4]["n_fills"] == 0 and steps[0][4]["fill_price"] == 0.0
    assert steps[1][4]["position"] == approx(50.0)
    assert steps[2][4]["position"] == 0.0 and steps[2][4]["traded_qty"] == approx(-50.0)
    cfg = config(long_only=True, action_mode="discrete", exposure_levels=(-1.0, 0.0, 1.0))
    _, steps = run(bars, cfg, [0, 2, 0])
    assert [s[4]["position"] for s in steps] == [0.0, approx(100.0), 0.0]


def _vol_bars(timestamps: list[int] | None = None, bar_ms: int = HOUR_MS):
    # closes 100, 110, 99: returns ln 1.1, ln 0.9; decision at bar 2 (window 3), fill at bar 3's open 100
    rows = [100, 110, 99, (100, 101, 99, 100), 100]
    return make_bars(rows, bar_ms=bar_ms, timestamps=timestamps)


SIGMA_VOL = sample_std([math.log(1.1), math.log(0.9)])  # ddof=1 -> |ln1.1 - ln0.9| / sqrt 2


def test_vol_target_sizing() -> None:
    # sigma_ann = sigma x sqrt(bars/year); hourly bars: 365.25 x 24 = 8766
    # exposure = a x target_vol / sigma_ann; q = exposure x 10000 / 99
    for a in (1.0, -0.5):
        _, steps = run(_vol_bars(), config(window_size=3, sizing="vol_target", target_vol=0.5), [a])
        e = a * 0.5 / (SIGMA_VOL * math.sqrt(8766.0))
        assert steps[0][4]["traded_qty"] == approx(e * 10000 / 99)
    # 15-minute bars: 365.25 x 96 = 35064 bars per year
    _, steps = run(_vol_bars(bar_ms=900_000), config(window_size=3, sizing="vol_target", target_vol=0.5), [1.0])
    assert steps[0][4]["traded_qty"] == approx(0.5 / (SIGMA_VOL * math.sqrt(35064.0)) * 10000 / 99)
    # bars per year from the MEDIAN spacing: spacings 1h, 1h, 1h, 5h -> 1h (the mean, 2h, would differ)
    ts = [0, HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS, 8 * HOUR_MS]
    _, steps = run(_vol_bars(timestamps=ts), config(window_size=3, sizing="vol_target", target_vol=0.5), [1.0])
    assert steps[0][4]["traded_qty"] == approx(0.5 / (SIGMA_VOL * math.sqrt(8766.0)) * 10000 / 99)
    # capped at max_leverage: huge target_vol -> exposure 1 -> q = 10000 / 99
    _, steps = run(_vol_bars(), config(window_size=3, sizing="vol_target", target_vol=1000.0), [1.0])
    assert steps[0][4]["traded_qty"] == approx(10000 / 99)


def test_sizing_scales_the_levered_exposure() -> None:
    # vol_target and kelly multiply the exposure a x max_leverage; risk_per_trade uses a itself
    e = 0.5 * 2.0 * 0.5 / (SIGMA_VOL * math.sqrt(8766.0))
    cfg = config(window_size=3, sizing="vol_target", target_vol=0.5, max_leverage=2.0)
    _, steps = run(_vol_bars(), cfg, [0.5])
    assert steps[0][4]["traded_qty"] == approx(e * 10000 / 99)
    mu = (math.log(1.1) + math.log(0.9)) / 2
    e = 0.5 * 2.0 * 0.5 * mu / SIGMA_VOL**2
    _, steps = run(_vol_bars(), config(window_size=3, sizing="kelly", kelly_fraction=0.5, max_leverage=2.0), [0.5])
    assert steps[0][4]["traded_qty"] == approx(e * 10000 / 99)
    cfg = config(sizing="risk_per_trade", stop_loss=0.02, risk_per_trade=0.01, max_leverage=2.0)
    _, steps = run(make_bars([100, 100, 100]), cfg, [0.5])
    assert steps[0][4]["position"] == approx(25.0)


def test_vol_target_and_kelly_need_two_returns() -> None:
    # decisions at bar 0 (no return) and bar 1 (one return): sigma undefined -> exposure 0
    for sizing in ("vol_target", "kelly"):
        _, steps = run(_vol_bars(), config(sizing=sizing), [1.0, 1.0, 1.0])
        assert [s[4]["n_fills"] for s in steps] == [0, 0, 1]


def test_vol_lookback_window_ends_at_decision_bar() -> None:
    # closes 100, 120, 110, 121; decision at bar 3 with vol_lookback 2 uses ln(110/120), ln(121/110)
    bars = make_bars([100, 120, 110, 121, 121, 121])
    sigma = sample_std([math.log(110 / 120), math.log(121 / 110)])
    _, steps = run(bars, config(window_size=4, sizing="vol_target", target_vol=0.5, vol_lookback=2), [1.0])
    assert steps[0][4]["traded_qty"] == approx(0.5 / (sigma * math.sqrt(8766.0)) * 10000 / 121)


def test_risk_per_trade_sizing() -> None:
    bars = make_bars([100, 100, (100, 100, 97, 99), 99])
    base = dict(sizing="risk_per_trade", stop_loss=0.02, risk_per_trade=0.01)
    # exposure = a x risk / stop = 0.5 x 0.01 / 0.02 = 0.25 -> q = 25
    _, steps = run(bars, config(**base), [0.5, 0.5, 0.5])
    assert steps[0][4]["position"] == approx(25.0)
    # stop at 100 x 0.98 = 98 hit in bar 2: loss = 25 x 2 = 50 = |a| x risk x equity
    assert steps[1][4]["fill_price"] == approx(98.0)
    assert steps[1][4]["equity"] == approx(10000 - 0.5 * 0.01 * 10000)
    # sign kept: a = -1 -> exposure -0.5 -> q = -50
    _, steps = run(bars, config(**base), [-1.0])
    assert steps[0][4]["position"] == approx(-50.0)
    # capped: 1 x 0.05 / 0.02 = 2.5 -> max_leverage 1 -> q = 100
    _, steps = run(bars, config(**{**base, "risk_per_trade": 0.05}), [1.0])
    assert steps[0][4]["position"] == approx(100.0)
    # discrete: the level plays the role of a: 0.5 -> 0.25 -> q = 25
    cfg = config(**base, action_mode="discrete", exposure_levels=(-1.0, 0.0, 0.5))
    _, steps = run(bars, cfg, [2])
    assert steps[0][4]["position"] == approx(25.0)


def test_kelly_sizing() -> None:
    # log returns +0.2, -0.1: mu = 0.05, sample var = (0.15^2 + 0.15^2) / 1 = 0.045
    c1 = 100 * math.exp(0.2)
    c2 = c1 * math.exp(-0.1)
    bars = make_bars([100, c1, c2, c2, c2])
    mu = (0.2 - 0.1) / 2
    var = sample_std([0.2, -0.1]) ** 2
    assert var == pytest.approx(0.045)
    # exposure = a x kelly_fraction x mu / var = 0.5 x 0.05 / 0.045 = 0.5556; q = e x 10000 / c2
    for a in (1.0, -0.5):
        _, steps = run(bars, config(window_size=3, sizing="kelly", kelly_fraction=0.5), [a])
        assert steps[0][4]["traded_qty"] == approx(a * 0.5 * mu / var * 10000 / c2)
    # negative drift with a = 1 -> short; capped at max_leverage with a large fraction
    bars_down = make_bars([100, 100 * math.exp(-0.2), 100 * math.exp(-0.1), 90, 90])
    _, steps = run(bars_down, config(window_size=3, sizing="kelly", kelly_fraction=0.5), [1.0])
    c2d = 100 * math.exp(-0.1)
    assert steps[0][4]["traded_qty"] == approx(-0.5 * 0.05 / var * 10000 / c2d)
    _, steps = run(bars, config(window_size=3, sizing="kelly", kelly_fraction=5.0), [1.0])
    assert steps[0][4]["traded_qty"] == approx(10000 / c2)


# ---------------------------------------------------------------------------------------------
# Rule 3: target quantity, lots, min notional, threshold, participation
# ---------------------------------------------------------------------------------------------


def test_lot_rounding_toward_zero() -> None:
    bars = make_bars([100, 100, 100])
    # 0.5 x 10000 / 100 = 50 = 166.67 lots of 0.3 -> 166 lots = 49.8 (toward zero, both signs)
    for a, q in ((0.5, 49.8), (-0.5, -49.8)):
        _, steps = run(bars, config(lot_size=0.3), [a])
        assert steps[0][4]["position"] == approx(q)
    # an exact multiple stays: 50 / 0.25 = 200 lots
    _, steps = run(bars, config(lot_size=0.25), [0.5])
    assert steps[0][4]["position"] == approx(50.0)
    # target below one lot: no order
    _, steps = run(bars, config(lot_size=60.0), [0.5])
    assert steps[0][4]["n_fills"] == 0 and steps[0][4]["fill_price"] == 0.0


def test_min_notional_blocks_small_orders() -> None:
    bars = make_bars([100, 100, 100, 100, 100])
    _, steps = run(bars, config(min_notional=5000.0), [0.375, 0.625, 0.75, 0.0])
    i1, i2, i3, i4 = infos(steps)
    # 37.5 x 100 = 3750 < 5000: blocked
    assert i1["n_fills"] == 0 and i1["traded_qty"] == 0.0 and i1["fill_price"] == 0.0
    # 62.5 x 100 = 6250: filled
    assert i2["traded_qty"] == approx(62.5) and i2["n_fills"] == 1
    # the ORDER is 75 - 62.5 = 12.5 units = 1250 < 5000: blocked although the target changed
    assert i3["traded_qty"] == 0.0 and i3["position"] == approx(62.5)
    # close all: 6250 >= 5000
    assert i4["traded_qty"] == approx(-62.5) and i4["position"] == 0.0


def test_min_notional_measured_at_decision_close() -> None:
    # q = 0.5 x 10000 / 100 = 50: 50 x close 100 = 5000 >= 5000 -> sent (at the open 90 it would be 4500)
    bars = make_bars([100, (90, 91, 89, 90), 90])
    _, steps = run(bars, config(min_notional=5000.0), [0.5])
    assert steps[0][4]["traded_qty"] == approx(50.0) and steps[0][4]["fill_price"] == approx(90.0)


def test_rebalance_threshold_against_current_exposure() -> None:
    bars = make_bars([100, (100, 200, 100, 200), 200, 200, 200])
    _, steps = run(bars, config(rebalance_threshold=0.1), [0.5, 0.5, 0.5625, 0.625])
    i1, i2, i3, i4 = infos(steps)
    # flat -> 0.5: |0.5 - 0| >= 0.1, buy 50 at 100; cash 5000; close 200: equity 15000, exposure 2/3
    assert i1["position"] == approx(50.0) and i1["equity"] == approx(15000.0)
    assert i1["exposure"] == approx(2 / 3)
    # same action 0.5, but current exposure 2/3: |0.5 - 0.667| >= 0.1 -> q = 0.5 x 15000 / 200 = 37.5
    assert i2["traded_qty"] == approx(-12.5) and i2["position"] == approx(37.5)
    # 0.5625 vs 0.5: 0.0625 < 0.1 -> no order although the target quantity (42.1875) differs
    assert i3["traded_qty"] == 0.0 and i3["n_fills"] == 2
    # 0.625 vs 0.5: 0.125 >= 0.1 -> q = 0.625 x 15000 / 200 = 46.875
    assert i4["traded_qty"] == approx(9.375) and i4["position"] == approx(46.875)
    # a change exactly equal to the threshold sends the order (no order only when below it)
    _, steps = run(make_bars([100, 100, 100]), config(rebalance_threshold=0.5), [0.5, 0.25])
    assert steps[0][4]["position"] == approx(50.0)
    assert steps[1][4]["traded_qty"] == 0.0


def test_participation_clip_and_info() -> None:
    rows = [(100, 100, 100, 100, 1e9), (100, 100, 100, 100, 300), (100, 100, 100, 100, 5000), 100]
    bars = make_bars(rows)
    _, steps = run(bars, config(max_participation=0.1), [1.0, 1.0, 1.0])
    i1, i2, i3 = infos(steps)
    # target 100 > 0.1 x volume of the FILL bar (300) = 30: fill 30, 70 clipped
    assert i1["traded_qty"] == approx(30.0) and i1["participation_clipped"] == approx(70.0)
    # next bar: cap 500, remaining 70 filled, nothing clipped
    assert i2["traded_qty"] == approx(70.0) and i2["participation_clipped"] == 0.0
    assert i3["participation_clipped"] == 0.0 and i3["traded_qty"] == 0.0
    # short side, and the cap rounded toward zero to lots of 7: target -98, cap 30 -> -28, 70 clipped
    _, steps = run(bars, config(max_participation=0.1, lot_size=7.0), [-1.0])
    assert steps[0][4]["traded_qty"] == approx(-28.0)
    assert steps[0][4]["participation_clipped"] == approx(70.0)


# ---------------------------------------------------------------------------------------------
# Rule 4: fill price (slippage models, ticks)
# ---------------------------------------------------------------------------------------------

SLIP_BARS = [100, (102, 103, 101, 102), (105, 106, 104, 105), 105]


def test_slippage_none() -> None:
    _, steps = run(make_bars(SLIP_BARS), config(slippage_model="none", slippage_bps=50.0), [1.0, 0.0])
    assert steps[0][4]["fill_price"] == 102.0 and steps[1][4]["fill_price"] == 105.0
    assert steps[1][4]["slippage_paid"] == 0.0


def test_slippage_fixed_bps() -> None:
    _, steps = run(make_bars(SLIP_BARS), config(slippage_model="fixed_bps", slippage_bps=10.0), [1.0, 0.0])
    i1, i2 = infos(steps)
    # buy 100 at 102 x 1.001 = 102.102; slippage 100 x 0.102 = 10.2
    assert i1["fill_price"] == approx(102.102) and i1["slippage_paid"] == approx(10.2)
    # sell 100 at 105 x 0.999 = 104.895; slippage += 100 x 0.105 -> 20.7
    assert i2["fill_price"] == approx(104.895) and i2["slippage_paid"] == approx(20.7)
    # cash = 10000 - 10210.2 + 10489.5 = 10279.3
    assert i2["cash"] == approx(10279.3)


def test_slippage_spread_column() -> None:
    bars = make_bars(SLIP_BARS, spread=[0.2, 0.5, 0.4, 0.3])
    _, steps = run(bars, config(slippage_model="spread", slippage_bps=50.0), [1.0, 0.0])
    i1, i2 = infos(steps)
    # half of the FILL bar's spread: buy at 102 + 0.25, sell at 105 - 0.2
    assert i1["fill_price"] == approx(102.25) and i2["fill_price"] == approx(104.8)
    assert i2["slippage_paid"] == approx(100 * 0.25 + 100 * 0.2)
    assert i2["cash"] == approx(10000 - 10225 + 10480)


def test_slippage_spread_without_column_uses_bps() -> None:
    _, steps = run(make_bars(SLIP_BARS), config(slippage_model="spread", slippage_bps=20.0), [1.0, 0.0])
    assert steps[0][4]["fill_price"] == approx(102 * 1.002)
    assert steps[1][4]["fill_price"] == approx(105 * 0.998)


def test_slippage_volatility() -> None:
    # decision at bar 2: sigma = std(ln 1.1, ln 0.9) per bar; buy q = 10000 / 99 at 100 x (1 + 0.1 sigma)
    cfg = config(window_size=3, slippage_model="volatility", slippage_coef=0.1, slippage_bps=5.0)
    _, steps = run(_vol_bars(), cfg, [1.0])
    q = 10000 / 99
    px = 100 * (1 + 0.1 * SIGMA_VOL)
    assert steps[0][4]["fill_price"] == approx(px)
    assert steps[0][4]["slippage_paid"] == approx(q * (px - 100))


def test_slippage_volatility_falls_back_to_bps_without_sigma() -> None:
    # decisions at bar 0 (no return) and bar 1 (one return): sigma NaN -> slippage_bps = 5
    cfg = config(slippage_model="volatility", slippage_coef=0.1, slippage_bps=5.0)
    _, steps = run(_vol_bars(), cfg, [1.0, 0.0])
    assert steps[0][4]["fill_price"] == approx(110 * 1.0005)
    assert steps[1][4]["fill_price"] == approx(99 * 0.9995)


def test_slippage_sqrt_impact() -> None:
    q = 10000 / 99
    for vol3, participation in ((400.0, q / 400.0), (50.0, 1.0)):  # capped at 1 when q > volume
        rows = [(100, 100, 100, 100, 7.0), 110, (99, 99, 99, 99, 3.0), (100, 101, 99, 100, vol3), 100]
        cfg = config(window_size=3, slippage_model="sqrt_impact", slippage_coef=0.1)
        _, steps = run(make_bars(rows), cfg, [1.0])
        # 100 x (1 + 0.1 x sigma x sqrt(|q| / volume of the fill bar))
        assert steps[0][4]["fill_price"] == approx(100 * (1 + 0.1 * SIGMA_VOL * math.sqrt(participation)))
    # without sigma: slippage_bps
    rows = [100, (110, 110, 110, 110, 400.0), 99, 100]
    _, steps = run(make_bars(rows), config(slippage_model="sqrt_impact", slippage_bps=3.0), [1.0])
    assert steps[0][4]["fill_price"] == approx(110 * 1.0003)


def test_tick_rounding_adverse() -> None:
    bars = make_bars([100, (101, 102, 100, 101), (101, 102, 100, 101), 101])
    _, steps = run(bars, config(slippage_model="fixed_bps", slippage_bps=10.0, tick_size=0.5), [1.0, 0.0])
    i1, i2 = infos(steps)
    # buy: 101 x 1.001 = 101.101 -> up to 101.5; sell: 101 x 0.999 = 100.899 -> down to 100.5
    assert i1["fill_price"] == approx(101.5) and i2["fill_price"] == approx(100.5)
    # slippage_paid counts the distance to the unslipped open: 100 x 0.5 twice
    assert i2["slippage_paid"] == approx(100.0)
    # a price already on the grid is not moved
    _, steps = run(bars, config(tick_size=0.5), [1.0, 0.0])
    assert steps[0][4]["fill_price"] == 101.0 and steps[1][4]["fill_price"] == 101.0


def test_contract_multiplier_es_like() -> None:
    # ES: m = 50, tick 0.25, whole contracts; 1e6 cash; bar 1 opens at 8h UTC (a funding time)
    bars = make_bars([4000, (4000.1, 4010, 3990, 4005), 4005], start_ms=7 * HOUR_MS)
    cfg = config(initial_cash=1_000_000.0, contract_multiplier=50.0, tick_size=0.25, lot_size=1.0,
                 taker_fee=0.0005, slippage_model="fixed_bps", slippage_bps=1.0, funding_rate=0.0001)
    _, steps = run(bars, cfg, [1.0])
    i = steps[0][4]
    # q = 1e6 / (4000 x 50) = 5 contracts; 4000.1 x 1.0001 = 4000.50001 -> tick up 4000.75
    assert i["position"] == 5.0 and i["fill_price"] == approx(4000.75)
    fee = 5 * 4000.75 * 50 * 0.0005  # 500.09375
    funding = 5 * 4005 * 50 * 0.0001  # 100.125
    assert i["fees_paid"] == approx(fee)
    assert i["slippage_paid"] == approx(5 * 0.65 * 50)
    assert i["funding_paid"] == approx(funding)
    cash = 1_000_000 - 5 * 4000.75 * 50 - fee - funding
    assert i["cash"] == approx(cash)
    assert i["equity"] == approx(cash + 5 * 4005 * 50)
    assert i["exposure"] == approx(5 * 4005 * 50 / (cash + 5 * 4005 * 50))


# ---------------------------------------------------------------------------------------------
# Rule 6: funding
# ---------------------------------------------------------------------------------------------


def _funding_bars(**cols):
    # hourly from the epoch: bar 8 opens at 08:00 UTC, the only funding time in bars 1..9
    rows = [100] * 8 + [(100, 111, 99, 110), 110]
    return make_bars(rows, **cols)


def test_funding_long_pays_short_receives_in_the_bar_holding_the_funding_time() -> None:
    for a, sign in ((1.0, 1.0), (-1.0, -1.0)):
        cfg = config(window_size=7, funding_rate=0.001, rebalance_threshold=0.5)
        _, steps = run(_funding_bars(), cfg, [a, a, a])
        i1, i2, i3 = infos(steps)
        # decision bar 6 -> fill bar 7 (07:00-08:00): no funding time inside
        assert i1["funding_paid"] == 0.0 and i1["position"] == approx(sign * 100)
        # bar 8 contains 08:00: funding = q x close_8 x rate = +-100 x 110 x 0.001 = +-11
        assert i2["funding_paid"] == approx(sign * 11.0)
        assert i2["cash"] == approx(10000 - sign * 10000 - sign * 11.0)
        assert i2["equity"] == approx(10000 - sign * 10000 - sign * 11.0 + sign * 100 * 110)
        assert i3["funding_paid"] == approx(sign * 11.0)  # bar 9: nothing more


def test_negative_funding_rate_pays_longs() -> None:
    _, steps = run(_funding_bars(), config(window_size=8, funding_rate=-0.001), [1.0])
    assert steps[0][4]["funding_paid"] == approx(-11.0)
    assert steps[0][4]["cash"] == approx(10000 - 10000 + 11.0)


def test_funding_uses_position_after_the_open_fill() -> None:
    cfg = config(window_size=8, funding_rate=0.001)
    # entering at bar 8's open pays bar 8's funding
    _, steps = run(_funding_bars(), cfg, [1.0])
    assert steps[0][4]["funding_paid"] == approx(100 * 110 * 0.001)
    # exiting at bar 8's open pays none: long from bar 7, flat at bar 8's open
    _, steps = run(_funding_bars(), config(window_size=7, funding_rate=0.001), [1.0, 0.0])
    assert steps[1][4]["funding_paid"] == 0.0 and steps[1][4]["position"] == 0.0


def test_funding_charged_even_if_a_stop_exits_later_in_the_bar() -> None:
    rows = [100] * 8 + [(100, 101, 90, 95), 95]
    cfg = config(window_size=7, funding_rate=0.001, stop_loss=0.05, rebalance_threshold=0.5)
    _, steps = run(make_bars(rows), cfg, [1.0, 1.0])
    i2 = steps[1][4]
    # stop at 95 in bar 8; funding on q = 100 at close_8 95: 9.5
    assert i2["position"] == 0.0 and i2["fill_price"] == approx(95.0)
    assert i2["funding_paid"] == approx(9.5)
    assert i2["cash"] == approx(10000 - 10000 + 9500 - 9.5)


def test_funding_rate_column_overrides_constant() -> None:
    rates = [0.0001 * (j + 1) for j in range(10)]
    cfg = config(window_size=8, funding_rate=0.05)
    _, steps = run(_funding_bars(funding_rate=rates), cfg, [1.0])
    # bar 8's own rate 0.0009: 100 x 110 x 0.0009 = 9.9
    assert steps[0][4]["funding_paid"] == approx(9.9)


def test_funding_times_are_epoch_multiples_not_data_relative() -> None:
    # bars start at 05:00 UTC: bar 3 opens at 08:00 and holds the funding time
    rows = [100, 100, 100, (100, 111, 99, 110), 110]
    cfg = config(window_size=2, funding_rate=0.001, rebalance_threshold=0.5)
    _, steps = run(make_bars(rows, start_ms=5 * HOUR_MS), cfg, [1.0, 1.0, 1.0])
    assert [s[4]["funding_paid"] for s in steps] == [0.0, approx(11.0), approx(11.0)]


def test_funding_at_real_epoch_timestamps() -> None:
    # 2024-06-01 05:00 UTC = 1717218000000 ms; bar 3 opens at 08:00 UTC, a multiple of 8h since the epoch
    start = 1_717_200_000_000 + 5 * HOUR_MS
    assert (start + 3 * HOUR_MS) % (8 * HOUR_MS) == 0
    rows = [100, 100, 100, (100, 111, 99, 110), 110]
    cfg = config(window_size=2, funding_rate=0.001, rebalance_threshold=0.5)
    _, steps = run(make_bars(rows, start_ms=start), cfg, [1.0, 1.0, 1.0])
    assert [s[4]["funding_paid"] for s in steps] == [0.0, approx(11.0), approx(11.0)]


def test_funding_counts_every_funding_time_in_the_bar() -> None:
    # daily bars, 16h funding: times 0, 16, 32, 48, 64, 80 h -> bars hold 2, 1, 2, 1 of them
    bars = make_bars([100, 100, 100, 100], bar_ms=24 * HOUR_MS)
    cfg = config(funding_rate=0.001, funding_interval_h=16.0, rebalance_threshold=0.5)
    _, steps = run(bars, cfg, [1.0, 1.0, 1.0])
    # q = 100 at 100: 10 per funding time
    assert [s[4]["funding_paid"] for s in steps] == [approx(10.0), approx(30.0), approx(40.0)]


def test_funding_on_the_last_bar_uses_one_bar_interval() -> None:
    # last bar opens at 07:30 (spacings 1h x 6, 1.5h: median 1h): it covers [07:30, 08:30) and holds 08:00
    ts = [i * HOUR_MS for i in range(7)] + [7 * HOUR_MS + HOUR_MS // 2]
    _, steps = run(make_bars([100] * 8, timestamps=ts), config(window_size=7, funding_rate=0.001), [1.0])
    assert steps[0][3]  # truncated: the fill bar is the last bar
    assert steps[0][4]["funding_paid"] == approx(100 * 100 * 0.001)
    # a last bar opening at 06:00 covers [06:00, 07:00): nothing
    _, steps = run(make_bars([100] * 7), config(window_size=6, funding_rate=0.001), [1.0])
    assert steps[0][3] and steps[0][4]["funding_paid"] == 0.0


# ---------------------------------------------------------------------------------------------
# Rule 7: liquidation, bankruptcy
# ---------------------------------------------------------------------------------------------


def test_long_liquidation_price_and_fee() -> None:
    # 5x long with a 10 bps fee and 10 bps slippage on entry; the entry bar itself falls to 70
    bars = make_bars([100, (100, 100.5, 70, 75), 75])
    cfg = config(max_leverage=5.0, maintenance_margin_rate=0.01, liquidation_fee=0.005, taker_fee=0.001,
                 slippage_model="fixed_bps", slippage_bps=10.0)
    _, steps = run(bars, cfg, [1.0])
    i = steps[0][4]
    # q = 5 x 10000 / 100 = 500 at 100.1; fee 50.05; cash = 10000 - 50050 - 50.05 = -40100.05
    cash = -40100.05
    # liquidation where cash + q P = mmr q P: P = 40100.05 / (500 x 0.99) = 81.0102...
    p_liq = 40100.05 / (500 * 0.99)
    assert cash + 500 * p_liq == pytest.approx(0.01 * 500 * p_liq)
    assert i["liquidated"] is True and i["position"] == 0.0
    assert i["fill_price"] == approx(p_liq)
    # both fills in one step: net traded 0, two trades
    assert i["traded_qty"] == approx(0.0) and i["n_fills"] == 2
    # liquidation fee 0.005 x 500 x P, no taker fee and no slippage on the exit
    assert i["fees_paid"] == approx(50.05 + 0.005 * 500 * p_liq)
    assert i["slippage_paid"] == approx(500 * 0.1)
    assert i["cash"] == approx(cash + 500 * p_liq - 0.005 * 500 * p_liq)
    assert i["equity"] == i["cash"] and i["equity"] > 0
    assert not steps[0][2]


def test_long_liquidation_gap_at_open_bankrupts_with_floored_reward() -> None:
    bars = make_bars([100, (100, 100.5, 99.5, 100), (75, 76, 70, 72), 72])
    cfg = config(max_leverage=5.0, maintenance_margin_rate=0.01, liquidation_fee=0.005, rebalance_threshold=0.5)
    _, steps = run(bars, cfg, [1.0, 1.0, 1.0])
    assert len(steps) == 2
    i2 = steps[1][4]
    # cash after entry -40000; P = 40000 / 495 = 80.8 but bar 2 opens at 75 < P: closed at 75
    # cash = -40000 + 500 x 75 - 0.005 x 500 x 75 = -2687.5 -> equity <= 0: terminated
    assert i2["liquidated"] and i2["fill_price"] == approx(75.0)
    assert i2["equity"] == approx(-2687.5)
    _, reward, terminated, truncated, _ = steps[1]
    assert terminated and not truncated
    # reward on equity floored at 1e-6 x initial cash: log(0.01 / 10000)
    assert reward == approx(math.log(0.01 / 10000.0))


def test_short_liquidation_price_and_fee() -> None:
    bars = make_bars([100, (100, 140, 99, 120), 120])
    cfg = config(max_leverage=3.0, maintenance_margin_rate=0.01, liquidation_fee=0.005)
    _, steps = run(bars, cfg, [-1.0])
    i = steps[0][4]
    # q = -300 at 100: cash 40000; P = 40000 / (300 x 1.01) = 132.0132
    p_liq = 40000 / (300 * 1.01)
    assert 40000 - 300 * p_liq == pytest.approx(0.01 * 300 * p_liq)
    assert i["liquidated"] and i["fill_price"] == approx(p_liq) and i["position"] == 0.0
    assert i["fees_paid"] == approx(0.005 * 300 * p_liq)
    assert i["equity"] == approx(40000 - 300 * p_liq - 0.005 * 300 * p_liq)


def test_stop_or_liquidation_whichever_is_nearer_the_open() -> None:
    # 5x long at 100 (cash -40000), mmr 1%: liquidation at 80.81; bar 2 opens 95 and falls to 70
    bars = make_bars([100, 100, (95, 96, 70, 75), 75])
    base = dict(max_leverage=5.0, maintenance_margin_rate=0.01, rebalance_threshold=0.5)
    # stop at 90 lies nearer the open: stopped at 90, not liquidated
    _, steps = run(bars, config(**base, stop_loss=0.1), [1.0, 1.0])
    assert not steps[1][4]["liquidated"] and steps[1][4]["fill_price"] == approx(90.0)
    assert steps[1][4]["equity"] == approx(-40000 + 500 * 90)
    # stop at 75 lies beyond the liquidation price: liquidated at 80.81
    _, steps = run(bars, config(**base, stop_loss=0.25), [1.0, 1.0])
    assert steps[1][4]["liquidated"] and steps[1][4]["fill_price"] == approx(40000 / 495)


def test_short_stop_or_liquidation_whichever_is_nearer_the_open() -> None:
    # 3x short at 100 (cash 40000), mmr 1%: liquidation at 40000 / 303 = 132.01; bar 2 opens 105, reaches 150
    bars = make_bars([100, 100, (105, 150, 104, 140), 140])
    base = dict(max_leverage=3.0, maintenance_margin_rate=0.01, rebalance_threshold=0.5)
    _, steps = run(bars, config(**base, stop_loss=0.2), [-1.0, -1.0])
    assert not steps[1][4]["liquidated"] and steps[1][4]["fill_price"] == approx(120.0)
    _, steps = run(bars, config(**base, stop_loss=0.4), [-1.0, -1.0])
    assert steps[1][4]["liquidated"] and steps[1][4]["fill_price"] == approx(40000 / 303)


# ---------------------------------------------------------------------------------------------
# Rule 8: stops, take-profit, trailing stop, entry price
# ---------------------------------------------------------------------------------------------


def test_stop_wins_over_take_profit_inside_one_bar_and_reentry() -> None:
    # entry bar 1 spans both levels but is not checked (levels start the bar after the entry)
    bars = make_bars([100, (100, 115, 90, 100), (100, 115, 90, 100), 100, 100])
    cfg = config(stop_loss=0.05, take_profit=0.1, rebalance_threshold=0.5)
    _, steps = run(bars, cfg, [1.0, 1.0, 1.0])
    i1, i2, i3 = infos(steps)
    assert i1["position"] == approx(100.0) and i1["n_fills"] == 1
    # bar 2: stop 95 and take-profit 110 both inside: the stop fills, at 95
    assert i2["position"] == 0.0 and i2["fill_price"] == approx(95.0) and i2["traded_qty"] == approx(-100.0)
    assert i2["equity"] == approx(9500.0) and i2["n_fills"] == 2
    # the next decision re-enters: q = 9500 / 100 at bar 3's open
    assert i3["position"] == approx(95.0) and i3["n_fills"] == 3
    # short mirror: stop 105, take-profit 90, bar spans 85..110 -> stop at 105
    bars = make_bars([100, 100, (100, 110, 85, 100), 100])
    _, steps = run(bars, cfg, [-1.0, -1.0])
    assert steps[1][4]["fill_price"] == approx(105.0) and steps[1][4]["equity"] == approx(9500.0)


def test_stop_exit_pays_slippage_and_fee() -> None:
    bars = make_bars([100, 100, (100, 101, 90, 100), 100])
    cfg = config(stop_loss=0.05, rebalance_threshold=0.5, taker_fee=0.001, slippage_model="fixed_bps",
                 slippage_bps=10.0)
    _, steps = run(bars, cfg, [1.0, 1.0])
    i2 = steps[1][4]
    # entry 100 x 1.001 = 100.1 (slippage included in the entry price); fee 10.01
    # stop = 100.1 x 0.95 = 95.095; exit at 95.095 x 0.999 = 94.999905; fee 9.4999905
    stop = 100.1 * 0.95
    px = stop * 0.999
    assert i2["fill_price"] == approx(px)
    assert i2["fees_paid"] == approx(10.01 + 100 * px * 0.001)
    assert i2["slippage_paid"] == approx(100 * 0.1 + 100 * (stop - px))
    assert i2["cash"] == approx(10000 - 10010 - 10.01 + 100 * px - 100 * px * 0.001)


def test_stop_exit_price_rounded_to_tick_adversely() -> None:
    # stop 100 x (1 - 0.033) = 96.7, a sell: down to 96.5 on a 0.5 grid
    bars = make_bars([100, 100, (100, 101, 90, 100), 100])
    _, steps = run(bars, config(stop_loss=0.033, tick_size=0.5, rebalance_threshold=0.5), [1.0, 1.0])
    assert steps[1][4]["fill_price"] == approx(96.5)
    assert steps[1][4]["slippage_paid"] == approx(100 * (96.7 - 96.5))


def test_take_profit_inside_bar() -> None:
    bars = make_bars([100, 100, (100, 112, 99, 105), 105])
    _, steps = run(bars, config(stop_loss=0.05, take_profit=0.1, rebalance_threshold=0.5), [1.0, 1.0])
    assert steps[1][4]["fill_price"] == approx(110.0) and steps[1][4]["equity"] == approx(11000.0)


def test_gap_through_stop_and_take_profit_fill_at_open() -> None:
    cfg = config(stop_loss=0.05, take_profit=0.1, rebalance_threshold=0.5)
    # long: opens at 90 below the stop 95 -> 90
    _, steps = run(make_bars([100, 100, (90, 92, 88, 91), 91]), cfg, [1.0, 1.0])
    assert steps[1][4]["fill_price"] == approx(90.0) and steps[1][4]["equity"] == approx(9000.0)
    # long: opens at 112 above the take-profit 110 -> 112, although the bar later crosses the stop
    _, steps = run(make_bars([100, 100, (112, 113, 80, 100), 100]), cfg, [1.0, 1.0])
    assert steps[1][4]["fill_price"] == approx(112.0) and steps[1][4]["equity"] == approx(11200.0)
    # short: opens at 110 above the stop 105 -> 110
    _, steps = run(make_bars([100, 100, (110, 111, 100, 105), 105]), cfg, [-1.0, -1.0])
    assert steps[1][4]["fill_price"] == approx(110.0) and steps[1][4]["equity"] == approx(9000.0)
    # short: opens at 88 below the take-profit 90 -> 88
    _, steps = run(make_bars([100, 100, (88, 120, 87, 100), 100]), cfg, [-1.0, -1.0])
    assert steps[1][4]["fill_price"] == approx(88.0) and steps[1][4]["equity"] == approx(11200.0)


def test_trailing_stop_long() -> None:
    # entry at 100 in bar 1 (range 85..120, not checked); best after bar 1 = 120
    # bar 2: level 120 x 0.9 = 108 (best up to the previous bar), low 109: no exit; best -> 130
    # bar 3: level 117, low 110: exit at 117 (the fixed stop 95 is looser: max(95, 117))
    bars = make_bars([100, (100, 120, 85, 110), (115, 130, 109, 125), (125, 126, 110, 112), 112])
    cfg = config(trailing_stop=0.1, stop_loss=0.05, rebalance_threshold=0.5)
    _, steps = run(bars, cfg, [1.0, 1.0, 1.0])
    i1, i2, i3 = infos(steps)
    assert i1["position"] == approx(100.0) and i2["position"] == approx(100.0)
    assert i3["position"] == 0.0 and i3["fill_price"] == approx(117.0)
    assert i3["equity"] == approx(11700.0)


def test_trailing_stop_restarts_from_the_reentry_price() -> None:
    # first position: best 130 -> exit at 117 in bar 3 (as above); re-entry at bar 4's open 100
    # bar 5 dips to 95: the new trailing level is 0.9 x max(100, 101) = 90.9, not 117 -> no exit
    bars = make_bars([100, (100, 120, 85, 110), (115, 130, 109, 125), (125, 126, 110, 112),
                      (100, 101, 99, 100), (100, 100, 95, 99), 99])
    cfg = config(trailing_stop=0.1, rebalance_threshold=0.5)
    _, steps = run(bars, cfg, [1.0] * 5)
    i = infos(steps)
    assert i[2]["position"] == 0.0 and i[2]["fill_price"] == approx(117.0)
    assert i[3]["position"] == approx(11700.0 / 112) and i[3]["fill_price"] == approx(100.0)
    assert i[4]["position"] == approx(11700.0 / 112) and i[4]["n_fills"] == 3


def test_trailing_and_fixed_stop_the_tighter_wins() -> None:
    # fixed stop 98 vs trailing 0.5 x 100 = 50: the fixed one (nearer) hits at 98
    bars = make_bars([100, 100, (100, 101, 97, 99), 99])
    _, steps = run(bars, config(trailing_stop=0.5, stop_loss=0.02, rebalance_threshold=0.5), [1.0, 1.0])
    assert steps[1][4]["fill_price"] == approx(98.0)


def test_trailing_stop_short() -> None:
    # short at 100; bar 1 low 80 -> best 80; bar 2: level 88, high 89 -> exit at 88
    bars = make_bars([100, (100, 101, 80, 90), (85, 89, 82, 86), 86])
    _, steps = run(bars, config(trailing_stop=0.1, rebalance_threshold=0.5), [-1.0, -1.0])
    assert steps[1][4]["fill_price"] == approx(88.0) and steps[1][4]["position"] == 0.0
    assert steps[1][4]["equity"] == approx(10000 + 100 * 12)


def test_entry_price_averaged_when_adding() -> None:
    # 50 at 100, then +50 at 110: entry (50 x 100 + 50 x 110) / 100 = 105, stop 10% -> 94.5
    bars = make_bars([100, 100, (110, 111, 109, 110), (100, 101, 94, 95), 95])
    _, steps = run(bars, config(stop_loss=0.1, rebalance_threshold=0.4), [0.5, 1.0, 1.0])
    i2, i3 = steps[1][4], steps[2][4]
    assert i2["position"] == approx(100.0)
    # kept entry 100 would give stop 90 (no exit); reset to 110 would give 99
    assert i3["position"] == 0.0 and i3["fill_price"] == approx(94.5)


def test_entry_price_unchanged_when_reducing() -> None:
    # 100 at 100, then sell 50 at 110: entry stays 100, stop 90; bar 3 opens 95 and falls to 89
    bars = make_bars([100, 100, (110, 111, 105, 110), (95, 96, 89, 90), 90])
    _, steps = run(bars, config(stop_loss=0.1, rebalance_threshold=0.4), [1.0, 0.5, 0.5])
    assert steps[1][4]["position"] == approx(50.0)
    # an entry of 110 would put the stop at 99 and fill at the open 95
    assert steps[2][4]["position"] == 0.0 and steps[2][4]["fill_price"] == approx(90.0)


def test_entry_price_reset_on_flip_and_checks_start_after_flip_bar() -> None:
    # long 100 at 100, flip to short 100 at 110 (bar 2): entry 110, stop 121
    # bar 2 (the flip bar) reaches 125 but is not checked; bar 3 opens 118, reaches 122: exit 121
    bars = make_bars([100, 100, (110, 125, 105, 115), (118, 122, 117, 120), 120])
    _, steps = run(bars, config(stop_loss=0.1, rebalance_threshold=0.4), [1.0, -1.0, -1.0])
    i2, i3 = steps[1][4], steps[2][4]
    assert i2["traded_qty"] == approx(-200.0) and i2["position"] == approx(-100.0)
    assert i3["position"] == 0.0 and i3["fill_price"] == approx(121.0)
