"""Walk-forward forecasts: prefix == full (bit-identical), no future bar moves a past prediction,
determinism, save/load, and the join into observations refuses look-ahead provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs.forecasting.config import ForecastConfig
from envs.forecasting.models import baselines_for, load_forecaster
from envs.forecasting.state import save_state
from envs.forecasting.walk_forward import (
    forecast_columns,
    grid_events,
    join_predictions,
    run_walk_forward,
    schedule,
    walk_forward_predictions,
)
from tests.forecasting.conftest import feature_frame

N = 1400
SCHEDULE = {"min_train": 300, "train_window": 500, "refit_every": 200, "update_every": 50}
SMALL_GBM = {"n_estimators": 20, "num_leaves": 7, "min_data_in_leaf": 20, "update_rounds": 3}
SMALL_NET = {"seq_len": 6, "hidden": 6, "epochs": 3, "update_steps": 2}
ALL_TARGETS = ("fwd_log_return", "direction", "realized_vol")
CASES = [
    ("zero", ("fwd_log_return",), {}),
    ("last", ALL_TARGETS, {}),
    ("rolling_mean", ("fwd_log_return", "realized_vol"), {}),
    ("class_prior", ("direction",), {}),
    ("ridge", ALL_TARGETS, {"alpha": 10.0}),
    ("gbm", ALL_TARGETS, SMALL_GBM),
    ("lstm", ("fwd_log_return", "direction"), SMALL_NET),
    ("tcn", ("fwd_log_return", "realized_vol"), SMALL_NET),
    ("ensemble", ("fwd_log_return", "direction"), {"members": ["ridge", "gbm"], "trailing": 50,
                                                   "member_params": {"gbm": SMALL_GBM}}),
]


@pytest.fixture(scope="module")
def bars(sample_1h: pd.DataFrame) -> pd.DataFrame:
    """Real BTC/USDT hourly bars (a slice)."""
    return sample_1h.iloc[:N].reset_index(drop=True)


def _config(model: str, targets: tuple[str, ...], params: dict, **kw: object) -> ForecastConfig:
    return ForecastConfig(model=model, targets=targets, horizon=3, embargo=1, params=params,
                          **{**SCHEDULE, **kw})  # type: ignore[arg-type]


def _perturb_after(df: pd.DataFrame, k: int, seed: int = 1) -> pd.DataFrame:
    """Bars after row k scaled by a random factor per bar (OHLC stays consistent)."""
    out = df.copy()
    f = np.random.default_rng(seed).uniform(0.8, 1.25, len(df) - k - 1)
    for col in ("open", "high", "low", "close"):
        out.loc[out.index[k + 1 :], col] = df[col].to_numpy()[k + 1 :] * f
    return out


@pytest.mark.parametrize(("model", "targets", "params"), CASES, ids=[c[0] for c in CASES])
def test_prefix_yields_the_full_predictions_bit_identical(bars: pd.DataFrame, model: str, targets: tuple,
                                                          params: dict) -> None:
    cfg = _config(model, targets, params)
    full = walk_forward_predictions(bars, feature_frame(bars), cfg)
    for cut in (777, 1051):  # mid refit period and mid update interval
        prefix_bars = bars.iloc[:cut]
        part = walk_forward_predictions(prefix_bars, feature_frame(prefix_bars), cfg)
        assert len(part) > 0
        head = full.iloc[: len(part)].reset_index(drop=True)
        assert part["timestamp"].equals(head["timestamp"])
        keep = [*forecast_columns(part), "model_id", "train_label_end"]
        pd.testing.assert_frame_equal(part[keep], head[keep], check_exact=True)
        # the realised label is NaN where not yet known in the prefix, equal elsewhere
        known = part["y_true"].notna()
        assert known.sum() == len(part) - cfg.horizon
        np.testing.assert_array_equal(part.loc[known, "y_true"], head.loc[known, "y_true"])


@pytest.mark.parametrize(("model", "targets", "params"), CASES, ids=[c[0] for c in CASES])
def test_perturbing_bars_after_t_changes_no_prediction_at_or_before_t(bars: pd.DataFrame, model: str,
                                                                      targets: tuple, params: dict) -> None:
    cfg = _config(model, targets, params)
    t = 999
    base = walk_forward_predictions(bars, feature_frame(bars), cfg)
    moved_bars = _perturb_after(bars, t)
    moved = walk_forward_predictions(moved_bars, feature_frame(moved_bars), cfg)
    upto = base["timestamp"] <= bars["timestamp"].iloc[t]
    cols = forecast_columns(base)
    pd.testing.assert_frame_equal(base.loc[upto, cols], moved.loc[upto, cols], check_exact=True)
    if model != "zero":  # the perturbation is real: later predictions move
        assert not base.loc[~upto, cols].equals(moved.loc[~upto, cols])


def test_same_seed_same_predictions_and_saved_models_predict_identically(bars: pd.DataFrame, tmp_path) -> None:
    cfg = _config("gbm", ALL_TARGETS, {**SMALL_GBM, "feature_fraction": 0.7})
    feats = feature_frame(bars)
    a = run_walk_forward(bars, feats, cfg)
    b = run_walk_forward(bars, feats, cfg)
    pd.testing.assert_frame_equal(a.predictions, b.predictions, check_exact=True)
    other = walk_forward_predictions(bars, feats, _config("gbm", ALL_TARGETS, {**SMALL_GBM, "feature_fraction": 0.7},
                                                          seed=1))
    assert not other["fc_fwd_log_return"].equals(a.predictions["fc_fwd_log_return"])  # the seed matters
    state = save_state(a, cfg, tmp_path / "state")
    X = np.random.default_rng(0).normal(size=(50, len(a.input_names)))
    for target, model in a.models.items():
        loaded = load_forecaster(state / target)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert (state / "schedule.json").exists()


def test_ridge_scaler_is_fitted_inside_the_window_and_saved(bars: pd.DataFrame, tmp_path) -> None:
    cfg = _config("ridge", ("fwd_log_return",), {})
    res = run_walk_forward(bars, feature_frame(bars), cfg)
    model = res.models["fwd_log_return"]
    scaler = model.pipeline[0]  # type: ignore[attr-defined]
    last_window = res.windows[res.predictions["model_id"].iloc[-1]][-1]
    X = np.column_stack([feature_frame(bars).to_numpy(np.float64),
                         np.full((len(bars), cfg.n_lags), np.nan)])[:, : scaler.mean_.size]
    np.testing.assert_allclose(scaler.mean_[:3], np.nanmean(X[last_window, :3], axis=0), rtol=1e-12)
    loaded = load_forecaster(model.save(tmp_path / "ridge"))
    np.testing.assert_array_equal(loaded.pipeline[0].mean_, scaler.mean_)  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["fwd_log_return", "direction"])
def test_ridge_predicts_a_row_the_same_whatever_rows_come_with_it(target: str) -> None:
    """Continuations predict other batches than one run over the span (a bar alone in paper mode)."""
    from envs.forecasting.models import ModelContext, make_forecaster

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 17))
    y = X[:, 0] * 0.1 + rng.normal(size=400)
    y = (y > 0).astype(np.float64) if target == "direction" else y
    model = make_forecaster("ridge", ModelContext(target, 1, tuple(f"x{i}" for i in range(17)), 0), {"alpha": 10.0})
    model.fit(X, y)
    batch = model.predict(X)
    np.testing.assert_array_equal(np.concatenate([model.predict(X[i : i + 1]) for i in range(400)]), batch)
    np.testing.assert_array_equal(np.concatenate([model.predict(X[i : i + 7]) for i in range(0, 400, 7)]), batch)
    sk = model.pipeline.predict_proba(X)[:, 1] if target == "direction" else model.pipeline.predict(X)  # type: ignore[attr-defined]
    np.testing.assert_allclose(batch, sk, rtol=1e-12, atol=1e-15)  # still sklearn's model


@pytest.mark.parametrize("target", ALL_TARGETS)
def test_a_label_depends_only_on_its_own_bars_bit_for_bit(bars: pd.DataFrame, target: str) -> None:
    """Paper mode computes labels on a recent tail of bars, evaluation on the whole span: same bits."""
    from envs.forecasting.targets import make_target

    close = bars["close"].to_numpy(np.float64)
    full = make_target(close, target, 5)
    for start in (1, 333, 1001):
        np.testing.assert_array_equal(make_target(close[start:], target, 5), full[start:])


def test_baselines_per_target_never_include_a_fifty_percent_guess() -> None:
    assert baselines_for("direction") == ["class_prior", "last"]
    assert set(baselines_for("fwd_log_return")) == {"zero", "rolling_mean", "last"}
    assert set(baselines_for("realized_vol")) == {"rolling_mean", "last"}


def test_join_adds_forecasts_only_and_refuses_lookahead_provenance(bars: pd.DataFrame) -> None:
    cfg = _config("ridge", ("fwd_log_return", "direction"), {})
    preds = walk_forward_predictions(bars, None, cfg)
    obs = bars[["timestamp", "close"]]
    joined = join_predictions(obs, preds)
    assert list(joined.columns) == ["timestamp", "close", "fc_fwd_log_return", "fc_direction"]
    first = int(np.flatnonzero(bars["timestamp"].to_numpy() == preds["timestamp"].iloc[0])[0])
    assert joined["fc_fwd_log_return"].iloc[:first].isna().all()  # warm-up
    np.testing.assert_array_equal(joined["fc_direction"].iloc[first:], preds["fc_direction"])
    bad = preds.copy()
    bad.loc[bad.index[10], "train_label_end"] = bad["timestamp"].iloc[10] + 3_600_000 + 1  # known after close
    with pytest.raises(ValueError, match="look-ahead"):
        join_predictions(obs, bad)
    with pytest.raises(ValueError, match="already hold"):
        join_predictions(joined, preds)


def test_bad_configs_fail_with_the_key_to_fix() -> None:
    with pytest.raises(ValueError, match="forecaster.update_every"):
        ForecastConfig(refit_every=100, update_every=100)
    with pytest.raises(ValueError, match="forecaster.targets"):
        ForecastConfig(targets=("price",))
    with pytest.raises(ValueError, match="train_window"):
        ForecastConfig(train_window=10, min_train=20)
    with pytest.raises(ValueError, match="unknown forecaster key"):
        ForecastConfig.from_mapping({"horizn": 2})
    with pytest.raises(ValueError, match="forecaster.params"):
        walk_forward_predictions(pd.DataFrame({"timestamp": np.arange(400) * 60_000, "close": np.ones(400)}),
                                 None, ForecastConfig(model="gbm", min_train=50, params={"n_trees": 3}))


#: a cheap ensemble: its weights read 40 + horizon - 1 trailing rows of ridge and last-return predictions
SMALL_ENSEMBLE = {"members": ["ridge", "last"], "trailing": 40, "member_params": {"ridge": {"alpha": 10.0}}}


@pytest.mark.parametrize("model,params", [("ridge", {}), ("tcn", SMALL_NET), ("ensemble", SMALL_ENSEMBLE)])
def test_continuing_a_saved_state_equals_the_walk_forward_over_both_spans(tmp_path, model: str, params: dict) -> None:
    """save_state after a prefix, continue_walk_forward on prefix + new bars == one run over everything."""
    from envs.forecasting.state import continue_walk_forward, save_state
    from tests.forecasting.conftest import synthetic_bars

    bars = synthetic_bars(520, seed=3, phi=0.2)
    cfg = ForecastConfig(model=model, targets=("fwd_log_return", "direction"), horizon=2, min_train=150,
                         train_window=250, refit_every=80, update_every=30, params=params)
    cut = 360
    save_state(run_walk_forward(bars.iloc[:cut], feature_frame(bars.iloc[:cut]), cfg), cfg, tmp_path)
    cont = continue_walk_forward(bars, feature_frame(bars), cfg, tmp_path)
    full = run_walk_forward(bars, feature_frame(bars), cfg).predictions
    pd.testing.assert_frame_equal(cont, full.iloc[len(full) - (len(bars) - cut):].reset_index(drop=True),
                                  check_exact=True)
    assert cont["model_id"].nunique() >= 3  # fits/updates ran inside the new span
    with pytest.raises(ValueError, match="saved for"):
        continue_walk_forward(bars, feature_frame(bars), ForecastConfig(model=model, min_train=150, params=params),
                              tmp_path)
    with pytest.raises(ValueError, match="no bars after"):
        continue_walk_forward(bars.iloc[:cut], feature_frame(bars.iloc[:cut]), cfg, tmp_path)


def test_ensemble_state_is_bounded_and_its_continuation_sees_no_later_bar(tmp_path) -> None:
    """The saved state holds only the rows the next weights read; a continued ensemble forecast at bar t
    is unchanged when the bars after t change (its weights use only labels known by t's close)."""
    from envs.forecasting.state import TRAIL_FILE, continue_walk_forward, save_state
    from tests.forecasting.conftest import synthetic_bars

    bars = synthetic_bars(520, seed=4, phi=0.3)
    cfg = ForecastConfig(model="ensemble", horizon=3, min_train=150, train_window=250, refit_every=80,
                         update_every=30, params=SMALL_ENSEMBLE)
    cut, t = 300, 400
    result = run_walk_forward(bars.iloc[:cut], feature_frame(bars.iloc[:cut]), cfg)
    save_state(result, cfg, tmp_path)
    trail = pd.read_parquet(tmp_path / TRAIL_FILE)
    assert len(result.predictions) > 100
    assert sorted(trail.groupby("member").size().items()) == [("last", 42), ("ridge", 42)]  # 40 + 3 - 1
    assert set(trail["timestamp"]) == set(result.predictions["timestamp"].iloc[-42:])
    base = continue_walk_forward(bars, feature_frame(bars), cfg, tmp_path)
    moved_bars = _perturb_after(bars, t)
    moved = continue_walk_forward(moved_bars, feature_frame(moved_bars), cfg, tmp_path)
    upto = base["timestamp"] <= bars["timestamp"].iloc[t]
    keep = ["fc_fwd_log_return", "model_id", "train_label_end"]
    pd.testing.assert_frame_equal(base.loc[upto, keep], moved.loc[upto, keep], check_exact=True)
    assert not base.loc[~upto, "fc_fwd_log_return"].equals(moved.loc[~upto, "fc_fwd_log_return"])
    decision = base["timestamp"].to_numpy() + 60_000
    assert (base["train_label_end"].to_numpy() == decision).all()  # the weights use the label known at the close


@pytest.mark.parametrize(("refit_every", "update_every", "horizon", "embargo"), [(7, 0, 1, 0), (10, 3, 2, 1), (9, 4, 3, 2)])
def test_grid_events_continue_the_schedule_from_any_of_its_events(refit_every: int, update_every: int, horizon: int,
                                                                 embargo: int) -> None:
    """Paper mode continues a saved schedule from its last event alone: the grid must be `schedule`'s."""
    cfg = ForecastConfig(model="ridge", min_train=5, train_window=5, refit_every=refit_every, update_every=update_every,
                         horizon=horizon, embargo=embargo)
    valid = np.ones(120, dtype=bool)
    valid[:13] = False  # a warm-up moves the first fit off bar 0
    events = schedule(valid, cfg)
    assert len(events) > 10
    for i, ev in enumerate(events):
        assert grid_events(ev, ev.bar + 1, 119, cfg) == events[i + 1:]
        assert grid_events(ev, 0, 119, cfg) == events  # nothing before the first fit
