"""Property tests of the env's accounting over random price paths and random action sequences.

Paths are positive and OHLC-consistent: each bar opens a small gap away from the previous close,
moves by a bounded log return to its close, and has wicks beyond both. Bounds keep liquidation out
of the properties that need one fill per step (checked, not assumed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import TradingEnv
from tests.envs.helpers import config, make_bars

SETTINGS = settings(max_examples=50, deadline=None, derandomize=False)
SLIPPAGE_MODELS = ("none", "fixed_bps", "spread", "volatility", "sqrt_impact")


@st.composite
def price_paths(draw: Any, min_bars: int = 4, max_bars: int = 14, max_move: float = 0.03,
                max_gap: float = 0.01, max_wick: float = 0.01) -> pd.DataFrame:
    """Random positive OHLC-consistent bars starting near 100, with volume and a spread column."""
    n = draw(st.integers(min_bars, max_bars))
    move = st.floats(-max_move, max_move)
    gap = st.floats(-max_gap, max_gap)
    wick = st.floats(0.0, max_wick)
    rows = []
    spreads = []
    prev = 100.0
    for _ in range(n):
        o = prev * math.exp(draw(gap))
        c = o * math.exp(draw(move))
        h = max(o, c) * (1.0 + draw(wick))
        lo = min(o, c) * (1.0 - draw(wick))
        v = draw(st.floats(1.0, 1e5))
        rows.append((o, h, lo, c, v))
        spreads.append(draw(st.floats(0.0, 0.5)))
        prev = c
    return make_bars(rows, spread=spreads)


def actions(n: int) -> st.SearchStrategy[list[float]]:
    """n float32-exact actions in [-1, 1], with frequent repeats of round levels."""
    one = st.one_of(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]), st.floats(-1.0, 1.0, width=32))
    return st.lists(one, min_size=n, max_size=n)


def rollout(bars: pd.DataFrame, cfg: Any, acts: list[float]) -> list[dict[str, Any]]:
    """Infos of reset and every step (stops at the episode end)."""
    env = TradingEnv(bars, cfg)
    _, info = env.reset(seed=0)
    out = [info]
    for a in acts:
        *_, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
        out.append(info)
        if terminated or truncated:
            break
    return out


def bar_index(info: dict[str, Any]) -> int:
    return int(info["timestamp"] // 3_600_000)


cost_configs = st.fixed_dictionaries({
    "taker_fee": st.sampled_from([0.0, 0.0005, 0.004]),
    "slippage_model": st.sampled_from(SLIPPAGE_MODELS),
    "slippage_bps": st.floats(0.0, 30.0),
    "slippage_coef": st.floats(0.0, 1.0),
    "tick_size": st.sampled_from([0.0, 0.01, 0.25]),
})


# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), costs=cost_configs,
       extra=st.fixed_dictionaries({
           "max_leverage": st.sampled_from([1.0, 3.0]),
           "lot_size": st.sampled_from([0.0, 0.5]),
           "contract_multiplier": st.sampled_from([1.0, 2.5]),
           "funding_rate": st.sampled_from([0.0, 0.001, -0.002]),
           "funding_interval_h": st.sampled_from([1.0, 8.0]),
           "maintenance_margin_rate": st.sampled_from([0.0, 0.05]),
           "liquidation_fee": st.sampled_from([0.0, 0.01]),
           "stop_loss": st.sampled_from([None, 0.02]),
           "take_profit": st.sampled_from([None, 0.03]),
           "trailing_stop": st.sampled_from([None, 0.015]),
           "max_participation": st.sampled_from([None, 0.001]),
       }))
def test_equity_is_cash_plus_position_value_at_every_step(data: Any, costs: dict, extra: dict) -> None:
    bars = data.draw(price_paths(max_move=0.08, max_wick=0.05))
    acts = data.draw(actions(len(bars)))
    cfg = config(**costs, **extra)
    m = cfg.contract_multiplier
    close = bars["close"].to_numpy()
    prev = None
    for info in rollout(bars, cfg, acts):
        assert info["price"] == close[bar_index(info)]
        value = info["position"] * info["price"] * m
        assert info["equity"] == pytest.approx(info["cash"] + value, rel=1e-12, abs=1e-9)
        if info["equity"] > 0:
            assert info["exposure"] == pytest.approx(value / info["equity"], rel=1e-12, abs=1e-12)
        assert info["participation_clipped"] >= 0.0
        if prev is not None:
            assert info["fees_paid"] >= prev["fees_paid"]
            assert info["slippage_paid"] >= prev["slippage_paid"]
            assert info["n_trades"] >= prev["n_trades"]
            # position moves only through fills: position change = net traded quantity
            assert info["position"] - prev["position"] == pytest.approx(info["traded_qty"], abs=1e-9)
            if info["traded_qty"] == 0.0 and info["n_trades"] == prev["n_trades"]:
                assert info["fill_price"] == 0.0
        prev = info


@SETTINGS
@given(data=st.data(), lot=st.sampled_from([0.0, 0.1, 3.0]), mult=st.sampled_from([1.0, 50.0]),
       initial=st.sampled_from([10_000.0, 1_000_000.0]))
def test_zero_cost_round_trip_leaves_exactly_the_price_pnl(data: Any, lot: float, mult: float,
                                                           initial: float) -> None:
    bars = data.draw(price_paths())
    n = len(bars)
    acts = data.draw(actions(n - 2)) + [0.0]  # the last decision closes everything
    cfg = config(lot_size=lot, contract_multiplier=mult, initial_cash=initial)
    o = bars["open"].to_numpy()
    c = bars["close"].to_numpy()
    infos = rollout(bars, cfg, acts)
    assert len(infos) == n  # reset + n - 1 steps, truncated at the last bar
    cash_flow = 0.0  # sum of -dq x p x m over fills
    price_pnl = 0.0  # position held before the open x (open - previous close) + after x (close - open)
    scale = 0.0
    for prev, info in zip(infos, infos[1:]):
        t1 = bar_index(info)
        assert not info["liquidated"] and info["n_trades"] - prev["n_trades"] <= 1
        if info["traded_qty"] != 0.0:
            assert info["fill_price"] == o[t1]  # no slippage, no ticks: the open itself
        cash_flow += -info["traded_qty"] * info["fill_price"] * mult
        step_pnl = (prev["position"] * (o[t1] - c[t1 - 1]) + info["position"] * (c[t1] - o[t1])) * mult
        price_pnl += step_pnl
        scale += abs(info["traded_qty"]) * o[t1] * mult + abs(step_pnl)
        # each step: equity change = price P&L of what was held
        assert info["equity"] - prev["equity"] == pytest.approx(step_pnl, abs=1e-9 * (initial + scale))
    last = infos[-1]
    assert last["position"] == 0.0 and last["fees_paid"] == 0.0 and last["slippage_paid"] == 0.0
    assert last["equity"] == last["cash"]
    assert last["cash"] - initial == pytest.approx(cash_flow, abs=1e-9 * (initial + scale))
    assert last["cash"] - initial == pytest.approx(price_pnl, abs=1e-9 * (initial + scale))


@SETTINGS
@given(data=st.data(), costs=cost_configs, lot=st.sampled_from([0.0, 0.5]),
       mult=st.sampled_from([1.0, 20.0]))
def test_costs_only_ever_subtract_from_the_frictionless_ledger(data: Any, costs: dict, lot: float,
                                                               mult: float) -> None:
    """Each step's equity change = price P&L of the held positions - new fees - new slippage,
    with fees and slippage >= 0 and every fill price on the trader's adverse side of the open.

    So for the fills that happened, equity never exceeds the same fills at unslipped, fee-free
    prices (the frictionless replay)."""
    bars = data.draw(price_paths())
    acts = data.draw(actions(len(bars)))
    cfg = config(**costs, lot_size=lot, contract_multiplier=mult)
    o = bars["open"].to_numpy()
    c = bars["close"].to_numpy()
    infos = rollout(bars, cfg, acts)
    replay = infos[0]["equity"]
    for prev, info in zip(infos, infos[1:]):
        t1 = bar_index(info)
        assert not info["liquidated"] and info["n_trades"] - prev["n_trades"] <= 1
        dq = info["traded_qty"]
        d_fee = info["fees_paid"] - prev["fees_paid"]
        d_slip = info["slippage_paid"] - prev["slippage_paid"]
        assert d_fee >= 0.0 and d_slip >= 0.0
        if dq > 0:
            assert info["fill_price"] >= o[t1]
        elif dq < 0:
            assert info["fill_price"] <= o[t1]
        assert d_fee == pytest.approx(abs(dq) * info["fill_price"] * mult * cfg.taker_fee, rel=1e-9, abs=1e-9)
        assert d_slip == pytest.approx(abs(dq) * abs(info["fill_price"] - o[t1]) * mult, rel=1e-9, abs=1e-9)
        pnl = (prev["position"] * (o[t1] - c[t1 - 1]) + info["position"] * (c[t1] - o[t1])) * mult
        scale = abs(pnl) + abs(dq) * o[t1] * mult + info["equity"]
        assert info["equity"] - prev["equity"] == pytest.approx(pnl - d_fee - d_slip, abs=1e-9 * scale)
        replay += pnl
        assert info["equity"] <= replay + 1e-9 * scale


@SETTINGS
@given(data=st.data(), costs=cost_configs, side=st.sampled_from([1.0, -1.0]))
def test_costs_never_raise_equity_for_identical_fills(data: Any, costs: dict, side: float) -> None:
    """One round trip (flat -> side -> flat) run with and without costs.

    The entry is sized from the initial equity in both runs and the exit closes everything, and the
    rebalance threshold 0.5 blocks any rebalance in between (bounded moves keep the exposure drift
    below 0.4), so both runs make the same fills; the costly run's equity is never higher."""
    bars = data.draw(price_paths(max_bars=10, max_move=0.01, max_gap=0.005, max_wick=0.005))
    n_steps = len(bars) - 1
    entry = data.draw(st.integers(0, n_steps - 2))
    exit_ = data.draw(st.integers(entry + 1, n_steps - 1))
    acts = [0.0] * entry + [side] * (exit_ - entry) + [0.0] * (n_steps - exit_)
    free = rollout(bars, config(rebalance_threshold=0.5), acts)
    costly = rollout(bars, config(rebalance_threshold=0.5, **costs), acts)
    assert [i["traded_qty"] for i in costly] == [i["traded_qty"] for i in free]
    assert sum(i["traded_qty"] != 0.0 for i in free) == 2
    for f, k in zip(free, costly):
        assert k["equity"] <= f["equity"] + 1e-9 * f["equity"]
    if costs["taker_fee"] > 0:
        assert costly[-1]["equity"] < free[-1]["equity"]


