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
from hypothesis import example, given, settings
from hypothesis import strategies as st

from envs import TradingEnv, VecTradingEnv
from tests.envs.helpers import config, make_bars

DAY_MS = 86_400_000

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
            assert info["n_fills"] >= prev["n_fills"]
            # position moves only through fills: position change = net traded quantity
            assert info["position"] - prev["position"] == pytest.approx(info["traded_qty"], abs=1e-9)
            if info["traded_qty"] == 0.0 and info["n_fills"] == prev["n_fills"]:
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
    for prev, info in zip(infos, infos[1:], strict=False):
        t1 = bar_index(info)
        assert not info["liquidated"] and info["n_fills"] - prev["n_fills"] <= 1
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
    for prev, info in zip(infos, infos[1:], strict=False):
        t1 = bar_index(info)
        assert not info["liquidated"] and info["n_fills"] - prev["n_fills"] <= 1
        dq = info["traded_qty"]
        d_fee = info["fees_paid"] - prev["fees_paid"]
        d_slip = info["slippage_paid"] - prev["slippage_paid"]
        assert d_fee >= 0.0 and d_slip >= 0.0
        # adverse side of the open (tick rounding forgives 1e-9 tick of float noise, hence 1e-11)
        if dq > 0:
            assert info["fill_price"] >= o[t1] * (1 - 1e-11)
        elif dq < 0:
            assert info["fill_price"] <= o[t1] * (1 + 1e-11)
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
    for f, k in zip(free, costly, strict=True):
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
    for a, prev, info in zip(acts, infos, infos[1:], strict=False):
        raw = float(np.float32(a)) * prev["equity"] / (prev["price"] * lot)
        if abs(raw - round(raw)) < 1e-6:
            continue  # on a lot boundary: rounding is a matter of float noise
        target_lots = math.trunc(raw)
        held_lots = round(prev["position"] / lot)
        if target_lots == held_lots:
            assert info["traded_qty"] == 0.0 and info["fill_price"] == 0.0
            assert info["n_fills"] == prev["n_fills"]
        else:
            assert info["traded_qty"] == pytest.approx((target_lots - held_lots) * lot, rel=1e-9)
            assert info["n_fills"] == prev["n_fills"] + 1


# ---------------------------------------------------------------------------------------------
# differential test against an independent reference account
# ---------------------------------------------------------------------------------------------


