"""Run any policy through one sequential pass of `TradingEnv` and record what happened.

The evaluator, the baselines and the validation callback all step the real env here, so they share
the env's execution model; metrics come from `envs.metrics.summarize` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from envs import metrics
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig
from envs.sim.trading_env import TradingEnv

#: policy(observation, info, bar_index) -> action
Policy = Callable[[npt.NDArray[np.float32], dict[str, Any], int], Any]


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """Per-bar series of one evaluation pass (n steps).

    Attributes:
        timestamps: (n + 1,) int64 ms UTC: the first decision bar, then each marked bar.
        equity: (n + 1,) quote currency at the same bars.
        price: (n + 1,) close prices at the same bars.
        position: (n,) signed base units held after each step.
        exposure: (n,) signed position value / equity after each step.
        traded_notional: (n,) quote currency traded in each step (all fills).
        actions: (n,) the actions taken (first component for Box actions).
        fees_paid, slippage_paid, funding_paid: totals in quote currency.
        n_fills: fills (every order executed), stop and liquidation exits included; a round trip
            (entry to exit, `envs.metrics.trades_from_positions`) is usually two fills.
        n_liquidations: liquidations in the pass.
        terminated: whether the pass ended early (bankruptcy or drawdown stop).
    """

    timestamps: npt.NDArray[np.int64]
    equity: npt.NDArray[np.float64]
    price: npt.NDArray[np.float64]
    position: npt.NDArray[np.float64]
    exposure: npt.NDArray[np.float64]
    traded_notional: npt.NDArray[np.float64]
    actions: npt.NDArray[np.float64]
    fees_paid: float
    slippage_paid: float
    funding_paid: float
    n_fills: int
    n_liquidations: int
    terminated: bool

    @property
    def returns(self) -> npt.NDArray[np.float64]:
        """Simple per-bar returns of equity, (n,)."""
        return metrics.returns_from_equity(self.equity)

    def summary(self, calendar: str = "24/7") -> dict[str, float]:
        """Every metric of `envs.metrics.summarize` for this pass."""
        out = metrics.summarize(
            equity=self.equity, positions=self.position, traded_notional=self.traded_notional,
            fees=self.fees_paid, slippage=self.slippage_paid, funding=self.funding_paid,
            timestamps_ms=self.timestamps, calendar=calendar, exposure=self.exposure,
        )
        out["n_fills"] = float(self.n_fills)  # fills as the env counts them (exits included)
        out["n_liquidations"] = float(self.n_liquidations)
        return out


def run_policy(env: TradingEnv, policy: Policy, seed: int = 0) -> EpisodeRecord:
    """Step ``env`` from reset to the end of its episode with ``policy``; record every bar."""
    obs, info = env.reset(seed=seed)
    cap = len(env.sim.data)
    ts = np.zeros(cap, np.int64)
    eq = np.zeros(cap)
    px = np.zeros(cap)
    pos = np.zeros(cap)
    expo = np.zeros(cap)
    notional = np.zeros(cap)
    acts = np.zeros(cap)
    ts[0], eq[0], px[0] = info["timestamp"], info["equity"], info["price"]
    n = 0
    liquidations = 0
    terminated = truncated = False
    while not (terminated or truncated):
        action = policy(obs, info, env.bar_index)
        obs, _, terminated, truncated, info = env.step(action)
        acts[n] = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        pos[n], expo[n], notional[n] = info["position"], info["exposure"], env.step_notional
        liquidations += int(info["liquidated"])
        n += 1
        ts[n], eq[n], px[n] = info["timestamp"], info["equity"], info["price"]
    return EpisodeRecord(
        timestamps=ts[: n + 1], equity=eq[: n + 1], price=px[: n + 1], position=pos[:n], exposure=expo[:n],
        traded_notional=notional[:n], actions=acts[:n], fees_paid=info["fees_paid"],
        slippage_paid=info["slippage_paid"], funding_paid=info["funding_paid"], n_fills=info["n_fills"],
        n_liquidations=liquidations, terminated=terminated,
    )


def evaluation_env(data: MarketData, config: EnvConfig, normalizer: FeatureNormalizer | None = None) -> TradingEnv:
    """A one-pass evaluation env: same costs and rules, ``episode_length=None``."""
    return TradingEnv(data, dataclasses.replace(config, episode_length=None), normalizer)
