"""Skill is measured honestly: a planted AR(1) signal is found with the right IC sign, a random walk
is not, and a classifier on a 90 %-up series is not credited for its 90 % hit rate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agents.evaluation.forecast_skill import (
    SkillConfig,
    diebold_mariano,
    evaluate_predictions,
    holm,
    newey_west_variance,
)
from envs.forecasting.config import ForecastConfig
from envs.forecasting.walk_forward import baseline_configs, walk_forward_predictions
from tests.forecasting.conftest import synthetic_bars

SKILL = SkillConfig(n_boot=200)
SCHEDULE = {"min_train": 300, "train_window": 1000, "refit_every": 500, "update_every": 100}


def _evaluate(bars: pd.DataFrame, model: str, targets: tuple[str, ...], params: dict | None = None) -> dict:
    cfg = ForecastConfig(model=model, targets=targets, n_lags=4, params=params or {}, **SCHEDULE)  # type: ignore[arg-type]
    frames = {model: walk_forward_predictions(bars, None, cfg)}
    for name, base_cfg in baseline_configs(cfg).items():
        frames[name] = walk_forward_predictions(bars, None, base_cfg)
    return evaluate_predictions(frames, model, targets, cfg.horizon, SKILL)


def test_planted_ar1_signal_is_significant_with_positive_ic() -> None:
    m = _evaluate(synthetic_bars(3000, seed=11, phi=0.3), "ridge", ("fwd_log_return",))
    assert m["significant"] is True
    assert m["ic"] > 0.15 and m["ic_ci"][0] > 0.0
    assert m["baseline"]["name"] in ("zero", "rolling_mean", "last")
    assert m["p_value_corrected"] < 0.05
    assert m["verdict"].startswith("Evidence of skill")


def test_negative_ar1_gives_a_negative_ic_sign_handled_by_the_model() -> None:
    # the model learns the negative coefficient: its predictions correlate positively with outcomes,
    # while the naive 'last' baseline's IC is negative
    m = _evaluate(synthetic_bars(3000, seed=12, phi=-0.3), "ridge", ("fwd_log_return",))
    assert m["significant"] is True and m["ic"] > 0.15
    assert m["components"]["fwd_log_return/last"]["ic"] < -0.15


def test_random_walk_is_not_significant() -> None:
    m = _evaluate(synthetic_bars(3000, seed=13, phi=0.0), "ridge", ("fwd_log_return", "direction"))
    assert m["significant"] is False
    assert m["components"]["direction/ridge"]["significant"] is False
    assert m["verdict"].startswith("No evidence of skill")
    assert len(m["folds"]) >= 5


def test_a_ninety_percent_up_series_does_not_credit_the_classifier() -> None:
    bars = synthetic_bars(3000, seed=14, up_frac=0.9)
    m = _evaluate(bars, "gbm", ("direction",), {"n_estimators": 30, "num_leaves": 7, "update_rounds": 3})
    assert m["hit_rate"] > 0.85  # looks impressive ...
    assert m["baseline"]["name"] == "class_prior"
    assert m["baseline"]["hit_rate"] > 0.85  # ... but the class prior scores the same
    assert m["hit_rate"] <= m["baseline"]["hit_rate"] + 0.01
    assert m["significant"] is False
    for key in ("log_loss", "brier"):
        assert key in m and key in m["baseline"]


def test_metrics_json_has_the_issue_keys() -> None:
    m = _evaluate(synthetic_bars(1500, seed=15), "ridge", ("fwd_log_return",))
    for key in ("target", "horizon", "n_predictions", "ic", "ic_ci", "hit_rate", "mae", "rmse", "baseline",
                "dm_pvalue", "p_value_corrected", "significant", "folds", "components"):
        assert key in m
    assert set(m["baseline"]) >= {"name", "mae", "rmse", "hit_rate"}


def test_holm_and_hac_variance_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    d = np.array([1.0, -1.0, 1.0, -1.0])
    assert newey_west_variance(d, 0) == 1.0
    # Bartlett weight 1/2 on lag 1: gamma_1 = -3/4 -> 1 + 2 * 0.5 * (-0.75)
    assert newey_west_variance(d, 1) == 0.25
    stat, p = diebold_mariano(np.zeros(50), np.zeros(50), 1)
    assert p == 1.0