@SETTINGS
@given(data=st.data(), lot=st.sampled_from([1.0, 2.5, 10.0]),
       taker_fee=st.sampled_from([0.0, 0.001]), slippage=st.sampled_from(["none", "fixed_bps"]))
def test_no_fill_without_a_change_of_target_quantity(data: Any, lot: float, taker_fee: float,
                                                     slippage: str) -> None:
    """With lots, the target quantity (computed here from the previous info) often equals the
    position: then nothing fills; otherwise the order is exactly target - position."""
    bars = data.draw(price_paths(max_move=0.01))
    acts = data.draw(actions(len(bars)))
    cfg = config(lot_size=lot, taker_fee=taker_fee, slippage_model=slippage, slippage_bps=5.0)
    infos = rollout(bars, cfg, acts)
    for a, prev, info in zip(acts, infos, infos[1:]):
        raw = float(np.float32(a)) * prev["equity"] / (prev["price"] * lot)
        if abs(raw - round(raw)) < 1e-6:
            continue  # on a lot boundary: rounding is a matter of float noise
        target_lots = math.trunc(raw)
        held_lots = round(prev["position"] / lot)
        if target_lots == held_lots:
            assert info["traded_qty"] == 0.0 and info["fill_price"] == 0.0
            assert info["n_trades"] == prev["n_trades"]
        else:
            assert info["traded_qty"] == pytest.approx((target_lots - held_lots) * lot, rel=1e-9)
            assert info["n_trades"] == prev["n_trades"] + 1
