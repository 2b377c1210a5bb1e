"""Forecast columns in training: out of sample only, no lookahead, state continued by evaluation.

Real hourly sample bars written to Parquet, the one loader (`load_splits`), real LightGBM; no mocks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.config import DataConfig, SplitConfig
from agents.data import load_splits
from agents.forecasts import STATE_DIR, continue_on_new_bars
from envs.features.pipeline import FeatureConfig, build_features
from envs.forecasting.config import ForecastConfig
from envs.forecasting.models import ModelContext, make_forecaster
from envs.forecasting.state import read_state
from envs.forecasting.targets import build_inputs, make_target
from envs.forecasting.walk_forward import walk_forward_predictions
from envs.market.market_data import FeatureNormalizer

FEATURES = FeatureConfig(
    returns=True, return_windows=(1, 4), vol_windows=(12,), time=False, indicators=False, levels=False,
    fibonacci=False, mtf_timeframes=(),
)
#: small LightGBM walk-forward with online updates: first forecast after ~110 bars, events every 25
GBM = ForecastConfig(model="gbm", min_train=100, train_window=200, refit_every=50, update_every=25,
                     params={"n_estimators": 20, "update_rounds": 3, "min_data_in_leaf": 10})
#: a cheap ensemble on the same schedule (ridge + last return), weights over 30 trailing bars
ENSEMBLE = dataclasses.replace(GBM, model="ensemble", params={"members": ["ridge", "last"], "trailing": 30})
WINDOW = 16
N = 600


def _data(tmp_path: Path, bars: pd.DataFrame, name: str = "bars") -> DataConfig:
    path = tmp_path / f"{name}.parquet"
    bars.to_parquet(path, index=False)
    return DataConfig(path=str(path), timeframe="1h", split=SplitConfig(embargo_bars=4))


def _feature_frame(bars: pd.DataFrame) -> pd.DataFrame:
    built = build_features(bars.reset_index(drop=True), FEATURES)
    return built[built.attrs["feature_columns"]]


@pytest.fixture()
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    return sample_1h.iloc[:N].reset_index(drop=True)


def test_training_split_sees_only_walk_forward_out_of_sample_forecasts(tmp_path: Path, bars: pd.DataFrame) -> None:
    splits = load_splits(_data(tmp_path, bars), WINDOW, FEATURES, tmp_path / "cache", GBM)
    full = splits.full
    fc = full.raw_features[:, full.feature_names.index("fc_fwd_log_return")]
    wf = walk_forward_predictions(bars, _feature_frame(bars), GBM)
    expected = np.full(len(bars), np.nan)
    expected[np.searchsorted(bars["timestamp"].to_numpy(), wf["timestamp"].to_numpy())] = wf["fc_fwd_log_return"]
    np.testing.assert_array_equal(fc, expected.astype(np.float32))

    # the training split starts its first observation window at the first forecast: no zeroed forecast shown
    train = splits.bounds["train"]
    assert splits.forecasts is not None and train.warmup_start == splits.forecasts.first_bar > WINDOW
    assert np.isfinite(fc[train.warmup_start : train.end]).all()
    assert not np.isfinite(fc[: train.warmup_start]).any()

    # an in-sample fit (one model on the training split's own labels) gives other numbers
    X, _ = build_inputs(pd.concat([bars[["timestamp", "close"]], _feature_frame(bars)], axis=1),
                        list(_feature_frame(bars).columns), GBM.n_lags)
    y = make_target(bars["close"].to_numpy(), "fwd_log_return", 1)
    rows = np.arange(train.start, train.end - 1)
    model = make_forecaster("gbm", ModelContext("fwd_log_return", 1, tuple(f"x{i}" for i in range(X.shape[1]))),
                            GBM.params)
    model.fit(X[rows], y[rows])
    assert not np.allclose(model.predict(X[rows]).astype(np.float32), fc[rows])

    # a second load is a cache hit (predictions and state); another forecaster config is not
    again = load_splits(_data(tmp_path, bars), WINDOW, FEATURES, tmp_path / "cache", GBM)
    assert again.forecasts is not None and again.forecasts.state == splits.forecasts.state
    np.testing.assert_array_equal(again.full.raw_features, full.raw_features)
    other = load_splits(_data(tmp_path, bars), WINDOW, FEATURES, tmp_path / "cache", dataclasses.replace(GBM, seed=1))
    assert other.forecasts is not None and other.forecasts.state != splits.forecasts.state


def test_perturbing_bars_after_t_changes_no_forecast_or_observation_up_to_t(tmp_path: Path,
                                                                            bars: pd.DataFrame) -> None:
    t = 540  # inside the test split: the training split (and so the normaliser) is unchanged
    perturbed = bars.copy()
    scale = np.where(np.arange(N) > t, 1.0 + 0.05 * np.sin(np.arange(N)), 1.0)
    for col in ("open", "high", "low", "close"):
        perturbed[col] = bars[col] * scale
    perturbed["volume"] = np.where(np.arange(N) > t, bars["volume"] * 3.0, bars["volume"])
    a = load_splits(_data(tmp_path, bars, "a"), WINDOW, FEATURES, tmp_path / "cache", GBM)
    b = load_splits(_data(tmp_path, perturbed, "b"), WINDOW, FEATURES, tmp_path / "cache", GBM)
    assert a.bounds["test"].start < t
    np.testing.assert_array_equal(a.full.raw_features[: t + 1], b.full.raw_features[: t + 1])
    na, nb = FeatureNormalizer.fit(a.get("train")), FeatureNormalizer.fit(b.get("train"))
    obs_a, obs_b = a.full.observation_features(10.0, na), b.full.observation_features(10.0, nb)
    np.testing.assert_array_equal(obs_a[: t + 1], obs_b[: t + 1])
    # the perturbation does reach the forecasts after t (so the comparison above can fail)
    j = a.full.feature_names.index("fc_fwd_log_return")
    assert not np.array_equal(a.full.raw_features[t + 1 :, j], b.full.raw_features[t + 1 :, j])


@pytest.mark.parametrize("forecast", [GBM, ENSEMBLE], ids=["gbm", "ensemble"])
def test_evaluation_continuation_equals_the_batch_walk_forward_over_train_and_eval_bars(
    tmp_path: Path, sample_1h: pd.DataFrame, forecast: ForecastConfig,
) -> None:
    history, new = sample_1h.iloc[:N].reset_index(drop=True), sample_1h.iloc[N : N + 160].reset_index(drop=True)
    splits = load_splits(_data(tmp_path, history), WINDOW, FEATURES, tmp_path / "cache", forecast)
    assert splits.forecasts is not None
    state = splits.forecasts.save_state(tmp_path / "run")
    saved = read_state(state)
    assert saved["last_bar_ms"] == int(history["timestamp"].iloc[-1]) and saved["n_bars"] == N

    frame, cont = continue_on_new_bars(history, new, FEATURES, forecast, state)
    both = pd.concat([history, new], ignore_index=True)
    batch = walk_forward_predictions(both, _feature_frame(both), forecast)
    batch = batch[batch["timestamp"] >= new["timestamp"].iloc[0]].reset_index(drop=True)
    pd.testing.assert_frame_equal(cont.predictions, batch, check_exact=True)
    np.testing.assert_array_equal(frame["fc_fwd_log_return"].to_numpy(), batch["fc_fwd_log_return"].to_numpy())
    # the continuation ran fits/updates of its own inside the new span, each on labels known by then
    assert batch["model_id"].nunique() > 3
    decision = batch["timestamp"].to_numpy() + 3_600_000
    assert (batch["train_label_end"].to_numpy() <= decision).all()


def test_continuation_refuses_overlapping_bars_and_changed_history(tmp_path: Path, sample_1h: pd.DataFrame) -> None:
    history = sample_1h.iloc[:N].reset_index(drop=True)
    splits = load_splits(_data(tmp_path, history), WINDOW, FEATURES, tmp_path / "cache", GBM)
    assert splits.forecasts is not None
    state = splits.forecasts.save_state(tmp_path / "run")
    with pytest.raises(ValueError, match="not after the run's last bar"):
        continue_on_new_bars(history, sample_1h.iloc[N - 5 : N + 50].reset_index(drop=True), FEATURES, GBM, state)
    changed = history.copy()
    changed.loc[10, "volume"] *= 2
    with pytest.raises(ValueError, match="changed since training"):
        continue_on_new_bars(changed, sample_1h.iloc[N : N + 50].reset_index(drop=True), FEATURES, GBM, state)


def test_forecaster_warm_up_that_leaves_no_training_window_is_refused(tmp_path: Path, bars: pd.DataFrame) -> None:
    late = dataclasses.replace(GBM, min_train=380, train_window=400)  # first forecast after the training split
    with pytest.raises(ValueError, match="after the forecaster's warm-up"):
        load_splits(_data(tmp_path, bars), WINDOW, FEATURES, tmp_path / "cache", late)
    none = dataclasses.replace(GBM, min_train=2000, train_window=2000)
    with pytest.raises(ValueError, match="made no forecast"):
        load_splits(_data(tmp_path, bars), WINDOW, FEATURES, tmp_path / "cache", none)


def test_main_job_uses_lightgbm_forecasts_and_debug_presets_none(compose_cfg) -> None:
    from agents.config import to_run_config

    assert to_run_config(compose_cfg([])).forecaster.model == "gbm"
    assert not to_run_config(compose_cfg(["debug=smoke"])).forecaster.enabled
    cfg = to_run_config(compose_cfg(["debug=smoke", "forecaster=ridge", "forecaster.min_train=300"]))
    assert (cfg.forecaster.model, cfg.forecaster.min_train) == ("ridge", 300)


@pytest.mark.slow
def test_train_saves_state_and_evaluate_on_new_bars_reports_forecast_skill(tmp_path: Path, compose_cfg,
                                                                         sample_1h: pd.DataFrame) -> None:
    """scripts/train.py forecaster=gbm -> forecaster_state; evaluate.py data_path=<later bars> continues it."""
    from agents.config import to_run_config
    from agents.evaluate_run import evaluate_run
    from agents.paper.session import load_paper_run
    from agents.train import run

    data = tmp_path / "bars.parquet"
    sample_1h.iloc[:N].to_parquet(data, index=False)
    later = tmp_path / "later.parquet"
    sample_1h.iloc[N : N + 200].to_parquet(later, index=False)
    gbm = [f"forecaster.{k}={v}" for k, v in (("min_train", 100), ("train_window", 200), ("refit_every", 50),
                                              ("update_every", 25), ("params.n_estimators", 20))]
    cfg = to_run_config(compose_cfg([
        "debug=smoke", "forecaster=gbm", *gbm, "features=none", f"data.path={data}", "data.split.embargo_bars=4",
        "env.window_size=16", "env.episode_length=64", "train.total_timesteps=256", "train.eval_freq=128",
        "train.checkpoint_freq=256", "evaluation.n_boot=50", f"paths.feature_cache={tmp_path / 'cache'}",
    ]))
    run_dir = tmp_path / "run"
    run(cfg, run_dir)
    assert (run_dir / STATE_DIR / "fwd_log_return").is_dir()
    assert "fc_fwd_log_return" in json.loads((run_dir / "normalizer.json").read_text())["names"]
    assert "## Forecasts" in (run_dir / "report.md").read_text()

    result = evaluate_run(run_dir, data_path=str(later))
    out = Path(result.report).parent
    assert "## Forecasts" in Path(result.report).read_text()
    metrics = json.loads((out / "forecast_metrics.json").read_text())
    assert metrics["model"] == "gbm" and metrics["n_predictions"] >= 190
    val = evaluate_run(run_dir, split="val")  # the same cached forecasts, scored on the validation split
    assert "## Forecasts" in Path(val.report).read_text()
    assert load_paper_run(run_dir).cfg.forecaster.model == "gbm"  # paper mode continues it (tests/agents/paper)


def test_tune_searches_forecaster_keys_and_refuses_a_misspelt_one(compose_cfg, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from agents.config import to_run_config
    from agents.tune import register_tune_configs
    from agents.tune.experiment import prepare_experiment
    from agents.tune.trials import trial_config

    register_tune_configs()
    raw = OmegaConf.to_container(compose_cfg(["tune=smoke", "forecaster=gbm", f"tune.storage_path={tmp_path}"],
                                             config_name="tune"), resolve=True)
    assert isinstance(raw, dict)
    raw["tune"]["space"] = {"forecaster.params.num_leaves": {"dist": "choice", "values": [7, 31]},
                            "forecaster.min_train": {"dist": "randint", "low": 200, "high": 400}}
    exp = prepare_experiment(raw, str(Path(__file__).resolve().parents[2]), str(tmp_path))
    trial = to_run_config(trial_config(exp.base, exp.specs, {"forecaster.params.num_leaves": 7,
                                                             "forecaster.min_train": 250}, 0))
    assert (trial.forecaster.model, trial.forecaster.params["num_leaves"], trial.forecaster.min_train) == ("gbm", 7, 250)
    raw["tune"]["space"] = {"forecaster.params.num_leafs": {"dist": "choice", "values": [7, 31]}}
    with pytest.raises(ValueError, match="num_leafs"):
        prepare_experiment(raw, str(Path(__file__).resolve().parents[2]), str(tmp_path))


def test_walk_forward_folds_start_after_the_forecaster_warm_up() -> None:
    from agents.walk_forward import walk_forward_bounds

    split = SplitConfig(train_frac=0.7, val_frac=0.15, embargo_bars=5)
    folds = walk_forward_bounds(10_000, 4, split, 32, first_usable=1_000)
    assert folds[0]["train"].warmup_start == 1_000 and folds[-1]["test"].end == 10_000
    assert all(b.warmup_start >= 1_000 for fold in folds for b in fold.values())
    tests = [(f["test"].start, f["test"].end) for f in folds]
    assert all(prev_end + 5 == start for (_, prev_end), (start, _) in zip(tests, tests[1:], strict=False))
