"""Environment speed and memory benchmark (run by hand; results go in the README).

    python bench/env_speed.py [--bars 1000000] [--peer-bars 100000] [--no-peers] [--data PATH] [--quick]

Single-thread rates are steps per second of CPU time of the measuring process (`time.process_time`,
peers too), so other jobs on a shared machine do not distort the ratios.

Measures on real BTC/USDT minute bars (../shared/data; falls back to the shipped one-week sample
tiled with continuing timestamps, and says so):
  1. single TradingEnv steps/s with random actions, every realism feature on (full info every step, and
     ``step_info=False``);
  2. VecTradingEnv aggregate steps/s at n_envs 1, 16, 256 (default infos), and at 256 with the main
     job's observation (conf/features/default.yaml: 32 x 31 + 4 floats), copied and double-buffered,
     against the gather-only copy ceiling (a step that only copied its observation windows), and with
     the compact observation of the same features (`COMPACT`: 8 bars + means over 8 and 32 bars);
  3. PPO and SAC ``learn`` frames/s of the main job (conf/agent/ppo.yaml / sac.yaml, 8 envs) with SB3's
     VecMonitor + VecNormalize and with the statistics inside VecTradingEnv (agents/train.py uses the
     latter for PPO; SAC keeps SB3's wrappers, whose VecNormalize hands the replay buffer the original
     rewards); PPO rollout collection: our VecTradingEnv vs. a do-nothing VecEnv with the same spaces;
  4. memory per bar beyond the feature matrix;
  5. gym-anytrading and Gym-Trading-Env on the same bars, each in its own subprocess of a separate
     venv (`make bench` builds .venv-peers: gym-trading-env pins ccxt 3.0.59; importing it turns every
     warning into an error), and the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED_1M = REPO.parent / "shared" / "data" / "binance_BTCUSDT_1m.parquet"
SAMPLE_1M = REPO / "data" / "sample" / "btcusdt_1m_2024-06-01_07.parquet"

REALISM = dict(
    window_size=32, taker_fee=0.0005, slippage_model="volatility", slippage_coef=0.1, max_leverage=3.0,
    funding_rate=0.0001, maintenance_margin_rate=0.005, stop_loss=0.02, take_profit=0.04, trailing_stop=0.015,
)
#: the compact observation (envs.sim.observation) measured beside the wide one
COMPACT = dict(observation="compact")  # the main job's: 8 bars + means over 8 and 32 bars (window_size)


def load_bars(n: int, path: str | Path = SHARED_1M) -> tuple[pd.DataFrame, str]:
    """n real minute bars, and a note on where they came from."""
    if Path(path).exists():
        df = pd.read_parquet(path).iloc[:n].reset_index(drop=True)
        return df, f"{len(df):,} BTC/USDT 1m bars from {path}"
    base = pd.read_parquet(SAMPLE_1M)
    reps = -(-n // len(base))
    parts = []
    for r in range(reps):
        part = base.copy()
        part["timestamp"] = part["timestamp"] + r * (len(base) * 60_000)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True).iloc[:n]
    return df, f"{len(df):,} bars: the shipped 1-week sample tiled (../shared/data absent)"


def bench_single(df: pd.DataFrame, steps: int, step_info: bool = True) -> float:
    from envs import EnvConfig, TradingEnv

    env = TradingEnv(df, EnvConfig(**REALISM), step_info=step_info)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 1)).astype(np.float32)
    for a in actions[:1000]:  # warm-up (numba cache load)
        env.step(a)
    env.reset(seed=0)
    t0 = time.process_time()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.process_time() - t0)


def main_job_bars(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the main job's feature columns (conf/features/default.yaml) appended."""
    from omegaconf import OmegaConf

    from envs.features.pipeline import FeatureConfig, build_features

    preset = REPO / "conf" / "features" / "default.yaml"
    cfg = FeatureConfig.from_mapping(OmegaConf.to_container(OmegaConf.load(preset)))  # type: ignore[arg-type]
    return build_features(df, cfg)


