"""A fake Binance REST server for offline tests of ccxt-based code.

Serves real bars (the shipped 1m sample) and real funding rates in Binance's own REST format, on
127.0.0.1 with an ephemeral port, for exactly the endpoints ccxt 4.5 calls (see STACK.md §4):

- ``GET /api/v3/exchangeInfo``, ``GET /api/v3/klines``, ``GET /api/v3/time`` (spot, ``binance``)
- ``GET /fapi/v1/exchangeInfo``, ``GET /fapi/v1/klines``, ``GET /fapi/v1/fundingRate``,
  ``GET /fapi/v1/time`` (USDⓈ-M perpetuals, ``binanceusdm``)

Server time ("now") is settable: a fixed ms value, a callable (e.g. a ``SimulatedClock.now_ms``) or
None for the wall clock. Klines only include bars whose open time is <= now; the bar still forming at
now is served with *partial* values (like Binance), so tests can prove a client never stores it.

Faults are injected per path and per request count (see ``FakeExchange.add_fault``): ``delay``
(stall past the client timeout), ``429`` (with ``Retry-After``), ``500`` (HTML body), ``truncate``
(JSON cut in half), ``duplicate`` / ``shuffle`` (repeated / out-of-order candles in a page) and
``drop`` (connection closed without a response). ``omit`` removes a range of bars for good (a gap).
Every request is recorded in ``FakeExchange.requests``.

Example:
    >>> fx = FakeExchange.from_samples(now_ms=1717804800000)
    >>> fx.start()  # doctest: +SKIP
    >>> fx.add_fault("429", path="/api/v3/klines", count=1, retry_after_s=1)  # doctest: +SKIP
    >>> fx.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SAMPLE_1M = SAMPLE_DIR / "btcusdt_1m_2024-06-01_07.parquet"
SAMPLE_FUNDING = SAMPLE_DIR / "btcusdt_perp_funding_8h.parquet"

MINUTE_MS = 60_000
FAULT_KINDS = ("delay", "429", "500", "401", "truncate", "duplicate", "shuffle", "drop")
SPOT_MAX_LIMIT = 1000
FAPI_MAX_LIMIT = 1500
FUNDING_MAX_LIMIT = 1000


@dataclass
class FaultRule:
    """One injected fault.

    Attributes:
        kind: one of ``FAULT_KINDS``.
        path: request path it applies to (exact, e.g. ``/api/v3/klines``); None = every path.
        skip: number of matching requests to let through before the fault starts.
        count: number of matching requests that get the fault; None = all later ones.
        delay_s: stall before answering (``delay``), seconds.
        retry_after_s: value of the ``Retry-After`` header (``429``), seconds.
    """

    kind: str
    path: str | None = None
    skip: int = 0
    count: int | None = 1
    delay_s: float = 2.0
    retry_after_s: int = 1
    seen: int = 0
    applied: int = 0

    def take(self, path: str) -> bool:
        """Return True when this request gets the fault (and count it)."""
        if self.path is not None and self.path != path:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.count is not None and self.applied >= self.count:
            return False
        self.applied += 1
        return True


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One served request: path, query parameters, HTTP status, fault applied (if any), rows, arrival time.

    ``arrived_s`` is ``time.monotonic()`` when the request line was read (for rate-limit checks).
    """

    path: str
    params: dict[str, str]
    status: int
    fault: str | None
    rows: int | None = None
    arrived_s: float = 0.0


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[FaultRule] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)


def _num(x: float) -> str:
    """Binance sends numbers as strings; repr() round-trips floats exactly."""
    return repr(float(x))