class ReferenceAccount:
    """A slow, plain-Python reading of rules 2-8 and the documented choices, bar by bar.

    Written from the issue text, not from the kernel: sigma/mu recomputed from the closes, funding
    times counted one by one, every rule spelled out. The env must agree with it to 1e-9.
    """

    def __init__(self, bars: pd.DataFrame, cfg: Any) -> None:
        self.cfg = cfg
        self.o = bars["open"].tolist()
        self.h = bars["high"].tolist()
        self.l = bars["low"].tolist()
        self.c = bars["close"].tolist()
        self.v = bars["volume"].tolist()
        self.ts = [int(x) for x in bars["timestamp"]]
        self.spread = bars["spread"].tolist() if "spread" in bars else None
        n = len(self.c)
        spacing = float(np.median(np.diff(self.ts)))
        self.bars_per_year = 365.25 * DAY_MS / spacing
        rets = [math.nan] + [math.log(self.c[j] / self.c[j - 1]) for j in range(1, n)]
        self.sigma, self.mu = [], []
        for t in range(n):
            window = [r for r in rets[max(0, t - cfg.vol_lookback + 1): t + 1] if not math.isnan(r)]
            if len(window) < 2:
                self.sigma.append(math.nan)
                self.mu.append(math.nan)
            else:
                m = sum(window) / len(window)
                self.mu.append(m)
                self.sigma.append(math.sqrt(sum((x - m) ** 2 for x in window) / (len(window) - 1)))
        interval = cfg.funding_interval_h * 3_600_000
        rates = bars["funding_rate"].tolist() if "funding_rate" in bars else [cfg.funding_rate] * n
        self.funding = []
        for j in range(n):
            start = self.ts[j]
            end = self.ts[j + 1] if j + 1 < n else self.ts[j] + spacing
            k = math.ceil(start / interval)
            count = 0
            while k * interval < end:
                count += 1
                k += 1
            self.funding.append(count * rates[j])

    def reset(self, t: int) -> None:
        self.t = t
        self.cash = self.cfg.initial_cash
        self.pos = 0.0
        self.entry = 0.0
        self.best = 0.0
        self.entry_bar = -1
        self.equity = self.cash
        self.peak = self.cash
        self.fees = self.slip = self.funding_paid = 0.0
        self.n_fills = 0

    # -- rules --------------------------------------------------------------------------------
    def exposure(self, a: float) -> float:
        cfg = self.cfg
        if cfg.action_mode == "discrete":
            av = cfg.exposure_levels[int(a)]
            if cfg.long_only:
                av = max(av, 0.0)
            e = av
        else:
            av = min(max(a, -1.0), 1.0)
            if cfg.long_only:
                av = max(av, 0.0)
            e = av * cfg.max_leverage
        sig, mu = self.sigma[self.t], self.mu[self.t]
        if cfg.sizing == "vol_target":
            ann = sig * math.sqrt(self.bars_per_year)
            e = e * cfg.target_vol / ann if ann > 0 else 0.0  # NaN compares False
        elif cfg.sizing == "risk_per_trade":
            e = av * cfg.risk_per_trade / cfg.stop_loss
        elif cfg.sizing == "kelly":
            e = e * cfg.kelly_fraction * mu / sig**2 if sig > 0 else 0.0
        e = min(max(e, -cfg.max_leverage), cfg.max_leverage)
        return max(e, 0.0) if cfg.long_only else e

    def lots(self, q: float) -> float:
        lot = self.cfg.lot_size
        if lot <= 0:
            return q
        k = q / lot
        return (math.floor(k + 1e-9) if k >= 0 else math.ceil(k - 1e-9)) * lot

    def price(self, side: float, ref: float, qty: float, bar: int) -> float:
        cfg = self.cfg
        sig = self.sigma[self.t]
        model = cfg.slippage_model
        if model == "none":
            frac = 0.0
        elif model == "fixed_bps" or (model == "spread" and self.spread is None):
            frac = cfg.slippage_bps * 1e-4
        elif model == "spread":
            frac = 0.5 * self.spread[bar] / ref
        elif math.isnan(sig):
            frac = cfg.slippage_bps * 1e-4
        elif model == "volatility":
            frac = cfg.slippage_coef * sig
        else:
            frac = cfg.slippage_coef * sig * math.sqrt(min(1.0, qty / self.v[bar]) if self.v[bar] > 0 else 1.0)
        px = ref * (1 + frac) if side > 0 else ref * (1 - frac)
        tick = cfg.tick_size
        if tick > 0:
            k = px / tick
            px = (math.ceil(k - 1e-9) if side > 0 else math.floor(k + 1e-9)) * tick
        return px

    def fill(self, qty: float, px: float, ref: float, bar: int, fee_rate: float) -> None:
        m = self.cfg.contract_multiplier
        fee = abs(qty) * px * m * fee_rate
        new = self.pos + qty
        if new == 0:
            self.entry, self.best, self.entry_bar = 0.0, 0.0, -1
        elif self.pos == 0 or (self.pos > 0) != (new > 0):
            self.entry, self.best, self.entry_bar = px, px, bar
        elif (qty > 0) == (self.pos > 0):
            self.entry = (abs(self.pos) * self.entry + abs(qty) * px) / abs(new)
        self.cash -= qty * px * m + fee
        self.pos = new
        self.fees += fee
        self.slip += abs(qty) * abs(px - ref) * m
        self.n_fills += 1
        self.last_px = px
        self.traded += qty
        self.notional += abs(qty) * px * m

    def exits(self, bar: int) -> None:
        cfg = self.cfg
        if self.pos == 0:
            return
        long = self.pos > 0
        o, hi, lo = self.o[bar], self.h[bar], self.l[bar]
        m = cfg.contract_multiplier
        stop = tp = None
        if bar > self.entry_bar:
            if cfg.stop_loss is not None:
                stop = self.entry * (1 - cfg.stop_loss) if long else self.entry * (1 + cfg.stop_loss)
            if cfg.trailing_stop is not None:
                trail = self.best * (1 - cfg.trailing_stop) if long else self.best * (1 + cfg.trailing_stop)
                stop = trail if stop is None else (max(stop, trail) if long else min(stop, trail))
            if cfg.take_profit is not None:
                tp = self.entry * (1 + cfg.take_profit) if long else self.entry * (1 - cfg.take_profit)
        mmr = cfg.maintenance_margin_rate
        liq = None
        if long and self.cash < 0:
            liq = -self.cash / (self.pos * m * (1 - mmr))
        elif not long:
            liq = max(self.cash, 0.0) / (-self.pos * m * (1 + mmr))
        adverse = lo if long else hi
        beyond = (lambda x, y: x <= y) if long else (lambda x, y: x >= y)  # x beyond level y adversely
        nearer = (lambda a, b: a >= b) if long else (lambda a, b: a <= b)  # level a reached before b
        side = -1.0 if long else 1.0
        qty = -self.pos
        if tp is not None and ((o >= tp) if long else (o <= tp)):
            self.fill(qty, self.price(side, o, abs(qty), bar), o, bar, cfg.taker_fee)
            return
        stop_hit = stop is not None and beyond(adverse, stop)
        liq_hit = liq is not None and beyond(adverse, liq)
        if stop_hit and (not liq_hit or nearer(stop, liq)):
            ref = min(o, stop) if long else max(o, stop)
            self.fill(qty, self.price(side, ref, abs(qty), bar), ref, bar, cfg.taker_fee)
            return
        if liq_hit:
            ref = min(o, liq) if long else max(o, liq)
            fee = abs(qty) * ref * m * cfg.liquidation_fee
            self.cash -= qty * ref * m + fee
            self.fees += fee
            self.pos = 0.0
            self.entry, self.best, self.entry_bar = 0.0, 0.0, -1
            self.n_fills += 1
            self.last_px = ref
            self.traded += qty
            self.notional += abs(qty) * ref * m
            self.liquidated = True
            return
        if tp is not None and ((hi >= tp) if long else (lo <= tp)):
            self.fill(qty, self.price(side, tp, abs(qty), bar), tp, bar, cfg.taker_fee)
            return
        self.best = max(self.best, hi) if long else min(self.best, lo)

    def step(self, a: float) -> tuple[float, bool, bool, dict[str, Any]]:
        cfg = self.cfg
        t, nxt = self.t, self.t + 1
        m = cfg.contract_multiplier
        eq_t = self.equity
        self.last_px = 0.0
        self.traded = 0.0
        self.notional = 0.0
        self.liquidated = False
        clipped = 0.0
        e = self.exposure(a)
        q_target = self.lots(e * eq_t / (self.c[t] * m)) if eq_t > 0 else 0.0
        dq = q_target - self.pos
        cur_e = self.pos * self.c[t] * m / eq_t if eq_t > 0 else 0.0
        send = dq != 0 and abs(e - cur_e) >= cfg.rebalance_threshold and abs(dq) * self.c[t] * m >= cfg.min_notional
        if send and cfg.max_participation is not None:
            cap = cfg.max_participation * self.v[nxt]
            if abs(dq) > cap:
                new = self.lots(math.copysign(cap, dq))
                clipped = abs(dq) - abs(new)
                dq = new
                send = dq != 0
        if send:
            side = 1.0 if dq > 0 else -1.0
            self.fill(dq, self.price(side, self.o[nxt], abs(dq), nxt), self.o[nxt], nxt, cfg.taker_fee)
        funding = self.pos * self.c[nxt] * m * self.funding[nxt]
        self.exits(nxt)
        self.cash -= funding
        self.funding_paid += funding
        eq = self.cash + self.pos * self.c[nxt] * m
        self.equity = eq
        self.peak = max(self.peak, eq)
        dd = 1 - eq / self.peak
        floor = 1e-6 * cfg.initial_cash
        log_ret = math.log(max(eq, floor) / max(eq_t, floor))
        turnover = self.notional / eq_t if eq_t > 0 else 0.0
        reward = log_ret - cfg.turnover_penalty * turnover - cfg.drawdown_penalty * dd
        self.t = nxt
        terminated = eq <= 0 or (cfg.max_drawdown is not None and dd > cfg.max_drawdown)
        truncated = nxt >= len(self.c) - 1
        info = {
            "price": self.c[nxt], "equity": eq, "cash": self.cash, "position": self.pos,
            "fill_price": self.last_px, "traded_qty": self.traded, "fees_paid": self.fees,
            "slippage_paid": self.slip, "funding_paid": self.funding_paid, "n_fills": self.n_fills,
            "liquidated": self.liquidated, "drawdown": dd, "participation_clipped": clipped,
            "exposure": self.pos * self.c[nxt] * m / eq if eq > 0 else 0.0,
        }
        return reward, terminated, truncated, info


