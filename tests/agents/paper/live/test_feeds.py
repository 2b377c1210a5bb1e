"""Live paper sessions (REST and websocket) against the local fake Binance: real ccxt, real sockets, real SQLite.

The reference is one uninterrupted session over the same bars (conftest ``reference``); a disconnect
mid-session, a restart with downtime and a feed that goes silent and recovers must end with the same
ledger: every closed bar decided exactly once, never a forming candle.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.paper.ledger import read_table
from agents.paper.session import run_paper
from envs.data.store import ParquetStore
from envs.feeds.clock import SimulatedClock
from tests.agents.paper.live.conftest import (
    HOUR,
    N_LIVE,
    T0,
    TAIL,
    assert_same_session,
    decisions,
    iso,
    live_config,
    steps,
)
from tests.fake_exchange import FakeExchange
from tests.fake_ws_exchange import FakeWsExchange


def test_rest_session_decides_every_closed_bar_once_with_exact_values(reference: Path, hourly: pd.DataFrame,
                                                                      tiny_run: Path) -> None:
    dec = decisions(reference)
    want = hourly.iloc[99:99 + N_LIVE].reset_index(drop=True)
    assert dec.bar_ts.tolist() == want.timestamp.tolist()  # the latest closed bar at start, then each once
    np.testing.assert_array_equal(dec.price.to_numpy(), want.close.to_numpy())  # final values, never partial
    assert dec.bar_index.tolist() == list(range(TAIL - 1, TAIL - 1 + N_LIVE))  # history = tail_bars - 1 bars
    assert len(steps(reference)) == N_LIVE - 1
    # the store is the feed's commit log: the backfilled history and every live bar, exact
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


@pytest.mark.parametrize("lose_store", [False, True], ids=["store", "store_lost"])
def test_restart_after_downtime_resumes_from_the_ledger(tiny_run: Path, reference: Path, exchange: FakeExchange,
                                                       clock: SimulatedClock, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture, lose_store: bool) -> None:
    first = run_paper(live_config(tiny_run, tmp_path, exchange.url, end_ms=T0 + 110 * HOUR), clock=clock)
    assert first["bars"] == 11
    clock.advance_ms(5 * HOUR)  # the session is down for five hours
    if lose_store:  # the history is backfilled from the exchange again
        shutil.rmtree(tmp_path / "store")
    with caplog.at_level(logging.INFO):
        second = run_paper(live_config(tiny_run, tmp_path, exchange.url), clock=clock)
    assert "resuming" in caplog.text
    assert second["resumed_at"] == TAIL - 1 + 10  # the ledger's last bar is fed again (its order resent)
    lags = [r for r in caplog.records if "feed lag" in r.getMessage() and r.name == "agents.paper.monitor"]
    seconds = [float(r.getMessage().split("feed lag ")[1].split()[0]) for r in lags]  # the status line, in s
    assert max(seconds) > 4.9 * 3600  # the bars of the downtime came late
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
