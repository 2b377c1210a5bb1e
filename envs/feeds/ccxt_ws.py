"""``WebsocketLiveFeed``: closed bars from ccxt.pro's ``watch_ohlcv`` pushes, REST for everything missed.

The websocket feed is a ``LiveFeed`` (same guarantees, same store, same cursor, same REST backfill
code) whose bars normally arrive through the exchange's kline stream instead of polling:

- **Closed bars only.** ``watch_ohlcv`` returns cached candles including the one still forming, and
  ccxt drops Binance's ``"x"`` (closed) flag. A streamed candle with open ``t`` is therefore
  emitted only once the NEXT candle (open ``t + timeframe``) has arrived on the stream: the exchange
  has moved on, and it sends a candle's final update before the next candle's first one over the
  same ordered connection. A candle whose successor never showed up on the stream (the stream
  skipped ahead) is fetched through REST instead; the clock alone never releases a streamed candle,
  since its last pushed values may be partial.
- **Exactly once, in order.** One cursor (the last delivered open time) for both paths; every
  delivery goes through ``LiveFeed._commit`` (store append first, then the cursor moves). Streamed
  candles at or before the cursor are dropped.
- **Backfill.** On start, after a restart (a store with earlier bars) and after every websocket
  disconnect, the missed bars are fetched through ``LiveFeed.backfill`` (REST ``fetch_ohlcv``,
  retried with backoff) BEFORE streamed candles are emitted again. A jump in the stream (the next
  closed streamed candle is not the cursor + one timeframe) triggers the same REST backfill, with the
  stream's newest open time as proof of which bars have closed. If the stream is silent for
  ``config.ws_fallback_ms`` after a bar's close (clock time), that bar comes through REST too.
- **Reconnects.** A transient websocket error (``ccxt.NetworkError``: dropped connection,
  connection refused) is counted in ``stats.ws_disconnects``; reconnects are spaced by
  ``config.retry``'s exponential backoff with jitter (on the feed's clock) and REST covers the
  meantime. Non-transient errors raise ``FatalFetchError``.
- **Synchronous use.** The feed owns a private asyncio event loop and runs it only inside ``poll``
  (and ``bars``), so it is used from ordinary synchronous code; do not call it from a running event
  loop (use ``asyncio.to_thread``). ``close()`` (or ``with``) closes the websocket connections.

``open_live_feed(..., mode="auto")`` picks the websocket feed when ccxt.pro implements the exchange
with ``has['watchOHLCV']``, else the polling ``LiveFeed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import ccxt
import numpy as np
import pandas as pd

from envs.data.exchange import repoint_urls
from envs.data.retry import TRANSIENT_ERRORS, FatalFetchError
from envs.feeds.base import empty_bars
from envs.feeds.ccxt_live import LiveFeed, LiveFeedStats
from envs.market.times import iso_utc

logger = logging.getLogger(__name__)

FeedMode = Literal["auto", "poll", "websocket"]
FEED_MODES: tuple[str, ...] = ("auto", "poll", "websocket")


@dataclass
class WebsocketFeedStats(LiveFeedStats):
    """``LiveFeedStats`` plus stream counters.

    Attributes:
        ws_updates: candle updates received from ``watch_ohlcv`` (forming ones included).
        ws_bars: bars delivered from the stream (the rest of ``bars`` came through REST).
        ws_disconnects: websocket failures (each one followed by a REST backfill and a reconnect).
        ws_connects: watch sessions started (the first one and every reconnect).
    """

    ws_updates: int = 0
    ws_bars: int = 0
    ws_disconnects: int = 0
    ws_connects: int = 0


def has_watch_ohlcv(exchange_id: str) -> bool:
    """True when ccxt.pro implements ``exchange_id`` with ``watchOHLCV``."""
    import ccxt.pro

    cls = getattr(ccxt.pro, exchange_id, None)
    return cls is not None and bool(cls().has.get("watchOHLCV"))


def ws_exchange_for(rest_exchange: Any, ws_url: str | None = None) -> Any:
    """A ccxt.pro exchange matching a synchronous one (same id, keys, timeout, REST URLs and markets).

    Args:
        rest_exchange: synchronous ccxt exchange (``envs.data.exchange.make_exchange``); its markets
            are loaded if needed and shared, so the websocket client sends no extra REST requests.
        ws_url: if given, every websocket URL is re-pointed to this base, keeping paths (e.g.
            ``ws://127.0.0.1:PORT/stream`` makes binance spot use ``ws://127.0.0.1:PORT/stream/ws``).

    Raises:
        ValueError: ccxt.pro has no such exchange.
    """
    import ccxt.pro

    cls = getattr(ccxt.pro, rest_exchange.id, None)
    if cls is None:
        raise ValueError(f"ccxt.pro has no {rest_exchange.id!r}; use mode='poll' (REST polling)")
    params: dict[str, Any] = {"enableRateLimit": True, "timeout": rest_exchange.timeout}
    if rest_exchange.apiKey and rest_exchange.secret:
        params.update(apiKey=rest_exchange.apiKey, secret=rest_exchange.secret)
    pro = cls(params)
    pro.urls["api"] = {**pro.urls["api"], **{k: v for k, v in rest_exchange.urls["api"].items() if k != "ws"}}
    if ws_url:
        pro.urls["api"]["ws"] = repoint_urls(pro.urls["api"]["ws"], ws_url)
    if not rest_exchange.markets:
        rest_exchange.load_markets()
    pro.set_markets(rest_exchange.markets, rest_exchange.currencies)
    return pro


class WebsocketLiveFeed(LiveFeed):
    """Closed bars of one symbol from a ccxt.pro kline stream, REST-backfilled (see module docstring).

    Args:
        exchange: synchronous ccxt exchange, used for REST backfill (``fetch_ohlcv``).
        symbol: unified symbol, e.g. ``BTC/USDT``.
        timeframe: bar length, e.g. ``1m``.
        ws_exchange: ccxt.pro exchange for the stream; None = ``ws_exchange_for(exchange)``. The feed
            closes it in ``close()``.
        **kwargs: the other ``LiveFeed`` arguments (``store``, ``clock``, ``start``,
            ``store_exchange``, ``config``, ``rng``).

    Raises:
        ValueError: the exchange has no ``watchOHLCV``.
    """

    def __init__(self, exchange: Any, symbol: str, timeframe: str, ws_exchange: Any = None, **kwargs: Any) -> None:
        super().__init__(exchange, symbol, timeframe, **kwargs)
        self.stats: WebsocketFeedStats = WebsocketFeedStats()
        self.ws_exchange = ws_exchange if ws_exchange is not None else ws_exchange_for(exchange)
        if not self.ws_exchange.has.get("watchOHLCV"):
            raise ValueError(f"{self.ws_exchange.id} has no watchOHLCV in ccxt.pro; use mode='poll'")
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[list[list[Any]]] | None = None
        self._pending: dict[int, list[float]] = {}  # latest streamed values per open time, not yet delivered
        self._seen: set[int] = set()  # open times seen on the stream since it (re)connected, not yet delivered + 1
        self._need_backfill = True  # REST catch-up before streamed bars are emitted
        self._ws_failures = 0  # consecutive websocket failures
        self._reconnect_at_ms: int | None = None  # clock time before which no reconnect is tried
        self._fallback_at_ms: int | None = None  # clock time of the last REST fallback for a silent stream
        self._closed = False

    # ------------------------------------------------------------------ public API
    def poll(self, wait_s: float = 0.0) -> pd.DataFrame:
        """Read the stream (and REST where needed); store and return the bars closed since the last call.

        Args:
            wait_s: longest real time to wait for the first push, seconds (>= 0; 0 = only what has
                arrived). Further queued pushes are read for ``config.ws_drain_s``.

        Returns:
            Bar-format frame, strictly increasing, only closed bars, each exactly once, possibly empty.

        Raises:
            FatalFetchError: non-transient exchange error (REST or websocket).
            RuntimeError: called after ``close()`` or from inside a running event loop.
        """
        if self._closed:
            raise RuntimeError("this WebsocketLiveFeed is closed; build a new one")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("WebsocketLiveFeed is synchronous: call it from a thread (asyncio.to_thread), "
                               "not from inside a running event loop")
        self.stats.polls += 1
        out: list[pd.DataFrame] = []
        if self._need_backfill:  # start, restart or after a disconnect: REST first
            disconnects = self.stats.disconnects
            out.append(self.backfill())
            self._need_backfill = self.stats.disconnects > disconnects
        if not self._need_backfill:
            self._merge(self._receive(wait_s))
            if not self._need_backfill:
                self._merge(self._cached())  # updates that arrived after the last watch call resolved
            out.append(self._emit_streamed())
            if self._need_backfill:  # the stream just failed: forget its unfinished candles, backfill now
                self._forget_stream()
                out.append(self.backfill())
            elif self._stream_overdue():
                self._fallback_at_ms = self.clock.now_ms()
                out.append(self.backfill())  # stream silent too long: REST for those bars
        out = [f for f in out if not f.empty]
        if not out:
            return empty_bars()
        return out[0] if len(out) == 1 else pd.concat(out, ignore_index=True)

    def _stream_overdue(self) -> bool:
        """True when the next bar closed ``ws_fallback_ms`` ago without the stream delivering it.

        REST is then asked at most every ``min_poll_interval_s`` (an exchange that serves nothing,
        e.g. in maintenance, is not hammered).
        """
        if self._last is None:
            return False
        now = self.clock.now_ms()
        if self._last + 2 * self.tf_ms + self.config.ws_fallback_ms > now:
            return False
        return self._fallback_at_ms is None or now - self._fallback_at_ms >= self.config.min_poll_interval_s * 1000

    def close(self) -> None:
        """Cancel the pending watch and close the websocket connections and the private event loop."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ccxt.BaseError):
                    self._loop.run_until_complete(self._task)
            self._task = None
            self._loop.run_until_complete(self.ws_exchange.close())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    def __enter__(self) -> WebsocketLiveFeed:
        """Use as a context manager that closes the connections on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close (see ``close``)."""
        self.close()

    # ------------------------------------------------------------------ iteration hooks
    def _next_batch(self) -> pd.DataFrame:
        return self.poll(wait_s=self.config.ws_wait_s)

    def _idle(self, now: int, failed: bool) -> None:
        if self._reconnect_at_ms is None and not self._need_backfill:
            return  # the stream is up: the next poll waits on the socket itself
        wait_s = self._idle_s(now, failed)
        if self._reconnect_at_ms is not None:
            wait_s = min(wait_s, max(0.0, (self._reconnect_at_ms - now) / 1000))
        self.clock.sleep(wait_s)

    # ------------------------------------------------------------------ stream
    async def _watch(self) -> list[list[Any]]:
        return await self.ws_exchange.watch_ohlcv(self.symbol, self.timeframe)

    def _receive(self, wait_s: float) -> list[list[Any]]:
        """Run the private loop until a push arrives (or ``wait_s`` passes); return the candle updates."""
        if self._reconnect_at_ms is not None:
            if self.clock.now_ms() < self._reconnect_at_ms:
                return []  # backing off; REST covers the meantime
            self._reconnect_at_ms = None
        candles: list[list[Any]] = []
        deadline = time.monotonic() + max(0.0, wait_s)
        first = True
        while True:
            if self._task is None:
                if self._ws_failures or self.stats.ws_connects == 0:
                    self.stats.ws_connects += 1
                self._task = self._loop.create_task(self._watch())
            timeout = max(self.config.ws_drain_s, deadline - time.monotonic()) if first else self.config.ws_drain_s
            self._loop.run_until_complete(asyncio.wait({self._task}, timeout=timeout))
            if not self._task.done():
                return candles
            task, self._task, first = self._task, None, False
            error = task.exception()
            if error is None:
                got = task.result()
                self._ws_failures = 0
                self.stats.ws_updates += len(got)
                candles.extend(got)
                continue
            if not isinstance(error, TRANSIENT_ERRORS):
                raise FatalFetchError(
                    f"{self.ws_exchange.id} {self.symbol} {self.timeframe} watch_ohlcv failed with "
                    f"{type(error).__name__}: {str(error)[:300]}"
                ) from error
            self._on_disconnect(error)
            return candles

    def _on_disconnect(self, error: BaseException) -> None:
        self._ws_failures += 1
        self.stats.ws_disconnects += 1
        delay_s = self.config.retry.backoff_s(self._ws_failures, self.retrier.rng)
        self._reconnect_at_ms = self.clock.now_ms() + round(delay_s * 1000)
        self._need_backfill = True  # poll drops the unfinished candles and backfills through REST
        logger.warning("%s %s: websocket failed (%s: %s); REST backfill from %s, reconnect in %.2f s",
                       self.symbol, self.timeframe, type(error).__name__, str(error)[:200],
                       iso_utc(None if self._last is None else self._last + self.tf_ms), delay_s)

    def _cached(self) -> list[list[Any]]:
        """ccxt.pro's candle cache for the symbol (latest values per open time, newest last).

        A push that arrives after one ``watch_ohlcv`` call resolved and before the next one starts
        only lands in this cache (the next call would wait for yet another push), so ``poll`` reads it.
        """
        cache = (self.ws_exchange.ohlcvs or {}).get(self.symbol, {}).get(self.timeframe)
        if not cache:
            return []
        out = []
        for c in reversed(cache):
            if self._last is not None and int(c[0]) <= self._last:
                break
            out.append(c)
        return out[::-1]

    def _forget_stream(self) -> None:
        """Drop what the broken stream left: pending candles, ccxt's cache, the stream's time."""
        self._pending.clear()
        by_symbol = (self.ws_exchange.ohlcvs or {}).get(self.symbol)
        if isinstance(by_symbol, dict):
            by_symbol.pop(self.timeframe, None)  # a stale forming candle must not look closed later
        self._seen.clear()

    def _merge(self, candles: list[list[Any]]) -> None:
        for c in candles:
            t = int(c[0])
            if self._last is None or t > self._last:
                self._seen.add(t)
                self._pending[t] = [float("nan") if v is None else float(v) for v in c[1:6]]

    def _emit_streamed(self) -> pd.DataFrame:
        """Deliver the streamed candles a later candle has closed, in order, REST-filling any hole first."""
        if not self._pending:
            return empty_bars()
        out: list[pd.DataFrame] = []
        closed = sorted(t for t in self._pending if t + self.tf_ms in self._seen)
        if closed and self._last is not None and closed[0] != self._last + self.tf_ms:
            logger.info("%s %s: stream jumped from %s to %s; fetching the bars between through REST",
                        self.symbol, self.timeframe, iso_utc(self._last), iso_utc(closed[0]))
            disconnects = self.stats.disconnects
            out.append(self.backfill(now_ms=closed[0]))  # exactly the hole: bars before the streamed one
            if self.stats.disconnects > disconnects:  # REST is down too: hold the streamed bars, retry next poll
                return out[0]
        self._pending = {t: v for t, v in self._pending.items() if self._last is None or t > self._last}
        closed = sorted(t for t in self._pending if t + self.tf_ms in self._seen)
        if closed:
            vals = np.array([self._pending.pop(t) for t in closed], dtype=np.float64)
            frame = pd.DataFrame({"timestamp": np.array(closed, dtype=np.int64), "open": vals[:, 0],
                                  "high": vals[:, 1], "low": vals[:, 2], "close": vals[:, 3], "volume": vals[:, 4]})
            out.append(self._commit(frame))
            self.stats.ws_bars += len(frame)
        if self._last is not None:
            self._seen = {t for t in self._seen if t > self._last}
        out = [f for f in out if not f.empty]
        if not out:
            return empty_bars()
        return out[0] if len(out) == 1 else pd.concat(out, ignore_index=True)


def open_live_feed(
    exchange: Any,
    symbol: str,
    timeframe: str,
    mode: FeedMode = "auto",
    ws_exchange: Any = None,
    **kwargs: Any,
) -> LiveFeed:
    """Build the live feed for ``mode``.

    Args:
        exchange: synchronous ccxt exchange (REST).
        symbol: unified symbol.
        timeframe: bar length, e.g. ``1m``.
        mode: ``poll`` = ``LiveFeed`` (REST polling); ``websocket`` = ``WebsocketLiveFeed`` (error if
            ccxt.pro lacks ``watchOHLCV`` for the exchange); ``auto`` = websocket where available.
        ws_exchange: ccxt.pro exchange for the stream (None = ``ws_exchange_for(exchange)``).
        **kwargs: other ``LiveFeed`` arguments.

    Raises:
        ValueError: unknown mode, or ``websocket`` on an exchange without ``watchOHLCV``.
    """
    if mode not in FEED_MODES:
        raise ValueError(f"live.mode={mode!r} is invalid: use one of {FEED_MODES}")
    if mode == "poll":
        return LiveFeed(exchange, symbol, timeframe, **kwargs)
    available = has_watch_ohlcv(exchange.id) if ws_exchange is None else bool(ws_exchange.has.get("watchOHLCV"))
    if not available:
        if mode == "websocket":
            raise ValueError(f"{exchange.id} has no watchOHLCV in ccxt.pro; use live.mode='poll' or 'auto'")
        logger.info("%s has no watchOHLCV in ccxt.pro: polling REST", exchange.id)
        return LiveFeed(exchange, symbol, timeframe, **kwargs)
    if ws_exchange is None:
        ws_exchange = ws_exchange_for(exchange)
    return WebsocketLiveFeed(exchange, symbol, timeframe, ws_exchange=ws_exchange, **kwargs)
