"""Property: for random horizons, windows, refit/update intervals and embargoes, every label behind
the prediction used at bar t was known at t's close (read from the audit trail of sample indices
each fit/update actually used), and ``train_label_end`` states the latest of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.forecasting.config import ForecastConfig
from envs.forecasting.walk_forward import run_walk_forward
from tests.forecasting.conftest import synthetic_bars

BARS = synthetic_bars(260, seed=3)
STEP_MS = 60_000


@st.composite
def configs(draw: st.DrawFn) -> ForecastConfig:
    refit = draw(st.integers(2, 60))
    min_train = draw(st.integers(2, 40))
    return ForecastConfig(
        model="rolling_mean",  # the schedule is model-agnostic; the cheapest model keeps 60 examples fast
        targets=("fwd_log_return", "realized_vol"),
        horizon=draw(st.integers(1, 12)),
        n_lags=draw(st.integers(1, 3)),
        window=draw(st.sampled_from(["rolling", "expanding"])),
        train_window=min_train + draw(st.integers(0, 50)),
        min_train=min_train,
        refit_every=refit,
        update_every=draw(st.integers(0, refit - 1)),
        embargo=draw(st.integers(0, 10)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs())
def test_no_label_used_at_t_became_known_after_t(cfg: ForecastConfig) -> None:
    res = run_walk_forward(BARS, None, cfg)
    preds = res.predictions
    ts = BARS["timestamp"].to_numpy()
    k = cfg.horizon
    bar_of = {int(v): i for i, v in enumerate(ts)}
    assert len(preds) > 0
    for row in preds.itertuples(index=False):
        t = bar_of[int(row.timestamp)]
        windows = res.windows[row.model_id]
        used = np.concatenate(windows)
        # the label of sample s is known at the close of bar s + k
        assert int(used.max()) + k <= t, (row.model_id, t)
        # train_label_end is the close time of the latest label-known bar, never after t's close
        assert row.train_label_end == ts[int(used.max()) + k] + STEP_MS
        assert row.train_label_end <= ts[t] + STEP_MS
        # the embargo holds for every fit/update: its labels were known `embargo` bars before it
        fit_bar = bar_of[int(str(row.model_id).rsplit("@", 1)[1])]
        assert int(windows[-1].max()) + k + cfg.embargo <= fit_bar <= t


def test_first_prediction_waits_for_min_train_known_labels() -> None:
    cfg = ForecastConfig(model="rolling_mean", horizon=5, n_lags=1, min_train=30, train_window=30,
                         refit_every=10, embargo=2)
    preds = run_walk_forward(BARS, None, cfg).predictions
    # inputs (lag_0) are valid from bar 1; the 30th usable sample is bar 30, known at 35, +2 embargo
    assert int(preds["timestamp"].iloc[0]) == int(BARS["timestamp"].iloc[37])
    assert isinstance(preds, pd.DataFrame)
