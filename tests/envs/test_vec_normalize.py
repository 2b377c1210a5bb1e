"""Episode statistics and normalisation inside VecTradingEnv equal SB3's VecNormalize(VecMonitor(env))."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from envs import EnvConfig, VecTradingEnv
from envs.sim.vec_env import NormalizeConfig

CFG = EnvConfig(window_size=8, episode_length=40, max_leverage=3.0, stop_loss=0.02, take_profit=0.03,
                slippage_model="volatility", slippage_coef=0.3, funding_rate=0.0003, max_drawdown=0.05)


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    return sample_1h.iloc[:700].reset_index(drop=True)


def _pair(bars: pd.DataFrame, norm_obs: bool) -> tuple[VecTradingEnv, VecNormalize]:
    ours = VecTradingEnv(bars, CFG, n_envs=3, seed=9, episode_stats=True,
                         normalize=NormalizeConfig(norm_obs=norm_obs, gamma=0.95, clip_reward=5.0))
    ref = VecNormalize(VecMonitor(VecTradingEnv(bars, CFG, n_envs=3, seed=9)), norm_obs=norm_obs, norm_reward=True,
                       gamma=0.95, clip_reward=5.0)
    return ours, ref


@pytest.mark.parametrize("norm_obs", [False, True])
def test_same_stream_as_sb3_vecmonitor_and_vecnormalize(bars: pd.DataFrame, norm_obs: bool) -> None:
    ours, ref = _pair(bars, norm_obs)
    assert np.array_equal(ours.reset(), ref.reset())
    rng = np.random.default_rng(2)
    n_episodes = 0
    for k in range(260):
        if k == 180:  # evaluation mode: statistics frozen, still applied
            ours.training = ref.training = False
        actions = rng.uniform(-1, 1, (3, 1)).astype(np.float32) * 3
        o1, r1, d1, i1 = ours.step(actions)
        o2, r2, d2, i2 = ref.step(actions)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        assert r1.dtype == r2.dtype == np.float32
        for a, b in zip(i1, i2, strict=True):
            assert a.keys() == b.keys()
            if "episode" in a:
                n_episodes += 1
                assert a["episode"]["r"] == b["episode"]["r"] and a["episode"]["l"] == b["episode"]["l"]
                assert type(a["episode"]["r"]) is type(b["episode"]["r"])
                assert type(a["episode"]["l"]) is type(b["episode"]["l"])
                assert np.array_equal(a["terminal_observation"], b["terminal_observation"])
        assert np.array_equal(ours.get_original_obs(), ref.get_original_obs())
        assert np.array_equal(ours.get_original_reward(), ref.get_original_reward())
    assert n_episodes >= 6
    assert ours.ret_rms.count == ref.ret_rms.count and ours.ret_rms.var == ref.ret_rms.var
    if norm_obs:
        assert np.array_equal(ours.obs_rms.mean, ref.obs_rms.mean) and np.array_equal(ours.obs_rms.var, ref.obs_rms.var)


def test_statistics_round_trip_through_sb3_vecnormalize_files(bars: pd.DataFrame, tmp_path: Path) -> None:
    ours, ref = _pair(bars, norm_obs=True)
    ours.reset()
    ref.reset()
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
        ours.step(a)
        ref.step(a)
    ours.save_normalization(tmp_path / "ours.pkl")
    ref.save(str(tmp_path / "sb3.pkl"))  # what older runs wrote
    loaded_by_sb3 = VecNormalize.load(str(tmp_path / "ours.pkl"), VecTradingEnv(bars, CFG, n_envs=3))
    fresh = VecTradingEnv(bars, CFG, n_envs=3, normalize=NormalizeConfig(norm_obs=True, gamma=0.95, clip_reward=5.0))
    fresh.load_normalization(tmp_path / "sb3.pkl")
    for stats in (loaded_by_sb3, fresh):
        assert stats.ret_rms.var == ref.ret_rms.var and stats.ret_rms.count == ref.ret_rms.count
        assert np.array_equal(stats.obs_rms.mean, ref.obs_rms.mean)
        assert np.array_equal(stats.obs_rms.var, ref.obs_rms.var)
    other = VecTradingEnv(bars, CFG, n_envs=3, normalize=NormalizeConfig(norm_obs=True, gamma=0.99))
    with pytest.raises(ValueError, match=r"gamma=0.95 there, 0.99 here.*clip_reward|clip_reward.*gamma"):
        other.load_normalization(tmp_path / "sb3.pkl")


def test_normalize_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="gamma"):
        NormalizeConfig(gamma=0.0)
    with pytest.raises(ValueError, match="clip_obs"):
        NormalizeConfig(clip_obs=-1.0)


def test_ppo_trains_identically_with_in_env_statistics_and_with_sb3_wrappers(bars: pd.DataFrame) -> None:
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    ours, ref = _pair(bars, norm_obs=False)
    runs = []
    for venv in (ours, ref):
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, gamma=0.95, seed=0, device="cpu")
        model.learn(total_timesteps=192)
        episodes = [(e["r"], e["l"]) for e in model.ep_info_buffer]
        runs.append(([p.detach().clone() for p in model.policy.parameters()], episodes))
    assert runs[0][1] == runs[1][1] and len(runs[0][1]) >= 6
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
