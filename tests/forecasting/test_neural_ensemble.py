"""Torch sequence models: seeded, saved/loaded bit-identically, the caller's RNG untouched; the ensemble's
weights use only errors whose labels are known (hand-computed trailing MSE)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from envs.forecasting.config import ForecastConfig
from envs.forecasting.ensemble import _trailing_mse, combine
from envs.forecasting.models import load_forecaster
from envs.forecasting.state import save_state
from envs.forecasting.walk_forward import run_walk_forward
from tests.forecasting.conftest import synthetic_bars

NET = {"seq_len": 6, "hidden": 6, "epochs": 3, "update_steps": 2}


@pytest.mark.parametrize("model", ["lstm", "tcn"])
def test_seeded_runs_match_saved_models_reload_and_global_rng_is_untouched(model: str, tmp_path) -> None:
    bars = synthetic_bars(700, seed=5, phi=0.3)
    cfg = ForecastConfig(model=model, targets=("fwd_log_return", "direction"), n_lags=3, min_train=200,
                         train_window=300, refit_every=200, update_every=50, params=NET)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = run_walk_forward(bars, None, cfg)
    assert torch.rand(1) == before  # fitting forks the RNG: the caller's stream is unchanged
    b = run_walk_forward(bars, None, cfg)
    pd.testing.assert_frame_equal(a.predictions, b.predictions, check_exact=True)
    c = run_walk_forward(bars, None, ForecastConfig(**{**_fields(cfg), "seed": 1}))
    assert not np.array_equal(c.predictions["fc_fwd_log_return"], a.predictions["fc_fwd_log_return"])
    state = save_state(a, cfg, tmp_path)
    X = np.random.default_rng(0).normal(size=(300, NET["seq_len"], 3))
    for target, m in a.models.items():
        np.testing.assert_array_equal(load_forecaster(state / target).predict(X), m.predict(X))


def _fields(cfg: ForecastConfig) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def test_trailing_mse_uses_only_rows_whose_label_is_known() -> None:
    err = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    # horizon 2, trailing 2: row i averages rows i-3 .. i-2
    got = _trailing_mse(err, horizon=2, trailing=2)[:, 0]
    np.testing.assert_array_equal(got, [np.nan, np.nan, 1.0, 1.5, 2.5])


def test_ensemble_weights_follow_inverse_known_error() -> None:
    ts = np.arange(6, dtype=np.int64) * 60_000
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.nan])
    good = pd.DataFrame({"timestamp": ts, "fc_fwd_log_return": [1.0] * 6, "y_true": y,
                         "model_id": ["a:fit0.u0@0"] * 6, "train_label_end": [0] * 6})
    bad = good.assign(fc_fwd_log_return=[3.0] * 6, model_id=["b:fit0.u0@0"] * 6)
    out = combine({"good": good, "bad": bad}, ("fwd_log_return",), horizon=1, trailing=10, interval_ms=60_000)
    # row 0: no known error yet -> equal weights; later: weights 1/1 and 1/9 -> (1*1 + 3/9) / (1 + 1/9) = 1.2
    assert out["fc_fwd_log_return"].iloc[0] == 2.0
    np.testing.assert_allclose(out["fc_fwd_log_return"].iloc[1:], 1.2)
    assert (out["train_label_end"].iloc[1:] == ts[1:] + 60_000).all()
    assert out["model_id"].iloc[0] == "ensemble(good+bad):fit0.u0@0"
