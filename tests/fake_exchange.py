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

Trading (``FakeExchange.enable_trading``): signed endpoints checked like Binance (``X-MBX-APIKEY``
header, HMAC-SHA256 of the query string or form body with the secret, else ``-2015`` / ``-1022``),
served ONLY under a sandbox path prefix (``/testnet``; the same request without it is refused as a
real-money endpoint): spot ``GET /api/v3/account``, ``POST /api/v3/order`` (MARKET, filled at once at
the forming bar's open plus ``slippage_bps``, taker fee ``fee_frac`` in USDT, ``newClientOrderId``
unique: a second order with the same id is ``-2010 Duplicate order sent``), ``GET /api/v3/order``
(by ``origClientOrderId`` or ``orderId``, ``-2013 Order does not exist``), ``GET /api/v3/myTrades``
(an order's fill and fee); USDⓈ-M
``GET /fapi/v1/leverageBracket``, ``GET /fapi/v2|v3/positionRisk``, ``GET /fapi/v2|v3/account``, ``POST /fapi/v1/order``,
``GET /fapi/v1/order``, ``GET /fapi/v1/userTrades`` (the fee of a futures order), and Binance's algo service
for conditional orders as ccxt 4.5 calls it: ``POST /fapi/v1/algoOrder`` (``algoType=CONDITIONAL``, type
``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``, ``triggerPrice``, ``reduceOnly=true`` only, ``clientAlgoId``
unique), ``GET /fapi/v1/algoOrder``, ``DELETE /fapi/v1/algoOrder`` (``-2011 Unknown order sent.`` once it is
no longer open) and ``GET /fapi/v1/openAlgoOrders``. They trigger on the fake's bars: each bar from the one
forming when the order was placed (its whole range: the session places them right after a bar opens) is
checked once it has closed, before any signed request is answered; a sell stop triggers when the low
reaches ``triggerPrice``, a sell take-profit when the high does (buys: the mirror image). The trigger sends a
MARKET order (``actualOrderId``, readable with ``GET /fapi/v1/order`` / ``userTrades``) filled at
``triggerPrice``, or at the open when the bar gapped through it, plus ``slippage_bps`` against it and the taker
fee; the algo order becomes ``FINISHED``. A stop and a take-profit in one bar: the stop first. A triggered
reduce-only order that would not reduce the position (flat, or on the other side) becomes ``EXPIRED``.

Example:
    >>> fx = FakeExchange.from_samples(now_ms=1717804800000)
    >>> fx.start()  # doctest: +SKIP
    >>> fx.add_fault("429", path="/api/v3/klines", count=1, retry_after_s=1)  # doctest: +SKIP
    >>> fx.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
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

from envs.feeds.base import timeframe_ms

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SAMPLE_1M = SAMPLE_DIR / "btcusdt_1m_2024-06-01_07.parquet"
SAMPLE_FUNDING = SAMPLE_DIR / "btcusdt_perp_funding_8h.parquet"

MINUTE_MS = 60_000
#: the conditional order types the USDⓈ-M algo service takes (reduce-only)
CONDITIONAL_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
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
    method: str = "GET"
    sandbox: bool = False
    signed: bool = False


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[FaultRule] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)


