"""LiveFeed (real ccxt, fake Binance on a simulated clock) and HistoricalFeed."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from envs.data.exchange import make_exchange
from envs.data.retry import RetryPolicy
from envs.data.store import ParquetStore
from envs.feeds.base import Bar, MarketFeed, frame_to_bars
from envs.feeds.ccxt_live import LiveFeed, LiveFeedConfig
from envs.feeds.clock import SimulatedClock
from envs.feeds.historical import HistoricalFeed
from tests.feeds.conftest import SAMPLE_START_MS

MIN = 60_000
CFG = LiveFeedConfig(
    settle_ms=500, min_poll_interval_s=1.0, reconnect_delay_s=5.0,
    retry=RetryPolicy(max_retries=2, base_delay_s=1.0, max_delay_s=4.0, jitter_frac=0.0),
)


def exchange(fx):
    return make_exchange("binance", api_url=fx.url, timeout_ms=2000, rate_limit_ms=2)


def closed_prefix(bars: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    return bars[bars.timestamp + MIN <= now_ms].reset_index(drop=True)


def test_poll_delivers_every_closed_bar_once_in_order_through_faults(sim_clock, live_exchange, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    feed = LiveFeed(exchange(live_exchange), "BTC/USDT", "1m", store=store, clock=sim_clock,
                    start=SAMPLE_START_MS, config=CFG)
    assert isinstance(feed, MarketFeed)
    faults = {25: "500", 50: "truncate", 75: "429", 100: "duplicate", 125: "shuffle", 150: "drop", 175: "delay"}
    rng = random.Random(7)
    got = []
    for i in range(200):
        if i in faults:
            live_exchange.add_fault(faults[i], path="/api/v3/klines", count=1, retry_after_s=2, delay_s=2.5)
        sim_clock.advance_ms(rng.choice([0, 7_000, 23_000, 59_999, 60_000, 61_000, 150_000, 1_000]))
        now = sim_clock.now_ms()
        df = feed.poll()
        assert (df.timestamp + MIN <= now).all(), "emitted a bar that was still forming"
        got.append(df)
    # a poll at the same instant adds nothing
    assert feed.poll().empty
    delivered = pd.concat(got, ignore_index=True)
    assert delivered.timestamp.is_monotonic_increasing and delivered.timestamp.is_unique
    expect = closed_prefix(bars_1m, feed.last_delivered_ms + MIN)
    assert len(expect) > 120
    pd.testing.assert_frame_equal(delivered, expect)  # exact values: never the partial forming candle
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), expect)
    statuses = {r.fault: r.status for r in live_exchange.requests if r.fault}
    assert statuses["429"] == 429 and statuses["500"] == 500 and statuses["truncate"] == 200
    assert feed.stats.disconnects == 0 and feed.stats.gaps == []


def test_disconnect_then_backfill(sim_clock, live_exchange, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    feed = LiveFeed(exchange(live_exchange), "BTC/USDT", "1m", store=store, clock=sim_clock,
                    start=SAMPLE_START_MS, config=CFG)
    sim_clock.advance_ms(10 * MIN)
    first = feed.poll()
    assert len(first) == 10
    live_exchange.add_fault("drop", path="/api/v3/klines", count=3)  # 1 try + 2 retries all fail
    sim_clock.advance_ms(20 * MIN)
    assert feed.poll().empty and feed.stats.disconnects == 1
    sim_clock.advance_ms(30 * MIN)  # the link is back after half an hour
    back = feed.poll()
    delivered = pd.concat([first, back], ignore_index=True)
    pd.testing.assert_frame_equal(delivered, closed_prefix(bars_1m, sim_clock.now_ms()))
    assert len(back) >= 50
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), delivered)


def test_restart_from_store_backfills_the_downtime_exactly_once(sim_clock, live_exchange, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    ex = exchange(live_exchange)
    feed = LiveFeed(ex, "BTC/USDT", "1m", store=store, clock=sim_clock, start=SAMPLE_START_MS, config=CFG)
    before = []
    for _ in range(40):
        sim_clock.advance_ms(37_000)
        before.append(feed.poll())
    del feed  # process dies
    sim_clock.advance_ms(45 * MIN + 13_000)  # downtime
    restarted = LiveFeed(ex, "BTC/USDT", "1m", store=store, clock=sim_clock, config=CFG)
    assert restarted.last_delivered_ms == int(pd.concat(before).timestamp.iloc[-1])
    after = [restarted.poll()]
    for _ in range(20):
        sim_clock.advance_ms(29_000)
        after.append(restarted.poll())
    delivered = pd.concat(before + after, ignore_index=True)
    pd.testing.assert_frame_equal(delivered, closed_prefix(bars_1m, sim_clock.now_ms()))
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), delivered)


def test_iterator_replays_fast_on_simulated_clock_across_a_disconnect(sim_clock, live_exchange, bars_1m):
    feed = LiveFeed(exchange(live_exchange), "BTC/USDT", "1m", clock=sim_clock, start=SAMPLE_START_MS, config=CFG)
    live_exchange.add_fault("drop", path="/api/v3/klines", skip=60, count=4)
    until = SAMPLE_START_MS + 180 * MIN
    bars = list(feed.bars(until_ms=until))
    assert bars == frame_to_bars(bars_1m.iloc[:180])
    assert all(isinstance(b, Bar) for b in bars)
    assert feed.stats.disconnects == 1
    assert until <= sim_clock.now_ms() < until + MIN  # it waited for the last close, not longer
    assert len(live_exchange.requests_to("/api/v3/klines")) < 200  # about one request per bar


def test_fresh_start_delivers_only_the_latest_closed_bar(sim_clock, live_exchange, bars_1m):
    sim_clock.advance_ms(90 * MIN)
    feed = LiveFeed(exchange(live_exchange), "BTC/USDT", "1m", clock=sim_clock, config=CFG)
    first = feed.poll()
    pd.testing.assert_frame_equal(first, bars_1m.iloc[[89]].reset_index(drop=True))
    sim_clock.advance_ms(3 * MIN)
    pd.testing.assert_frame_equal(feed.poll(), bars_1m.iloc[90:93].reset_index(drop=True))


def test_exchange_gap_is_skipped_and_recorded(sim_clock, live_exchange, bars_1m):
    live_exchange.omit(SAMPLE_START_MS + 5 * MIN, SAMPLE_START_MS + 8 * MIN)
    feed = LiveFeed(exchange(live_exchange), "BTC/USDT", "1m", clock=sim_clock, start=SAMPLE_START_MS, config=CFG)
    sim_clock.advance_ms(12 * MIN)
    got = feed.poll()
    assert got.timestamp.tolist() == [SAMPLE_START_MS + i * MIN for i in (0, 1, 2, 3, 4, 8, 9, 10, 11)]
    assert feed.stats.gaps == [(SAMPLE_START_MS + 5 * MIN, SAMPLE_START_MS + 8 * MIN)]


def test_historical_feed_from_parquet_and_store(bars_1m, tmp_path):
    from tests.fake_exchange import SAMPLE_1M

    feed = HistoricalFeed.from_parquet(SAMPLE_1M, "BTC/USDT", "1m")
    assert isinstance(feed, MarketFeed) and len(feed) == 10080
    bars = list(feed)
    assert bars == frame_to_bars(bars_1m) and feed.poll().empty
    store = ParquetStore(tmp_path)
    store.append("binance", "BTC/USDT", "1m", bars_1m)
    span = HistoricalFeed.from_store(store, "binance", "BTC/USDT", "1m", "2024-06-03", "2024-06-04")
    pd.testing.assert_frame_equal(span.poll(), bars_1m.iloc[2880:4320].reset_index(drop=True))
    with pytest.raises(ValueError, match="no binance BTC/USDT 1m bars.*scripts/download.py"):
        HistoricalFeed.from_store(store, "binance", "BTC/USDT", "1m", "2025-01-01")


def test_historical_feed_on_a_clock_releases_only_closed_bars(bars_1m):
    clock = SimulatedClock(SAMPLE_START_MS + 30_000)
    feed = HistoricalFeed(bars_1m.iloc[:300], "BTC/USDT", "1m", clock=clock)
    assert feed.poll().empty
    clock.advance_ms(MIN)
    assert feed.poll().timestamp.tolist() == [SAMPLE_START_MS]
    clock.advance_ms(10 * MIN)
    assert len(feed.poll()) == 10
    for bar in feed:  # the iterator sleeps on the clock until each bar has closed
        assert bar.timestamp + MIN <= clock.now_ms() < bar.timestamp + 2 * MIN
    assert feed.remaining == 0
