"""Risk controls (`RiskConfig`): hand-computed scenarios, the same in `TradingEnv` and `VecTradingEnv`.

Bars are ``(open, high, low, close)`` or a flat price, hourly, costs off (`helpers.BASE`), initial
cash 10 000, window 1: the decision at bar t's close fills at bar t+1's open and is marked at
t+1's close; each step's info carries the regime its order was decided under.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import EnvConfig, RiskConfig, TradingEnv, VecTradingEnv
from envs.sim import kernel as K
from tests.envs.helpers import HOUR_MS, config, make_bars

ACTIVE, REDUCING, HALTED = (K.RISK_STATES.index(s) for s in ("ACTIVE", "REDUCING", "HALTED"))
REASON = {name: code for code, name in enumerate(K.RISK_REASONS)}
DAY_MS = 86_400_000


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def rollout(bars: pd.DataFrame, cfg: EnvConfig, actions: list[float],
            inputs: dict[int, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """TradingEnv infos of each step; ``inputs[k]`` sets risk inputs before step k."""
    env = TradingEnv(bars, cfg)
    env.reset(seed=0)
    out = []
    for k, a in enumerate(actions):
        for name, value in (inputs or {}).get(k, {}).items():
            env.risk_inputs[name][0] = value
        _, _, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        out.append(info)
        if terminated or truncated:
            break
    return out


def vec_rollout(bars: pd.DataFrame, cfg: EnvConfig, actions: list[float],
                inputs: dict[int, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """The same through `VecTradingEnv` (2 envs, both given the same actions; env 0's infos)."""
    vec = VecTradingEnv(bars, cfg, n_envs=2, seed=0, full_info=True)
    vec.reset()
    out = []
    for k, a in enumerate(actions):
        for name, value in (inputs or {}).get(k, {}).items():
            vec.risk_inputs[name][:] = value
        _, _, dones, infos = vec.step(np.full((2, 1), a, dtype=np.float32))
        got = [{k: v for k, v in info.items() if k not in ("terminal_observation", "TimeLimit.truncated")}
               for info in infos]
        assert got[0] == got[1]
        out.append(got[0])
        if dones[0]:
            break
    return out


def both(bars: pd.DataFrame, cfg: EnvConfig, actions: list[float],
         inputs: dict[int, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """TradingEnv infos, after checking VecTradingEnv gives the identical infos."""
    single = rollout(bars, cfg, actions, inputs)
    assert vec_rollout(bars, cfg, actions, inputs) == single
    return single


def regime(info: dict[str, Any]) -> tuple[str, str]:
    return K.RISK_STATES[info["risk_state"]], K.RISK_REASONS[info["risk_reason"]]


def test_everything_off_by_default_and_config_checks() -> None:
    assert EnvConfig().risk == RiskConfig()
    infos = both(make_bars([100, 101, 99, 100]), config(), [1.0, -1.0, 0.5])
    assert all(regime(i) == ("ACTIVE", "none") for i in infos)
    assert RiskConfig(expires_at="2024-01-02").expires_ms == 1704153600000
    assert RiskConfig(expires_at="2024-01-02T01:00+01:00").expires_ms == 1704153600000
    assert EnvConfig.from_dict({"risk": {"max_exposure": 0.5}}).risk == RiskConfig(max_exposure=0.5)
    for bad, key in (({"max_exposure": 0.0}, "max_exposure"), ({"max_order_notional": -1.0}, "max_order_notional"),
                     ({"daily_loss_limit": 1.5}, "daily_loss_limit"), ({"max_drawdown": 0.0}, "max_drawdown"),
                     ({"stale_after": 0}, "stale_after"), ({"stale_after": 1.5}, "stale_after"),
                     ({"expires_at": "soon"}, "expires_at")):
        with pytest.raises(ValueError, match=f"env.risk.{key}="):
            RiskConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown env.risk key"):
        EnvConfig.from_dict({"risk": {"max_exposur": 0.5}})


def test_max_exposure_caps_the_target() -> None:
    bars = make_bars([100, (102, 105, 101, 104), 104, 104])
    cfg = config(max_leverage=2.0, risk=RiskConfig(max_exposure=0.5))
    i1, i2, i3 = both(bars, cfg, [1.0, 0.25, -1.0])
    # a = 1 -> exposure 2, capped to 0.5: q = 0.5 x 10000 / 100 = 50, filled at bar 1's open 102
    assert i1["traded_qty"] == approx(50.0) and i1["fill_price"] == 102.0
    assert regime(i1) == ("ACTIVE", "max_exposure")
    # a = 0.25 -> exposure 0.5: under the cap, nothing limited it
    eq1 = 10000 - 50 * 102 + 50 * 104
    assert i1["equity"] == approx(eq1)
    assert i2["position"] == approx(0.5 * eq1 / 104) and regime(i2) == ("ACTIVE", "none")
    # a = -1 -> exposure -2, capped to -0.5
    assert i3["position"] == approx(-0.5 * i2["equity"] / 104) and regime(i3) == ("ACTIVE", "max_exposure")


def test_max_order_notional_splits_an_order_over_bars() -> None:
    bars = make_bars([100, 100, (100, 101, 99, 101), 101])
    cfg = config(risk=RiskConfig(max_order_notional=4000.0))
    i1, i2, i3 = both(bars, cfg, [1.0, 1.0, 1.0])
    # target 100 units; one order may be worth 4000 at close 100: 40 units per bar
    assert i1["traded_qty"] == approx(40.0) and regime(i1) == ("ACTIVE", "max_order_notional")
    assert i2["traded_qty"] == approx(40.0) and i2["position"] == approx(80.0)
    # equity at close 101: 10000 + 80 x 1 = 10080; target 10080 / 101 = 99.80..., buy 19.80... (< 4000 / 101)
    assert i3["traded_qty"] == approx(10080 / 101 - 80) and regime(i3) == ("ACTIVE", "none")


def test_daily_loss_allows_only_reductions_until_the_next_utc_day() -> None:
    # hourly bars from 20:00 UTC: bar 4 opens at 00:00 of the next day
    start = 10 * DAY_MS + 20 * HOUR_MS
    bars = make_bars([100, 100, 90, 95, (96, 96, 95, 95), 95, 95], start_ms=start)
    cfg = config(risk=RiskConfig(daily_loss_limit=0.04))
    i0, i1, i2, i3, i4 = both(bars, cfg, [0.5, 0.5, 1.0, -0.5, 0.5])
    # long 50 at 100; close 90: equity 9500, a 5 % loss of the day's starting equity 10000
    assert i0["position"] == approx(50.0) and i1["equity"] == approx(9500.0)
    assert regime(i0) == regime(i1) == ("ACTIVE", "none")
    # decision at 22:00's close: more risk (target 1.0) refused, the position is kept
    assert regime(i2) == ("REDUCING", "daily_loss") and i2["traded_qty"] == 0.0 and i2["position"] == approx(50.0)
    # 23:00: equity recovered to 9750 (a 2.5 % loss) but the day's limit stays hit; a flip to short is cut
    # to flat, filled at 00:00's open 96 (not the close 95): cash 5000 + 50 x 96 = 9800
    assert i2["equity"] == approx(9750.0)
    assert regime(i3) == ("REDUCING", "daily_loss")
    assert i3["traded_qty"] == approx(-50.0) and i3["fill_price"] == 96.0 and i3["position"] == 0.0
    assert i3["equity"] == approx(9800.0)
    # the first decision of the new UTC day (bar 4, opening 00:00) is free again
    assert regime(i4) == ("ACTIVE", "none") and i4["position"] == approx(0.5 * 9800 / 95)


def test_the_days_starting_equity_is_the_close_before_its_first_bar() -> None:
    # hourly bars from 21:00 UTC; bar 3 opens at 00:00 of day 11
    start = 10 * DAY_MS + 21 * HOUR_MS
    bars = make_bars([100, 100, 120, 115, 109, 109], start_ms=start)
    cfg = config(rebalance_threshold=0.1, risk=RiskConfig(daily_loss_limit=0.04))
    infos = both(bars, cfg, [0.5, 0.5, 0.5, 0.5, 1.0])
    # long 50 at 100 (no rebalancing later: the exposure never moves by 0.1); equity at the closes of
    # bars 2, 3, 4: 11000 (day 10's last close = day 11's starting equity), 10750, 10450
    assert [i["equity"] for i in infos[1:4]] == [approx(11000.0), approx(10750.0), approx(10450.0)]
    # at bar 3's close day 11 has lost 2.27 %; at bar 4's close 5 % of 11000 (though only 2.8 % since
    # bar 3's close and still up 4.5 % on the initial cash): more risk is refused
    assert [regime(i) for i in infos[:4]] == [("ACTIVE", "none")] * 4
    assert regime(infos[4]) == ("REDUCING", "daily_loss") and infos[4]["traded_qty"] == 0.0


def test_drawdown_halt_flattens_at_the_next_open_then_stays_flat() -> None:
    bars = make_bars([100, 100, 88, (89, 90, 87, 87), 95, 120, 120])
    cfg = config(risk=RiskConfig(max_drawdown=0.1), rebalance_threshold=0.9)
    infos = both(bars, cfg, [1.0] * 6)
    i0, i1, i2, i3, i4, i5 = infos
    # long 100 at 100; close 88: equity 8800, drawdown 12 % >= 10 %: the decision at 88 flattens at bar 3's
    # open 89 (the rebalance threshold does not block a risk flatten)
    assert i1["drawdown"] == approx(0.12) and regime(i1) == ("ACTIVE", "none")
    assert regime(i2) == ("HALTED", "drawdown")
    assert i2["traded_qty"] == approx(-100.0) and i2["fill_price"] == 89.0 and i2["position"] == 0.0
    assert i2["equity"] == approx(8900.0)
    # halted for the rest of the episode although the price recovers and the agent asks for 1.0
    for info in (i3, i4, i5):
        assert regime(info) == ("HALTED", "drawdown") and info["position"] == 0.0 and info["traded_qty"] == 0.0
    assert i5["n_fills"] == 2


def test_drawdown_halt_does_not_end_the_episode() -> None:
    bars = make_bars([100, 100, 80, 80, 80])
    env = TradingEnv(bars, config(risk=RiskConfig(max_drawdown=0.1)))
    env.reset(seed=0)
    ends = [env.step(np.array([1.0], dtype=np.float32))[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]  # env.max_drawdown (not set) is what terminates


def test_stale_feed_sends_no_order_and_keeps_the_position() -> None:
    bars = make_bars([100, 100, 100, 100, 100, 100])
    cfg = config(risk=RiskConfig(stale_after=2))
    infos = both(bars, cfg, [0.5, 1.0, 0.0, -1.0, 0.0],
                 inputs={1: {"feed_lag": 2}, 2: {"feed_lag": 3}, 3: {"feed_lag": 5}, 4: {"feed_lag": 0}})
    i0, i1, i2, i3, i4 = infos
    assert i0["position"] == approx(50.0)
    assert regime(i1) == ("ACTIVE", "none") and i1["position"] == approx(100.0)  # lag 2 is not > 2
    for info in (i2, i3):  # lag 3, 5: no order either way, the position stays
        assert regime(info) == ("HALTED", "stale_feed") and info["traded_qty"] == 0.0 and info["position"] == approx(100.0)
    assert regime(i4) == ("ACTIVE", "none") and i4["position"] == 0.0  # the feed caught up


def test_stale_feed_keeps_stops_working() -> None:
    bars = make_bars([100, 100, (100, 100, 80, 85), 85])
    cfg = config(stop_loss=0.1, risk=RiskConfig(stale_after=1))
    i0, i1, i2 = both(bars, cfg, [1.0, 1.0, 1.0], inputs={1: {"feed_lag": 4}})
    assert regime(i1) == ("HALTED", "stale_feed") and i1["fill_price"] == 90.0 and i1["position"] == 0.0


def test_expiry_allows_only_reductions_from_its_time() -> None:
    bars = make_bars([100, 100, 100, 100, 100, 100])
    cfg = config(risk=RiskConfig(expires_at=pd.Timestamp(2 * HOUR_MS, unit="ms").isoformat()))
    infos = both(bars, cfg, [0.5, 0.5, 1.0, 0.25, 0.75])
    assert [regime(i) for i in infos] == [("ACTIVE", "none")] * 2 + [("REDUCING", "expired")] * 3
    assert [i["position"] for i in infos] == [approx(50.0), approx(50.0), approx(50.0), approx(25.0), approx(25.0)]


def test_kill_switch_flattens_at_the_next_open_and_halts_while_engaged() -> None:
    bars = make_bars([100, 100, (101, 102, 100, 102), (104, 105, 103, 104), 104, 104])
    cfg = config(max_leverage=2.0)
    infos = both(bars, cfg, [0.5, 0.5, 0.5, 0.5, 0.5], inputs={1: {"kill": 1.0}, 3: {"kill": 0.0}})
    i0, i1, i2, i3, i4 = infos
    assert i0["position"] == approx(100.0)
    # engaged before the decision at bar 1's close: sell 100 at bar 2's open 101
    assert regime(i1) == ("HALTED", "kill") and i1["traded_qty"] == approx(-100.0) and i1["fill_price"] == 101.0
    assert regime(i2) == ("HALTED", "kill") and i2["position"] == 0.0 and i2["traded_qty"] == 0.0
    assert regime(i3) == ("ACTIVE", "none") and i3["position"] > 0  # released


def test_kill_overrides_every_other_regime_and_reset_clears_inputs() -> None:
    bars = make_bars([100, 100, 80, 80, 80])
    env = TradingEnv(bars, config(risk=RiskConfig(max_drawdown=0.1, stale_after=1)))
    env.reset(seed=0)
    env.step(np.array([1.0], dtype=np.float32))
    env.step(np.array([1.0], dtype=np.float32))
    env.risk_inputs["kill"][0] = 1.0
    env.risk_inputs["feed_lag"][0] = 9.0
    info = env.step(np.array([1.0], dtype=np.float32))[4]
    assert regime(info) == ("HALTED", "kill")
    env.reset(seed=0)
    assert env.risk_inputs["kill"][0] == 0.0 and env.risk_inputs["feed_lag"][0] == 0.0


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[pd.DataFrame, EnvConfig, list[float]]:
    n = draw(st.integers(4, 40))
    rets = draw(st.lists(st.floats(-0.08, 0.08), min_size=n, max_size=n))
    close = 100.0 * np.exp(np.cumsum(rets))
    gaps = draw(st.lists(st.floats(-0.02, 0.02), min_size=n, max_size=n))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(gaps)
    rows = [(o, max(o, c) * 1.01, min(o, c) * 0.99, c) for o, c in zip(open_, close, strict=True)]
    start = draw(st.integers(0, 47)) * HOUR_MS
    bars = make_bars(rows, start_ms=start)
    risk = RiskConfig(
        max_exposure=draw(st.none() | st.floats(0.1, 2.0)),
        max_order_notional=draw(st.none() | st.floats(500.0, 20_000.0)),
        daily_loss_limit=draw(st.none() | st.floats(0.005, 0.2)),
        max_drawdown=draw(st.none() | st.floats(0.02, 0.5)),
    )
    cfg = config(max_leverage=2.0, taker_fee=0.001, slippage_model="fixed_bps", slippage_bps=5.0, risk=risk)
    actions = draw(st.lists(st.floats(-1.0, 1.0, width=32), min_size=n - 1, max_size=n - 1))
    return bars, cfg, actions


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_limits_hold_and_both_envs_agree(case: tuple[pd.DataFrame, EnvConfig, list[float]]) -> None:
    bars, cfg, actions = case
    infos = both(bars, cfg, actions)
    risk = cfg.risk
    equity, price, pos = cfg.initial_cash, float(bars["close"].iloc[0]), 0.0
    halted = False
    for info in infos:
        dq = info["position"] - pos
        state, reason = regime(info)
        if risk.max_order_notional is not None:
            assert abs(dq) * price <= risk.max_order_notional * (1 + 1e-9)
        if risk.max_exposure is not None:  # exposure at the decision's close price
            assert abs(info["position"]) * price <= risk.max_exposure * equity * (1 + 1e-9) or abs(info["position"]) <= abs(pos)
        if state == "REDUCING":
            assert abs(info["position"]) <= abs(pos) + 1e-12 and info["position"] * pos >= 0
        if halted:  # the drawdown halt is for good, and the position goes to flat
            assert (state, reason) == ("HALTED", "drawdown")
            assert abs(info["position"]) <= abs(pos)
        halted = halted or reason == "drawdown"
        if reason == "drawdown" and risk.max_order_notional is None:
            assert info["position"] == 0.0
        equity, price, pos = info["equity"], info["price"], info["position"]


@settings(max_examples=25, deadline=None)
@given(scenarios(), st.floats(0.5, 1.5), st.data())
def test_risk_decisions_never_see_later_bars(case: tuple[pd.DataFrame, EnvConfig, list[float]], factor: float,
                                            data: st.DataObject) -> None:
    bars, cfg, actions = case
    cut = data.draw(st.integers(1, len(bars) - 1))
    later = bars.copy()
    for col in ("open", "high", "low", "close"):  # every bar after `cut` moves, one day later too
        later[col] = bars[col].where(bars.index <= cut, bars[col] * factor)
    later["timestamp"] = bars["timestamp"].where(bars.index <= cut, bars["timestamp"] + DAY_MS)
    # steps 0 .. cut-1 fill and mark in bars 1 .. cut: identical, risk state and reason included
    assert rollout(later, cfg, actions)[:cut] == rollout(bars, cfg, actions)[:cut]


def test_model_age_allows_only_reductions_from_training_end_plus_age() -> None:
    bars = make_bars([100, 100, 100, 100, 100, 100])
    trained_until = pd.Timestamp(0, unit="ms", tz="UTC").isoformat()  # training data ended at bar 0's open
    cfg = config(risk=RiskConfig(max_model_age="2h", trained_until=trained_until))
    infos = both(bars, cfg, [0.5, 0.5, 1.0, 0.25, 0.75])
    assert [regime(i) for i in infos] == [("ACTIVE", "none")] * 2 + [("REDUCING", "model_age")] * 3
    assert [i["position"] for i in infos] == [approx(50.0), approx(50.0), approx(50.0), approx(25.0), approx(25.0)]
    # without the run's training end (training itself) the age limit is inactive
    free = both(bars, config(risk=RiskConfig(max_model_age="2h")), [0.5, 0.5, 1.0, 0.25, 0.75])
    assert all(regime(i) == ("ACTIVE", "none") for i in free)


@pytest.mark.parametrize("age", ["30", 30, "30x", "0d", "3 months", "5s", True])
def test_bad_model_age_is_refused_in_one_line(age: object) -> None:
    with pytest.raises(ValueError, match=r"env\.risk\.max_model_age=.*duration with a unit") as err:
        RiskConfig(max_model_age=age)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_limits_without_the_model_age_keys_keep_the_ledger_meta_of_earlier_sessions() -> None:
    import json

    old = {"max_exposure": 0.5, "max_order_notional": None, "daily_loss_limit": None, "max_drawdown": None,
           "stale_after": None, "expires_at": None}  # a paper ledger's env.risk before max_model_age existed
    assert RiskConfig(max_exposure=0.5).meta_json() == json.dumps(old, sort_keys=True)
    aged = json.loads(RiskConfig(max_model_age="30d", trained_until="2023-01-01").meta_json())
    assert aged["max_model_age"] == "30d" and aged["trained_until"] == "2023-01-01"
