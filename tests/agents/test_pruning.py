"""Collinearity pruning in training runs: decided on the training split only, applied to every split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.config import to_run_config
from agents.data import load_splits, make_splits, prune_features
from agents.evaluate_run import evaluate_run
from agents.train import run
from envs.features.pipeline import FeatureConfig, build_features
from envs.market.market_data import DERIVED_FEATURES

REPO = Path(__file__).resolve().parents[2]


def test_decision_ignores_everything_after_the_training_split(compose_cfg) -> None:
    cfg = to_run_config(compose_cfg(["features=hourly", "features.prune_vif=10"]), base_dir=str(REPO))
    splits = load_splits(cfg.data, cfg.env.window_size, cfg.features)
    pruned, result = prune_features(splits, cfg.features)
    assert result is not None and result.dropped
    # macd_frac = macd_signal_frac + macd_hist_frac exactly: one of the three must go
    assert {"macd_frac", "macd_signal_frac", "macd_hist_frac"} - set(result.kept)
    assert set(DERIVED_FEATURES) <= set(pruned.full.feature_names)  # the env's own features always stay
    assert pruned.get("test").feature_names == pruned.full.feature_names
    assert all(v <= 10 for v in result.vif_after)

    # scramble every feature value after the training split: the decision must not move
    end = splits.bounds["train"].end
    frame = build_features(pd.read_parquet(REPO / cfg.data.path), cfg.features)
    cols = frame.attrs["feature_columns"]
    frame.loc[end:, cols] = np.random.default_rng(1).normal(size=(len(frame) - end, len(cols))).astype(np.float32)
    _, scrambled = prune_features(make_splits(frame, cfg.data.split, cfg.env.window_size), cfg.features)
    assert scrambled is not None and scrambled.kept == result.kept


def test_unset_thresholds_keep_every_column(compose_cfg) -> None:
    cfg = to_run_config(compose_cfg(["features=hourly"]), base_dir=str(REPO))
    splits = load_splits(cfg.data, cfg.env.window_size, cfg.features)
    same, result = prune_features(splits, cfg.features)
    assert result is None and same is splits


@pytest.mark.parametrize("key,value", [("prune_vif", 1.0), ("prune_corr", 1.5)])
def test_bad_thresholds_name_the_key(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"features.{key}={value} is invalid"):
        FeatureConfig(**{key: value})


@pytest.mark.slow
def test_pruned_run_trains_reports_and_evaluates(compose_cfg, tmp_path: Path) -> None:
    overrides = ["debug=smoke", "features=hourly", "features.prune_vif=10", "train.total_timesteps=1024",
                 "train.eval_freq=512"]
    cfg = to_run_config(compose_cfg(overrides), base_dir=str(REPO))
    run(cfg, tmp_path)
    report = (tmp_path / "collinearity.md").read_text()
    names = json.loads((tmp_path / "normalizer.json").read_text())["names"]
    dropped = [line.split("|")[1].strip() for line in report.splitlines() if "drop (" in line]
    assert dropped and not set(dropped) & set(names)
    assert "Collinearity pruning" in (tmp_path / "report.md").read_text()
    # the evaluator applies the run's column selection to freshly built features
    result = evaluate_run(tmp_path, split="val", base_dir=str(REPO))
    assert np.isfinite(result.agent_metrics["total_return"])
