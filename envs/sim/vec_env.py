"""`VecTradingEnv`: n trading envs stepped together in compiled code, as an SB3 `VecEnv`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pandas as pd
from gymnasium.utils import seeding
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim import kernel as K
from envs.sim.config import EnvConfig
from envs.sim.simulation import ACCOUNT_ROWS, RISK_INPUT_ROWS, ObservationBuffers, Simulation
from envs.sim.trading_env import check_actions, make_spaces

_NO_ENVS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class NormalizeConfig:
    """Running normalisation inside `VecTradingEnv`, with SB3 ``VecNormalize``'s semantics and defaults.

    Attributes:
        norm_obs: divide observations by the running std of each observation value (after
            subtracting its running mean), over every observation seen while training.
        norm_reward: divide rewards by the running std of the discounted return.
        clip_obs: clip normalised observations to ±clip_obs, > 0.
        clip_reward: clip normalised rewards to ±clip_reward, > 0.
        gamma: discount of the return whose std scales rewards, in (0, 1].
        epsilon: added to the variance before the square root, > 0.
    """

    norm_obs: bool = False
    norm_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    gamma: float = 0.99
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("clip_obs", "clip_reward", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"NormalizeConfig.{name}={getattr(self, name)!r} is invalid: must be > 0")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"NormalizeConfig.gamma={self.gamma!r} is invalid: must be in (0, 1]")


class VecTradingEnv(VecEnv):
    """A natively vectorized `TradingEnv` for Stable-Baselines3.

    Env i behaves exactly as ``TradingEnv(data, config)`` reset with ``seed + i``; each auto-reset
    draws its start from env i's own generator, as an unseeded ``reset()`` would. The rules run in
    the same compiled kernel as `TradingEnv` (one implementation), looping over envs.

    Per-step account state is exposed without building dicts: ``vec.account["equity"]`` etc. are
    (n_envs,) arrays (views, updated in place each step; after an auto-reset they show the new
    episode — the finished episode's last values are in that env's info). Infos are empty dicts
    except at episode ends, which carry every `TradingEnv` info key, ``episode_summary``,
    ``terminal_observation`` and ``TimeLimit.truncated``; ``full_info=True`` fills every info.

    Args:
        data: DataFrame, Parquet path or `MarketData` (shared by all envs, converted once).
        config: `EnvConfig`.
        n_envs: number of envs, >= 1.
        seed: base seed (env i uses seed + i); None = unseeded.
        full_info: build the complete info dict for every env every step (slower).
        normalizer: optional `FeatureNormalizer` fitted on a training split.
        double_buffer_obs: return each observation batch in one of two buffers the kernel writes in
            turn, instead of a copy (opt-in; saves a copy of n_envs x obs_dim floats per step). A batch
            is overwritten two steps later unless something outside still refers to it (then a new
            buffer takes its place, see `ObservationBuffers`), so a kept batch never changes. SB3's
            PPO and SAC copy each observation into their rollout / replay buffer within the step, so
            training gives identical results with and without it (tested).
        episode_stats: add ``info["episode"] = {"r": return, "l": length, "t": seconds since
            construction}`` at each episode's end, as SB3's ``VecMonitor`` (the raw rewards' sum, float32;
            length int32).
        normalize: running reward / observation normalisation as SB3's ``VecNormalize`` wrapped around
            a ``VecMonitor`` (statistics update only while ``training`` is True; ``get_original_obs``,
            ``get_original_reward``; terminal observations normalised too). Statistics are saved and
            loaded as an SB3 ``VecNormalize`` file (`save_normalization`, `load_normalization`).
    """

    def __init__(
        self,
        data: pd.DataFrame | str | MarketData,
        config: EnvConfig | None = None,
        n_envs: int = 1,
        seed: int | None = None,
        full_info: bool = False,
        normalizer: FeatureNormalizer | None = None,
        double_buffer_obs: bool = False,
        episode_stats: bool = False,
        normalize: NormalizeConfig | None = None,
    ) -> None:
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r} is invalid: must be an integer >= 1")
        self.sim = Simulation.build(data, config if config is not None else EnvConfig(), normalizer)
        self.config = self.sim.config
        action_space, observation_space = make_spaces(self.sim)
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(n_envs, observation_space, action_space)
        self.feature_names = self.sim.data.feature_names
        self.full_info = full_info
        self._rngs = [seeding.np_random(None if seed is None else seed + i)[0] for i in range(n_envs)]
        self._state = np.zeros((K.S_ROWS, n_envs), dtype=np.float64)
        self.double_buffer_obs = double_buffer_obs
        self._obs_buffers = ObservationBuffers((n_envs, self.sim.obs_dim))
        self._obs = self._obs_buffers.last
        self._actions = np.zeros(n_envs, dtype=np.float64)
        self._all = np.arange(n_envs, dtype=np.int64)
        self._timestamp = np.zeros(n_envs, dtype=np.int64)
        self._rewards = np.zeros(n_envs, dtype=np.float32)
        self._dones = np.zeros(n_envs, dtype=bool)
        self.account: dict[str, npt.NDArray[Any]] = {k: self._state[row] for k, row in ACCOUNT_ROWS.items()}
        self.account["timestamp"] = self._timestamp
        #: writable (n_envs,) views of the caller-set risk inputs (see `TradingEnv.risk_inputs`)
        self.risk_inputs: dict[str, npt.NDArray[np.float64]] = {k: self._state[row] for k, row in RISK_INPUT_ROWS.items()}
        self._n_levels = len(self.config.exposure_levels) if self.config.action_mode == "discrete" else 0
        self._ready = False
        self.episode_stats = episode_stats
        self._t_start = time.time()
        self._episode_returns = np.zeros(n_envs, dtype=np.float32)
        self._episode_lengths = np.zeros(n_envs, dtype=np.int32)
        self.normalize = normalize
        self.training = True
        self.obs_rms = RunningMeanStd(shape=(self.sim.obs_dim,)) if normalize and normalize.norm_obs else None
        self.ret_rms = RunningMeanStd(shape=())
        self.returns = np.zeros(n_envs)
        self.old_obs = np.zeros((0, self.sim.obs_dim), dtype=np.float32)
        self.old_reward = np.zeros(0, dtype=np.float32)
        self._plain = not (double_buffer_obs or episode_stats or normalize is not None)

    # --- VecEnv API -------------------------------------------------------------------------
    def reset(self) -> npt.NDArray[np.float32]:
        """Reset every env (seeds set through ``seed()`` apply once); returns stacked observations."""
        for i, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(s)[0]
        self._reset_seeds()
        self._reset_options()
        starts = np.array([self.sim.draw_start(rng) for rng in self._rngs], dtype=np.int64)
        if self.double_buffer_obs:
            self._obs = self._obs_buffers.next()
        K.reset_batch(self._all, starts, self._state, self.sim.market, self.sim.params, self.sim.features,
                      self.sim.timestamps, self._obs, self._timestamp)
        self.reset_infos = [self.sim.info(self._state, i) for i in range(self.num_envs)]
        self._ready = True
        obs = self._obs if self.double_buffer_obs else self._obs.copy()
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        if self.normalize is not None:
            self.old_obs = obs
            self.returns = np.zeros(self.num_envs)
            if self.training and self.obs_rms is not None:
                self.obs_rms.update(obs)
            obs = self.normalize_obs(obs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Store actions: (n,) ints for discrete, (n, 1) or (n,) floats for continuous.

        Raises:
            ValueError: an action outside the action space (a discrete index outside
                [0, len(exposure_levels)) or of a non-integer dtype; a NaN/inf continuous value);
                continuous values outside [-1, 1] are clipped by the kernel.
        """
        a = np.asarray(actions)
        if a.size != self.num_envs:
            raise ValueError(f"got {a.size} action(s) of shape {a.shape} for {self.num_envs} envs")
        a = a.reshape(self.num_envs)
        n = self._n_levels
        # fast paths (one reduction each); anything they do not clear gets the exact check, which raises
        if n:
            if not (a.dtype == np.int64 and int(a.view(np.uint64).max()) < n):  # negatives wrap to >= 2^63
                check_actions(a, n)
            self._actions[:] = a
        else:
            self._actions[:] = a
            if a.dtype.kind not in "fiu" or not math.isfinite(self._actions.sum()):  # NaN/inf (or overflow)
                check_actions(a, 0)

    def step_wait(self) -> VecEnvStepReturn:
        """Step all envs in one kernel call; auto-reset finished ones (SB3 convention)."""
        if not self._ready:
            raise RuntimeError("Call reset before using step method.")
        S, sim = self._state, self.sim
        if self.double_buffer_obs:
            self._obs = self._obs_buffers.next()
        n_done = K.step_batch(self._actions, S, sim.market, sim.params, sim.levels, sim.features, sim.timestamps,
                              self._obs, self._rewards, self._dones, self._timestamp)
        if self.full_info:
            infos = [sim.info(S, i) for i in range(self.num_envs)]
        else:
            infos = [{} for _ in range(self.num_envs)]
        done_idx = np.flatnonzero(self._dones) if n_done else _NO_ENVS
        if n_done:
            for i in done_idx:
                info = infos[i]
                if not self.full_info:
                    info.update(sim.info(S, int(i)))
                info["episode_summary"] = sim.episode_summary(S, int(i))
                info["terminal_observation"] = self._obs[i].copy()
                info["TimeLimit.truncated"] = bool(S[K.S_TRUNCATED, i] > 0.0 and not S[K.S_TERMINATED, i] > 0.0)
            starts = np.array([sim.draw_start(self._rngs[i]) for i in done_idx], dtype=np.int64)
            K.reset_batch(done_idx, starts, S, sim.market, sim.params, sim.features, sim.timestamps, self._obs,
                          self._timestamp)
        if self._plain:
            return self._obs.copy(), self._rewards.copy(), self._dones.copy(), infos
        obs = self._obs if self.double_buffer_obs else self._obs.copy()
        rewards, dones = self._rewards.copy(), self._dones.copy()
        if self.episode_stats:
            self._record_episodes(rewards, done_idx, infos)
        if self.normalize is not None:
            obs, rewards = self._normalize_step(obs, rewards, dones, done_idx, infos)
        return obs, rewards, dones, infos

    # --- episode statistics and normalisation (SB3's VecMonitor and VecNormalize, inside the env) --
    def _record_episodes(self, rewards: npt.NDArray[np.float32], done_idx: npt.NDArray[np.int64], infos: list[dict[str, Any]]) -> None:
        """``info["episode"]`` of each finished env, as SB3's ``VecMonitor``."""
        self._episode_returns += rewards
        self._episode_lengths += 1
        for i in done_idx:
            infos[i]["episode"] = {"r": self._episode_returns[i], "l": self._episode_lengths[i],
                                   "t": round(time.time() - self._t_start, 6)}
            self._episode_returns[i] = 0
            self._episode_lengths[i] = 0

    def _normalize_step(self, obs: npt.NDArray[np.float32], rewards: npt.NDArray[np.float32],
                        dones: npt.NDArray[np.bool_], done_idx: npt.NDArray[np.int64],
                        infos: list[dict[str, Any]]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Update the statistics (while training) and normalise, as SB3's ``VecNormalize.step_wait``."""
        assert self.normalize is not None
        self.old_obs = obs
        self.old_reward = rewards
        if self.training and self.obs_rms is not None:
            self.obs_rms.update(obs)
        obs = self.normalize_obs(obs)
        if self.training:
            self.returns = self.returns * self.normalize.gamma + rewards
            self.ret_rms.update(self.returns)
        rewards = self.normalize_reward(rewards)
        if self.obs_rms is not None:
            for i in done_idx:
                infos[i]["terminal_observation"] = self.normalize_obs(infos[i]["terminal_observation"])
        self.returns[dones] = 0
        return obs, rewards

    def normalize_obs(self, obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Observations normalised with the current statistics (no update); unchanged without ``norm_obs``."""
        if self.obs_rms is None or self.normalize is None:
            return obs
        cfg = self.normalize
        return np.clip((obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + cfg.epsilon), -cfg.clip_obs,
                       cfg.clip_obs).astype(np.float32)

    def normalize_reward(self, reward: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Rewards scaled by the current return statistics (no update), as float32."""
        cfg = self.normalize
        if cfg is not None and cfg.norm_reward:
            reward = np.clip(reward / np.sqrt(self.ret_rms.var + cfg.epsilon), -cfg.clip_reward, cfg.clip_reward)
        return reward.astype(np.float32)

    def get_original_obs(self) -> npt.NDArray[np.float32]:
        """The observations of the last step or reset before normalisation."""
        return self.old_obs.copy()

    def get_original_reward(self) -> npt.NDArray[np.float32]:
        """The rewards of the last step before normalisation."""
        return self.old_reward.copy()

    def save_normalization(self, path: str | Path) -> None:
        """Write the normalisation settings and statistics as an SB3 ``VecNormalize`` pickle.

        ``VecNormalize.load(path, venv)`` reads it, and so does `load_normalization`.
        """
        cfg = self._normalize_config("save_normalization")
        vn = VecNormalize(self, training=self.training, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward,
                          clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward, gamma=cfg.gamma, epsilon=cfg.epsilon)
        vn.ret_rms = self.ret_rms
        if self.obs_rms is not None:
            vn.obs_rms = self.obs_rms  # type: ignore[assignment]  # SB3 types it for dict spaces too
        vn.save(str(path))

    def load_normalization(self, path: str | Path) -> None:
        """Take the statistics of a saved SB3 ``VecNormalize`` (ours, or an older run's).

        Raises:
            ValueError: when the file's settings (norm_obs, norm_reward, clip_obs, clip_reward,
                gamma, epsilon) differ from this env's ``normalize``, naming them.
        """
        cfg = self._normalize_config("load_normalization")
        vn = VecNormalize.load(str(path), self)
        saved = {k: getattr(vn, k) for k in ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")}
        differ = {k: (v, getattr(cfg, k)) for k, v in saved.items() if v != getattr(cfg, k)}
        if differ:
            raise ValueError(
                f"{path} was saved with other normalisation settings: "
                + ", ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in differ.items())
                + "; use the run's own config (its .hydra/config.yaml) or start a new run"
            )
        self.ret_rms = vn.ret_rms
        if cfg.norm_obs:
            assert isinstance(vn.obs_rms, RunningMeanStd)  # a Box observation space
            self.obs_rms = vn.obs_rms

    def _normalize_config(self, what: str) -> NormalizeConfig:
        if self.normalize is None:
            raise ValueError(f"{what}: this VecTradingEnv has no normalisation (pass normalize=NormalizeConfig(...))")
        return self.normalize

    def close(self) -> None:
        """Nothing to release (no subprocesses)."""

    def _checked_indices(self, indices: VecEnvIndices) -> list[int]:
        """``indices`` as a list of env numbers, each in [0, num_envs) (negative ones count from the end)."""
        out = []
        for i in self._get_indices(indices):
            if not -self.num_envs <= int(i) < self.num_envs:
                raise IndexError(f"env index {i} is out of range: this VecTradingEnv has {self.num_envs} envs")
            out.append(int(i) % self.num_envs)
        return out

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attribute of each requested env: its own ``np_random``, else the (shared) simulator's."""
        if attr_name == "np_random":
            return [self._rngs[i] for i in self._checked_indices(indices)]
        return [getattr(self, attr_name) for _ in self._checked_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of every env (the simulator is shared, so setting it on some envs only fails)."""
        if attr_name == "np_random":
            for i in self._checked_indices(indices):
                self._rngs[i] = value
            return
        if sorted(set(self._checked_indices(indices))) != list(range(self.num_envs)):
            raise ValueError(f"set_attr({attr_name!r}, indices={indices!r}): the {self.num_envs} envs share one "
                             "simulator, so an attribute can only be set for all of them (indices=None)")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call a method of the shared simulator once per requested index."""
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._checked_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """No env is wrapped individually."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No rendering."""
        return [None for _ in range(self.num_envs)]
