"""The prediction cache: a hit returns the same frame; any change of data, feature config, forecaster
config or code version gives another key (a stale hit is impossible)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from envs.forecasting import cache as cache_mod
from envs.forecasting.cache import PredictionCache, cached_predictions
from envs.forecasting.config import ForecastConfig
from tests.forecasting.conftest import SMALL_FEATURES, synthetic_bars

CFG = ForecastConfig(model="ridge", min_train=100, train_window=200, refit_every=100, update_every=25)
#: a changed value for every ForecastConfig field
CHANGES = {
    "model": "gbm", "targets": ("direction",), "horizon": 2, "n_lags": 4, "window": "expanding",
    "train_window": 300, "min_train": 120, "refit_every": 90, "update_every": 0, "embargo": 3, "seed": 7,
    "params": {"alpha": 2.0},
}


def test_every_forecaster_field_is_covered() -> None:
    assert set(CHANGES) == {f.name for f in dataclasses.fields(ForecastConfig)}


def test_hit_returns_the_computed_frame_and_any_change_misses(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    bars = synthetic_bars(600, seed=1)
    cache = PredictionCache(tmp_path)
    first = cached_predictions(bars, SMALL_FEATURES, CFG, cache)
    again = cached_predictions(bars, SMALL_FEATURES, CFG, cache)
    assert (cache.misses, cache.hits) == (1, 1)
    pd.testing.assert_frame_equal(first, again, check_exact=True)

    base = PredictionCache.key(bars, SMALL_FEATURES, CFG)
    keys = {base}
    for name, value in CHANGES.items():
        keys.add(PredictionCache.key(bars, SMALL_FEATURES, dataclasses.replace(CFG, **{name: value})))
    for f in dataclasses.fields(SMALL_FEATURES):
        value = getattr(SMALL_FEATURES, f.name)
        changed = (not value) if isinstance(value, bool) else None
        if isinstance(value, int) and not isinstance(value, bool):
            changed = value + 1
        if changed is not None:
            keys.add(PredictionCache.key(bars, dataclasses.replace(SMALL_FEATURES, **{f.name: changed}), CFG))
    moved = bars.copy()
    moved.loc[599, "close"] *= 1.0001  # one bar's close
    keys.add(PredictionCache.key(moved, SMALL_FEATURES, CFG))
    monkeypatch.setattr(cache_mod, "FORECAST_VERSION", "test-bump")
    keys.add(PredictionCache.key(bars, SMALL_FEATURES, CFG))
    n_feature_changes = sum(
        1 for f in dataclasses.fields(SMALL_FEATURES)
        if isinstance(getattr(SMALL_FEATURES, f.name), (bool, int))
    )
    assert len(keys) == 1 + len(CHANGES) + n_feature_changes + 2

    # after a forecaster change the lookup computes anew (and gives other predictions)
    monkeypatch.undo()
    other = cached_predictions(bars, SMALL_FEATURES, dataclasses.replace(CFG, embargo=3), cache)
    assert cache.misses == 2
    assert not other["train_label_end"].equals(first["train_label_end"])