@dataclass
class _Trading:
    api_key: str
    secret: str
    balances: dict[str, float]
    fee_frac: float
    slippage_bps: float
    prefix: str
    position: float = 0.0  # USDⓈ-M BTCUSDT position, base units (signed)
    entry_price: float = 0.0  # its average entry price (0 when flat; ccxt lists positions with one only)
    next_id: int = 1
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    algo_orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # conditional orders by clientAlgoId


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
        timeframe: the bars' interval, the only ``interval`` the klines endpoints serve (``1m``, ``1h``).
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        funding: pd.DataFrame | None = None,
        now_ms: int | Callable[[], int] | None = None,
        timeframe: str = "1m",
    ) -> None:
        self.timeframe = timeframe
        self.bar_ms = timeframe_ms(timeframe)
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
        self.trading: _Trading | None = None

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


    # ----------------------------------------------------------------- trading (signed endpoints)
    def enable_trading(self, api_key: str, secret: str, balances: dict[str, float] | None = None,
                       fee_frac: float = 0.001, slippage_bps: float = 2.0, sandbox_prefix: str = "/testnet") -> None:
        """Serve the signed account and order endpoints under ``sandbox_prefix`` (see module docstring).

        Args:
            api_key: the only API key accepted (header ``X-MBX-APIKEY``).
            secret: HMAC-SHA256 secret the signatures must be made with.
            balances: starting spot balances per asset (default 1 BTC, 100,000 USDT).
            fee_frac: taker fee as a fraction of the notional, charged in USDT.
            slippage_bps: market orders fill this many bps worse than the forming bar's open.
            sandbox_prefix: path prefix of the sandbox URL (``<url><prefix>/api/v3/...``).
        """
        self.trading = _Trading(api_key, secret, dict(balances or {"BTC": 1.0, "USDT": 100_000.0}), fee_frac,
                                slippage_bps, sandbox_prefix)

    @property
    def sandbox_url(self) -> str:
        """Base URL of the sandbox (``<url><sandbox_prefix>``)."""
        assert self.trading is not None, "call enable_trading() first"
        return self.url + self.trading.prefix

    def orders(self) -> list[dict[str, Any]]:
        """Every order accepted, oldest first (copies)."""
        assert self.trading is not None
        with self._state.lock:
            return [dict(o) for o in self.trading.orders.values()]

    def forming_open(self) -> float:
        """Open of the bar forming at server now (the price a market order gets before slippage)."""
        now = self.server_now()
        i = int(np.searchsorted(self._ts, now, side="right")) - 1
        if i < 0:
            raise _ApiError(400, -1013, "No price yet.")
        return float(self._ohlcv[i, 0])

    def _check_signature(self, headers: Any, payload: str) -> dict[str, str]:
        tr = self.trading
        assert tr is not None
        if headers.get("X-MBX-APIKEY") != tr.api_key:
            raise _ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if "&signature=" not in payload:
            raise _ApiError(400, -1102, "Mandatory parameter 'signature' was not sent.")
        body, sig = payload.rsplit("&signature=", 1)
        want = hmac.new(tr.secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig):
            raise _ApiError(400, -1022, "Signature for this request is not valid.")
        params = {k: v[-1] for k, v in parse_qs(body).items()}
        if "timestamp" not in params:
            raise _ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent.")
        return params

    def _private(self, method: str, path: str, params: dict[str, str]) -> Any:
        tr = self.trading
        assert tr is not None
        with self._state.lock:
            self._trigger()
            if path in ("/fapi/v1/algoOrder", "/fapi/v1/openAlgoOrders"):
                return self._algo(method, path, params)
            if method == "GET" and path == "/api/v3/account":
                return {"makerCommission": 10, "takerCommission": 10, "canTrade": True, "accountType": "SPOT",
                        "updateTime": self.server_now(), "permissions": ["SPOT"],
                        "balances": [{"asset": a, "free": _num(v), "locked": "0.0"} for a, v in tr.balances.items()]}
            if method == "GET" and path == "/fapi/v1/leverageBracket":  # ccxt reads it before positions
                return [{"symbol": "BTCUSDT", "brackets": [{"bracket": 1, "initialLeverage": 125, "notionalCap": 50000,
                                                            "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0}]}]
            if method == "GET" and path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
                return [self._position_row()]
            if method == "GET" and path in ("/fapi/v2/account", "/fapi/v3/account"):
                usdt = _num(tr.balances.get("USDT", 0.0))
                return {"totalWalletBalance": usdt, "availableBalance": usdt, "canTrade": True,
                        "assets": [{"asset": "USDT", "walletBalance": usdt, "availableBalance": usdt,
                                    "marginBalance": usdt, "crossWalletBalance": usdt}],
                        "positions": [self._position_row()]}
            if method == "POST" and path in ("/api/v3/order", "/fapi/v1/order"):
                return self._new_order(params, futures=path.startswith("/fapi"))
            if method == "GET" and path in ("/api/v3/order", "/fapi/v1/order"):
                return self._order_view(self._find_order(params), futures=path.startswith("/fapi"))
            if method == "GET" and path == "/api/v3/myTrades":
                o = self._find_order(params)
                return [{"symbol": "BTCUSDT", "id": o["orderId"], "orderId": o["orderId"], "orderListId": -1,
                         "price": _num(o["price"]), "qty": _num(o["qty"]), "quoteQty": _num(o["price"] * o["qty"]),
                         "commission": _num(o["fee"]), "commissionAsset": "USDT", "time": o["time"],
                         "isBuyer": o["side"] == "BUY", "isMaker": False, "isBestMatch": True}]
            if method == "GET" and path == "/fapi/v1/userTrades":
                o = self._find_order(params)
                return [{"symbol": "BTCUSDT", "id": o["orderId"], "orderId": o["orderId"], "side": o["side"],
                         "price": _num(o["price"]), "qty": _num(o["qty"]), "realizedPnl": "0",
                         "quoteQty": _num(o["price"] * o["qty"]), "commission": _num(o["fee"]),
                         "commissionAsset": "USDT", "time": o["time"], "positionSide": "BOTH",
                         "buyer": o["side"] == "BUY", "maker": False}]
        return None

    def _position_row(self) -> dict[str, Any]:
        tr = self.trading
        assert tr is not None
        mark = self.forming_open()
        return {"symbol": "BTCUSDT", "positionAmt": _num(tr.position), "entryPrice": _num(tr.entry_price),
                "breakEvenPrice": _num(tr.entry_price),
                "markPrice": _num(mark), "unRealizedProfit": "0.0", "liquidationPrice": "0",
                "leverage": "1", "maxNotionalValue": "1000000", "marginType": "cross", "isolatedMargin": "0.0",
                "isAutoAddMargin": "false", "positionSide": "BOTH", "notional": _num(tr.position * mark),
                "isolatedWallet": "0", "updateTime": self.server_now()}

    def _new_order(self, params: dict[str, str], futures: bool) -> dict[str, Any]:
        tr = self.trading
        assert tr is not None
        if params.get("symbol") != "BTCUSDT":
            raise _ApiError(400, -1121, "Invalid symbol.")
        if params.get("type") != "MARKET":
            raise _ApiError(400, -1116, "Invalid orderType (this fake fills MARKET orders only).")
        cid = params.get("newClientOrderId") or f"fake-{tr.next_id}"
        if cid in tr.orders:
            raise _ApiError(400, -2010, "Duplicate order sent.")
        side = params["side"]
        qty = float(params["quantity"])
        sign = 1.0 if side == "BUY" else -1.0
        px = self.forming_open() * (1.0 + sign * tr.slippage_bps / 1e4)
        fee = qty * px * tr.fee_frac
        if futures:
            self._fill_position(sign * qty, px)
            tr.balances["USDT"] = tr.balances.get("USDT", 0.0) - fee
        else:
            tr.balances["BTC"] = tr.balances.get("BTC", 0.0) + sign * qty
            tr.balances["USDT"] = tr.balances.get("USDT", 0.0) - sign * qty * px - fee
        order = {"orderId": tr.next_id, "clientOrderId": cid, "side": side, "qty": qty, "price": px, "fee": fee,
                 "time": self.server_now()}
        tr.next_id += 1
        tr.orders[cid] = order
        return self._order_view(order, futures, full=True)

    def algo_orders(self) -> list[dict[str, Any]]:
        """Every conditional (algo) order accepted, oldest first (copies)."""
        assert self.trading is not None
        with self._state.lock:
            self._trigger()
            return [dict(o) for o in self.trading.algo_orders.values()]

    def _fill_position(self, qty: float, px: float) -> None:
        """The perpetual position after a fill of ``qty`` (signed) at ``px``, with its average entry price."""
        tr = self.trading
        assert tr is not None
        new = tr.position + qty
        if new == 0.0 or abs(new) < 1e-12:
            tr.position, tr.entry_price = 0.0, 0.0
            return
        if tr.position == 0.0 or (tr.position > 0) != (new > 0):
            tr.entry_price = px  # opened or flipped
        elif abs(new) > abs(tr.position):
            tr.entry_price = (tr.entry_price * abs(tr.position) + px * abs(qty)) / abs(new)
        tr.position = new

    def _bar_at(self, ms: int) -> int:
        return int(np.searchsorted(self._ts, ms, side="right")) - 1

    def _algo(self, method: str, path: str, params: dict[str, str]) -> Any:
        tr = self.trading
        assert tr is not None
        if path == "/fapi/v1/openAlgoOrders":
            return [self._algo_view(o) for o in tr.algo_orders.values() if o["algoStatus"] == "NEW"]
        if method == "POST":
            return self._new_algo(params)
        cid = params.get("clientAlgoId")
        order = tr.algo_orders.get(cid or "") if cid else next(
            (o for o in tr.algo_orders.values() if str(o["algoId"]) == params.get("algoId")), None)
        if method == "GET":
            if order is None:
                raise _ApiError(400, -2013, "Order does not exist.")
            return self._algo_view(order)
        if method == "DELETE":
            if order is None or order["algoStatus"] != "NEW":
                raise _ApiError(400, -2011, "Unknown order sent.")
            order["algoStatus"] = "CANCELED"
            order["updateTime"] = self.server_now()
            return {"algoId": order["algoId"], "clientAlgoId": order["clientAlgoId"], "code": "200", "msg": "success"}
        return None

    def _new_algo(self, params: dict[str, str]) -> dict[str, Any]:
        tr = self.trading
        assert tr is not None
        if params.get("symbol") != "BTCUSDT":
            raise _ApiError(400, -1121, "Invalid symbol.")
        if params.get("algoType") != "CONDITIONAL" or params.get("type") not in CONDITIONAL_TYPES:
            raise _ApiError(400, -1116, f"Invalid orderType (this fake's algo service takes {CONDITIONAL_TYPES}).")
        if params.get("reduceOnly") != "true" or "triggerPrice" not in params or "quantity" not in params:
            raise _ApiError(400, -1106, "This fake takes conditional orders only with reduceOnly=true, a "
                                        "triggerPrice and a quantity.")
        cid = params.get("clientAlgoId") or f"fake-algo-{tr.next_id}"
        if cid in tr.algo_orders:
            raise _ApiError(400, -2010, "Duplicate order sent.")
        now = self.server_now()
        order = {"algoId": tr.next_id, "clientAlgoId": cid, "orderType": params["type"], "side": params["side"],
                 "quantity": float(params["quantity"]), "triggerPrice": float(params["triggerPrice"]),
                 "algoStatus": "NEW", "createTime": now, "updateTime": now, "triggerTime": 0, "actualOrderId": "",
                 "actualPrice": 0.0, "bar": self._bar_at(now)}
        tr.next_id += 1
        tr.algo_orders[cid] = order
        return self._algo_view(order)

    @staticmethod
    def _algo_view(o: dict[str, Any]) -> dict[str, Any]:
        return {"algoId": o["algoId"], "clientAlgoId": o["clientAlgoId"], "algoType": "CONDITIONAL",
                "orderType": o["orderType"], "symbol": "BTCUSDT", "side": o["side"], "positionSide": "BOTH",
                "timeInForce": "GTC", "quantity": _num(o["quantity"]), "algoStatus": o["algoStatus"],
                "triggerPrice": _num(o["triggerPrice"]), "price": "0.0", "workingType": "CONTRACT_PRICE",
                "closePosition": False, "priceProtect": False, "reduceOnly": True, "createTime": o["createTime"],
                "updateTime": o["updateTime"], "triggerTime": o["triggerTime"], "actualOrderId": str(o["actualOrderId"]),
                "actualPrice": _num(o["actualPrice"]), "goodTillDate": 0}

    def _trigger(self) -> None:
        """Trigger the open conditional orders on every bar that closed since they were last checked."""
        tr = self.trading
        assert tr is not None
        pending = [o for o in tr.algo_orders.values() if o["algoStatus"] == "NEW"]
        if not pending:
            return
        last_closed = self._bar_at(self.server_now() - self.bar_ms)
        for i in range(min(o["bar"] for o in pending), last_closed + 1):
            due = [o for o in pending if o["algoStatus"] == "NEW" and o["bar"] <= i]
            due.sort(key=lambda o: o["orderType"] != "STOP_MARKET")  # stop and take-profit in one bar: the stop first
            for o in due:
                o["bar"] = i + 1
                self._trigger_on(o, i)

    def _trigger_on(self, o: dict[str, Any], i: int) -> None:
        tr = self.trading
        assert tr is not None
        open_, high, low = self._ohlcv[i, 0], self._ohlcv[i, 1], self._ohlcv[i, 2]
        sell = o["side"] == "SELL"
        level = o["triggerPrice"]
        if (o["orderType"] == "STOP_MARKET") == sell:  # a sell stop / buy take-profit: the price falls to it
            hit, gap = low <= level, open_ <= level
        else:
            hit, gap = high >= level, open_ >= level
        if not hit:
            return
        at = int(self._ts[i]) + self.bar_ms - 1
        o.update(triggerTime=at, updateTime=at)
        sign = -1.0 if sell else 1.0
        if tr.position == 0.0 or (tr.position > 0.0) == (sign > 0.0):
            o["algoStatus"] = "EXPIRED"  # reduce-only with nothing to reduce
            return
        qty = min(o["quantity"], abs(tr.position))
        px = (open_ if gap else level) * (1.0 + sign * tr.slippage_bps / 1e4)
        fee = qty * px * tr.fee_frac
        self._fill_position(sign * qty, px)
        tr.balances["USDT"] = tr.balances.get("USDT", 0.0) - fee
        order = {"orderId": tr.next_id, "clientOrderId": f"{o['clientAlgoId']}-fill", "side": o["side"], "qty": qty,
                 "price": px, "fee": fee, "time": at}
        tr.next_id += 1
        tr.orders[order["clientOrderId"]] = order
        o.update(algoStatus="FINISHED", actualOrderId=order["orderId"], actualPrice=px)

    def _find_order(self, params: dict[str, str]) -> dict[str, Any]:
        tr = self.trading
        assert tr is not None
        if "origClientOrderId" in params:
            order = tr.orders.get(params["origClientOrderId"])
        else:
            order = next((o for o in tr.orders.values() if str(o["orderId"]) == params.get("orderId")), None)
        if order is None:
            raise _ApiError(400, -2013, "Order does not exist.")
        return order

    @staticmethod
    def _order_view(o: dict[str, Any], futures: bool, full: bool = False) -> dict[str, Any]:
        qty, px = o["qty"], o["price"]
        view: dict[str, Any] = {
            "symbol": "BTCUSDT", "orderId": o["orderId"], "clientOrderId": o["clientOrderId"], "price": "0.0",
            "origQty": _num(qty), "executedQty": _num(qty), "status": "FILLED", "timeInForce": "GTC",
            "type": "MARKET", "side": o["side"],
        }
        if futures:
            view.update(avgPrice=_num(px), cumQuote=_num(qty * px), reduceOnly=False, positionSide="BOTH",
                        updateTime=o["time"], time=o["time"])
        else:
            view.update(cummulativeQuoteQty=_num(qty * px), transactTime=o["time"], time=o["time"],
                        updateTime=o["time"], isWorking=True, workingTime=o["time"])
            if full:
                view["fills"] = [{"price": _num(px), "qty": _num(qty), "commission": _num(o["fee"]),
                                  "commissionAsset": "USDT", "tradeId": o["orderId"]}]
        return view

    # ----------------------------------------------------------------- payloads
    def klines(self, params: dict[str, str], max_limit: int) -> list[list[Any]] | None:
        """Binance klines rows for ``params``; None if the symbol is unknown."""
        if params.get("symbol") != "BTCUSDT":
            return None
        if params.get("interval", "1m") != self.timeframe:
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
            if t + self.bar_ms > now:  # still forming: partial values, as a live exchange shows them
                h, lo, c, v = max(o, c), min(o, c), o, v / 2
            rows.append(
                [t, _num(o), _num(h), _num(lo), _num(c), _num(v), t + self.bar_ms - 1,
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
            sym = {**common, "orderTypes": ["LIMIT", "MARKET", *CONDITIONAL_TYPES],
                   "pair": "BTCUSDT", "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
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
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
            self._serve("DELETE")

        def _serve(self, method: str) -> None:  # noqa: C901 - one branch per fault kind
            t0 = time.monotonic()
            parsed = urlparse(self.path)
            path = parsed.path
            query = parsed.query
            if method != "GET":
                length = int(self.headers.get("Content-Length") or 0)
                query = self.rfile.read(length).decode() if length else query
            params = {k: v[-1] for k, v in parse_qs(query).items()}
            sandbox = False
            tr = fx.trading
            if tr is not None and path.startswith(tr.prefix + "/"):
                path, sandbox = path[len(tr.prefix):], True
            signed = "signature" in params

            def log(status: int, kind: str | None, rows: int | None = None) -> None:
                fx._log(RequestRecord(path, {k: v for k, v in params.items() if k != "signature"}, status, kind,
                                      rows, t0, method, sandbox, signed))

            rule = fx._pick_fault(path)
            kind = rule.kind if rule else None
            if rule is not None and kind == "delay":
                time.sleep(rule.delay_s)
            if kind == "drop":
                log(0, kind)
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            if kind == "429":
                assert rule is not None
                body = json.dumps({"code": -1003, "msg": "Too many requests; IP banned until later."})
                log(429, kind)
                self._send(429, body.encode(), "application/json", {"Retry-After": str(rule.retry_after_s)})
                return
            if kind == "401":  # Binance's answer to an invalid API key
                log(401, kind)
                self._send(401, b'{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
                           "application/json")
                return
            if kind == "500":
                log(500, kind)
                html = b"<html><head><title>500 Internal Server Error</title></head><body>oops</body></html>"
                self._send(500, html, "text/html")
                return
            try:
                if signed or method != "GET":
                    payload = self._route_private(method, path, query, sandbox)
                else:
                    payload = self._route(path, params)
            except _ApiError as e:
                log(e.status, kind)
                self._send(e.status, json.dumps({"code": e.code, "msg": e.msg}).encode(), "application/json")
                return
            if payload is None:
                log(404, kind)
                self._send(404, b'{"code":-1,"msg":"not found"}', "application/json")
                return
            if kind in ("duplicate", "shuffle"):
                payload = _apply_page_fault(kind, payload)
            body = json.dumps(payload).encode()
            if kind == "truncate":
                body = body[: max(1, len(body) // 2)]
            log(200, kind, len(payload) if isinstance(payload, list) else None)
            self._send(200, body, "application/json")

        def _route_private(self, method: str, path: str, query: str, sandbox: bool) -> Any:
            if fx.trading is None:
                raise _ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
            if not sandbox:
                raise _ApiError(403, -2015, f"real-money endpoint refused: this fake trades only under "
                                            f"{fx.trading.prefix} (the sandbox URL)")
            params = fx._check_signature(self.headers, query)
            return fx._private(method, path, params)

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
