"""VecTradingEnv runs the same rules as n TradingEnvs, bit for bit, and follows SB3's VecEnv contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs import EnvConfig, TradingEnv, VecTradingEnv
from envs.sim.simulation import INFO_KEYS


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    return sample_1h.iloc[:2000].reset_index(drop=True)


# stops, funding, volatility slippage, leverage, liquidation risk and short episodes (auto-resets)
CFG = EnvConfig(
    window_size=8, episode_length=60, max_leverage=5.0, stop_loss=0.02, take_profit=0.03,
    trailing_stop=0.015, slippage_model="volatility", slippage_coef=0.3, funding_rate=0.0003,
    funding_interval_h=8.0, maintenance_margin_rate=0.05, lot_size=0.0001, max_drawdown=0.5,
)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_vec_env_is_bit_identical_to_separate_envs(bars: pd.DataFrame, mode: str) -> None:
    cfg = EnvConfig(**{**{f: getattr(CFG, f) for f in CFG.__slots__}, "action_mode": mode})
    n, seed, steps = 5, 123, 400
    vec = VecTradingEnv(bars, cfg, n_envs=n, seed=seed)
    singles = [TradingEnv(bars, cfg) for _ in range(n)]
    vec_obs = vec.reset()
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        assert np.array_equal(obs, vec_obs[i])
        assert info == vec.reset_infos[i]
    rng = np.random.default_rng(0)
    n_resets = 0
    n_stops_or_liq = 0
    funding_seen = False
    for _ in range(steps):
        if mode == "discrete":
            actions = rng.integers(0, len(cfg.exposure_levels), size=n)
        else:
            actions = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
        vec_obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            assert np.float32(reward) == rewards[i]
            assert dones[i] == (terminated or truncated)
            if dones[i]:
                n_resets += 1
                for key in INFO_KEYS:
                    assert infos[i][key] == info[key], key
                assert infos[i]["episode_summary"] == info["episode_summary"]
                assert np.array_equal(infos[i]["terminal_observation"], obs)
                assert infos[i]["TimeLimit.truncated"] == (truncated and not terminated)
                obs, info = env.reset()
            assert np.array_equal(obs, vec_obs[i])
            assert vec.account["equity"][i] == info["equity"]
            assert vec.account["position"][i] == info["position"]
            assert vec.account["n_fills"][i] == info["n_fills"]
            assert vec.account["timestamp"][i] == info["timestamp"]
            # flat after a step whose target was not flat: a stop, take-profit or liquidation exit
            target = cfg.exposure_levels[int(actions[i])] if mode == "discrete" else float(actions[i][0]) * 5.0
            n_stops_or_liq += int(info["position"] == 0.0 and abs(target) > 0.05 and not dones[i])
            funding_seen |= info["funding_paid"] != 0.0
    assert n_resets >= n  # auto-resets were exercised
    assert funding_seen
    assert n_stops_or_liq > 0  # exits inside bars were exercised


def test_full_info_carries_every_key(bars: pd.DataFrame) -> None:
    vec = VecTradingEnv(bars, EnvConfig(window_size=4), n_envs=3, seed=0, full_info=True)
    vec.reset()
    _, rewards, dones, infos = vec.step(np.zeros((3, 1), dtype=np.float32))
    assert rewards.dtype == np.float32 and dones.dtype == bool
    for info in infos:
        assert set(INFO_KEYS) <= set(info)


def test_default_infos_are_empty_until_episode_end(bars: pd.DataFrame) -> None:
    vec = VecTradingEnv(bars, EnvConfig(window_size=4, episode_length=3), n_envs=2, seed=0)
    vec.reset()
    for step in range(3):
        _, _, dones, infos = vec.step(np.zeros((2, 1), dtype=np.float32))
        if step < 2:
            assert infos == [{}, {}] and not dones.any()
    assert dones.all()
    assert all(info["TimeLimit.truncated"] for info in infos)


def test_sb3_ppo_learns_on_vec_env_for_a_few_steps(bars: pd.DataFrame) -> None:
    from stable_baselines3 import PPO

    vec = VecTradingEnv(bars, EnvConfig(window_size=8, episode_length=64), n_envs=4, seed=0)
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256


def test_bad_n_envs_is_rejected(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="n_envs"):
        VecTradingEnv(bars, EnvConfig(), n_envs=0)