def bench_vec(df: pd.DataFrame, n_envs: int, seconds: float = 3.0, double_buffer_obs: bool = False,
              **overrides: object) -> float:
    from envs import EnvConfig, VecTradingEnv

    vec = VecTradingEnv(df, EnvConfig(**{**REALISM, **overrides}, episode_length=10_000), n_envs=n_envs, seed=0,
                        double_buffer_obs=double_buffer_obs)
    vec.reset()
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (n_envs, 1)).astype(np.float32) for _ in range(64)]
    for a in actions:
        vec.step(a)
    n = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        for a in actions:
            vec.step(a)
        n += len(actions)
    return n * n_envs / (time.process_time() - t0)


def compact_obs_dim(df: pd.DataFrame) -> int:
    """Floats in the compact observation (`COMPACT`) of ``df``'s features."""
    from envs import EnvConfig
    from envs.market.market_data import MarketData
    from envs.sim.observation import observation_size

    return observation_size(EnvConfig(**{**REALISM, **COMPACT}), len(MarketData.load(df.iloc[:64]).feature_names))


def copy_ceiling(df: pd.DataFrame, n_envs: int, seconds: float = 3.0) -> tuple[float, int]:
    """(steps/s, obs floats) if a batch step did nothing but gather each env's observation window.

    The same windows a `VecTradingEnv` step copies (random start bars in the full feature matrix,
    advancing one bar per step), one contiguous block each, into an (n_envs, obs_dim) batch.
    """
    import numba

    from envs import EnvConfig, TradingEnv

    feats = TradingEnv(df, EnvConfig(**REALISM)).sim.features
    w = REALISM["window_size"]
    assert isinstance(w, int)

    @numba.njit(cache=False)
    def gather(starts: np.ndarray, flat: np.ndarray, out: np.ndarray, m: int, nf: int) -> None:
        for i in range(starts.shape[0]):
            s = starts[i] * nf
            out[i, :m] = flat[s:s + m]

    nf = feats.shape[1]
    flat = feats.reshape(-1)
    out = np.zeros((n_envs, w * nf + 4), np.float32)
    starts = np.random.default_rng(0).integers(0, len(feats) - w - 10_000, n_envs)
    gather(starts, flat, out, w * nf, nf)
    n = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        for _ in range(64):
            starts += 1
            gather(starts, flat, out, w * nf, nf)
        n += 64
        if starts.max() > len(feats) - w - 100:
            starts[:] = 0
    return n * n_envs / (time.process_time() - t0), out.shape[1]


