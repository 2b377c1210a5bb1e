"""Hostile input at the env boundary: actions outside the action space, configs and data outside
their documented ranges. Each case runs against both `TradingEnv` and `VecTradingEnv`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import EnvConfig, TradingEnv, VecTradingEnv
from tests.envs.helpers import config, make_bars

SETTINGS = settings(max_examples=40, deadline=None)
BARS = make_bars([100.0, (100, 102, 99, 101), (101, 103, 100, 102), (102, 104, 101, 103), 103.0])
N_LEVELS = 3


def _discrete() -> EnvConfig:
    return config(action_mode="discrete", exposure_levels=(-1.0, 0.0, 1.0))


# ---- 1. actions outside the action space -------------------------------------------------------------

BAD_DISCRETE = [3, 100, 100_000, 10**9, -1, 1.7, 1.0, float("nan"), True, np.True_, np.float64(2.0),
                np.array([1.5]), "1"]


@pytest.mark.parametrize("action", BAD_DISCRETE, ids=repr)
def test_single_env_refuses_a_discrete_action_outside_the_space(action: Any) -> None:
    env = TradingEnv(BARS, _discrete())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(action)


@pytest.mark.parametrize("action", [a for a in BAD_DISCRETE if not isinstance(a, (str, np.ndarray))], ids=repr)
def test_vec_env_refuses_a_discrete_action_outside_the_space(action: Any) -> None:
    vec = VecTradingEnv(BARS, _discrete(), n_envs=3, seed=0)
    vec.reset()
    batch = np.array([action] * 3)  # int, float or bool dtype, as the policy would send it
    with pytest.raises(ValueError, match="outside the action space"):
        vec.step(batch)


@given(st.lists(st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True)),
                min_size=4, max_size=4))
@SETTINGS
def test_vec_env_accepts_exactly_the_integer_actions_in_the_space(values: list[Any]) -> None:
    """Property: a batch steps iff every action is an integer index in [0, n); otherwise ValueError
    (never a garbage exposure or a crash)."""
    vec = VecTradingEnv(BARS, _discrete(), n_envs=4, seed=0)
    vec.reset()
    batch = np.array(values)
    valid = batch.dtype.kind in "iu" and bool(((batch >= 0) & (batch < N_LEVELS)).all())
    if valid:
        vec.step(batch)
        levels = np.array([-1.0, 0.0, 1.0])[batch]
        assert np.array_equal(np.sign(vec.account["position"]), np.sign(levels))
        assert (np.abs(vec.account["exposure"]) < 1.1).all()
    else:
        with pytest.raises(ValueError, match="outside the action space"):
            vec.step(batch)


@pytest.mark.parametrize("action", [np.int64(2), 2, np.array(2), np.array([2], dtype=np.int32)], ids=repr)
def test_single_env_accepts_integer_discrete_actions(action: Any) -> None:
    env = TradingEnv(BARS, _discrete())
    env.reset(seed=0)
    *_, info = env.step(action)
    assert info["position"] > 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_both_envs_refuse_a_non_finite_continuous_action(bad: float) -> None:
    env = TradingEnv(BARS, config())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([bad], dtype=np.float32))
    vec = VecTradingEnv(BARS, config(), n_envs=2, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match="env 1: action"):
        vec.step(np.array([[0.5], [bad]], dtype=np.float32))


@given(st.floats(-1e30, 1e30))
@SETTINGS
def test_out_of_range_continuous_actions_are_clipped_in_both_envs(a: float) -> None:
    """Property: a finite continuous action outside [-1, 1] acts exactly as its clipped value."""
    clipped = min(max(a, -1.0), 1.0)
    env = TradingEnv(BARS, config())
    env.reset(seed=0)
    pos = env.step(np.array([a]))[4]["position"]
    ref = TradingEnv(BARS, config())
    ref.reset(seed=0)
    assert pos == ref.step(np.array([clipped]))[4]["position"]
    vec = VecTradingEnv(BARS, config(), n_envs=2, seed=0)
    vec.reset()
    vec.step(np.array([[a], [clipped]]))
    assert vec.account["position"][0] == vec.account["position"][1] == pos


# ---- 2. lot and tick rounding at any magnitude ------------------------------------------------------


@given(x=st.floats(-1e200, 1e200), step=st.floats(1e-12, 1e3))
@SETTINGS
def test_compiled_rounding_equals_its_python_definition_at_any_magnitude(x: float, step: float) -> None:
    """numba's int64 ``math.floor`` wrapped beyond 2^63 steps; rounding now stays in float64."""
    from envs.sim.accounting import round_qty_toward_zero
    from envs.sim.execution import round_to_tick

    q = round_qty_toward_zero(x, step)
    assert q == round_qty_toward_zero.py_func(x, step)
    assert q == 0.0 or np.sign(q) == np.sign(x)
    assert abs(q) <= abs(x) * (1 + 1e-9) + 1e-9 * step
    if x > 0:
        for side in (1.0, -1.0):
            assert round_to_tick(x, side, step) == round_to_tick.py_func(x, side, step)
        assert round_to_tick(x, 1.0, step) >= min(x * (1 - 1e-15), step)
        assert round_to_tick(x, -1.0, step) >= step  # a positive price never rounds to 0 or below