reference_configs = st.fixed_dictionaries({
    "taker_fee": st.sampled_from([0.0, 0.0005, 0.004]),
    "slippage_model": st.sampled_from(SLIPPAGE_MODELS),
    "slippage_bps": st.floats(0.0, 30.0),
    "slippage_coef": st.floats(0.0, 1.0),
    "tick_size": st.sampled_from([0.0, 0.01, 0.25]),
    "max_leverage": st.sampled_from([1.0, 3.0, 10.0]),
    "lot_size": st.sampled_from([0.0, 0.5]),
    "contract_multiplier": st.sampled_from([1.0, 2.5]),
    "funding_rate": st.sampled_from([0.0, 0.001, -0.002]),
    "funding_interval_h": st.sampled_from([1.0, 3.0, 8.0]),
    "maintenance_margin_rate": st.sampled_from([0.0, 0.05]),
    "liquidation_fee": st.sampled_from([0.0, 0.01]),
    "stop_loss": st.sampled_from([None, 0.02, 0.05]),
    "take_profit": st.sampled_from([None, 0.03]),
    "trailing_stop": st.sampled_from([None, 0.015, 0.04]),
    "max_participation": st.sampled_from([None, 0.001, 0.5]),
    "rebalance_threshold": st.sampled_from([0.0, 0.2]),
    "min_notional": st.sampled_from([0.0, 500.0]),
    "sizing": st.sampled_from(["fixed", "vol_target", "kelly", "risk_per_trade"]),
    "long_only": st.booleans(),
    "action_mode": st.sampled_from(["continuous", "discrete"]),
    "turnover_penalty": st.sampled_from([0.0, 0.01]),
    "drawdown_penalty": st.sampled_from([0.0, 0.1]),
    "vol_lookback": st.sampled_from([2, 3, 5]),
    "max_drawdown": st.sampled_from([None, 0.3]),
})


