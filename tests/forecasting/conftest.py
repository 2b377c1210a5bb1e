"""Shared inputs of the forecasting tests: real hourly bars and planted-signal series."""

from __future__ import annotations

import numpy as np
import pandas as pd

from envs.features.pipeline import FeatureConfig, build_features

#: a small causal feature set (returns family only): cheap, but exercises the feature path
SMALL_FEATURES = FeatureConfig(
    returns=True, return_windows=(1, 4), vol_windows=(12,), time=False, indicators=False, levels=False,
    fibonacci=False, mtf_timeframes=(),
)


def feature_frame(bars: pd.DataFrame, config: FeatureConfig = SMALL_FEATURES) -> pd.DataFrame:
    """The causal feature columns of ``bars`` (computed on exactly these bars)."""
    built = build_features(bars.reset_index(drop=True), config)
    return built[built.attrs["feature_columns"]]


def synthetic_bars(n: int, seed: int = 0, phi: float = 0.0, drift: float = 0.0, vol: float = 0.01,
                   up_frac: float | None = None) -> pd.DataFrame:
    """Minute bars whose one-bar log returns are AR(1) with coefficient ``phi`` (0 = random walk).

    ``up_frac`` instead draws i.i.d. returns that are positive with that probability (no signal).
    """
    rng = np.random.default_rng(seed)
    if up_frac is not None:
        up = rng.random(n) < up_frac
        r = np.where(up, rng.uniform(0.001, 0.01, n), -rng.uniform(0.001, 0.01, n))
    else:
        e = rng.normal(drift, vol, n)
        r = np.empty(n)
        r[0] = e[0]
        for i in range(1, n):
            r[i] = phi * r[i - 1] + e[i]
    c = 100.0 * np.exp(np.cumsum(r))
    o = np.concatenate(([100.0], c[:-1]))
    return pd.DataFrame({
        "timestamp": 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64),
        "open": o, "high": np.maximum(o, c) * 1.0005, "low": np.minimum(o, c) * 0.9995, "close": c,
        "volume": np.full(n, 1.0),
    })
