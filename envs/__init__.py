"""quantgym environments: the trading simulator and its data side (numpy/numba; no torch, no Hydra).

Public API: `EnvConfig`, `RiskConfig`, `TradingEnv`, `VecTradingEnv`, `MarketData`, `FeatureNormalizer`.
``gymnasium.make("quantgym/Trading-v0", data=..., config=...)`` builds a `TradingEnv` (Gymnasium's
``namespace/Name-vN`` convention for third-party envs; the bare ``Trading-v0`` is kept as an alias).

``import envs`` reads no source file and writes nothing: the public names are imported on first
use (``from envs import TradingEnv``), which also keeps SB3 and torch out until ``envs.VecTradingEnv``
is used. numba's compile cache goes to ``$NUMBA_CACHE_DIR`` when set, else to
``.cache/numba/<stamp>`` under the current working directory (never inside the installed package);
``<stamp>`` changes with any edit under envs/ (see `numba_cache_dir`), so a stale kernel is impossible.
"""

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium

if TYPE_CHECKING:  # imported on first use at run time (see `__getattr__`)
    from envs.market.market_data import FeatureNormalizer, MarketData
    from envs.sim.config import EnvConfig, RiskConfig
    from envs.sim.trading_env import TradingEnv
    from envs.sim.vec_env import VecTradingEnv

__all__ = ["EnvConfig", "FeatureNormalizer", "MarketData", "RiskConfig", "TradingEnv", "VecTradingEnv"]

_LAZY = {
    "EnvConfig": "envs.sim.config", "RiskConfig": "envs.sim.config", "FeatureNormalizer": "envs.market.market_data", "MarketData": "envs.market.market_data",
    "TradingEnv": "envs.sim.trading_env", "VecTradingEnv": "envs.sim.vec_env",
}


def numba_cache_dir(cwd: Path | None = None) -> Path:
    """``<cwd>/.cache/numba/<stamp>``: the compile-cache folder used when ``NUMBA_CACHE_DIR`` is unset.

    numba's ``cache=True`` only notices edits to the file a function is defined in, not to the
    compiled functions it calls from other modules. ``<stamp>`` is built from the file count, total
    size and newest modification time of the sources under envs/ (metadata only, no file is read),
    so any edit gives a fresh folder and recompiles once.
    """
    root = Path(__file__).resolve().parent
    stats = [p.stat() for p in root.rglob("*.py")]
    stamp = f"{len(stats)}-{sum(s.st_size for s in stats)}-{max(s.st_mtime_ns for s in stats)}"
    return (cwd if cwd is not None else Path.cwd()) / ".cache" / "numba" / stamp


if "NUMBA_CACHE_DIR" not in os.environ:  # numba fixes the folder when a cached function is declared
    import numba

    numba.config.CACHE_DIR = str(numba_cache_dir())  # type: ignore[attr-defined]

ENV_ID = "quantgym/Trading-v0"
for _id in (ENV_ID, "Trading-v0"):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point="envs.sim.trading_env:TradingEnv")
del _id


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
