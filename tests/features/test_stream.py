"""The per-bar feature stream equals the batch features, column by column, for every registry entry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from envs.features.indicators import INDICATORS, IndicatorParams
from envs.features.levels import LEVEL_COLUMNS
from envs.features.pipeline import INDICATOR_COLUMNS, FeatureConfig, build_features
from envs.features.stream import FeatureStream, memory_bars

N_BARS = 1500  # > the stream's memory (1025 bars with these windows): the last rows are recomputed on a tail
#: every column of every family, on the base bars and on 15m bars (100 of them: past every HTF warm-up)
ALL = FeatureConfig(return_lags=(1, 2), indicator_columns=INDICATOR_COLUMNS, mtf_timeframes=("15m",),
                    mtf_families=("returns", "indicators", "levels"), mtf_indicator_columns=INDICATOR_COLUMNS,
                    dtype="float64")


@pytest.fixture(scope="module")
def streamed(sample_1m: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(batch features, streamed rows) of the first N_BARS bars of the sample, both float64."""
    bars = sample_1m.iloc[:N_BARS].reset_index(drop=True)
    batch = build_features(bars, ALL)
    stream = FeatureStream(ALL)
    assert list(stream.columns) == batch.attrs["feature_columns"]
    rows = [stream.append(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars.itertuples()]
    return batch[list(stream.columns)], pd.DataFrame(np.array(rows), columns=list(stream.columns))


def _assert_close(batch: pd.DataFrame, got: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        b, s = batch[col].to_numpy(), got[col].to_numpy()
        assert np.array_equal(np.isnan(b), np.isnan(s)), f"{col}: warm-up NaN differ"
        assert np.isfinite(b).sum() > N_BARS // 2, f"{col}: too few values to compare"
        err = np.nanmax(np.abs(b - s))
        assert err <= 1e-12, f"{col}: streamed differs from batch by {err:.3g}"  # bound 1e-9; 1e-12 seen


@pytest.mark.parametrize("entry", INDICATORS, ids=[ind.columns[0] for ind in INDICATORS])
def test_every_registry_entry_streams_to_its_batch_values(streamed, entry) -> None:
    batch, got = streamed
    _assert_close(batch, got, [*entry.columns, *(f"mtf_15m_{c}" for c in entry.columns)])


def test_returns_time_and_levels_stream_to_their_batch_values(streamed) -> None:
    batch, got = streamed
    other = [c for c in batch.columns if c.removeprefix("mtf_15m_") not in INDICATOR_COLUMNS]
    assert set(LEVEL_COLUMNS) <= set(other) and "logret_1_lag2" in other and "tod_sin" in other
    _assert_close(batch, got, other)


def test_a_seeded_stream_continues_as_the_batch(sample_1m: pd.DataFrame, streamed) -> None:
    # seed (the batch code, at once) then append one by one: the same rows as streaming every bar
    batch, _ = streamed
    bars = sample_1m.iloc[:N_BARS].reset_index(drop=True)
    stream = FeatureStream(ALL)
    cut = 1111  # inside an open 15m bucket (1111 % 15 != 0)
    seeded = stream.seed(bars.iloc[:cut])
    rows = [stream.append(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars.iloc[cut:].itertuples()]
    got = pd.DataFrame(np.vstack([seeded, np.array(rows)]), columns=list(stream.columns))
    _assert_close(batch, got, list(stream.columns))
    with pytest.raises(RuntimeError, match="before appending"):
        stream.seed(bars.iloc[:10])


def test_levels_are_carried_not_recomputed(sample_1m: pd.DataFrame) -> None:
    # the levels state remembers every touch: a recompute on the stream's tail would miss old touches
    cfg = FeatureConfig(returns=False, time=False, indicators=False, mtf_timeframes=(), dtype="float64")
    bars = sample_1m.iloc[:N_BARS].reset_index(drop=True)
    m = FeatureStream(cfg).memory
    full = build_features(bars, cfg)
    tail = build_features(bars.iloc[-m:], cfg)
    cols = ["sr_support_touches", "sr_resistance_touches"]
    assert np.nanmax(np.abs(full[cols].iloc[-100:].to_numpy() - tail[cols].iloc[-100:].to_numpy())) >= 1


def test_recomputed_families_are_truncation_invariant_over_their_memory(sample_1m: pd.DataFrame) -> None:
    cfg = dataclasses.replace(ALL, levels=False, fibonacci=False, mtf_timeframes=())
    m = memory_bars(cfg)
    assert m == max(ind.memory(IndicatorParams.of(cfg)) for ind in INDICATORS) + 1
    bars = sample_1m.iloc[: 3 * m].reset_index(drop=True)
    full = build_features(bars, cfg)
    cols = full.attrs["feature_columns"]
    for t in (m + 7, 2 * m, 3 * m - 1):
        cut = build_features(bars.iloc[t - m + 1 : t + 1], cfg)
        err = np.abs(cut[cols].iloc[-1].to_numpy() - full[cols].iloc[t].to_numpy())
        assert np.nanmax(err) <= 1e-9
        short = build_features(bars.iloc[t - m // 4 + 1 : t + 1], cfg)  # the memory is not vacuous
        assert np.nanmax(np.abs(short[["rsi", "adx"]].iloc[-1].to_numpy() - full[["rsi", "adx"]].iloc[t].to_numpy())) > 1e-9


def test_latest_rows_are_the_last_appended_rows_in_the_config_dtype(sample_1m: pd.DataFrame) -> None:
    cfg = FeatureConfig(mtf_timeframes=())
    stream = FeatureStream(cfg, rows=5)
    rows = [stream.append(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in sample_1m.iloc[:3].itertuples()]
    got = stream.latest(5)
    assert got.dtype == np.float32 and np.isnan(got[:2]).all()
    np.testing.assert_array_equal(got[2:], np.array(rows).astype(np.float32))
    with pytest.raises(ValueError, match="rows=6"):
        stream.latest(6)


def test_a_bar_not_after_the_previous_is_refused(sample_1m: pd.DataFrame) -> None:
    stream = FeatureStream(FeatureConfig(mtf_timeframes=()))
    b = sample_1m.iloc[0]
    stream.append(b.timestamp, b.open, b.high, b.low, b.close, b.volume)
    with pytest.raises(ValueError, match="strictly increasing"):
        stream.append(b.timestamp, b.open, b.high, b.low, b.close, b.volume)