class FakeExchange:
    """A fake Binance (spot + USDⓈ-M) REST server serving real sample data.

    Args:
        bars: 1m bars in the quantgym bar format (timestamp = open time, ms UTC), served for both
            ``BTCUSDT`` spot and the ``BTCUSDT`` perpetual.
        funding: funding rates (``timestamp`` ms UTC, ``funding_rate`` fraction per 8 h).
        now_ms: server time in ms UTC: an int, a callable returning one, or None (wall clock).
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        funding: pd.DataFrame | None = None,
        now_ms: int | Callable[[], int] | None = None,
    ) -> None:
        self._ts = bars["timestamp"].to_numpy(dtype=np.int64)
        self._ohlcv = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
        if funding is None:
            funding = pd.DataFrame({"timestamp": np.array([], dtype=np.int64), "funding_rate": []})
        self._f_ts = funding["timestamp"].to_numpy(dtype=np.int64)
        self._f_rate = funding["funding_rate"].to_numpy(dtype=np.float64)
        self._omitted = np.zeros(len(self._ts), dtype=bool)
        self.now_ms = now_ms
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_samples(cls, now_ms: int | Callable[[], int] | None = None) -> FakeExchange:
        """Build the server over the shipped 1m BTC/USDT bars and the perpetual funding sample."""
        return cls(pd.read_parquet(SAMPLE_1M), pd.read_parquet(SAMPLE_FUNDING), now_ms=now_ms)

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeExchange:
        """Start serving in a daemon thread on an ephemeral port."""
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-binance", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and close its socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ----------------------------------------------------------------- control
    def server_now(self) -> int:
        """Current server time in ms UTC."""
        now = self.now_ms
        if now is None:
            return time.time_ns() // 1_000_000
        return int(now() if callable(now) else now)

    def add_fault(
        self,
        kind: str,
        path: str | None = None,
        count: int | None = 1,
        skip: int = 0,
        delay_s: float = 2.0,
        retry_after_s: int = 1,
    ) -> FaultRule:
        """Inject a fault into ``count`` requests to ``path`` after letting ``skip`` of them through."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {FAULT_KINDS}")
        rule = FaultRule(kind, path, skip, count, delay_s, retry_after_s)
        with self._state.lock:
            self._state.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        """Remove all injected faults."""
        with self._state.lock:
            self._state.faults.clear()

    def omit(self, start_ms: int, end_ms: int) -> int:
        """Stop serving bars with open time in [start_ms, end_ms) (a permanent gap); return how many."""
        mask = (self._ts >= start_ms) & (self._ts < end_ms)
        self._omitted |= mask
        return int(mask.sum())

    @property
    def requests(self) -> list[RequestRecord]:
        """Copy of the request log, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    def requests_to(self, path: str) -> list[RequestRecord]:
        """Logged requests whose path equals ``path``."""
        return [r for r in self.requests if r.path == path]

    def served_bars(self) -> pd.DataFrame:
        """All bars this server can serve (omitted ranges excluded), in the bar format."""
        keep = ~self._omitted
        df = pd.DataFrame(self._ohlcv[keep], columns=["open", "high", "low", "close", "volume"])
        df.insert(0, "timestamp", self._ts[keep])
        return df

    def _pick_fault(self, path: str) -> FaultRule | None:
        with self._state.lock:
            for rule in self._state.faults:
                if rule.take(path):
                    return rule
        return None

    def _log(self, rec: RequestRecord) -> None:
        with self._state.lock:
            self._state.requests.append(rec)

    # ----------------------------------------------------------------- payloads
    def klines(self, params: dict[str, str], max_limit: int) -> list[list[Any]] | None:
        """Binance klines rows for ``params``; None if the symbol is unknown."""
        if params.get("symbol") != "BTCUSDT":
            return None
        if params.get("interval", "1m") != "1m":
            raise _ApiError(400, -1120, "Invalid interval.")
        limit = min(int(params.get("limit", 500)), max_limit)
        now = self.server_now()
        ts = self._ts
        sel = (~self._omitted) & (ts <= now)
        if "startTime" in params:
            sel &= ts >= int(params["startTime"])
        if "endTime" in params:
            sel &= ts <= int(params["endTime"])
        idx = np.flatnonzero(sel)
        idx = idx[:limit] if "startTime" in params else idx[-limit:]
        rows = []
        for i in idx:
            t = int(ts[i])
            o, h, lo, c, v = self._ohlcv[i]
            if t + MINUTE_MS > now:  # still forming: partial values, as a live exchange shows them
                h, lo, c, v = max(o, c), min(o, c), o, v / 2
            rows.append(
                [t, _num(o), _num(h), _num(lo), _num(c), _num(v), t + MINUTE_MS - 1,
                 _num(v * c), 100, _num(v / 2), _num(v * c / 2), "0"]
            )
        return rows

    def funding_rates(self, params: dict[str, str]) -> list[dict[str, Any]] | None:
        """Binance fundingRate rows for ``params``; None if the symbol is unknown."""
        if params.get("symbol", "BTCUSDT") != "BTCUSDT":
            return None
        limit = min(int(params.get("limit", 100)), FUNDING_MAX_LIMIT)
        ts = self._f_ts
        sel = ts <= self.server_now()
        if "startTime" in params:
            sel &= ts >= int(params["startTime"])
        if "endTime" in params:
            sel &= ts <= int(params["endTime"])
        idx = np.flatnonzero(sel)
        idx = idx[:limit] if "startTime" in params else idx[-limit:]
        return [
            {"symbol": "BTCUSDT", "fundingTime": int(ts[i]), "fundingRate": _num(self._f_rate[i]),
             "markPrice": "67000.0"}
            for i in idx
        ]

    def exchange_info(self, futures: bool) -> dict[str, Any]:
        """exchangeInfo with one market, BTCUSDT, with the filters ccxt's parser reads."""
        filters: list[dict[str, Any]] = [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000", "stepSize": "0.00001"},
        ]
        common = {
            "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
            "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"],
        }
        if futures:
            filters += [
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "100"},
            ]
            sym = {**common, "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                   "onboardDate": 1569398400000, "marginAsset": "USDT", "pricePrecision": 2,
                   "quantityPrecision": 3, "underlyingType": "COIN", "triggerProtect": "0.0500",
                   "timeInForce": ["GTC", "IOC", "FOK", "GTX"], "filters": filters}
        else:
            filters.append({"filterType": "NOTIONAL", "minNotional": "5.00", "applyMinToMarket": True,
                            "maxNotional": "9000000.00", "applyMaxToMarket": False, "avgPriceMins": 5})
            sym = {**common, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                   "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
                   "isMarginTradingAllowed": False, "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
                   "filters": filters}
        return {"timezone": "UTC", "serverTime": self.server_now(), "rateLimits": [], "exchangeFilters": [],
                "symbols": [sym]}


