"""Baseline policies, run through the same env, bars and costs as the agent.

- buy_and_hold: exposure 1.0 from the first decision, never rebalanced afterwards.
- flat: never trades (returns exactly zero).
- random: uniform random actions every bar (N seeds: mean and spread).
- ma_crossover: long (exposure 1.0) while the fast SMA of closes is above the slow SMA, else flat;
  SMAs at bar t use closes <= t.

Baselines run with fixed sizing and without stops/take-profit (the agent's exits are part of the
agent), but with the agent's fees, slippage model, funding, leverage cap and margin rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agents.evaluation.runner import EpisodeRecord, Policy, evaluation_env, run_policy
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig

#: rebalance threshold that makes "hold" baselines trade only on a change of signal
NO_REBALANCE = 0.5


def baseline_config(config: EnvConfig, hold: bool) -> EnvConfig:
    """The agent's costs and margin rules with continuous fixed sizing and no stops."""
    return dataclasses.replace(
        config, action_mode="continuous", sizing="fixed", stop_loss=None, take_profit=None, trailing_stop=None,
        rebalance_threshold=NO_REBALANCE if hold else config.rebalance_threshold,
        episode_length=None,
    )


def _constant(action: float) -> Policy:
    act = np.array([action], dtype=np.float32)
    return lambda obs, info, t: act


def ma_crossover_policy(close: np.ndarray, fast: int, slow: int, long_action: float) -> Policy:
    """Long while SMA(fast) > SMA(slow) of closes up to t, else flat."""
    s = pd.Series(close)
    signal = (s.rolling(fast).mean() > s.rolling(slow).mean()).to_numpy()
    long_act = np.array([long_action], dtype=np.float32)
    flat = np.zeros(1, dtype=np.float32)
    return lambda obs, info, t: long_act if signal[t] else flat


def random_policy(rng: np.random.Generator) -> Policy:
    """Uniform random continuous actions in [-1, 1]."""
    return lambda obs, info, t: rng.uniform(-1.0, 1.0, 1).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Baselines:
    """One evaluation pass of each baseline over the agent's bars (same costs and rules).

    Attributes:
        buy_and_hold: exposure 1.0 from the first decision.
        flat: never trades.
        ma_crossover: long (exposure 1.0) while the fast moving average is above the slow one.
        random: uniformly random actions, one pass per seed.
    """

    buy_and_hold: EpisodeRecord
    flat: EpisodeRecord
    ma_crossover: EpisodeRecord
    random: tuple[EpisodeRecord, ...]


def run_baselines(
    data: MarketData,
    config: EnvConfig,
    normalizer: FeatureNormalizer | None,
    n_random_seeds: int,
    ma_fast: int,
    ma_slow: int,
    seed: int = 0,
) -> Baselines:
    """Run every baseline (``random`` once per seed ``seed + k``)."""
    one_x = 1.0 / config.max_leverage  # exposure 1.0 expressed as an action
    hold_env = evaluation_env(data, baseline_config(config, hold=True), normalizer)
    rand_env = evaluation_env(data, baseline_config(config, hold=False), normalizer)
    return Baselines(
        buy_and_hold=run_policy(hold_env, _constant(one_x), seed),
        flat=run_policy(hold_env, _constant(0.0), seed),
        ma_crossover=run_policy(hold_env, ma_crossover_policy(data.close, ma_fast, ma_slow, one_x), seed),
        random=tuple(run_policy(rand_env, random_policy(np.random.default_rng(seed + k)), seed)
                     for k in range(n_random_seeds)),
    )


def aggregate_random(summaries: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation of each metric over the random-policy seeds."""
    keys = summaries[0].keys()
    arr: Callable[[str], np.ndarray] = lambda k: np.array([s[k] for s in summaries], dtype=np.float64)  # noqa: E731
    mean = {k: float(np.nanmean(arr(k))) if np.isfinite(arr(k)).any() else float("nan") for k in keys}
    std = {k: float(np.nanstd(arr(k))) if np.isfinite(arr(k)).any() else float("nan") for k in keys}
    return mean, std
