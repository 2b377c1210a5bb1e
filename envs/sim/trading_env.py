"""`TradingEnv`: a single-asset Gymnasium trading environment with realistic execution."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import pandas as pd
from gymnasium import spaces

from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim import kernel as K
from envs.sim.config import EnvConfig
from envs.sim.simulation import (
    INFO_DTYPE,
    INFO_KEYS,
    INFO_TABLE,
    RISK_INPUT_ROWS,
    ObservationBuffers,
    Simulation,
)


def make_spaces(sim: Simulation) -> tuple[spaces.Space, spaces.Box]:
    """Action and observation spaces for a prepared simulation."""
    cfg = sim.config
    if cfg.action_mode == "discrete":
        action_space: spaces.Space = spaces.Discrete(len(cfg.exposure_levels))
    else:
        action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    clip = np.float32(cfg.obs_clip)
    observation_space = spaces.Box(-clip, clip, shape=(sim.obs_dim,), dtype=np.float32)
    return action_space, observation_space


def _bad_action(what: str, action: object, n_levels: int) -> ValueError:
    if n_levels:
        rule = (f"discrete actions are integer indices 0..{n_levels - 1} into env.exposure_levels "
                "(not bools, not floats)")
    else:
        rule = "continuous actions must be finite numbers (values outside [-1, 1] are clipped)"
    return ValueError(f"{what} {action!r} is outside the action space: {rule}")


def discrete_index(action: object, n_levels: int) -> int:
    """The level index of one discrete action (an int, numpy integer or 1-element integer array).

    Raises:
        ValueError: for bools, floats, non-integer arrays or an index outside [0, n_levels).
    """
    if isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
        a = int(action)
    else:
        arr = np.asarray(action)
        if arr.size != 1 or arr.dtype.kind not in "iu":
            raise _bad_action("action", action, n_levels)
        a = int(arr.reshape(-1)[0])
    if not 0 <= a < n_levels:
        raise _bad_action("action", action, n_levels)
    return a


def check_actions(actions: npt.NDArray[Any], n_levels: int) -> None:
    """Refuse a batch of actions outside the action space (one vectorized pass, no copy).

    Args:
        actions: (n_envs,) actions as given to `VecTradingEnv.step_async`.
        n_levels: number of discrete levels; 0 for continuous actions.

    Raises:
        ValueError: discrete: a non-integer dtype or an index outside [0, n_levels); continuous:
            a NaN/inf value. The message names the first offending env.
    """
    if n_levels:
        if actions.dtype.kind not in "iu":
            raise _bad_action(f"actions of dtype {actions.dtype} (first: env 0 =", actions.reshape(-1)[0], n_levels)
        bad = (actions < 0) | (actions >= n_levels)
    else:
        if actions.dtype.kind not in "fiu":
            raise _bad_action(f"actions of dtype {actions.dtype} (first: env 0 =", actions.reshape(-1)[0], 0)
        bad = ~np.isfinite(actions)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_action(f"env {i}: action", actions[i].item(), n_levels)


class TradingEnv(gym.Env):
    """Trade one asset from bars, with fees, slippage, sizing, leverage, funding, liquidation and stops.

    ## Description
    Each step the agent chooses a target exposure (position value / equity). The order is sized
    at the decision bar's close and filled at the next bar's open through the execution model.

    ## Timing (no lookahead)
    At step t the observation uses bars <= t only. Within bar t+1, in this order: the order fills
    at the open; stops, take-profit and liquidation are checked against the bar's range; funding
    is settled; the account is marked at the close. The reward measures close t -> close t+1.
    The first decision is at bar ``window_size - 1``; the episode is truncated when no next bar
    remains (or after ``episode_length`` steps).

    ## Action Space
    ``continuous``: ``Box(-1, 1, (1,), float32)``; exposure = a x max_leverage (max(a, 0) when
    long_only); values outside [-1, 1] are clipped to it, NaN/inf raise ``ValueError``.
    ``discrete``: ``Discrete(len(exposure_levels))``; exposure = the chosen level; anything but an
    integer index in [0, len(exposure_levels)) (a bool, a float such as 1.7, NaN, 3) raises
    ``ValueError``.
    Sizing (fixed / vol_target / risk_per_trade / kelly) then scales it, capped at ±max_leverage.

    ## Observation Space
    ``Box(-obs_clip, obs_clip, (window_size * F + 4,), float32)`` with ``observation="window"`` (the
    default, W = ``window_size``, K = 0), ``((compact_bars + len(config.summaries)) * F + 4,)`` with
    ``observation="compact"`` (W = ``compact_bars``, K = ``len(config.summaries)``, see `envs.sim.observation`):

    | index | observation |
    |---|---|
    | 0 .. W*F-1 | features of bars t-W+1 .. t, row-major (bar, feature); names in ``feature_names`` |
    | W*F .. (W+K)*F-1 | compact only: per summary window s, per feature, its mean over bars t-s+1 .. t |
    | (W+K)*F | exposure (signed position value / equity) |
    | (W+K)*F+1 | unrealised P&L / equity |
    | (W+K)*F+2 | bars since entry / window_size |
    | (W+K)*F+3 | drawdown from the equity peak (fraction) |

    ## Costs
    Taker fee on every fill (fraction of notional); slippage by model (none, fixed_bps, spread,
    volatility, sqrt_impact); tick rounding against the trader; funding for perpetuals; the
    liquidation fee on liquidation.

    ## Rewards
    ``log_return`` (log of equity ratio), ``differential_sharpe`` or ``sortino`` (Moody & Saffell),
    minus ``turnover_penalty`` x turnover and ``drawdown_penalty`` x drawdown.

    ## Risk controls
    ``config.risk`` (`RiskConfig`, all off by default) limits each decision at the close it is
    made (max exposure, max order notional, daily loss, drawdown halt, stale feed, expiry, kill
    switch); ``info["risk_state"]`` (0 ACTIVE, 1 REDUCING, 2 HALTED) and ``info["risk_reason"]``
    (index into ``envs.sim.kernel.RISK_REASONS``) say how the step's order was limited. The feed lag
    and the kill switch are inputs set through ``risk_inputs``.

    ## Episode End
    Terminated: equity <= 0 (reward computed on equity floored at 1e-6 x initial_cash) or drawdown
    beyond ``max_drawdown``. Truncated: end of data or ``episode_length`` steps.

    ## Arguments
    ``data``: DataFrame, Parquet path or `MarketData`; ``config``: `EnvConfig`;
    ``normalizer``: optional `FeatureNormalizer` fitted on a training split;
    ``step_info``: True (default) returns the full info dict every step; False returns an empty dict
    except at the episode's end (every key plus ``episode_summary``), which saves building a dict
    each step (about a third of a step); the values stay readable through `account`.

    ## Observation buffers
    ``step()`` and ``reset()`` return the env's own buffers, written in place by the kernel (no copy).
    An observation once returned never changes: the env writes into the buffer it returned two steps
    ago only if nothing else refers to it any more (a stored observation, or a view of one, keeps its
    buffer; the env then takes a new one).

    Example:
        >>> from envs import TradingEnv, EnvConfig
        >>> env = TradingEnv("data/sample/btcusdt_1h.parquet", EnvConfig(episode_length=100))
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        data: pd.DataFrame | str | MarketData,
        config: EnvConfig | None = None,
        normalizer: FeatureNormalizer | None = None,
        step_info: bool = True,
    ) -> None:
        self.step_info = step_info
        self.sim = Simulation.build(data, config if config is not None else EnvConfig(), normalizer)
        self.config = self.sim.config
        self.action_space, self.observation_space = make_spaces(self.sim)
        self.feature_names = self.sim.data.feature_names
        # workspace of the single-env kernel: state column, info record, the record's source table
        nk = len(INFO_KEYS)
        self._work = np.zeros(K.S_ROWS + 3 * nk, dtype=np.float64)
        self._work[K.S_ROWS + nk:] = INFO_TABLE.reshape(-1)
        self._state = self._work[:K.S_ROWS].reshape(K.S_ROWS, 1)  # a view
        self._record = self._work[K.S_ROWS:K.S_ROWS + nk].view(INFO_DTYPE).reshape(())
        self._params_levels = np.concatenate([self.sim.params, self.sim.levels])
        self._obs = ObservationBuffers((self.sim.obs_dim,))  # written in turn, see the class docstring
        self._act = np.zeros(1, dtype=np.float64)
        sim = self.sim
        self._step_args = (self._work, sim.market, self._params_levels, sim.features, sim.timestamps)
        self._step_kernel = K.compiled_entry(K.step_single, 0.0, *self._step_args, self._obs.last)
        self._idx0 = np.zeros(1, dtype=np.int64)
        self._start = np.zeros(1, dtype=np.int64)
        self._ts = np.zeros(1, dtype=np.int64)
        self._discrete = self.config.action_mode == "discrete"
        self._n_levels = len(self.config.exposure_levels)
        self._ready = False

    @property
    def bar_index(self) -> int:
        """Index (into the data) of the current decision bar t."""
        return int(self._state[K.S_T, 0])

    @property
    def step_notional(self) -> float:
        """Traded notional of the last step in quote currency (all fills, exits included)."""
        return float(self._state[K.S_STEP_NOTIONAL, 0])

    @property
    def risk_inputs(self) -> dict[str, npt.NDArray[np.float64]]:
        """Writable (1,) views of the kernel's caller-set risk inputs, read by the next ``step()``.

        ``"feed_lag"``: bars the newest bar is behind the feed's clock (0 in backtests; above
        ``config.risk.stale_after`` no order is sent); ``"kill"``: 1.0 engages the kill switch
        (flatten at the next open, HALTED), 0.0 releases it. ``reset()`` sets both to 0.
        """
        return {k: self._state[row] for k, row in RISK_INPUT_ROWS.items()}

    @property
    def account(self) -> dict[str, object]:
        """Current account state (same values as the last info)."""
        return self.sim.info(self._state, 0)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        """Start an episode (flat, ``initial_cash``); returns the first observation and info."""
        super().reset(seed=seed)
        self._start[0] = self.sim.draw_start(self.np_random)
        obs = self._obs.next()
        K.reset_batch(self._idx0, self._start, self._state, self.sim.market, self.sim.params,
                      self.sim.features, self.sim.timestamps, obs.reshape(1, -1), self._ts)
        self._ready = True
        return obs, self.sim.info(self._state, 0)

    def step(
        self, action: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Decide at the current close; fill, check exits and mark in the next bar.

        The returned observation is the env's own buffer, written in place by the kernel; it is never
        modified afterwards (a kept observation stays as returned, see `ObservationBuffers`). The info
        is a new dict of Python scalars every step (``step_info=False``: only at the episode's end).
        """
        if not self._ready:
            raise RuntimeError("Call reset before using step method (the episode has ended or not started).")
        if self._discrete:
            a = float(discrete_index(action, self._n_levels))
        else:
            if type(action) is np.ndarray and action.size == 1:
                a = float(action.item())
            else:
                self._act[:] = action  # list, scalar or other array shapes numpy broadcasts to (1,)
                a = float(self._act[0])
            if not math.isfinite(a):
                raise _bad_action("action", action, 0)
        obs = self._obs.next()
        reward, terminated, truncated = self._step_kernel(a, *self._step_args, obs)
        if terminated or truncated:
            info = dict(zip(INFO_KEYS, self._record.item(), strict=True))
            info["episode_summary"] = self.sim.episode_summary(self._state, 0)
            self._ready = False
        elif self.step_info:
            info = dict(zip(INFO_KEYS, self._record.item(), strict=True))
        else:
            info = {}
        return obs, reward, terminated, truncated, info
