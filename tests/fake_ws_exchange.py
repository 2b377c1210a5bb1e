"""A fake Binance websocket market-stream server for offline tests of ccxt.pro code.

An aiohttp server on 127.0.0.1 (ephemeral port, own event loop in a daemon thread) that accepts the
connections ccxt.pro's ``binance.watch_ohlcv`` opens (``/<any prefix>/ws/<n>``), answers its
``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1}`` with ``{"result": null, "id": 1}``
and pushes kline events of the shipped 1m sample bars in Binance's combined-stream format::

    {"stream": "btcusdt@kline_1m",
     "data": {"e": "kline", "E": <event ms>, "s": "BTCUSDT",
              "k": {"t": <open ms>, "T": <open ms + 59999>, "s": "BTCUSDT", "i": "1m",
                    "o": "...", "h": "...", "l": "...", "c": "...", "v": "...", "x": <closed?>, ...}}}

A *forming* push carries partial values (close = open, high/low from open and close, half the
volume; the same partial candle ``tests/fake_exchange.py`` serves over REST), so a client that
delivers a forming candle is caught by comparing values. A *closed* push (``"x": true``) carries the
sample bar's final values. ``drop()`` closes every connection abruptly (no close frame), as a
network failure does.

Control methods are called from the test thread and return once the frames have been written to the
sockets. Example:

    >>> ws = FakeWsExchange.from_samples().start()  # doctest: +SKIP
    >>> ws.wait_subscribed(1)  # doctest: +SKIP
    >>> ws.push(0, closed=False); ws.push(0, closed=True); ws.push(1, closed=False)  # doctest: +SKIP
    >>> ws.drop(); ws.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
from aiohttp import WSMsgType, web

from envs.feeds.base import timeframe_ms
from tests.fake_exchange import SAMPLE_1M, _num

URL_PREFIX = "/stream"  # ccxt's binance tells spot from futures streams by '/stream' in the URL


class FakeWsExchange:
    """Fake Binance kline websocket for ``BTCUSDT`` (1m by default; see module docstring).

    Args:
        bars: bars in the quantgym bar format (timestamp = open time, ms UTC).
        timeframe: their interval (the kline stream's ``i``, e.g. ``1m``, ``1h``).
    """

    def __init__(self, bars: pd.DataFrame, timeframe: str = "1m") -> None:
        self.timeframe = timeframe
        self.bar_ms = timeframe_ms(timeframe)
        self._ts = bars["timestamp"].to_numpy(dtype=np.int64)
        self._ohlcv = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._cond = threading.Condition()
        self.subscriptions: list[list[str]] = []  # params of every SUBSCRIBE received, in order
        self.subscribed_at: list[float] = []  # time.monotonic() of each SUBSCRIBE (compare RequestRecord.arrived_s)
        self.connections = 0  # websocket connections accepted
        self.frames_sent = 0

    @classmethod
    def from_samples(cls) -> FakeWsExchange:
        """Build the server over the shipped 1m BTC/USDT sample week."""
        return cls(pd.read_parquet(SAMPLE_1M))

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL to give ``repoint_urls`` for ``urls['api']['ws']``, e.g. ``ws://127.0.0.1:40123/stream``."""
        assert self._port is not None, "call start() first"
        return f"ws://127.0.0.1:{self._port}{URL_PREFIX}"

    def start(self) -> FakeWsExchange:
        """Start serving on an ephemeral port in a daemon thread; return once it listens."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-binance-ws", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake websocket server did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self._port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close every connection, stop the server and its loop."""
        if self._loop is None:
            return
        self.drop()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    # ----------------------------------------------------------------- server side
    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._cond:
            self.connections += 1
        self._sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                if req.get("method") == "SUBSCRIBE":
                    await ws.send_str(json.dumps({"result": None, "id": req.get("id")}))
                    with self._cond:
                        self.subscriptions.append(list(req.get("params", [])))
                        self.subscribed_at.append(time.monotonic())
                        self._cond.notify_all()
                elif "id" in req:
                    await ws.send_str(json.dumps({"result": None, "id": req.get("id")}))
        finally:
            self._sockets.discard(ws)
        return ws

    def _frame(self, i: int, closed: bool) -> str:
        t = int(self._ts[i])
        o, h, lo, c, v = self._ohlcv[i]
        if not closed:
            h, lo, c, v = max(o, c), min(o, c), o, v / 2
        k = {
            "t": t, "T": t + self.bar_ms - 1, "s": "BTCUSDT", "i": self.timeframe, "f": 100, "L": 200,
            "o": _num(o), "c": _num(c), "h": _num(h), "l": _num(lo), "v": _num(v), "n": 100,
            "x": bool(closed), "q": _num(v * c), "V": _num(v / 2), "Q": _num(v * c / 2), "B": "0",
        }
        event_ms = t + (self.bar_ms - 1 if closed else self.bar_ms // 2)
        return json.dumps({"stream": f"btcusdt@kline_{self.timeframe}",
                           "data": {"e": "kline", "E": event_ms, "s": "BTCUSDT", "k": k}})

    def _run(self, coro: Any) -> Any:
        assert self._loop is not None, "call start() first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ----------------------------------------------------------------- control (test thread)
    def push(self, i: int, closed: bool) -> int:
        """Push sample bar ``i`` as a forming (partial values) or closed (``x: true``) kline; return receivers."""
        frame = self._frame(i, closed)

        async def send() -> int:
            n = 0
            for ws in list(self._sockets):
                if not ws.closed:
                    await ws.send_str(frame)
                    n += 1
            return n

        n = self._run(send())
        with self._cond:
            self.frames_sent += n
        return n

    def push_bar(self, i: int) -> int:
        """Push bar ``i`` forming, then bar ``i`` closed, then bar ``i + 1`` forming (one minute of Binance)."""
        n = self.push(i, closed=False)
        self.push(i, closed=True)
        self.push(i + 1, closed=False)
        return n

    def drop(self) -> int:
        """Abort every open connection without a close frame (a network failure); return how many."""

        async def abort() -> int:
            socks = list(self._sockets)
            for ws in socks:
                transport = ws._req.transport if ws._req is not None else None  # noqa: SLF001
                if transport is not None:
                    transport.abort()
            self._sockets.clear()
            return len(socks)

        return self._run(abort())

    def wait_subscribed(self, n: int, timeout_s: float = 10.0) -> None:
        """Block until at least ``n`` SUBSCRIBE requests have arrived (in total)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.subscriptions) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {len(self.subscriptions)} of {n} subscriptions arrived")
                self._cond.wait(left)

    @property
    def open_connections(self) -> int:
        """Websocket connections currently open (a client that closed properly is gone)."""

        async def count() -> int:
            return sum(not ws.closed for ws in self._sockets)

        return self._run(count())

    def bar_open_ms(self, i: int) -> int:
        """Open time of sample bar ``i`` (ms UTC)."""
        return int(self._ts[i])