class _ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _apply_page_fault(kind: str, payload: Any) -> Any:
    if not isinstance(payload, list) or len(payload) < 2:
        return payload
    if kind == "duplicate":  # repeat the first three rows (and one in the middle) inside the page
        mid = len(payload) // 2
        return payload[:3] + payload[:mid] + [payload[mid]] + payload[mid:]
    if kind == "shuffle":  # deterministic out-of-order page
        return payload[::-1][: len(payload) // 2] + payload[: len(payload) - len(payload) // 2]
    return payload


def _make_handler(fx: FakeExchange) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # keep test output quiet

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            t0 = time.monotonic()
            parsed = urlparse(self.path)
            path = parsed.path
            params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            rule = fx._pick_fault(path)
            kind = rule.kind if rule else None
            if rule is not None and kind == "delay":
                time.sleep(rule.delay_s)
            if kind == "drop":
                fx._log(RequestRecord(path, params, 0, kind, None, t0))
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            if kind == "429":
                assert rule is not None
                body = json.dumps({"code": -1003, "msg": "Too many requests; IP banned until later."})
                fx._log(RequestRecord(path, params, 429, kind, None, t0))
                self._send(429, body.encode(), "application/json", {"Retry-After": str(rule.retry_after_s)})
                return
            if kind == "401":  # Binance's answer to an invalid API key
                fx._log(RequestRecord(path, params, 401, kind, None, t0))
                self._send(401, b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
                           "application/json")
                return
            if kind == "500":
                fx._log(RequestRecord(path, params, 500, kind, None, t0))
                html = b"<html><head><title>500 Internal Server Error</title></head><body>oops</body></html>"
                self._send(500, html, "text/html")
                return
            try:
                payload = self._route(path, params)
            except _ApiError as e:
                fx._log(RequestRecord(path, params, e.status, kind, None, t0))
                self._send(e.status, json.dumps({"code": e.code, "msg": e.msg}).encode(), "application/json")
                return
            if payload is None:
                fx._log(RequestRecord(path, params, 404, kind, None, t0))
                self._send(404, b'{"code":-1,"msg":"not found"}', "application/json")
                return
            if kind in ("duplicate", "shuffle"):
                payload = _apply_page_fault(kind, payload)
            body = json.dumps(payload).encode()
            if kind == "truncate":
                body = body[: max(1, len(body) // 2)]
            rows = len(payload) if isinstance(payload, list) else None
            fx._log(RequestRecord(path, params, 200, kind, rows, t0))
            self._send(200, body, "application/json")

        def _route(self, path: str, params: dict[str, str]) -> Any:
            if path in ("/api/v3/time", "/fapi/v1/time"):
                return {"serverTime": fx.server_now()}
            if path == "/api/v3/exchangeInfo":
                return fx.exchange_info(futures=False)
            if path == "/fapi/v1/exchangeInfo":
                return fx.exchange_info(futures=True)
            if path in ("/api/v3/klines", "/fapi/v1/klines"):
                rows = fx.klines(params, SPOT_MAX_LIMIT if path.startswith("/api") else FAPI_MAX_LIMIT)
                if rows is None:
                    raise _ApiError(400, -1121, "Invalid symbol.")
                return rows
            if path == "/fapi/v1/fundingRate":
                rates = fx.funding_rates(params)
                if rates is None:
                    raise _ApiError(400, -1121, "Invalid symbol.")
                return rates
            return None

    return Handler
