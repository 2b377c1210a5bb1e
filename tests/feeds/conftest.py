"""Fixtures for feed tests: a simulated clock shared by the fake Binance server and the feed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pytest

from envs.feeds.clock import SimulatedClock
from tests.fake_exchange import SAMPLE_1M, FakeExchange

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

SAMPLE_START_MS = 1717200000000  # 2024-06-01 00:00 UTC, first sample bar


@pytest.fixture
def sim_clock() -> SimulatedClock:
    """Simulated time starting 30 s into the first sample bar (nothing closed yet)."""
    return SimulatedClock(SAMPLE_START_MS + 30_000)


@pytest.fixture
def live_exchange(sim_clock: SimulatedClock) -> Iterator[FakeExchange]:
    """Fake Binance whose server time is the simulated clock, so bars close as the clock advances."""
    fx = FakeExchange.from_samples(now_ms=sim_clock.now_ms).start()
    try:
        yield fx
    finally:
        fx.stop()


@pytest.fixture(scope="session")
def bars_1m() -> pd.DataFrame:
    """The shipped week of real BTC/USDT 1m bars (10,080 rows)."""
    return pd.read_parquet(SAMPLE_1M)
