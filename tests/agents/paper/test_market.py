"""Per-bar features on a bounded tail equal the batch features of the whole history (<= 1e-9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from agents.paper.config import DEFAULT_TAIL_BARS
from agents.paper.market import BarTail, simulation_of
from envs.features.pipeline import FeatureConfig, build_features
from envs.feeds.base import frame_to_bars
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig
from tests.agents.paper.conftest import CONF


def _configs() -> tuple[EnvConfig, FeatureConfig]:
    env = EnvConfig.from_dict(OmegaConf.to_container(OmegaConf.load(CONF / "env" / "spot_inout.yaml")))  # type: ignore[arg-type]
    feats = FeatureConfig.from_mapping(OmegaConf.to_container(OmegaConf.load(CONF / "features" / "hourly.yaml")))  # type: ignore[arg-type]
    return env, feats


def _max_error(sample: pd.DataFrame, tail_bars: int, bars: list[int]) -> float:
    """Largest |tail - batch| over the observation window's features and the kernel's market rows."""
    env, feats = _configs()
    full_md = MarketData.load(build_features(sample, feats))
    normalizer = FeatureNormalizer.fit(full_md.slice(0, 8000))
    full = simulation_of(full_md, env, normalizer)
    w = env.window_size
    worst = 0.0
    for k in bars:
        tail = BarTail(env, feats, normalizer, tail_bars)
        first = k - tail_bars + 1
        tail.seed(frame_to_bars(sample.iloc[first : k + 1]), first)
        sim = tail.simulation()
        assert tail.offset == first and tail.last_index == k
        f_err = np.abs(sim.features[-w:].astype(np.float64) - full.features[k - w + 1 : k + 1]).max()
        m_tail, m_full = sim.market[-2:], full.market[k - 1 : k + 1]  # rows t and t + 1 of a settlement
        assert np.array_equal(np.isnan(m_tail), np.isnan(m_full))
        m_err = np.nanmax(np.abs(m_tail - m_full) / np.maximum(np.abs(m_full), 1.0))
        worst = max(worst, float(f_err), float(m_err))
    return worst


def test_tail_features_match_batch_features_on_the_sample(sample_1h: pd.DataFrame) -> None:
    n = len(sample_1h)
    bars = [int(k) for k in np.linspace(DEFAULT_TAIL_BARS + 10, n - 1, 12)]
    assert _max_error(sample_1h, DEFAULT_TAIL_BARS, bars) <= 1e-9


@pytest.mark.parametrize("tail_bars", [256])
def test_a_short_tail_is_not_within_the_bound(sample_1h: pd.DataFrame, tail_bars: int) -> None:
    # the bound above is not vacuous: features with long memory differ on a short tail
    bars = [int(k) for k in np.linspace(DEFAULT_TAIL_BARS + 10, len(sample_1h) - 1, 4)]
    assert _max_error(sample_1h, tail_bars, bars) > 1e-6