@SETTINGS
@given(data=st.data(), kw=reference_configs)
def test_env_matches_reference_account(data: Any, kw: dict) -> None:
    """Every info value, reward and episode flag equals the reference account's, step by step,
    over random configs (all features combined) and paths wild enough to liquidate."""
    if kw["sizing"] == "risk_per_trade" and kw["stop_loss"] is None:
        kw["stop_loss"] = 0.02
    if kw["action_mode"] == "discrete":
        kw["exposure_levels"] = (-1.0, -0.25, 0.0, 0.5, 1.0)
    bars = data.draw(price_paths(max_move=0.2, max_gap=0.1, max_wick=0.15))
    if kw["action_mode"] == "discrete":
        acts = data.draw(st.lists(st.integers(0, 4), min_size=len(bars), max_size=len(bars)))
    else:
        acts = data.draw(actions(len(bars)))
    cfg = config(**kw)
    env = TradingEnv(bars, cfg)
    env.reset(seed=0)
    ref = ReferenceAccount(bars, cfg)
    ref.reset(0)
    for a in acts:
        if cfg.sizing in ("vol_target", "kelly") and ref.sigma[ref.t] < 1e-9:
            break  # sigma ~ 0 (equal returns): 1/sigma blows float noise up; the spec leaves sigma = 0 open
        act = a if cfg.action_mode == "discrete" else np.array([a], dtype=np.float32)
        _, reward, terminated, truncated, info = env.step(act)
        ref_reward, ref_terminated, ref_truncated, ref_info = ref.step(float(np.float32(a)))
        for key, value in ref_info.items():
            assert info[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        assert reward == pytest.approx(ref_reward, rel=1e-9, abs=1e-9)
        assert (terminated, truncated) == (ref_terminated, ref_truncated)
        if terminated or truncated:
            break


@SETTINGS
@given(price=st.floats(1e-8, 1e6), cash=st.floats(1.0, 1e12), lot=st.sampled_from([0.0] + [10.0**k for k in range(-12, 3)]),
       tick_frac=st.sampled_from([0.0, 1e-12, 1e-6]), a=st.floats(0.0, 1.0), long_only=st.booleans())
@example(price=1e-5, cash=1e6, lot=1e-8, tick_frac=0.0, a=1.0, long_only=True)  # int64 overflow: 1e19 lots
@example(price=1e-5, cash=1e9, lot=1e-12, tick_frac=1e-12, a=1.0, long_only=False)  # and 1e12 ticks
def test_a_long_action_never_becomes_a_short_at_any_scale(price: float, cash: float, lot: float, tick_frac: float,
                                                           a: float, long_only: bool) -> None:
    """Lot and tick rounding keep sign and size for any price, cash and lot size (they round in
    floating point, so more than 2^63 lots or ticks cannot wrap around), in both envs."""
    bars = make_bars([price, price, price])
    cfg = config(initial_cash=cash, lot_size=lot, tick_size=price * tick_frac, long_only=long_only, slippage_model="fixed_bps",
                 slippage_bps=5.0)
    env = TradingEnv(bars, cfg)
    env.reset(seed=0)
    info = env.step(np.array([a], dtype=np.float64))[4]
    vec = VecTradingEnv(bars, cfg, n_envs=1, seed=0)
    vec.reset()
    vec.step(np.array([a]))
    target = a * cash / price
    for pos, fill in ((info["position"], info["fill_price"]), (vec.account["position"][0], vec.account["fill_price"][0])):
        assert 0.0 <= pos <= target * (1 + 1e-9)
        if lot > 0:
            assert pos >= target - lot - 1e-9 * target  # rounded down by less than one lot
        if pos > 0:
            assert fill >= price  # a buy fills at or above the open, rounded up to the tick
            assert math.isfinite(fill)
    assert info["position"] == vec.account["position"][0]
