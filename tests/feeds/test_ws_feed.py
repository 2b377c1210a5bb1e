"""WebsocketLiveFeed: real ccxt.pro against a fake Binance kline stream, REST backfill from the fake REST server.

The simulated clock is the REST server's "now" and is kept at or after the stream's time, as on a
real exchange. Bars pushed while forming carry partial values, so delivering a forming candle fails
the exact frame comparisons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import ccxt
import pandas as pd
import pytest

from envs.data.exchange import make_exchange
from envs.data.retry import RetryPolicy
from envs.data.store import ParquetStore
from envs.feeds.base import MarketFeed, frame_to_bars
from envs.feeds.ccxt_live import LiveFeed, LiveFeedConfig
from envs.feeds.ccxt_ws import WebsocketLiveFeed, open_live_feed, ws_exchange_for
from tests.fake_ws_exchange import FakeWsExchange
from tests.feeds.conftest import SAMPLE_START_MS

MIN = 60_000
KLINES = "/api/v3/klines"
CFG = LiveFeedConfig(
    settle_ms=500, ws_wait_s=0.5, ws_drain_s=0.02, ws_fallback_ms=10_000,
    retry=RetryPolicy(max_retries=2, base_delay_s=1.0, max_delay_s=4.0, jitter_frac=0.0),
)


@pytest.fixture
def ws_server() -> Iterator[FakeWsExchange]:
    ws = FakeWsExchange.from_samples().start()
    try:
        yield ws
    finally:
        ws.stop()


def make_feed(fx, ws, **kwargs) -> WebsocketLiveFeed:
    rest = make_exchange("binance", api_url=fx.url, timeout_ms=2000, rate_limit_ms=2)
    return WebsocketLiveFeed(rest, "BTC/USDT", "1m", ws_exchange=ws_exchange_for(rest, ws_url=ws.url),
                             config=CFG, **kwargs)


def subscribe(feed: WebsocketLiveFeed, ws: FakeWsExchange, n: int, got: list[pd.DataFrame]) -> None:
    """Poll (collecting whatever arrives) until the server has seen ``n`` SUBSCRIBE requests."""
    deadline = time.monotonic() + 10
    while len(ws.subscriptions) < n:
        assert time.monotonic() < deadline, "the feed never subscribed"
        got.append(feed.poll(wait_s=0.05))


def collect(feed: WebsocketLiveFeed, n: int, timeout_s: float = 10.0) -> pd.DataFrame:
    """Poll until ``n`` bars arrived, then once more after a pause (nothing further may come)."""
    frames, count = [], 0
    deadline = time.monotonic() + timeout_s
    while count < n:
        assert time.monotonic() < deadline, f"only {count} of {n} bars arrived"
        df = feed.poll(wait_s=0.2)
        frames.append(df)
        count += len(df)
    extra = feed.poll(wait_s=0.1)
    assert extra.empty, f"delivered more than expected: {extra.timestamp.tolist()}"
    return pd.concat(frames, ignore_index=True)


def at(i: int, sec: int = 30) -> int:
    """Clock time ``sec`` seconds into sample bar ``i``."""
    return SAMPLE_START_MS + i * MIN + sec * 1000


def stream_bars(feed, ws, clock, first: int, last: int) -> pd.DataFrame:
    """Push bars first..last as Binance does (forming, closed, next forming) and collect them."""
    frames = []
    for i in range(first, last + 1):
        clock.set_ms(max(clock.now_ms(), at(i)))
        ws.push(i, closed=False)
        assert feed.poll(wait_s=0.1).empty, f"emitted forming bar {i}"
        clock.set_ms(at(i + 1, 1))
        ws.push(i, closed=True)
        ws.push(i + 1, closed=False)
        frames.append(collect(feed, 1))
    return pd.concat(frames, ignore_index=True)


def test_every_closed_bar_once_in_order_across_a_disconnect(sim_clock, live_exchange, ws_server, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    feed = make_feed(live_exchange, ws_server, store=store, clock=sim_clock, start=SAMPLE_START_MS)
    assert isinstance(feed, MarketFeed)
    got: list[pd.DataFrame] = []
    with feed:
        subscribe(feed, ws_server, 1, got)
        got.append(stream_bars(feed, ws_server, sim_clock, 0, 19))
        assert live_exchange.requests_to(KLINES) == []  # all 20 bars came through the stream
        assert feed.stats.ws_bars == 20

        # the connection drops while bar 20 is forming (its partial candle is already cached)
        sim_clock.set_ms(at(20))
        ws_server.push(20, closed=False)
        assert feed.poll(wait_s=0.1).empty
        ws_server.drop()
        deadline = time.monotonic() + 10
        while feed.stats.ws_disconnects == 0:
            assert time.monotonic() < deadline, "the feed never noticed the drop"
            got.append(feed.poll(wait_s=0.1))
        # 15 minutes pass with the link down: bars 20..34 close unseen by the stream
        sim_clock.set_ms(at(35, 20))
        got.append(collect(feed, 15))
        rest_bars = len(live_exchange.requests_to(KLINES))
        assert rest_bars >= 1 and feed.stats.ws_bars == 20
        subscribe(feed, ws_server, 2, got)
        backfill_at = [r.arrived_s for r in live_exchange.requests_to(KLINES) if r.rows]
        assert backfill_at and max(backfill_at) < ws_server.subscribed_at[1]  # backfilled, then resubscribed
        assert feed.stats.ws_connects == 2

        # the stream resumes; then it jumps from 36 to 40 (frames lost): 37..39 come through REST
        got.append(stream_bars(feed, ws_server, sim_clock, 35, 36))
        sim_clock.set_ms(at(40))
        ws_server.push(40, closed=False)
        sim_clock.set_ms(at(41, 1))
        ws_server.push(40, closed=True)
        ws_server.push(41, closed=False)
        got.append(collect(feed, 4))
        got.append(stream_bars(feed, ws_server, sim_clock, 41, 59))

    delivered = pd.concat(got, ignore_index=True)
    expect = bars_1m.iloc[:60].reset_index(drop=True)
    pd.testing.assert_frame_equal(delivered, expect)  # once, in order, final values (bar 60 still forming)
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), expect)
    assert feed.stats.ws_disconnects == 1 and feed.stats.gaps == []
    assert feed.stats.ws_bars == 60 - 15 - 3
    assert ws_server.open_connections == 0  # close() closed the websocket


def test_restart_from_store_backfills_the_downtime_then_streams(sim_clock, live_exchange, ws_server, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    got: list[pd.DataFrame] = []
    with make_feed(live_exchange, ws_server, store=store, clock=sim_clock, start=SAMPLE_START_MS) as feed:
        subscribe(feed, ws_server, 1, got)
        got.append(stream_bars(feed, ws_server, sim_clock, 0, 9))
    assert ws_server.open_connections == 0
    sim_clock.set_ms(at(30, 40))  # process down for 20 minutes
    with make_feed(live_exchange, ws_server, store=store, clock=sim_clock) as restarted:
        assert restarted.last_delivered_ms == SAMPLE_START_MS + 9 * MIN
        got.append(collect(restarted, 20))  # 10..29 through REST on the first poll
        subscribe(restarted, ws_server, 2, got)
        got.append(stream_bars(restarted, ws_server, sim_clock, 30, 34))
        assert restarted.stats.ws_bars == 5
    delivered = pd.concat(got, ignore_index=True)
    expect = bars_1m.iloc[:35].reset_index(drop=True)
    pd.testing.assert_frame_equal(delivered, expect)
    pd.testing.assert_frame_equal(store.read("binance", "BTC/USDT", "1m"), expect)


def test_silent_stream_falls_back_to_rest_and_late_pushes_are_not_repeated(sim_clock, live_exchange, ws_server, bars_1m):
    got: list[pd.DataFrame] = []
    with make_feed(live_exchange, ws_server, clock=sim_clock, start=SAMPLE_START_MS) as feed:
        subscribe(feed, ws_server, 1, got)
        got.append(stream_bars(feed, ws_server, sim_clock, 0, 2))
        sim_clock.set_ms(at(6, 5))  # no pushes for bars 3..5; > ws_fallback_ms after bar 3's close
        got.append(collect(feed, 3))
        assert feed.stats.ws_bars == 3
        ws_server.push(5, closed=True)  # late pushes of bars REST already delivered
        ws_server.push(6, closed=False)
        assert feed.poll(wait_s=0.3).empty
        got.append(stream_bars(feed, ws_server, sim_clock, 6, 7))
    delivered = pd.concat(got, ignore_index=True)
    pd.testing.assert_frame_equal(delivered, bars_1m.iloc[:8].reset_index(drop=True))


def test_iterator_yields_streamed_bars(sim_clock, live_exchange, ws_server, bars_1m):
    with make_feed(live_exchange, ws_server, clock=sim_clock, start=SAMPLE_START_MS) as feed:
        subscribe(feed, ws_server, 1, [])

        def pusher() -> None:
            for i in range(12):
                sim_clock.set_ms(at(i))
                ws_server.push(i, closed=False)
                sim_clock.set_ms(at(i + 1, 1))
                ws_server.push(i, closed=True)
                ws_server.push(i + 1, closed=False)
                time.sleep(0.01)

        thread = threading.Thread(target=pusher)
        thread.start()
        bars = list(feed.bars(max_bars=12))
        thread.join()
    assert bars == frame_to_bars(bars_1m.iloc[:12])


def test_open_live_feed_modes(sim_clock, live_exchange, ws_server):
    rest = make_exchange("binance", api_url=live_exchange.url, timeout_ms=2000, rate_limit_ms=2)
    polled = open_live_feed(rest, "BTC/USDT", "1m", mode="poll", clock=sim_clock)
    assert type(polled) is LiveFeed
    auto = open_live_feed(rest, "BTC/USDT", "1m", mode="auto", clock=sim_clock,
                          ws_exchange=ws_exchange_for(rest, ws_url=ws_server.url))
    assert isinstance(auto, WebsocketLiveFeed)
    auto.close()
    with pytest.raises(ValueError, match="live.mode='sse' is invalid"):
        open_live_feed(rest, "BTC/USDT", "1m", mode="sse")  # type: ignore[arg-type]
    assert ws_server.open_connections == 0
    no_stream = ccxt.bitbank()  # ccxt.pro has no bitbank: auto falls back to polling, websocket refuses
    assert type(open_live_feed(no_stream, "BTC/JPY", "1m", mode="auto")) is LiveFeed
    with pytest.raises(ValueError, match="bitbank has no watchOHLCV"):
        open_live_feed(no_stream, "BTC/JPY", "1m", mode="websocket")


def test_stream_hole_waits_for_rest_when_rest_is_down(sim_clock, live_exchange, ws_server, bars_1m):
    got: list[pd.DataFrame] = []
    with make_feed(live_exchange, ws_server, clock=sim_clock, start=SAMPLE_START_MS) as feed:
        subscribe(feed, ws_server, 1, got)
        got.append(stream_bars(feed, ws_server, sim_clock, 0, 4))
        # REST down for two full retry cycles: the hole fill and the silent-stream fallback both fail
        live_exchange.add_fault("drop", path=KLINES, count=6)
        sim_clock.set_ms(at(8))
        ws_server.push(8, closed=False)
        sim_clock.set_ms(at(9, 1))
        ws_server.push(8, closed=True)
        ws_server.push(9, closed=False)
        deadline = time.monotonic() + 10
        while feed.stats.disconnects < 2:  # bar 8 is closed on the stream, but 5..7 are missing
            assert time.monotonic() < deadline, "the hole fill never ran"
            held = feed.poll(wait_s=0.2)
            assert held.empty, "delivered past a hole REST could not fill"
        got.append(collect(feed, 4))  # REST is back: 5..7, then the held streamed bar 8
    delivered = pd.concat(got, ignore_index=True)
    pd.testing.assert_frame_equal(delivered, bars_1m.iloc[:9].reset_index(drop=True))
    assert feed.stats.gaps == [] and feed.stats.ws_bars == 6