# ---- 4. data columns and config fields outside their ranges -----------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("slippage_bps", 20_000.0), ("slippage_bps", 1000.5), ("slippage_coef", 50.0), ("funding_interval_h", 1e-6),
    ("funding_interval_h", 0.5), ("funding_interval_h", 1000.0), ("liquidation_fee", 0.5), ("taker_fee", 0.1),
    ("funding_rate", 0.2),
])
def test_config_fields_outside_their_documented_range_are_refused(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"env.{key}="):
        EnvConfig(**{key: value})


def _wild_bars(draw: Any, n: int) -> pd.DataFrame:
    rows, spreads = [], []
    prev = draw(st.floats(1e-4, 1e5))
    for _ in range(n):
        o = prev * math.exp(draw(st.floats(-1.0, 1.0)))
        c = o * math.exp(draw(st.floats(-1.5, 1.5)))
        lo = min(o, c) * draw(st.floats(0.05, 1.0))
        rows.append((o, max(o, c) * draw(st.floats(1.0, 3.0)), lo, c, draw(st.floats(0.0, 1e4))))
        spreads.append(lo * draw(st.floats(0.0, 0.999)))
        prev = c
    return make_bars(rows, spread=spreads, funding_rate=[draw(st.floats(-0.0999, 0.0999)) for _ in range(n)])


@given(data=st.data(), model=st.sampled_from(["none", "fixed_bps", "spread", "volatility", "sqrt_impact"]),
       bps=st.floats(0.0, 1000.0), coef=st.floats(0.0, 10.0), tick=st.sampled_from([0.0, 1e-3, 10.0]),
       interval=st.floats(1.0, 168.0))
@SETTINGS
def test_fill_prices_and_fees_stay_positive_in_both_envs(data: Any, model: str, bps: float, coef: float, tick: float,
                                                         interval: float) -> None:
    """Property: with any config inside the documented ranges and wild bars (moves of e^1.5, spreads
    up to the low), every fill is at a price > 0 and every fee is >= 0, in both envs."""
    bars = _wild_bars(data.draw, data.draw(st.integers(4, 10)))
    cfg = config(window_size=2, slippage_model=model, slippage_bps=bps, slippage_coef=coef, tick_size=tick,
                 taker_fee=0.001, funding_interval_h=interval, max_leverage=3.0, vol_lookback=2)
    acts = data.draw(st.lists(st.floats(-1.0, 1.0), min_size=len(bars), max_size=len(bars)))
    env = TradingEnv(bars, cfg)
    env.reset(seed=0)
    vec = VecTradingEnv(bars, cfg, n_envs=1, seed=0)
    vec.reset()
    fees = 0.0
    for a in acts:
        *_, terminated, truncated, info = env.step(np.array([a]))
        _, _, dones, infos = vec.step(np.array([a]))
        vec_info = infos[0] if dones[0] else {k: vec.account[k][0] for k in ("traded_qty", "fill_price", "fees_paid")}
        for i in (info, vec_info):  # the vec env auto-resets: its finished episode is in the info
            assert i["traded_qty"] == 0.0 or i["fill_price"] > 0.0
            assert i["fees_paid"] >= fees
        fees = info["fees_paid"]
        assert np.isfinite(info["equity"])
        if terminated or truncated:
            break


@pytest.mark.parametrize(("column", "values", "match"), [
    ("funding_rate", [0.0, 5.0, 0.0, 0.0, 0.0], r"'funding_rate' .* first at row 1"),
    ("funding_rate", [0.0, 0.0, float("nan"), 0.0, 0.0], r"'funding_rate' .* first at row 2"),
    ("spread", [0.0, 1e12, 0.0, 0.0, 0.0], r"'spread' .* first at row 1"),
    ("spread", [0.0, 0.0, 0.0, -0.1, 0.0], r"'spread' .* first at row 3"),
    ("signal", [0.1, float("nan"), 0.2, 0.3, 0.4], r"'signal' .* NaN after its first value .*first at row 1"),
    ("signal", [0.1, 0.2, float("inf"), 0.3, 0.4], r"'signal' .* inf; first at row 2"),
    ("signal", [0.1, 0.2, 0.3, 1e39, 0.4], r"'signal' .* float32's range .*first at row 3"),
])
def test_data_columns_outside_their_range_are_refused_with_row(column: str, values: list[float], match: str) -> None:
    bars = make_bars([100.0, 101.0, 102.0, 103.0, 104.0], **{column: values})
    for build in (lambda: TradingEnv(bars, config()), lambda: VecTradingEnv(bars, config(), n_envs=2)):
        with pytest.raises(ValueError, match=match):
            build()


def test_complex_feature_columns_are_refused_and_a_leading_warmup_nan_is_accepted() -> None:
    bars = make_bars([100.0, 101.0, 102.0, 103.0, 104.0])
    with pytest.raises(ValueError, match="'z' has dtype complex128"):
        TradingEnv(bars.assign(z=np.arange(5) + 1j), config())
    env = TradingEnv(bars.assign(warm=[np.nan, np.nan, 1.0, 2.0, 3.0]), config())
    assert "warm" in env.feature_names
