"""No look-ahead: perturbing (or cutting) bars after k never changes any feature value at bars <= k.

Each family is computed on the real 1m sample, then every bar after k is perturbed (prices scaled
by a random factor per bar with high/low widened so OHLC stays consistent, volume scaled), and
the features at bars <= k must be unchanged. EWMs and rolling windows run forward, so equality is
exact; the comparison allows 1e-9 (relative) anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.features.indicators import indicator_features, log_return_features, time_features
from envs.features.levels import level_features
from envs.features.mtf import mtf_features
from envs.features.pipeline import FeatureConfig, build_features

KS = (150, 2_999, 6_001, 10_000)  # several cut points, incl. mid-hour and near the end


def perturb_after(df: pd.DataFrame, k: int, seed: int = 0) -> pd.DataFrame:
    """Copy of ``df`` with every bar after row k changed, OHLC kept consistent."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    n = len(df) - k - 1
    if n <= 0:
        return out
    f = rng.uniform(0.8, 1.25, n)
    widen = rng.uniform(0.0, 0.01, n)
    rows = slice(k + 1, None)
    o = df["open"].to_numpy()[rows] * f
    c = df["close"].to_numpy()[rows] * f * rng.uniform(0.99, 1.01, n)
    out.loc[out.index[k + 1 :], "open"] = o
    out.loc[out.index[k + 1 :], "close"] = c
    out.loc[out.index[k + 1 :], "high"] = np.maximum(df["high"].to_numpy()[rows] * f, np.maximum(o, c)) * (1 + widen)
    out.loc[out.index[k + 1 :], "low"] = np.minimum(df["low"].to_numpy()[rows] * f, np.minimum(o, c)) * (1 - widen)
    out.loc[out.index[k + 1 :], "volume"] = df["volume"].to_numpy()[rows] * rng.uniform(0.0, 3.0, n)
    return out


def assert_prefix_equal(a: pd.DataFrame, b: pd.DataFrame, k: int, what: str) -> None:
    x = a.iloc[: k + 1].to_numpy(dtype=np.float64)
    y = b.iloc[: k + 1].to_numpy(dtype=np.float64)
    same = np.isclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True)
    if not same.all():
        r, c = np.argwhere(~same)[0]
        raise AssertionError(f"{what}: look-ahead at row {r} (k={k}), column {a.columns[c]}: {x[r, c]} vs {y[r, c]}")


FAMILIES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "returns_vol": lambda d: log_return_features(d["close"].to_numpy()),
    "time": lambda d: time_features(d["timestamp"].to_numpy()),
    "indicators": lambda d: indicator_features(d),
    "levels": lambda d: level_features(d, fibonacci=False),
    "fibonacci": lambda d: level_features(d, support_resistance=False),
    "mtf_1h": lambda d: mtf_features(d, "1h", lambda h: indicator_features(h, squeeze_window=24)),
    "mtf_4h_levels": lambda d: mtf_features(d, "4h", lambda h: level_features(h, swing_k=2)),
    "pipeline_default": lambda d: build_features(d, FeatureConfig(dtype="float64")).iloc[:, 6:],
}


@pytest.fixture(scope="module")
def base(sample_1m: pd.DataFrame) -> pd.DataFrame:
    return sample_1m.reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(base: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {name: fn(base) for name, fn in FAMILIES.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_perturbing_the_future_changes_nothing_before(family: str, base: pd.DataFrame, reference: dict[str, pd.DataFrame]) -> None:
    ref = reference[family]
    assert ref.shape[0] == len(base) and ref.shape[1] > 0
    for i, k in enumerate(KS):
        k = min(k, len(base) - 2)
        pert = FAMILIES[family](perturb_after(base, k, seed=i))
        assert_prefix_equal(ref, pert, k, family)
        if k > len(base) - 300:
            continue  # a 4h bucket still open at the end is never visible: nothing may change
        # the perturbation must be visible after k, or the test proves nothing
        tail = ~np.isclose(ref.iloc[k + 1 :].to_numpy(dtype=np.float64), pert.iloc[k + 1 :].to_numpy(dtype=np.float64), equal_nan=True)
        assert tail.any() or family == "time", f"{family}: perturbation after {k} changed nothing"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_cutting_the_future_changes_nothing_before(family: str, base: pd.DataFrame, reference: dict[str, pd.DataFrame]) -> None:
    """Live use: features of the latest bar equal the historical ones (no end-of-series effects)."""
    for k in (2_999, 7_777):
        cut = FAMILIES[family](base.iloc[: k + 1].reset_index(drop=True))
        assert_prefix_equal(reference[family], cut, k, family)


@settings(max_examples=15, deadline=None)
@given(k=st.integers(min_value=0, max_value=10_078), seed=st.integers(min_value=0, max_value=2**16))
def test_levels_property(k: int, seed: int, base: pd.DataFrame, reference: dict[str, pd.DataFrame]) -> None:
    pert = level_features(perturb_after(base, k, seed), fibonacci=True)
    full = pd.concat([reference["levels"], reference["fibonacci"]], axis=1)
    assert_prefix_equal(full, pert, k, "levels+fibonacci")
