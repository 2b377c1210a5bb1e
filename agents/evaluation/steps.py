"""Per-step records of an evaluation pass, with the env's info keys: ``steps.parquet``.

Paper mode's ledger has a ``steps`` table with the same columns (same names, meaning and types), so a
replay and an evaluation of the same bars can be compared row by row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from agents.evaluation.runner import Policy, run_policy
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig
from envs.sim.simulation import INFO_KEYS
from envs.sim.trading_env import TradingEnv

#: info keys stored as integers (bar time in ms, counts, the liquidation flag); the rest are float64
INT_KEYS = frozenset({"timestamp", "n_fills", "n_round_trips", "liquidated", "risk_state", "risk_reason"})
STEPS_FILE = "steps.parquet"


def step_values(info: Mapping[str, Any]) -> list[int | float]:
    """The values of one step's info in `INFO_KEYS` order (ints for `INT_KEYS`, else float)."""
    return [int(info[k]) if k in INT_KEYS else float(info[k]) for k in INFO_KEYS]


def write_steps(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write one row per step (the env's info dicts) with columns `INFO_KEYS` to a Parquet file."""
    rows = [step_values(r) for r in records]
    frame = pd.DataFrame(rows, columns=list(INFO_KEYS))
    for k in INFO_KEYS:
        frame[k] = frame[k].astype(np.int64 if k in INT_KEYS else np.float64)
    out = Path(path)
    frame.to_parquet(out, index=False)
    return out


class _RecordingEnv(TradingEnv):
    """The evaluation env, keeping every step's info."""

    def __init__(self, data: MarketData, config: EnvConfig, normalizer: FeatureNormalizer | None) -> None:
        super().__init__(data, config, normalizer)
        self.infos: list[dict[str, Any]] = []

    def step(self, action: npt.ArrayLike) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """`TradingEnv.step`, recording its info."""
        out = super().step(action)
        self.infos.append(out[4])
        return out


def evaluation_steps(policy: Policy, data: MarketData, config: EnvConfig, normalizer: FeatureNormalizer | None,
                     path: str | Path, seed: int = 0) -> Path:
    """Run ``policy`` once over ``data`` exactly as the evaluator does and write its steps to ``path``."""
    env = _RecordingEnv(data, dataclasses.replace(config, episode_length=None), normalizer)  # = evaluation_env
    run_policy(env, policy, seed)
    return write_steps(env.infos, path)
