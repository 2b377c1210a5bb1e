"""Small helpers for hand-computed env scenarios: synthetic bars and episode runners."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from envs import EnvConfig, TradingEnv

HOUR_MS = 3_600_000

#: A config with every cost, limit and shaping switched off; scenarios turn on what they test.
BASE = dict(
    window_size=1,
    initial_cash=10_000.0,
    taker_fee=0.0,
    slippage_model="none",
    slippage_bps=0.0,
    funding_rate=0.0,
    maintenance_margin_rate=0.0,
    liquidation_fee=0.0,
)


def make_bars(
    rows: Sequence[Sequence[float] | dict[str, float]],
    start_ms: int = 0,
    bar_ms: int = HOUR_MS,
    volume: float = 1e9,
    timestamps: Sequence[int] | None = None,
    **columns: Sequence[float],
) -> pd.DataFrame:
    """Bars from ``rows`` of ``(open, high, low, close[, volume])`` or dicts with those keys.

    A single number ``c`` is a flat bar (o = h = l = c). Timestamps are ``start_ms + i * bar_ms``
    unless ``timestamps`` is given; ``columns`` adds extra columns (``funding_rate``, ``spread``,
    features) given per row.
    """
    out: dict[str, list[float]] = {k: [] for k in ("open", "high", "low", "close", "volume")}
    for row in rows:
        if isinstance(row, dict):
            vals = [row["open"], row["high"], row["low"], row["close"], row.get("volume", volume)]
        elif isinstance(row, (int, float)):
            vals = [row, row, row, row, volume]
        else:
            vals = list(row) + ([volume] if len(row) == 4 else [])
        for key, v in zip(out, vals, strict=True):
            out[key].append(float(v))
    n = len(rows)
    ts = list(timestamps) if timestamps is not None else [start_ms + i * bar_ms for i in range(n)]
    df = pd.DataFrame({"timestamp": np.asarray(ts, dtype=np.int64), **out})
    for name, values in columns.items():
        assert len(values) == n, name
        df[name] = np.asarray(values, dtype=np.float64)
    return df


def config(**overrides: Any) -> EnvConfig:
    """`EnvConfig` from `BASE` plus ``overrides``."""
    return EnvConfig(**{**BASE, **overrides})


def run(
    bars: pd.DataFrame, cfg: EnvConfig, actions: Sequence[Any], seed: int | None = 0
) -> tuple[dict[str, Any], list[tuple[np.ndarray, float, bool, bool, dict[str, Any]]]]:
    """Reset and step through ``actions``; returns the reset info and every step's 5-tuple.

    Continuous actions may be plain floats. Stops early when the episode ends.
    """
    env = TradingEnv(bars, cfg)
    _, info0 = env.reset(seed=seed)
    steps = []
    for a in actions:
        act = a if cfg.action_mode == "discrete" else np.array([a], dtype=np.float32)
        out = env.step(act)
        steps.append(out)
        if out[2] or out[3]:
            break
    return info0, steps


def infos(steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The info dicts of ``steps``."""
    return [s[4] for s in steps]


def sample_std(xs: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1)."""
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
