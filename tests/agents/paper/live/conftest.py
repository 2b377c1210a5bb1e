"""Fixtures of the live paper tests: hourly bars served by the local fake Binance on a simulated clock.

Live paper sessions against the local fake Binance (real ccxt, real sockets, real SQLite ledger).

The fake exchange's server time is a simulated clock the session's feed shares, so hours of hourly
bars close in a fraction of a second. The reference is one uninterrupted session over the same bars;
a disconnect mid-session, a restart (with downtime) and a feed that goes silent and recovers must
end with the same ledger: every closed bar decided exactly once, never a forming candle.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.ledger import read_table
from agents.paper.session import run_paper
from envs.feeds.clock import SimulatedClock
from envs.sim import kernel as K
from tests.agents.paper.conftest import REPO, TRAIN_END
from tests.fake_exchange import FakeExchange

os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"

HOUR = 3_600_000
TAIL = 64
#: the session starts 100.5 hours into 2023: bars 0..99 of 2023 have closed, bar 100 is forming
T0 = int(pd.Timestamp(TRAIN_END, tz="UTC").value // 1_000_000)
START_MS = T0 + 100 * HOUR + HOUR // 2
N_LIVE = 30  # bars decided: 99 (the latest closed at start) .. 128
END_MS = T0 + (99 + N_LIVE) * HOUR


def iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


@pytest.fixture(scope="session")
def hourly() -> pd.DataFrame:
    """Real hourly BTC/USDT bars of 2023 (after the tiny run's training span)."""
    df = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    return df[(df.timestamp >= T0) & (df.timestamp < T0 + 400 * HOUR)].reset_index(drop=True)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START_MS)


@pytest.fixture
def exchange(hourly: pd.DataFrame, clock: SimulatedClock) -> Iterator[FakeExchange]:
    fx = FakeExchange(hourly, now_ms=clock.now_ms, timeframe="1h").start()
    try:
        yield fx
    finally:
        fx.stop()


def live_config(run_dir: Path, paper_dir: Path, url: str, end_ms: int = END_MS, tail_bars: int = TAIL,
                **feed: object) -> PaperConfig:
    kw: dict = {"kind": "live", "api_url": url, "end": iso(end_ms), "settle_ms": 500, "poll_interval_s": 1.0,
                "reconnect_delay_s": 60.0, "max_retries": 1, "timeout_ms": 3000, "rate_limit_ms": 2, **feed}
    return PaperConfig(run_dir=str(run_dir), dir=str(paper_dir), tail_bars=tail_bars, feed=PaperFeedConfig(**kw))


def decisions(paper_dir: Path) -> pd.DataFrame:
    """What was decided (the wall/feed-clock fields and the recorded feed lag aside: a late bar is late)."""
    return read_table(paper_dir, "decisions").drop(columns=["decided_at_ms", "latency_ms", "feed_lag"])


def steps(paper_dir: Path) -> pd.DataFrame:
    """The settled steps; the kernel state's feed-lag input row is zeroed (a late bar is late, nothing else)."""
    out = read_table(paper_dir, "steps").drop(columns=["settled_at_ms"])

    def without_lag(state: bytes) -> bytes:
        row = np.frombuffer(state, dtype="<f8").copy()
        row[K.S_FEED_LAG] = 0.0
        return row.tobytes()

    out["state"] = out["state"].map(without_lag)
    return out


def assert_same_session(got: Path, ref: Path) -> None:
    """Same decisions and steps as the reference (no stale-feed guard configured, so lag changes nothing)."""
    pd.testing.assert_frame_equal(decisions(got), decisions(ref))
    pd.testing.assert_frame_equal(steps(got), steps(ref))
    orders = read_table(got, "orders")
    assert orders.client_order_id.is_unique and len(orders) == len(decisions(got))


@pytest.fixture(scope="session")
def reference(tiny_run: Path, hourly: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted REST session from START_MS to END_MS."""
    clock = SimulatedClock(START_MS)
    fx = FakeExchange(hourly, now_ms=clock.now_ms, timeframe="1h").start()
    paper_dir = tmp_path_factory.mktemp("live_ref")
    try:
        summary = run_paper(live_config(tiny_run, paper_dir, fx.url), clock=clock)
    finally:
        fx.stop()
    assert summary["bars"] == N_LIVE
    return paper_dir


