"""quantgym environments: the trading simulator and its data side (numpy only, no torch/Hydra).

Public API: `EnvConfig`, `TradingEnv`, `VecTradingEnv`, `MarketData`, `FeatureNormalizer`.
``gymnasium.make("Trading-v0", data=..., config=...)`` builds a `TradingEnv`.
"""

import gymnasium

from envs.config import EnvConfig
from envs.market_data import FeatureNormalizer, MarketData
from envs.trading_env import TradingEnv
from envs.vec_env import VecTradingEnv

__all__ = ["EnvConfig", "FeatureNormalizer", "MarketData", "TradingEnv", "VecTradingEnv"]

if "Trading-v0" not in gymnasium.registry:
    gymnasium.register(id="Trading-v0", entry_point="envs.trading_env:TradingEnv")
