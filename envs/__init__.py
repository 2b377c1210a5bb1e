"""quantgym environments: the trading simulator and its data side (numpy/numba; no torch, no Hydra).

Public API: `EnvConfig`, `TradingEnv`, `VecTradingEnv`, `MarketData`, `FeatureNormalizer`.
``gymnasium.make("quantgym/Trading-v0", data=..., config=...)`` builds a `TradingEnv` (Gymnasium's
``namespace/Name-vN`` convention for third-party envs; the bare ``Trading-v0`` is kept as an alias).
`VecTradingEnv` subclasses Stable-Baselines3's ``VecEnv``, so it is imported lazily: ``import envs``
does not pull in SB3 and torch until ``envs.VecTradingEnv`` is used.
"""

import hashlib
import os
from pathlib import Path
from typing import Any


def _numba_cache_dir() -> Path:
    """A compile-cache folder keyed by the hash of every source file under envs/.

    numba's ``cache=True`` only notices edits to the file a function is defined in, not to the
    compiled functions it calls from other modules; keying the folder on all sources makes a stale
    kernel impossible (any edit recompiles once).
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return root.parent / ".cache" / "numba" / digest.hexdigest()[:16]


if "NUMBA_CACHE_DIR" not in os.environ:  # must precede the first @njit(cache=True) below
    import numba

    numba.config.CACHE_DIR = str(_numba_cache_dir())

import gymnasium  # noqa: E402

from envs.config import EnvConfig  # noqa: E402
from envs.market_data import FeatureNormalizer, MarketData  # noqa: E402
from envs.trading_env import TradingEnv  # noqa: E402

__all__ = ["EnvConfig", "FeatureNormalizer", "MarketData", "TradingEnv", "VecTradingEnv"]

ENV_ID = "quantgym/Trading-v0"
for _id in (ENV_ID, "Trading-v0"):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point="envs.trading_env:TradingEnv")
del _id


def __getattr__(name: str) -> Any:
    if name == "VecTradingEnv":
        from envs.vec_env import VecTradingEnv

        return VecTradingEnv
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
