"""The paper broker runs the kernel on a tail of the bars: shifting bar indices into tail rows is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agents.paper.broker import from_rows, initial_state, to_rows
from agents.paper.market import simulation_of
from envs.market.market_data import MarketData
from envs.sim import kernel as K
from envs.sim.config import EnvConfig


def test_kernel_on_a_sliding_tail_equals_the_kernel_on_all_bars(sample_1h: pd.DataFrame) -> None:
    # stops, trailing stop and take-profit depend on the entry bar; the observation on bars since entry
    cfg = EnvConfig(window_size=8, max_leverage=2.0, stop_loss=0.01, trailing_stop=0.015, take_profit=0.02,
                    slippage_model="fixed_bps", slippage_bps=3.0, episode_length=None)
    md = MarketData.load(sample_1h.iloc[:600].reset_index(drop=True))
    sim = simulation_of(md, cfg, None)
    rng = np.random.default_rng(0)
    w = cfg.window_size
    full = np.zeros((K.S_ROWS, 1))
    K.reset_env(0, w - 1, full, sim.market, sim.params)
    state = initial_state(sim, w - 1, 0)
    assert np.array_equal(state, full[:, 0])
    obs_full = np.zeros((1, sim.obs_dim), np.float32)
    obs_tail = np.zeros((1, sim.obs_dim), np.float32)
    exits = 0
    for t in range(w - 1, len(md) - 1):
        a = float(rng.uniform(-1, 1))
        offset = max(0, t - w - int(rng.integers(0, 40)))  # the tail starts somewhere before the window
        market = np.ascontiguousarray(sim.market[offset:])
        feats = np.ascontiguousarray(sim.features[offset:])
        s = to_rows(state, offset)
        K.write_obs(0, s, market, feats, sim.params, obs_tail)
        K.write_obs(0, full, sim.market, sim.features, sim.params, obs_full)
        assert np.array_equal(obs_tail, obs_full), t
        pos_before = full[K.S_POS, 0]
        K.step_env(0, a, s, market, sim.params, sim.levels)
        K.step_env(0, a, full, sim.market, sim.params, sim.levels)
        state = from_rows(s, offset)
        # all but the truncation flag, which compares the row with the matrix length (the end of the data);
        # paper mode ignores it: a session ends when its feed does
        assert np.array_equal(np.delete(state, K.S_TRUNCATED), np.delete(full[:, 0], K.S_TRUNCATED)), t
        exits += int(pos_before != 0.0 and full[K.S_TRADED_QTY, 0] != 0.0 and full[K.S_ENTRY_T, 0] != t + 1)
    assert full[K.S_N_TRADES, 0] > 50 and exits > 0
