"""Hostile input at the env boundary: actions outside the action space, configs and data outside
their documented ranges. Each case runs against both `TradingEnv` and `VecTradingEnv`."""

from __future__ import annotations

from typing import Any

import numpy as np
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


@given(x=st.floats(-1e300, 1e300), step=st.floats(1e-12, 1e3))
@SETTINGS
def test_compiled_rounding_equals_its_python_definition_at_any_magnitude(x: float, step: float) -> None:
    """numba's int64 ``math.floor`` wrapped beyond 2^63 steps; rounding now stays in float64."""
    from envs.accounting import round_qty_toward_zero
    from envs.execution import round_to_tick

    q = round_qty_toward_zero(x, step)
    assert q == round_qty_toward_zero.py_func(x, step)
    assert q == 0.0 or np.sign(q) == np.sign(x)
    assert abs(q) <= abs(x) * (1 + 1e-9) + 1e-9 * step
    if x > 0:
        for side in (1.0, -1.0):
            assert round_to_tick(x, side, step) == round_to_tick.py_func(x, side, step)
        assert round_to_tick(x, 1.0, step) >= min(x * (1 - 1e-15), step)
        assert round_to_tick(x, -1.0, step) >= step  # a positive price never rounds to 0 or below
