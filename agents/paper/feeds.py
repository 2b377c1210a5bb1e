"""Live feeds for paper mode: the data layer's live feeds (`envs.feeds`) behind a session's resume rules.

A `LiveBars` wraps one `envs.feeds.ccxt_live.LiveFeed` (REST polling) or
`envs.feeds.ccxt_ws.WebsocketLiveFeed` (kline stream, REST for what it misses) and a Parquet store
(``feed.store_root``, default ``<paper.dir>/store``) that the feed appends every bar to BEFORE the
session sees it: the store is the feed's commit log and the session's history.

- **Start.** The feed catches up through REST (pages of ``fetch_ohlcv``) from ``tail_bars`` bars
  before now, or from the store's last bar; the latest closed bar is the first decision bar and the
  ``tail_bars - 1`` bars before it, read back from the store, are the history (observation window
  and feature warm-up).
- **Resume.** The ledger's latest bar (decided or settled) ``L`` is where the session stands: the
  store's bars before ``L`` are the history again, ``L`` and every stored bar after it are fed first
  (the engine skips what the ledger already holds), then the feed goes on after the store's last bar,
  backfilling the downtime. No bar is decided twice, none is skipped.
- **A forecaster run** (``since_ms``: the bar after the run's last bar). Its walk-forward schedule counts
  bars from the run's first bar, so the session holds EVERY bar from ``since_ms`` on: the catch-up
  starts there (REST pages in chunks with a progress log; or the store, when it already holds them),
  ``open`` returns all of them before the first bar to feed, and a missing bar (a gap in the exchange's
  history or the store) is refused, never skipped.
- **Disconnects and silence.** The feed retries, backfills after a failure and falls back to REST
  when a stream is silent (see `envs.feeds.ccxt_ws`); the session just waits for the next bar. Bars
  that arrive late carry their lag.
- **Only closed bars.** The feed emits a candle once its close has passed on the feed's clock (REST)
  or the next candle has started (stream); the forming candle is never decided.

Every bar comes with its `FeedLag`: the feed clock at receipt minus the bar's close time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from agents.paper.config import PaperFeedConfig
from envs.data.exchange import make_exchange
from envs.data.retry import RetryPolicy
from envs.data.store import ParquetStore
from envs.feeds.base import Bar, frame_to_bars, timeframe_ms
from envs.feeds.ccxt_live import LiveFeed, LiveFeedConfig
from envs.feeds.ccxt_ws import FeedMode, open_live_feed, ws_exchange_for
from envs.feeds.clock import Clock, ExchangeClock, SystemClock
from envs.market.times import to_ms

logger = logging.getLogger(__name__)

STORE_DIR = "store"
#: REST pages per progress line of a long catch-up (a forecaster run's bars since the run's end)
PAGES_PER_LOG = 10


@dataclass(frozen=True, slots=True)
class FeedLag:
    """How late a bar reached the session.

    Attributes:
        received_ms: the feed clock when the bar was handed to the engine, ms UTC.
        lag_ms: ``received_ms`` minus the bar's close time (open + timeframe), ms; 0 on a replay.
        lag_bars: ``lag_ms`` in bars (``lag_ms / timeframe``); above 1 the bar was backfilled late.
    """

    received_ms: int
    lag_ms: int
    lag_bars: float

    @classmethod
    def of(cls, bar_ts: int, tf_ms: int, received_ms: int) -> FeedLag:
        """The lag of the bar opening at ``bar_ts`` (ms UTC, ``tf_ms`` long) received at ``received_ms``."""
        lag = int(received_ms) - (int(bar_ts) + int(tf_ms))
        return cls(received_ms=int(received_ms), lag_ms=lag, lag_bars=lag / tf_ms)


def live_timeframe(feed: PaperFeedConfig, run_timeframe: str) -> str:
    """The feed's timeframe, which must be the run's.

    Raises:
        ValueError: ``feed.timeframe`` differs from the run's ``data.timeframe``.
    """
    if feed.timeframe is not None and timeframe_ms(feed.timeframe) != timeframe_ms(run_timeframe):
        raise ValueError(f"feed.timeframe={feed.timeframe!r} differs from the run's data.timeframe={run_timeframe!r}: "
                         "a model decides on the bars it was trained on; drop feed.timeframe (it defaults to the "
                         "run's) or paper-trade a run trained on that timeframe")
    return run_timeframe


def market_exchange(feed: PaperFeedConfig) -> ccxt.Exchange:
    """The synchronous ccxt exchange of a live feed, without API keys (market data needs none)."""
    return make_exchange(feed.exchange, feed.market, api_url=feed.api_url, timeout_ms=feed.timeout_ms,
                         rate_limit_ms=feed.rate_limit_ms, env={}, dotenv_path=os.devnull)


def feed_store(feed: PaperFeedConfig, paper_dir: str | Path) -> ParquetStore:
    """The store a live feed appends to: ``feed.store_root`` or ``<paper_dir>/store``."""
    return ParquetStore(feed.store_root or Path(paper_dir) / STORE_DIR)


def live_source(feed: PaperFeedConfig, timeframe: str) -> str:
    """A live feed in words (ledger meta: a resume must read the same series from the same store)."""
    store = str(Path(feed.store_root).resolve()) if feed.store_root else f"<paper.dir>/{STORE_DIR}"
    return f"{feed.exchange} {feed.market} {feed.symbol} {timeframe}, store {store}"


class LiveBars:
    """History and closed bars of a live paper session (see module docstring).

    Args:
        feed: the live feed config.
        timeframe: the run's timeframe (checked against ``feed.timeframe`` by `live_timeframe`).
        tail_bars: bars the session keeps (history = ``tail_bars - 1`` bars before the first decision).
        window_size: the run's observation window (the history must hold at least ``window_size - 1`` bars).
        paper_dir: the paper folder (default store location).
        clock: the feed's clock; None = ``feed.clock`` (``ExchangeClock`` or ``SystemClock``).
        exchange: a ready ccxt exchange; None = `market_exchange`.
        since_ms: a forecaster run's session bar 0 (the bar after the run's last bar, open time ms UTC):
            every bar from it on is backfilled and returned by `open`, and a gap is refused; None = the
            last ``tail_bars - 1`` bars of history are enough.
    """

    def __init__(self, feed: PaperFeedConfig, timeframe: str, tail_bars: int, window_size: int,
                 paper_dir: str | Path, clock: Clock | None = None, exchange: Any = None,
                 since_ms: int | None = None) -> None:
        self.cfg = feed
        self.timeframe = live_timeframe(feed, timeframe)
        self.tf_ms = timeframe_ms(self.timeframe)
        self.tail_bars = tail_bars
        self.window_size = window_size
        self.exchange = exchange if exchange is not None else market_exchange(feed)
        if clock is None:
            clock = ExchangeClock(self.exchange) if feed.clock == "exchange" else SystemClock()
        self.clock: Clock = clock
        self.store = feed_store(feed, paper_dir)
        self.store_exchange = self.exchange.id
        self.end_ms = None if feed.end is None else to_ms(feed.end, "feed.end")
        self.since_ms = since_ms
        self.feed: LiveFeed | None = None
        self._first: list[Bar] = []
        self._prev_ts: int | None = None  # the last bar handed out (gap check of a forecaster run)
        self.first_ts = 0  # set by open()

    def _open_feed(self, start_ms: int) -> LiveFeed:
        c = self.cfg
        config = LiveFeedConfig(settle_ms=c.settle_ms, min_poll_interval_s=c.poll_interval_s,
                                reconnect_delay_s=c.reconnect_delay_s, ws_fallback_ms=c.ws_fallback_ms,
                                retry=RetryPolicy(max_retries=c.max_retries))
        ws = None
        if c.mode == "websocket":
            if c.api_url and not c.ws_url:
                raise ValueError("feed.api_url points REST at another server but feed.ws_url is not set: the stream "
                                 "would still go to the exchange; set feed.ws_url too (or use mode=poll)")
            ws = ws_exchange_for(self.exchange, ws_url=c.ws_url)
        mode: FeedMode = "websocket" if c.mode == "websocket" else "poll"
        return open_live_feed(self.exchange, c.symbol, self.timeframe, mode=mode, ws_exchange=ws, store=self.store,
                              clock=self.clock, start=start_ms, store_exchange=self.store_exchange, config=config)

    def open(self, resume: tuple[int, int] | None) -> tuple[pd.DataFrame, int]:
        """Catch up and return the history before the first bar to feed, and its first absolute index.

        Args:
            resume: the ledger's latest bar (open time ms UTC, absolute index), None for a new session.

        Returns:
            ``(history, first_index)``: bar-format frame of the bars before the first bar to feed (the
            last ``tail_bars - 1``; with ``since_ms`` every bar from ``since_ms`` on, absolute index 0).

        Raises:
            ValueError: too little history, a store without the ledger's last bar, or (``since_ms``)
                a bar missing in the exchange's or the store's history.
        """
        now = self.clock.now_ms()
        newest = resume[0] if resume is not None else now - now % self.tf_ms - 2 * self.tf_ms
        start = newest - (self.tail_bars - 1) * self.tf_ms  # used only where the store holds nothing that recent
        self.feed = self._open_feed(start if self.since_ms is None else self.since_ms)
        if self.since_ms is not None:
            self._catch_up_since(now)
        while True:  # the catch-up: REST pages into the store, retried until the exchange answers
            failures = self.feed.stats.disconnects
            self.feed.poll()
            if self.feed.stats.disconnects == failures and self.feed.last_delivered_ms is not None:
                break
            logger.warning("%s %s: catching up failed; retrying in %.1f s", self.cfg.symbol, self.timeframe,
                           self.cfg.reconnect_delay_s)
            self.clock.sleep(self.cfg.reconnect_delay_s)
        first_ts = resume[0] if resume is not None else int(self.feed.last_delivered_ms)  # type: ignore[arg-type]
        since = first_ts - 2 * self.tail_bars * self.tf_ms if self.since_ms is None else self.since_ms
        rows = self.store.read(self.store_exchange, self.cfg.symbol, self.timeframe, start=since)
        ts = rows["timestamp"].to_numpy(np.int64)
        if resume is not None and not (ts == first_ts).any():
            raise ValueError(f"the store {self.store.root} lacks the ledger's last bar {first_ts}: resume with the same "
                             "feed.store_root the session was started with")
        if self.since_ms is not None:
            self._check_contiguous(ts)
            history = rows[ts < first_ts].reset_index(drop=True)
        else:
            history = rows[ts < first_ts].tail(self.tail_bars - 1).reset_index(drop=True)
        self._first = frame_to_bars(rows[ts >= first_ts])
        self.first_ts = first_ts  # open time of the first bar to feed
        self._check_history(history, resume)
        first_index = 0 if resume is None or self.since_ms is not None else resume[1] - len(history)
        logger.info("%s %s %s: %d bars of history, first bar to feed %s (index %d)%s", self.store_exchange,
                    self.cfg.symbol, self.timeframe, len(history), _iso(first_ts), first_index + len(history),
                    " (resume)" if resume is not None else "")
        return history, first_index

    def _check_history(self, history: pd.DataFrame, resume: tuple[int, int] | None) -> None:
        """Refuse a history the session cannot decide on, or one shorter than the first run's (resume)."""
        first = "the ledger's last bar" if resume is not None else "the latest closed bar"
        if self.since_ms is not None:  # every bar since the run's end; the engine decides from bar window - 1 on
            if resume is not None and len(history) != resume[1]:
                raise ValueError(f"the store {self.store.root} holds {len(history)} bars from {_iso(self.since_ms)} "
                                 f"to {first}, the session had {resume[1]}: resume with the feed.store_root it "
                                 "was started with")
            return
        if resume is not None and len(history) < min(self.tail_bars - 1, resume[1]):
            raise ValueError(f"the store {self.store.root} holds {len(history)} bars before {first} "
                             f"{_iso(resume[0])}, the session had {min(self.tail_bars - 1, resume[1])}: the features "
                             "would differ from the first run's; resume with the feed.store_root it was started with")
        if resume is None and len(history) < self.window_size - 1:
            raise ValueError(f"{self.store_exchange} {self.cfg.symbol} {self.timeframe}: only {len(history)} bars "
                             f"before {first}; the first decision needs window_size - 1 = "
                             f"{self.window_size - 1} (the exchange or feed.store_root must hold them)")

    def _catch_up_since(self, now: int) -> None:
        """REST pages from the feed's cursor to ``now`` in chunks of `PAGES_PER_LOG` pages, each logged.

        A forecaster run may need months of bars (from the run's end); this says how many and shows
        the progress. A chunk the exchange serves no bar of is a gap (refused).
        """
        assert self.feed is not None and self.since_ms is not None
        cursor = self.feed.last_delivered_ms
        assert cursor is not None  # the feed starts at since_ms (or after the store's last bar)
        total = max(0, (now - cursor) // self.tf_ms - 1)  # bars closed after the cursor
        if total <= 0:
            return
        page = self.feed.config.page_limit
        logger.info("%s %s %s: backfilling %d bars since %s (the forecaster continues from the run's last bar; "
                    "about %d REST pages)", self.store_exchange, self.cfg.symbol, self.timeframe, total,
                    _iso(cursor + self.tf_ms), -(-total // page))
        done = 0
        while cursor + 2 * self.tf_ms <= now:
            target = min(now, cursor + (PAGES_PER_LOG * page + 1) * self.tf_ms)
            failures = self.feed.stats.disconnects
            self.feed.backfill(now_ms=target)
            after = self.feed.last_delivered_ms
            assert after is not None
            if self.feed.stats.disconnects != failures:
                logger.warning("%s %s: catching up failed; retrying in %.1f s", self.cfg.symbol, self.timeframe,
                               self.cfg.reconnect_delay_s)
                self.clock.sleep(self.cfg.reconnect_delay_s)
            elif after == cursor:
                if target >= now:
                    break  # the newest bars: not published yet, perhaps (the poll below asks again)
                raise ValueError(_gap_message(self.store_exchange, self.cfg.symbol, self.timeframe, cursor + self.tf_ms,
                                              target - self.tf_ms, "the exchange served none of them"))
            done += (after - cursor) // self.tf_ms
            cursor = after
            logger.info("%s %s: backfilled %d of %d bars (%.0f%%), up to %s", self.cfg.symbol, self.timeframe,
                        done, total, 100.0 * min(done, total) / total, _iso(cursor))

    def _check_contiguous(self, ts: np.ndarray) -> None:
        """Refuse a gap in the bars from ``since_ms`` on (a forecaster's schedule counts bars)."""
        assert self.since_ms is not None
        expect = np.concatenate([[self.since_ms], ts[:-1] + self.tf_ms]) if len(ts) else ts
        bad = np.flatnonzero(ts != expect)
        if len(bad):
            i = int(bad[0])
            raise ValueError(_gap_message(self.store_exchange, self.cfg.symbol, self.timeframe, int(expect[i]),
                                          int(ts[i]) - self.tf_ms,
                                          f"neither the exchange nor the store {self.store.root} has them"))

    def __iter__(self) -> Iterator[tuple[Bar, FeedLag]]:
        """Closed bars with their lag: the stored ones from the first bar on, then live ones until ``feed.end``."""
        assert self.feed is not None, "call open() first"
        for bar in self._first:
            if self.end_ms is not None and bar.timestamp >= self.end_ms:
                return
            self._check_next(bar)
            yield bar, FeedLag.of(bar.timestamp, self.tf_ms, self.clock.now_ms())
        for bar in self.feed.bars(until_ms=self.end_ms):
            if self.end_ms is not None and bar.timestamp >= self.end_ms:
                return
            self._check_next(bar)
            lag = FeedLag.of(bar.timestamp, self.tf_ms, self.clock.now_ms())
            if lag.lag_bars > 1.0:
                logger.warning("bar %s arrived %.2f bars after its close (%d ms): feed lag", _iso(bar.timestamp),
                               lag.lag_bars, lag.lag_ms)
            yield bar, lag

    def _check_next(self, bar: Bar) -> None:
        """A forecaster run's bars follow each other without a gap (the feed skips one it never gets)."""
        prev, self._prev_ts = self._prev_ts, int(bar.timestamp)
        if self.since_ms is not None and prev is not None and bar.timestamp != prev + self.tf_ms:
            raise ValueError(_gap_message(self.store_exchange, self.cfg.symbol, self.timeframe, prev + self.tf_ms,
                                          int(bar.timestamp) - self.tf_ms, "the exchange served none of them"))

    @property
    def stats(self) -> Any:
        """The underlying feed's counters (polls, disconnects, websocket reconnects...)."""
        return None if self.feed is None else self.feed.stats

    def close(self) -> None:
        """Close the websocket connections (if any)."""
        close = getattr(self.feed, "close", None)
        if close is not None:
            close()


def _gap_message(exchange: str, symbol: str, timeframe: str, first_ms: int, last_ms: int, why: str) -> str:
    """The refusal of a gap in a forecaster run's bars: bars ``first_ms`` .. ``last_ms`` (open times) are missing."""
    return (f"{exchange} {symbol} {timeframe}: the bars from {_iso(first_ms)} to {_iso(last_ms)} are missing ({why}): "
            "the run's forecaster continues its walk-forward schedule bar by bar from the run's last bar, and a "
            "missing bar would shift it (no bar is invented); fill feed.store_root with those bars (scripts/download.py), "
            "or paper-trade a replay of bars without the gap (feed.path=...)")


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
