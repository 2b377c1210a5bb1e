"""quantgym environments: the trading simulator and its data side (numpy/numba; no torch, no Hydra).

Public API: `EnvConfig`, `TradingEnv`, `VecTradingEnv`, `MarketData`, `FeatureNormalizer`.
``gymnasium.make("Trading-v0", data=..., config=...)`` builds a `TradingEnv`.
`VecTradingEnv` subclasses Stable-Baselines3's ``VecEnv``, so it is imported lazily: ``import envs``
does not pull in SB3 and torch until ``envs.VecTradingEnv`` is used.
"""

from typing import Any

import gymnasium

from envs.config import EnvConfig
from envs.market_data import FeatureNormalizer, MarketData
from envs.trading_env import TradingEnv

__all__ = ["EnvConfig", "FeatureNormalizer", "MarketData", "TradingEnv", "VecTradingEnv"]

if "Trading-v0" not in gymnasium.registry:
    gymnasium.register(id="Trading-v0", entry_point="envs.trading_env:TradingEnv")


def __getattr__(name: str) -> Any:
    if name == "VecTradingEnv":
        from envs.vec_env import VecTradingEnv

        return VecTradingEnv
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
