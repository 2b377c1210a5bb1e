"""Live paper sessions against the local fake Binance (real ccxt, real sockets, real SQLite ledger).

The fake exchange's server time is a simulated clock the session's feed shares, so hours of hourly
bars close in a fraction of a second. The reference is one uninterrupted session over the same bars;
a disconnect mid-session, a restart (with downtime) and a feed that goes silent and recovers must
end with the same ledger: every closed bar decided exactly once, never a forming candle.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.ledger import read_table
from agents.paper.session import run_paper
from envs.feeds.clock import SimulatedClock
from tests.agents.paper.conftest import REPO, TRAIN_END
from tests.fake_exchange import FakeExchange
from tests.fake_ws_exchange import FakeWsExchange

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


@pytest.fixture(scope="module")
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


def live_config(run_dir: Path, paper_dir: Path, url: str, end_ms: int = END_MS, **feed: object) -> PaperConfig:
    kw: dict = {"kind": "live", "api_url": url, "end": iso(end_ms), "settle_ms": 500, "poll_interval_s": 1.0,
                "reconnect_delay_s": 60.0, "max_retries": 1, "timeout_ms": 3000, **feed}
    return PaperConfig(run_dir=str(run_dir), dir=str(paper_dir), tail_bars=TAIL, feed=PaperFeedConfig(**kw))


def decisions(paper_dir: Path) -> pd.DataFrame:
    return read_table(paper_dir, "decisions").drop(columns=["decided_at_ms", "latency_ms"])


def steps(paper_dir: Path) -> pd.DataFrame:
    return read_table(paper_dir, "steps").drop(columns=["settled_at_ms"])


def assert_same_session(got: Path, ref: Path) -> None:
    pd.testing.assert_frame_equal(decisions(got), decisions(ref))
    pd.testing.assert_frame_equal(steps(got), steps(ref))
    orders = read_table(got, "orders")
    assert orders.client_order_id.is_unique and len(orders) == len(decisions(got))


@pytest.fixture(scope="module")
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


def test_rest_session_decides_every_closed_bar_once_with_exact_values(reference: Path, hourly: pd.DataFrame,
                                                                      tiny_run: Path) -> None:
    dec = decisions(reference)
    want = hourly.iloc[99:99 + N_LIVE].reset_index(drop=True)
    assert dec.bar_ts.tolist() == want.timestamp.tolist()  # the latest closed bar at start, then each once
    np.testing.assert_array_equal(dec.price.to_numpy(), want.close.to_numpy())  # final values, never partial
    assert dec.bar_index.tolist() == list(range(TAIL - 1, TAIL - 1 + N_LIVE))  # history = tail_bars - 1 bars
    assert len(steps(reference)) == N_LIVE - 1
    # the store is the feed's commit log: the backfilled history and every live bar, exact
    from envs.data.store import ParquetStore

    stored = ParquetStore(reference / "store").read("binance", "BTC/USDT", "1h")
    pd.testing.assert_frame_equal(stored.tail(TAIL - 1 + N_LIVE).reset_index(drop=True),
                                  hourly.iloc[99 - (TAIL - 1):99 + N_LIVE].reset_index(drop=True))
    meta = dict(read_table(reference, "meta")[["key", "value"]].to_numpy())
    assert meta["feed.kind"] == "live" and meta["feed.source"].startswith("binance spot BTC/USDT 1h")


def test_disconnect_mid_session(tiny_run: Path, reference: Path, exchange: FakeExchange, clock: SimulatedClock,
                                tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exchange.add_fault("drop", path="/api/v3/klines", skip=12, count=6)  # three polls fail outright
    with caplog.at_level(logging.INFO):
        run_paper(live_config(tiny_run, tmp_path, exchange.url), clock=clock)
    assert sum(r.fault == "drop" for r in exchange.requests) == 6
    assert "poll gave up" in caplog.text
    assert_same_session(tmp_path, reference)


def test_restart_after_downtime_resumes_from_the_ledger(tiny_run: Path, reference: Path, exchange: FakeExchange,
                                                       clock: SimulatedClock, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    first = run_paper(live_config(tiny_run, tmp_path, exchange.url, end_ms=T0 + 110 * HOUR), clock=clock)
    assert first["bars"] == 11
    clock.advance_ms(5 * HOUR)  # the session is down for five hours
    with caplog.at_level(logging.INFO):
        second = run_paper(live_config(tiny_run, tmp_path, exchange.url), clock=clock)
    assert "resuming" in caplog.text
    assert second["resumed_at"] == TAIL - 1 + 10  # the ledger's last bar is fed again (its order resent)
    lags = [r for r in caplog.records if "feed lag" in r.getMessage() and r.name == "agents.paper.engine"]
    assert max(float(r.getMessage().split("feed lag ")[1].split()[0]) for r in lags) > 4.9  # the bars of the downtime came late
    assert_same_session(tmp_path, reference)


def test_silent_feed_recovers_and_late_bars_carry_their_lag(tiny_run: Path, reference: Path, exchange: FakeExchange,
                                                            clock: SimulatedClock, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    # from the 20th klines request on, the exchange answers nothing useful for ten polls (10 x 60 s
    # of reconnect delay plus backoff, then hours of silence while the clock moves on)
    exchange.add_fault("500", path="/api/v3/klines", skip=20, count=20)
    with caplog.at_level(logging.INFO):
        run_paper(live_config(tiny_run, tmp_path, exchange.url, reconnect_delay_s=1200.0), clock=clock)
    late = [r.getMessage() for r in caplog.records if "after its close" in r.getMessage()]
    assert late, "the bars backfilled after the silence must report their lag"
    assert_same_session(tmp_path, reference)


def test_timeframe_must_be_the_runs(tiny_run: Path, exchange: FakeExchange, clock: SimulatedClock,
                                   tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feed.timeframe='1m' differs from the run's data.timeframe='1h'"):
        run_paper(live_config(tiny_run, tmp_path, exchange.url, timeframe="1m"), clock=clock)


def _wait_decided(paper_dir: Path, bar_ts: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if bar_ts in set(read_table(paper_dir, "decisions").bar_ts):
                return
        except (ValueError, pd.errors.DatabaseError):
            pass  # the ledger is not there yet
        assert time.monotonic() < deadline, f"bar {iso(bar_ts)} was never decided"
        time.sleep(0.02)


def test_websocket_session_through_a_drop_and_a_silent_stream(tiny_run: Path, reference: Path, hourly: pd.DataFrame,
                                                              exchange: FakeExchange, clock: SimulatedClock,
                                                              tmp_path: Path) -> None:
    ws = FakeWsExchange(hourly, timeframe="1h").start()
    cfg = live_config(tiny_run, tmp_path, exchange.url, mode="websocket", ws_url=ws.url, ws_fallback_ms=60_000)
    result: dict = {}

    def session() -> None:
        try:
            result["summary"] = run_paper(cfg, clock=clock)
        except BaseException as err:  # reported by the main thread
            result["error"] = err

    worker = threading.Thread(target=session, daemon=True)
    worker.start()
    try:
        ws.wait_subscribed(1, timeout_s=60)
        _wait_decided(tmp_path, int(hourly.timestamp[99]))  # backfilled through REST at start
        silent = range(115, 118)
        for i in range(100, 99 + N_LIVE):
            if i == 110:  # the connection dies; the feed reconnects (backoff on its clock) and backfills
                ws.drop()
                ws.wait_subscribed(2, timeout_s=60)
            close = int(hourly.timestamp[i]) + HOUR
            if i in silent:  # nothing on the stream: REST serves the bar once it is ws_fallback_ms overdue
                clock.set_ms(max(clock.now_ms(), close + 61_000))
            else:
                clock.set_ms(max(clock.now_ms(), close + 1_000))
                ws.push_bar(i)
            _wait_decided(tmp_path, int(hourly.timestamp[i]))
        worker.join(60)
    finally:
        ws.stop()
    assert not worker.is_alive() and "error" not in result, result.get("error")
    stats = result["summary"]["feed_stats"]
    assert stats.ws_disconnects >= 1 and stats.ws_bars >= N_LIVE - 10 and stats.ws_connects >= 2
    assert_same_session(tmp_path, reference)
