"""The lean single-env step: observations written in place but never changed once returned, infos as values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import EnvConfig, TradingEnv
from envs.sim.simulation import INFO_KEYS, INFO_TYPES

REALISM = dict(
    window_size=8, taker_fee=0.0005, slippage_model="volatility", slippage_coef=0.2, max_leverage=3.0,
    funding_rate=0.0001, stop_loss=0.02, take_profit=0.04, trailing_stop=0.015, episode_length=150,
)


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    return sample_1h.iloc[:600].reset_index(drop=True)


def _actions(n: int) -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (n, 1)).astype(np.float32)


def test_kept_observations_and_views_never_change(bars: pd.DataFrame) -> None:
    env = TradingEnv(bars, EnvConfig(**REALISM))
    obs, _ = env.reset(seed=0)
    kept, snapshots = [obs], [obs.copy()]
    view = obs[2:5]  # a view keeps the buffer too
    view_at_reset = view.copy()
    for k, a in enumerate(_actions(300)):
        obs, _, terminated, truncated, _ = env.step(a)
        if k % 3 == 0:  # keep some, drop others (their buffers get reused)
            kept.append(obs)
            snapshots.append(obs.copy())
        if terminated or truncated:
            obs, _ = env.reset()
    assert all(np.array_equal(o, s) for o, s in zip(kept, snapshots, strict=True))
    assert np.array_equal(view, view_at_reset)
    assert len({o.__array_interface__["data"][0] for o in kept}) == len(kept)  # no two share a buffer


def test_observations_are_written_in_place_when_nobody_keeps_them(bars: pd.DataFrame) -> None:
    env = TradingEnv(bars, EnvConfig(**REALISM))
    obs, _ = env.reset(seed=0)
    buffers = set()
    for a in _actions(50):
        obs, _, _, _, _ = env.step(a)  # the loop variable holds only the newest observation
        buffers.add(obs.__array_interface__["data"][0])
    assert len(buffers) == 2


def test_step_info_false_keeps_the_rollout_and_gives_the_full_info_at_the_end(bars: pd.DataFrame) -> None:
    full = TradingEnv(bars, EnvConfig(**REALISM))
    lean = TradingEnv(bars, EnvConfig(**REALISM), step_info=False)
    full.reset(seed=4)
    lean.reset(seed=4)
    for a in _actions(400):
        o1, r1, te1, tr1, i1 = full.step(a)
        o2, r2, te2, tr2, i2 = lean.step(a)
        assert np.array_equal(o1, o2) and r1 == r2 and (te1, tr1) == (te2, tr2)
        if te1 or tr1:
            assert i1.keys() == i2.keys() and i1 == i2  # every key and the episode summary
            full.reset()
            lean.reset()
        else:
            assert i2 == {}
            assert lean.account == i1  # the values stay readable


def test_info_values_are_plain_python_scalars_of_their_declared_types(bars: pd.DataFrame) -> None:
    env = TradingEnv(bars, EnvConfig(**REALISM))
    _, info0 = env.reset(seed=1)
    infos = [info0]
    for a in _actions(40):
        infos.append(env.step(a)[4])
    for info in infos:
        assert list(info) == list(INFO_KEYS)
        for key, value in info.items():
            assert type(value) is INFO_TYPES.get(key, float), key
    assert len({i["timestamp"] for i in infos}) == len(infos)  # each stored info kept its own step's values


@pytest.mark.parametrize("form", ["array", "list", "float", "numpy_scalar", "2d"])
def test_every_action_form_gives_the_same_step(bars: pd.DataFrame, form: str) -> None:
    ref = TradingEnv(bars, EnvConfig(**REALISM))
    env = TradingEnv(bars, EnvConfig(**REALISM))
    ref.reset(seed=2)
    env.reset(seed=2)
    for x in (0.75, -0.375, 1.5):  # exact in float32
        action = {"array": np.array([x], dtype=np.float32), "list": [x], "float": x,
                  "numpy_scalar": np.float32(x), "2d": np.array([[x]])}[form]
        got = env.step(action)
        want = ref.step(np.array([x], dtype=np.float32))
        assert np.array_equal(got[0], want[0]) and got[1:] == want[1:]
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(np.array([np.nan], dtype=np.float32))
