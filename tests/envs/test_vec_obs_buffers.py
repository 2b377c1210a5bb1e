"""Wide observations: the window copied as one block, and opt-in double-buffered batches that change nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from envs import EnvConfig, TradingEnv, VecTradingEnv

CFG = EnvConfig(window_size=8, episode_length=40, max_leverage=3.0, stop_loss=0.02, take_profit=0.03,
                slippage_model="volatility", slippage_coef=0.3, funding_rate=0.0003)


@pytest.fixture(scope="module")
def wide_bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    """Bars with 6 extra feature columns (10 observation features per bar)."""
    df = sample_1h.iloc[:800].reset_index(drop=True)
    rng = np.random.default_rng(0)
    for k in range(6):
        df[f"x{k}"] = rng.normal(size=len(df))
    return df


def test_observation_window_is_the_feature_rows_in_order(wide_bars: pd.DataFrame) -> None:
    env = TradingEnv(wide_bars, CFG)
    obs, _ = env.reset(seed=0)
    w, feats = CFG.window_size, env.sim.features
    assert feats.shape[1] == 10
    for a in np.linspace(-1, 1, 30, dtype=np.float32):
        t = env.bar_index
        assert np.array_equal(obs[: w * feats.shape[1]], feats[t - w + 1 : t + 1].reshape(-1))
        obs, _, terminated, truncated, _ = env.step(np.array([a]))
        if terminated or truncated:
            break


def _rollout(vec: VecTradingEnv, steps: int, keep_every: int) -> tuple[list, list]:
    rng = np.random.default_rng(1)
    out, kept = [vec.reset().copy()], []
    for k in range(steps):
        obs, rewards, dones, infos = vec.step(rng.uniform(-1, 1, (vec.num_envs, 1)).astype(np.float32))
        terminal = [info["terminal_observation"] for info in infos if "terminal_observation" in info]
        out.append((obs.copy(), rewards, dones, terminal))
        if keep_every and k % keep_every == 0:
            kept.append((obs, obs.copy()))
    return out, kept


def test_double_buffered_batches_equal_copies_and_kept_batches_never_change(wide_bars: pd.DataFrame) -> None:
    plain, _ = _rollout(VecTradingEnv(wide_bars, CFG, n_envs=3, seed=5), 120, 0)
    buffered, kept = _rollout(VecTradingEnv(wide_bars, CFG, n_envs=3, seed=5, double_buffer_obs=True), 120, 7)
    assert np.array_equal(plain[0], buffered[0])
    n_terminal = 0
    for (o1, r1, d1, t1), (o2, r2, d2, t2) in zip(plain[1:], buffered[1:], strict=True):
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        assert len(t1) == len(t2) and all(np.array_equal(a, b) for a, b in zip(t1, t2, strict=True))
        n_terminal += len(t1)
    assert n_terminal > 0  # auto-resets happened
    assert all(np.array_equal(obs, snapshot) for obs, snapshot in kept)


def test_double_buffered_batches_are_written_in_place(wide_bars: pd.DataFrame) -> None:
    vec = VecTradingEnv(wide_bars, CFG, n_envs=2, seed=0, double_buffer_obs=True)
    vec.reset()
    seen = set()
    for _ in range(20):
        obs, _, _, _ = vec.step(np.zeros((2, 1), np.float32))
        seen.add(obs.__array_interface__["data"][0])
    assert len(seen) == 2


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_training_with_double_buffered_observations_is_identical(wide_bars: pd.DataFrame, algo: str) -> None:
    from stable_baselines3 import PPO, SAC

    torch.set_num_threads(1)
    params = []
    for double in (False, True):
        vec = VecTradingEnv(wide_bars, CFG, n_envs=2, seed=0, double_buffer_obs=double)
        if algo == "ppo":
            model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
        else:
            model = SAC("MlpPolicy", vec, learning_starts=32, batch_size=32, buffer_size=1000, seed=0, device="cpu",
                        policy_kwargs={"net_arch": [32, 32]})
        model.learn(total_timesteps=192)
        params.append([p.detach().clone() for p in model.policy.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params, strict=True))
