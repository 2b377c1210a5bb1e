"""VIF/correlation and pruning decided on the training split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs.features.collinearity import correlation_matrix, prune_collinear, prune_collinear_report, vif
from envs.features.pipeline import INDICATOR_COLUMNS, FeatureConfig, build_features


def frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    return pd.DataFrame({"a": a, "b": b, "c": c, "ab": a + b + 0.05 * rng.normal(size=n), "const": np.ones(n)})


def regression_vif(df: pd.DataFrame, col: str) -> float:
    y = df[col].to_numpy()
    x = np.column_stack([np.ones(len(df)), df.drop(columns=col).to_numpy()])
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    r2 = 1 - resid.var() / y.var()
    return 1 / (1 - r2)


def test_vif_matches_regression_definition() -> None:
    df = frame().drop(columns="const")
    v = vif(df)
    for col in df.columns:
        assert v[col] == pytest.approx(regression_vif(df, col), rel=1e-6)
    assert v["c"] == pytest.approx(1.0, abs=0.01) and v["ab"] > 100


def test_exact_dependency_is_inf_and_constant_is_nan() -> None:
    df = frame()
    df["exact"] = df["a"] - 2 * df["c"]
    v = vif(df)
    assert np.isinf(v["exact"]) and np.isinf(v["a"]) and np.isnan(v["const"])
    assert v["b"] < 1e6


def test_prune_drops_until_below_threshold() -> None:
    df = frame()
    rep = prune_collinear_report(df, threshold_vif=10.0)
    assert rep.kept == ["a", "b", "c"]
    assert [d[0] for d in rep.dropped] == ["const", "ab"]
    assert (rep.vif_after <= 10).all()
    md = rep.to_markdown()
    assert "| feature | VIF before | VIF after | decision |" in md and "drop (constant)" in md


def test_correlation_threshold_keeps_the_earlier_column() -> None:
    df = frame().drop(columns="const")
    df["a2"] = df["a"] * 3 + 1e-3 * np.random.default_rng(1).normal(size=len(df))
    kept = prune_collinear(df, threshold_vif=1e6, threshold_corr=0.95)
    assert kept == ["a", "b", "c", "ab"]
    assert correlation_matrix(df).loc["a", "a2"] > 0.99


def test_decided_on_train_only_and_applied_to_other_splits(sample_1m: pd.DataFrame) -> None:
    feats = build_features(sample_1m, FeatureConfig(mtf_timeframes=(), indicator_columns=INDICATOR_COLUMNS))
    cols = feats.attrs["feature_columns"]
    train, test = feats.iloc[:7000], feats.iloc[7000:]
    kept = prune_collinear(train, cols)
    # the decision does not depend on the test split at all
    scrambled = feats.copy()
    scrambled.loc[7000:, cols] = np.random.default_rng(0).normal(size=(len(test), len(cols))).astype(np.float32)
    assert prune_collinear(scrambled.iloc[:7000], cols) == kept
    assert set(kept) < set(cols) and (vif(train, kept) <= 10).all()
    assert list(test[kept].columns) == kept


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="threshold_vif=1"):
        prune_collinear(frame(), threshold_vif=1)
    with pytest.raises(ValueError, match="threshold_corr=1.5"):
        prune_collinear(frame(), threshold_corr=1.5)
