"""``LiveFeed``: closed bars from a ccxt exchange by REST polling, exactly once, in order, stored.

API: ``poll()`` returns the bars that closed since the last delivered bar (a bar-format DataFrame,
possibly empty) and never blocks except for retries; iterating (``for bar in feed`` or
``feed.bars(until_ms=...)``) polls, yields ``Bar`` records and sleeps on the feed's clock until the
next bar should have closed.

Guarantees:

- Only CLOSED bars: a candle with open ``t`` is emitted once ``t + timeframe <= clock.now_ms()``; the
  forming candle the exchange also returns is never emitted.
- In order, exactly once: every poll asks for bars after the last delivered one
  (``fetch_ohlcv(since=last + timeframe)``), pages until it has caught up, sorts and de-duplicates.
- Disconnects: transient errors are retried with backoff (``envs.data.retry``, sleeping on the
  feed's clock). If the retries run out, ``poll()`` logs it, counts a disconnect and returns the bars
  fetched so far; the next poll backfills everything missed from the last delivered bar.
- Restart: built with a ``store`` holding earlier bars of the series, the feed continues after the
  last stored bar (backfilling the downtime). Every bar is appended to the store BEFORE it is
  returned, so the store is the feed's commit log (live data becomes training data).
- A bar the exchange never serves (a real gap) is skipped once later bars arrive; it is logged as a gap.

``envs.feeds.ccxt_ws.WebsocketLiveFeed`` subclasses this feed for exchanges with ccxt.pro's
``watch_ohlcv``: bars arrive by push, and ``backfill`` (this module's REST path) and ``_commit``
(store, then deliver) are shared, so both feeds keep one cursor and the same guarantees.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from envs.data.download import ohlcv_to_frame
from envs.data.retry import Retrier, RetryError, RetryPolicy
from envs.data.store import ParquetStore
from envs.feeds.base import Bar, empty_bars, frame_to_bars, timeframe_ms
from envs.feeds.clock import Clock, SystemClock
from envs.market.bars import check_timestamp_unit
from envs.market.times import iso_utc, to_ms

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveFeedConfig:
    """Polling behaviour of ``LiveFeed``.

    Attributes:
        page_limit: candles per request (> 0); binance serves up to 1000.
        settle_ms: wait after a bar's close before asking for it, ms (>= 0); exchanges publish a
            closed candle a moment after the boundary.
        min_poll_interval_s: shortest sleep between polls while iterating, seconds (> 0).
        reconnect_delay_s: sleep after a failed poll (disconnect) while iterating, seconds (> 0).
        retry: transient-error policy inside one poll; the websocket feed also spaces its
            reconnects by this policy's backoff.
        ws_wait_s: websocket feed only: longest real-time wait for a push in one step of ``bars``,
            seconds (> 0).
        ws_drain_s: websocket feed only: after a push, how long ``poll`` keeps reading further queued
            pushes, seconds (> 0).
        ws_fallback_ms: websocket feed only: if the stream has not delivered a bar this long after
            its close (clock time), ms (>= 0), the bar is fetched through REST instead.
    """

    page_limit: int = 1000
    settle_ms: int = 1_000
    min_poll_interval_s: float = 1.0
    reconnect_delay_s: float = 5.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_retries=3))
    ws_wait_s: float = 1.0
    ws_drain_s: float = 0.02
    ws_fallback_ms: int = 10_000

    def __post_init__(self) -> None:
        """Validate ranges."""
        if self.page_limit <= 0:
            raise ValueError(f"live.page_limit={self.page_limit} is invalid: must be > 0")
        if self.settle_ms < 0:
            raise ValueError(f"live.settle_ms={self.settle_ms} is invalid: must be >= 0 (ms)")
        if self.min_poll_interval_s <= 0 or self.reconnect_delay_s <= 0:
            raise ValueError("live.min_poll_interval_s and live.reconnect_delay_s must be > 0 (seconds)")
        if self.ws_wait_s <= 0 or self.ws_drain_s <= 0:
            raise ValueError("live.ws_wait_s and live.ws_drain_s must be > 0 (seconds)")
        if self.ws_fallback_ms < 0:
            raise ValueError(f"live.ws_fallback_ms={self.ws_fallback_ms} is invalid: must be >= 0 (ms)")


@dataclass
class LiveFeedStats:
    """Counters of a feed's life.

    Attributes:
        polls: calls to ``poll``.
        requests: ``fetch_ohlcv`` calls that returned.
        bars: bars delivered.
        disconnects: polls that gave up after retries (the next poll backfilled).
        gaps: spans ``(first missing open ms, next present open ms)`` the exchange never served.
    """

    polls: int = 0
    requests: int = 0
    bars: int = 0
    disconnects: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)


class LiveFeed:
    """Closed bars of one symbol from a ccxt exchange (see module docstring).

    Args:
        exchange: ccxt exchange (e.g. ``envs.data.exchange.make_exchange``).
        symbol: unified symbol, e.g. ``BTC/USDT``.
        timeframe: bar length, e.g. ``1m``.
        store: optional store; every delivered bar is appended to it, and the feed resumes after its
            last stored bar on construction.
        clock: time source deciding which bars are closed (default: wall clock; use
            ``ExchangeClock`` to follow the exchange's time, ``SimulatedClock`` in tests/replays).
        start: first bar open time to deliver (ms UTC, ISO string or Timestamp) when the store has
            nothing newer; None = start with the latest closed bar.
        store_exchange: exchange name used in the store (default ``exchange.id``).
        config: polling settings.
        rng: random source for retry jitter.
    """

    def __init__(
        self,
        exchange: Any,
        symbol: str,
        timeframe: str,
        store: ParquetStore | None = None,
        clock: Clock | None = None,
        start: int | str | pd.Timestamp | None = None,
        store_exchange: str | None = None,
        config: LiveFeedConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.store_exchange = store_exchange or exchange.id
        self.config = config or LiveFeedConfig()
        self.retrier = Retrier(self.config.retry, sleep=self.clock.sleep, rng=rng, exchange=exchange)
        self.stats = LiveFeedStats()
        stored = None if store is None else store.last_timestamp(self.store_exchange, symbol, timeframe)
        start_ms = None if start is None else to_ms(start, "start")
        if stored is not None and (start_ms is None or stored >= start_ms):
            self._last: int | None = int(stored)
            logger.info("%s %s: resuming after the last stored bar %s", symbol, timeframe, iso_utc(stored))
        elif start_ms is not None:
            self._last = start_ms - self.tf_ms
        else:
            self._last = None  # first poll delivers the latest closed bar

    @property
    def last_delivered_ms(self) -> int | None:
        """Open time (ms UTC) of the last delivered (or stored) bar; None before the first."""
        return self._last

    def _fetch(self, since: int | None) -> pd.DataFrame:
        kwargs: dict[str, Any] = {"limit": self.config.page_limit}
        if since is not None:
            kwargs["since"] = since
        rows = self.retrier.call(
            self.exchange.fetch_ohlcv, self.symbol, self.timeframe, what=f"{self.exchange.id} {self.symbol} "
            f"{self.timeframe} fetch_ohlcv since {since}", **kwargs,
        )
        self.stats.requests += 1
        return ohlcv_to_frame(rows)

    def poll(self) -> pd.DataFrame:
        """Fetch, store and return the bars that closed after the last delivered one.

        Returns:
            Bar-format frame (open time ms UTC, prices in quote currency, volume in base units),
            strictly increasing, only closed bars, possibly empty.

        Raises:
            FatalFetchError: non-transient exchange error (bad symbol, authentication...).
        """
        self.stats.polls += 1
        return self.backfill()

    def backfill(self, now_ms: int | None = None) -> pd.DataFrame:
        """Fetch through REST (``fetch_ohlcv``), store and return every bar closed after the last delivered one.

        This is the REST path of ``poll``; the websocket feed calls it to fill what its stream missed.

        Args:
            now_ms: time deciding which bars are closed (open + timeframe <= now_ms), ms UTC; None =
                the feed's clock. The websocket feed passes the exchange time its stream proved.

        Returns:
            Bar-format frame, strictly increasing, only closed bars, possibly empty. If the retries
            run out, the bars fetched so far (a disconnect is counted; the next call goes on from them).

        Raises:
            FatalFetchError: non-transient exchange error (bad symbol, authentication...).
        """
        now = self.clock.now_ms() if now_ms is None else int(now_ms)
        if self._last is not None and self._last + 2 * self.tf_ms > now:
            return empty_bars()  # the next bar has not closed yet
        pages: list[pd.DataFrame] = []
        since = None if self._last is None else self._last + self.tf_ms
        try:
            while True:
                page = self._fetch(since if since is not None else now - 2 * self.tf_ms)
                n_rows = len(page)
                page = page.iloc[np.argsort(page["timestamp"].to_numpy(), kind="stable")]
                page = page.drop_duplicates("timestamp", keep="last")
                ts = page["timestamp"].to_numpy()
                closed = ts + self.tf_ms <= now
                if since is not None:
                    closed &= ts >= since
                page = page[closed]
                if page.empty:
                    break  # nothing new (or an empty/truncated answer: the next poll asks again)
                if since is None:
                    page = page.iloc[-1:]  # fresh start: only the latest closed bar
                pages.append(page)
                since = int(page["timestamp"].iloc[-1]) + self.tf_ms
                if n_rows < self.config.page_limit or since + self.tf_ms > now:
                    break
        except RetryError as e:
            self.stats.disconnects += 1
            logger.warning("%s %s: poll gave up (%s); will backfill from %s on the next poll",
                           self.symbol, self.timeframe, e, iso_utc(since))
        if not pages:
            return empty_bars()
        return self._commit(pd.concat(pages, ignore_index=True))

    def _commit(self, out: pd.DataFrame) -> pd.DataFrame:
        """Deliver ``out`` (closed bars, strictly increasing, all after the last delivered one).

        Records gaps, appends to the store BEFORE returning (a stored bar counts as delivered) and
        moves the cursor. Every delivery path (REST and websocket) goes through here.
        """
        if out.empty:
            return out
        ts = out["timestamp"].to_numpy()
        check_timestamp_unit(ts, f"{self.exchange.id} {self.symbol} {self.timeframe} feed")
        assert (np.diff(ts) > 0).all() and (self._last is None or ts[0] > self._last), "out of order delivery"
        self._note_gaps(out)
        if self.store is not None:
            self.store.append(self.store_exchange, self.symbol, self.timeframe, out)
        self._last = int(ts[-1])
        self.stats.bars += len(out)
        return out

    def _note_gaps(self, out: pd.DataFrame) -> None:
        ts = out["timestamp"].to_numpy()
        prev = np.concatenate([[self._last if self._last is not None else ts[0] - self.tf_ms], ts[:-1]])
        for i in np.flatnonzero(ts - prev > self.tf_ms):
            gap = (int(prev[i]) + self.tf_ms, int(ts[i]))
            self.stats.gaps.append(gap)
            logger.warning("%s %s: exchange served no bars in [%s, %s)", self.symbol, self.timeframe,
                           iso_utc(gap[0]), iso_utc(gap[1]))

    def bars(self, until_ms: int | None = None, max_bars: int | None = None) -> Iterator[Bar]:
        """Yield closed bars as they close, waiting on the clock between polls.

        Args:
            until_ms: stop once every bar opening before this time (ms UTC) was delivered or the
                clock has passed its close; None = run forever.
            max_bars: stop after this many bars; None = no limit.
        """
        n = 0
        while True:
            disconnects = self.stats.disconnects
            got = frame_to_bars(self._next_batch())
            for bar in got:
                yield bar
                n += 1
                if max_bars is not None and n >= max_bars:
                    return
            now = self.clock.now_ms()
            failed = self.stats.disconnects > disconnects
            if until_ms is not None:
                if self._last is not None and self._last + self.tf_ms >= until_ms:
                    return  # everything before until_ms was delivered
                if not got and not failed and now >= until_ms + self.tf_ms + self.config.settle_ms:
                    return  # all of them have closed and the exchange has nothing more
            self._idle(now, failed)

    def _next_batch(self) -> pd.DataFrame:
        """One step of ``bars``: the next bars to yield (REST feed: one ``poll``)."""
        return self.poll()

    def _idle_s(self, now: int, failed: bool) -> float:
        """Seconds ``bars`` waits after a step: until the next bar should have closed, or a reconnect delay."""
        if failed:
            return self.config.reconnect_delay_s
        next_close = (self._last + 2 * self.tf_ms) if self._last is not None else now
        return max(self.config.min_poll_interval_s, (next_close + self.config.settle_ms - now) / 1000)

    def _idle(self, now: int, failed: bool) -> None:
        """Wait between steps of ``bars`` (REST feed: sleep on the clock)."""
        self.clock.sleep(self._idle_s(now, failed))

    def __iter__(self) -> Iterator[Bar]:
        """Yield closed bars forever (see ``bars``)."""
        return self.bars()