def bench_ppo_rollout(df: pd.DataFrame, n_envs: int = 16, n_steps: int = 512, repeats: int = 7) -> tuple[float, float]:
    """Frames/s of PPO.collect_rollouts with VecTradingEnv and with a do-nothing VecEnv."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    from envs import EnvConfig, VecTradingEnv

    torch.set_num_threads(1)

    class NullVecEnv(VecEnv):
        def __init__(self, like: VecEnv) -> None:
            super().__init__(like.num_envs, like.observation_space, like.action_space)
            self._obs = np.zeros((like.num_envs, *like.observation_space.shape), dtype=np.float32)

        def reset(self):  # noqa: D102
            return self._obs.copy()

        def step_async(self, actions):  # noqa: D102
            pass

        def step_wait(self):  # noqa: D102
            return self._obs.copy(), np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool), [
                {} for _ in range(self.num_envs)]

        def close(self): ...  # noqa: D102

        def get_attr(self, attr_name, indices=None): return [None] * self.num_envs  # noqa: D102

        def set_attr(self, attr_name, value, indices=None): ...  # noqa: D102

        def env_method(self, *a, **k): return [None] * self.num_envs  # noqa: D102

        def env_is_wrapped(self, wrapper_class, indices=None): return [False] * self.num_envs  # noqa: D102

    ours = VecTradingEnv(df, EnvConfig(**REALISM, episode_length=10_000), n_envs=n_envs, seed=0)
    runs = []
    for venv in (ours, NullVecEnv(ours)):
        model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=256, device="cpu", seed=0)
        _, callback = model._setup_learn(total_timesteps=10**9, callback=None)
        callback.on_training_start(locals(), globals())
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)  # warm-up
        runs.append((model, callback))
    best = [0.0, 0.0]
    for _ in range(repeats):  # alternate the two, so background load hits both alike; keep the best of each
        for k, (model, callback) in enumerate(runs):
            t0 = time.process_time()
            model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)
            best[k] = max(best[k], n_steps * n_envs / (time.process_time() - t0))
    return best[0], best[1]


def _best_learn_rates(models: list[Any], steps: int, repeats: int) -> tuple[float, float]:
    """Best ``learn`` frames/s (process CPU time) of each of two models over ``repeats`` alternating rounds."""
    best = [0.0, 0.0]
    for _ in range(repeats):
        for k, m in enumerate(models):
            t0 = time.process_time()
            m.learn(steps, reset_num_timesteps=False)
            best[k] = max(best[k], steps / (time.process_time() - t0))
    return best[0], best[1]


def bench_ppo_main_job(wide: pd.DataFrame, steps: int = 8192, repeats: int = 3) -> tuple[float, float]:
    """PPO frames/s (``learn``: rollouts and updates) with the main job's agent, envs and observation.

    Returns (SB3's VecNormalize(VecMonitor(VecTradingEnv)) as before, the statistics inside
    VecTradingEnv with double-buffered observations as agents/train.py now builds it).
    """
    import torch
    from omegaconf import OmegaConf
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from agents.config import AgentConfig
    from agents.sb3 import policy_kwargs
    from envs import EnvConfig, VecTradingEnv
    from envs.sim.vec_env import NormalizeConfig

    torch.set_num_threads(1)
    agent = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "agent" / "ppo.yaml"))
    assert isinstance(agent, dict)
    kwargs = dict(agent["algo_kwargs"])
    pk = policy_kwargs(AgentConfig(policy_kwargs=agent["policy_kwargs"]))
    cfg = EnvConfig(**REALISM, episode_length=10_000)
    sb3 = VecNormalize(VecMonitor(VecTradingEnv(wide, cfg, n_envs=8, seed=0)), norm_obs=False, gamma=kwargs["gamma"])
    ours = VecTradingEnv(wide, cfg, n_envs=8, seed=0, double_buffer_obs=True, episode_stats=True,
                         normalize=NormalizeConfig(gamma=kwargs["gamma"]))
    models = [PPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs=pk, **kwargs) for venv in (sb3, ours)]
    for m in models:
        m.learn(kwargs["n_steps"] * 8)  # warm-up
    return _best_learn_rates(models, steps, repeats)


def bench_sac_main_job(wide: pd.DataFrame, steps: int = 4096, repeats: int = 3,
                       learning_starts: int | None = None) -> tuple[float, float]:
    """SAC frames/s (``learn``: env steps and gradient steps) with conf/agent/sac.yaml, 8 envs, the main job's
    observation (continuous actions).

    Returns (SB3's VecNormalize(VecMonitor(VecTradingEnv)), the statistics inside VecTradingEnv), both
    with double-buffered observations. agents/train.py keeps SB3's wrappers for SAC: SB3 hands the
    replay buffer the original rewards only through a ``VecNormalize`` instance. ``learning_starts``
    replaces the preset's (a shorter warm-up for a smoke run).
    """
    import torch
    from omegaconf import OmegaConf
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from agents.config import AgentConfig
    from agents.sb3 import policy_kwargs
    from envs import EnvConfig, VecTradingEnv
    from envs.sim.vec_env import NormalizeConfig

    torch.set_num_threads(1)
    agent = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "agent" / "sac.yaml"))
    assert isinstance(agent, dict)
    kwargs = dict(agent["algo_kwargs"])
    if learning_starts is not None:
        kwargs["learning_starts"] = learning_starts
    pk = policy_kwargs(AgentConfig(name="sac", policy_kwargs=agent["policy_kwargs"]))
    cfg = EnvConfig(**REALISM, episode_length=10_000)
    sb3 = VecNormalize(VecMonitor(VecTradingEnv(wide, cfg, n_envs=8, seed=0, double_buffer_obs=True)),
                       norm_obs=False, gamma=kwargs["gamma"])
    ours = VecTradingEnv(wide, cfg, n_envs=8, seed=0, double_buffer_obs=True, episode_stats=True,
                         normalize=NormalizeConfig(gamma=kwargs["gamma"]))
    models = [SAC("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs=pk, **kwargs) for venv in (sb3, ours)]
    for m in models:
        m.learn(kwargs["learning_starts"] + 512)  # warm-up: past the random-action start, updates running
    return _best_learn_rates(models, steps, repeats)


def memory_per_bar(df: pd.DataFrame) -> tuple[float, float]:
    """(bytes per bar beyond the observation feature matrix, feature matrix bytes per bar)."""
    from envs import EnvConfig, TradingEnv

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    env = TradingEnv(df, EnvConfig(**REALISM))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    feats = env.sim.features.nbytes
    return (retained - feats) / len(df), feats / len(df)


PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
df = pd.read_parquet(sys.argv[2])
steps = int(sys.argv[3])
name = sys.argv[1]
rng = np.random.default_rng(0)
if name == "gym-anytrading":
    import gymnasium as gym, gym_anytrading  # noqa: F401
    frame = df.rename(columns=str.capitalize)
    env = gym.make("stocks-v0", df=frame, window_size=32, frame_bound=(32, len(frame))).unwrapped
elif name == "gym-trading-env":
    import gymnasium as gym, gym_trading_env  # noqa: F401
    frame = df.copy()
    frame.index = pd.to_datetime(frame.timestamp, unit="ms")
    frame["feature_close"] = frame.close.pct_change().fillna(0)
    frame["feature_volume"] = frame.volume / frame.volume.max()
    env = gym.make("TradingEnv", df=frame, positions=[-1, 0, 1], trading_fees=0.0005,
                   borrow_interest_rate=0.0001, windows=32, verbose=0).unwrapped
env.reset(seed=0)
n = env.action_space.n
acts = rng.integers(0, n, steps)
t0 = time.process_time()
for a in acts:
    _, _, term, trunc, _ = env.step(int(a))
    if term or trunc:
        env.reset()
print(json.dumps({"steps_per_s": steps / (time.process_time() - t0)}))
"""


def bench_peer(name: str, path: Path, steps: int, python: str) -> float | None:
    proc = subprocess.run([python, "-c", PEER_SCRIPT, name, str(path), str(steps)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"  {name}: not measured ({proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'});"
              " create the peers' venv with: make bench")
        return None
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["steps_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--peer-bars", type=int, default=100_000)
    parser.add_argument("--single-steps", type=int, default=500_000)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="short measurements of the wide observation and PPO main job (a smoke run, not for the README)")
    parser.add_argument("--data", default=str(SHARED_1M), help="Parquet file of 1m bars (default: ../shared/data)")
    parser.add_argument("--peer-python", default=str(REPO / ".venv-peers" / "bin" / "python"),
                        help="python of a venv with gym-anytrading and gym-trading-env (they pin an old ccxt)")
    args = parser.parse_args()

    df, note = load_bars(args.bars, args.data)
    print(f"data: {note}")
    rows = []
    single = bench_single(df, args.single_steps)
    rows.append(("TradingEnv (1 env, all realism on)", single))
    lean = bench_single(df, args.single_steps, step_info=False)
    rows.append(("TradingEnv (1 env, all realism on), step_info=False", lean))
    for n in (1, 16, 256):
        rows.append((f"VecTradingEnv n_envs={n} (aggregate)", bench_vec(df, n)))
    wide = main_job_bars(df)
    secs = 0.5 if args.quick else 3.0
    wide_rates = [bench_vec(wide, 256, secs, double) for double in (False, True)]
    rows.append(("VecTradingEnv n_envs=256, main job's observation", wide_rates[0]))
    rows.append(("VecTradingEnv n_envs=256, main job's observation, double_buffer_obs=True", wide_rates[1]))
    compact_rate = bench_vec(wide, 256, secs, True, **COMPACT)
    rows.append((f"VecTradingEnv n_envs=256, main job's features, compact observation ({compact_obs_dim(wide)} floats), "
                 "double_buffer_obs=True", compact_rate))
    ceiling, obs_dim = copy_ceiling(wide, 256, secs)
    rows.append((f"copy ceiling: gather only, 256 windows of the main job's observation ({obs_dim} floats)", ceiling))
    ppo_sb3, ppo_ours = bench_ppo_main_job(wide, 2048, 1) if args.quick else bench_ppo_main_job(wide)
    rows.append(("PPO learn, main job (8 envs, 996-float obs), SB3 VecMonitor + VecNormalize [frames/s]", ppo_sb3))
    rows.append(("PPO learn, main job, statistics inside VecTradingEnv [frames/s]", ppo_ours))
    sac_sb3, sac_ours = bench_sac_main_job(wide, 512, 1, 256) if args.quick else bench_sac_main_job(wide)
    rows.append(("SAC learn, main job (8 envs, 996-float obs), SB3 VecMonitor + VecNormalize [frames/s]", sac_sb3))
    rows.append(("SAC learn, main job, statistics inside VecTradingEnv [frames/s]", sac_ours))
    ours, null = bench_ppo_rollout(df)
    rows.append(("PPO collect_rollouts, VecTradingEnv x16", ours))
    rows.append(("PPO collect_rollouts, do-nothing VecEnv x16", null))
    extra, feats = memory_per_bar(df)
    peers: dict[str, float | None] = {}
    if not args.no_peers and not Path(args.peer_python).exists():
        print(f"peers not measured: {args.peer_python} not found. Add them with `make bench` (builds .venv-peers "
              "with gym-anytrading and gym-trading-env, which pin an old ccxt) or pass --peer-python <python of a "
              "venv that has them>; --no-peers skips them")
    elif not args.no_peers:
        peer_path = Path(tempfile.gettempdir()) / "quantgym_peer_bars.parquet"
        df.iloc[: args.peer_bars].to_parquet(peer_path)
        for name in ("gym-anytrading", "gym-trading-env"):
            peers[name] = bench_peer(name, peer_path, min(args.peer_bars - 100, 200_000), args.peer_python)
            if peers[name]:
                rows.append((f"{name} (subprocess, {args.peer_bars:,} bars)", peers[name]))

    print("\n| what | steps/s |\n|---|---:|")
    for what, sps in rows:
        print(f"| {what} | {sps:,.0f} |")
    print(f"\nPPO main job with the statistics inside the env vs SB3's wrappers: {ppo_ours / ppo_sb3:.3f}x")
    print(f"SAC main job with the statistics inside the env vs SB3's wrappers: {sac_ours / sac_sb3:.3f}x")
    print(f"256 envs, compact vs main job's observation (double-buffered): {compact_rate / wide_rates[1]:.2f}x")
    print(f"256 envs, main job's observation: {wide_rates[0]:,.0f} (copy) / {wide_rates[1]:,.0f} (double-buffered) "
          f"steps/s = {wide_rates[0] / ceiling:.0%} / {wide_rates[1] / ceiling:.0%} of the gather-only ceiling "
          f"{ceiling:,.0f}")
    print(f"\nPPO rollout overhead of our env vs do-nothing env: {100 * (1 - ours / null):.1f} %")
    print(f"memory: {extra:.0f} bytes/bar beyond the feature matrix ({feats:.0f} bytes/bar of features)")
    for name, sps in peers.items():
        if sps:
            print(f"TradingEnv / {name}: {single / sps:.2f}x (step_info=False: {lean / sps:.2f}x)")


if __name__ == "__main__":
    main()
