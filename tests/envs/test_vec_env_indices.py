"""`VecTradingEnv.get_attr` / `set_attr` / `env_method` honour ``indices`` as SB3's VecEnv contract says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import EnvConfig, VecTradingEnv


@pytest.fixture(scope="module")
def vec(sample_1h: pd.DataFrame) -> VecTradingEnv:
    return VecTradingEnv(sample_1h.iloc[:600].reset_index(drop=True), EnvConfig(window_size=8, episode_length=50),
                         n_envs=3, seed=1)


def test_get_attr_returns_each_requested_envs_own_generator(vec: VecTradingEnv) -> None:
    rngs = vec.get_attr("np_random")
    assert len(rngs) == 3 and len({id(r) for r in rngs}) == 3
    assert vec.get_attr("np_random", indices=[2])[0] is rngs[2]
    assert vec.get_attr("np_random", indices=-1)[0] is rngs[2]
    assert vec.get_attr("config", indices=[0, 1]) == [vec.config, vec.config]


@pytest.mark.parametrize("call", [
    lambda v: v.get_attr("config", indices=[3]),
    lambda v: v.env_method("get_images", indices=[0, 5]),
    lambda v: v.set_attr("np_random", np.random.default_rng(0), indices=[-4]),
])
def test_indices_out_of_range_fail(vec: VecTradingEnv, call) -> None:
    with pytest.raises(IndexError, match="3 envs"):
        call(vec)


def test_set_attr_on_some_envs_of_the_shared_simulator_fails_instead_of_changing_all(vec: VecTradingEnv) -> None:
    with pytest.raises(ValueError, match="indices=None"):
        vec.set_attr("full_info", True, indices=[0])
    assert vec.full_info is False
    vec.set_attr("full_info", True, indices=[0, 1, 2])
    assert vec.get_attr("full_info") == [True, True, True]
    vec.set_attr("full_info", False)
    fresh = np.random.default_rng(7)
    vec.set_attr("np_random", fresh, indices=1)
    assert vec.get_attr("np_random", indices=1)[0] is fresh and vec.get_attr("np_random", indices=0)[0] is not fresh
