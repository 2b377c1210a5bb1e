"""Fixtures for store/download/retry tests: the fake Binance server and sample frames."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pytest

from tests.fake_exchange import SAMPLE_1M, SAMPLE_DIR, SAMPLE_FUNDING, FakeExchange

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

#: server time used by download tests: one minute after the last sample bar closed
SAMPLE_END_MS = 1717804800000


@pytest.fixture
def fake_exchange() -> Iterator[FakeExchange]:
    """Fake Binance serving the 1m sample; its clock is just past the sample's last bar."""
    fx = FakeExchange.from_samples(now_ms=SAMPLE_END_MS + 60_000).start()
    try:
        yield fx
    finally:
        fx.stop()


@pytest.fixture(scope="session")
def bars_1m() -> pd.DataFrame:
    """The shipped week of real BTC/USDT 1m bars (10,080 rows)."""
    return pd.read_parquet(SAMPLE_1M)


@pytest.fixture(scope="session")
def bars_1h() -> pd.DataFrame:
    """The shipped real BTC/USDT 1h bars (2022-01 .. 2024-04, 28 months)."""
    return pd.read_parquet(SAMPLE_DIR / "btcusdt_1h.parquet")


@pytest.fixture(scope="session")
def funding_8h() -> pd.DataFrame:
    """The shipped real BTCUSDT perpetual funding rates."""
    return pd.read_parquet(SAMPLE_FUNDING)
