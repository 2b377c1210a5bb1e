"""``broker=testnet``: the kernel's paper fills, plus a market order per decision to an exchange SANDBOX.

The session's accounting stays the env's kernel (`agents.paper.broker.PaperBroker`: the ledger's
``steps`` are the model's fills), so a testnet session is still comparable to a backtest; next to
each model fill the ledger records what the exchange's sandbox did with the same order
(``exchange_orders``) and the view ``fills_vs_model`` sets them side by side (slippage vs model).

**No real-money path.** The only way this module builds an exchange is `sandbox_exchange`: it calls
ccxt's ``set_sandbox_mode(True)``, refuses exchanges without sandbox URLs, then checks that sandbox
mode is on and that every REST URL points at a sandbox host (or, with ``broker.api_url``, at a
loopback test server: `agents.paper.brokers.config.is_loopback`). There is no setting that turns
sandbox mode off.

**Keys** come only from the environment (``QUANTGYM_API_KEY``, ``QUANTGYM_API_SECRET``); they are
handed to ccxt and never logged, stored or put in a config.

**Orders.** After the decision at bar t is committed, the order is the quantity the kernel would
trade for it (`intended_qty`: the kernel's own sizing, threshold and risk rules, run on a copy of the
state against a next bar that opens at close t), rounded to the exchange's precision and sent as a
market order whose exchange client order id is the decision's deterministic ``client_order_id``.
Before sending an order, the broker looks its id up on the exchange (``fetch_order`` by client id): an order
that reached the exchange before a crash is recorded, never sent twice.

**Reconciliation** at start (after recording any order that reached the exchange before a crash but
not the ledger): the exchange's position (spot: base-currency balance; perpetuals: the
signed position) against the ledger's (the model's position, and the sandbox fills the ledger
recorded, from the baseline the account held when the session first started); every difference is
logged and stored in ``reconciliations``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import ccxt
import numpy as np

from agents.paper.broker import PaperBroker, State, initial_state, to_rows
from agents.paper.brokers.config import BrokerConfig, is_loopback
from agents.paper.brokers.protective import ProtectiveOrders, exit_orders
from agents.paper.config import PaperFeedConfig
from agents.paper.ledger import Decision, Ledger
from agents.paper.market import BarTail
from envs.data.exchange import make_exchange, repoint_urls
from envs.sim import kernel as K

logger = logging.getLogger(__name__)

API_KEY_ENV = "QUANTGYM_API_KEY"
API_SECRET_ENV = "QUANTGYM_API_SECRET"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS exchange_orders (client_order_id TEXT PRIMARY KEY, bar_ts INTEGER NOT NULL, "
    "intended_qty REAL, amount REAL NOT NULL, status TEXT NOT NULL, exchange_order_id TEXT, "
    "filled_qty REAL NOT NULL, avg_price REAL, fee_quote REAL, fee_currency TEXT, sent_at_ms INTEGER NOT NULL, "
    "note TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS reconciliations (at_ms INTEGER NOT NULL, exchange_position REAL NOT NULL, "
    "baseline REAL NOT NULL, ledger_position REAL NOT NULL, recorded_fills REAL NOT NULL, "
    "unexplained REAL NOT NULL, model_minus_exchange REAL NOT NULL, note TEXT NOT NULL)",
    # the model's fill of each order (steps: fill_price, traded_qty, the step's fees) next to the exchange's
    "CREATE VIEW IF NOT EXISTS fills_vs_model AS SELECT e.client_order_id, e.bar_ts, e.status, "
    "e.filled_qty AS exchange_qty, e.avg_price AS exchange_price, e.fee_quote AS exchange_fee, "
    "s.traded_qty AS model_qty, s.fill_price AS model_price, s.step_fee AS model_fee, "
    "CASE WHEN s.fill_price > 0 AND e.avg_price > 0 AND e.filled_qty != 0 THEN "
    "(CASE WHEN e.filled_qty > 0 THEN 1.0 ELSE -1.0 END) * (e.avg_price - s.fill_price) / s.fill_price * 10000.0 "
    "END AS slippage_vs_model_bps, e.fee_quote - s.step_fee AS fee_vs_model "
    "FROM exchange_orders e LEFT JOIN (SELECT client_order_id, traded_qty, fill_price, "
    "fees_paid - COALESCE(LAG(fees_paid) OVER (ORDER BY step), 0.0) AS step_fee FROM steps) s "
    "USING (client_order_id)",
)


def credentials(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(key, secret) from ``QUANTGYM_API_KEY`` / ``QUANTGYM_API_SECRET`` (the environment only).

    Raises:
        ValueError: either is unset (the message names the variables, never a value).
    """
    env = os.environ if env is None else env
    key, secret = env.get(API_KEY_ENV, ""), env.get(API_SECRET_ENV, "")
    if not key or not secret:
        raise ValueError(f"broker=testnet needs the sandbox account's keys in the environment: export {API_KEY_ENV}=... "
                         f"and {API_SECRET_ENV}=... (keys are never read from configs or files)")
    return key, secret


def _http_hosts(urls: Any) -> set[str]:
    if isinstance(urls, str):
        parts = urlsplit(urls)
        return {parts.hostname or ""} if parts.scheme in ("http", "https") else set()
    if isinstance(urls, dict):
        return set().union(*(_http_hosts(v) for v in urls.values())) if urls else set()
    return set()


def verify_sandbox(exchange: ccxt.Exchange, allow_loopback: bool = False) -> None:
    """Refuse an exchange that is not in sandbox mode or whose REST URLs leave the sandbox.

    Args:
        exchange: a ccxt exchange.
        allow_loopback: also accept loopback hosts (a local test server from ``broker.api_url``).

    Raises:
        ValueError: sandbox mode is off, or a REST host is neither a sandbox host nor (if allowed) loopback.
    """
    if not getattr(exchange, "isSandboxModeEnabled", False):
        raise ValueError(f"{exchange.id}: sandbox mode is off; the testnet broker only trades in an exchange's "
                         "sandbox (there is no real-money path)")
    sandbox = _http_hosts(exchange.urls.get("test"))
    bad = sorted(h for h in _http_hosts(exchange.urls["api"])
                 if h not in sandbox and not (allow_loopback and is_loopback(f"http://{h}")))
    if bad:
        raise ValueError(f"{exchange.id}: REST hosts {bad} are not the exchange's sandbox {sorted(sandbox)}; refusing "
                         "to send orders (there is no real-money path)")


def sandbox_exchange(feed: PaperFeedConfig, broker: BrokerConfig, env: Mapping[str, str] | None = None) -> ccxt.Exchange:
    """The feed's exchange in SANDBOX mode with the environment's keys; the only way orders leave a session.

    Raises:
        ValueError: no keys, an exchange without a sandbox, sandbox mode not on, a URL outside the
            sandbox, or a ``broker.api_url`` that is not a loopback test server.
    """
    key, secret = credentials(env)
    prefix = f"QUANTGYM_{feed.exchange.upper()}_"
    exchange = make_exchange(feed.exchange, feed.market, timeout_ms=broker.timeout_ms, rate_limit_ms=broker.rate_limit_ms,
                             env={prefix + "API_KEY": key, prefix + "SECRET": secret}, dotenv_path=os.devnull)
    if not _http_hosts(exchange.urls.get("test")):
        raise ValueError(f"{feed.exchange} has no sandbox (testnet) in ccxt: broker=testnet refuses it; use broker=paper")
    try:
        exchange.set_sandbox_mode(True)
    except ccxt.NotSupported as err:
        raise ValueError(f"{feed.exchange}: ccxt cannot enable its sandbox ({err}); use broker=paper") from err
    verify_sandbox(exchange)
    if broker.api_url is not None:
        if not is_loopback(broker.api_url):
            raise ValueError(f"broker.api_url={broker.api_url!r} is refused: only a local test server may replace the "
                             "sandbox's hosts")
        exchange.urls["api"] = repoint_urls(exchange.urls["api"], broker.api_url)
    verify_sandbox(exchange, allow_loopback=broker.api_url is not None)
    logger.info("testnet broker: %s sandbox%s", exchange.id,
                f" via the local server {broker.api_url}" if broker.api_url else "")
    return exchange


class TestnetBroker(PaperBroker):
    """The paper broker (the kernel fills, the ledger's book) plus sandbox market orders (see module docstring).

    Args:
        ledger: the session's ledger (gets the ``exchange_orders`` and ``reconciliations`` tables).
        tail: the session's bars (the order sizing reads the kernel arrays of the decision bar).
        exchange: a sandboxed ccxt exchange (`sandbox_exchange`), markets loaded.
        symbol: unified symbol traded.
    """

    __test__ = False  # not a pytest class
    protective_cls: type[ProtectiveOrders] = ProtectiveOrders

    def __init__(self, ledger: Ledger, tail: BarTail, exchange: ccxt.Exchange, symbol: str) -> None:
        verify_sandbox(exchange, allow_loopback=True)
        super().__init__(ledger)
        self.tail = tail
        self.exchange = exchange
        self.symbol = symbol
        self.market = exchange.market(symbol)
        with ledger.transaction() as c:
            for sql in _SCHEMA:
                c.execute(sql)
        # the model's stops / take-profit / liquidation as reduce-only conditional orders (perpetuals only)
        self.protective = (self.protective_cls(ledger, exchange, symbol, self._fee) if self.market.get("contract")
                           else None)

    @classmethod
    def start(cls, ledger: Ledger, tail: BarTail, feed: PaperFeedConfig, broker: BrokerConfig,
              env: Mapping[str, str] | None = None) -> TestnetBroker:
        """Build the sandbox exchange, load its markets and reconcile the ledger with it."""
        exchange = sandbox_exchange(feed, broker, env)
        exchange.load_markets()
        out = cls(ledger, tail, exchange, feed.symbol)
        now_ms = exchange.milliseconds()
        out.recover(now_ms)
        if out.protective is not None:
            out.protective.recover(now_ms, out.bar_ms)
        else:
            logger.info("testnet broker: %s is a spot market: the model's stops and take-profit are not mirrored "
                        "on the exchange (perpetuals only)", feed.symbol)
        out.reconcile(now_ms)
        return out

    @property
    def bar_ms(self) -> int:
        """The bar interval, ms (from the session's last two bars)."""
        bars = self.tail.bars
        if len(bars) < 2:
            raise RuntimeError("the testnet broker needs the session's history (two bars) to know the bar interval")
        return int(bars[-1].timestamp - bars[-2].timestamp)

    def recover(self, now_ms: int) -> int:
        """Record the orders of committed decisions that reached the exchange before a crash but not the ledger.

        Each decision without an ``exchange_orders`` row is looked up by its client order id; a found
        order is recorded (``intended_qty`` NULL: the sizing needs the decision bar, not loaded yet)
        and will not be sent again. Returns how many were found.
        """
        rows = self.ledger.conn.execute(
            "SELECT bar_ts FROM decisions WHERE client_order_id NOT IN (SELECT client_order_id FROM exchange_orders) "
            "ORDER BY bar_ts").fetchall()
        found = 0
        for (bar_ts,) in rows:
            decision = self.ledger.decision(int(bar_ts))
            assert decision is not None
            order = self._lookup(decision.client_order_id)
            if order is not None:
                logger.info("order %s reached the exchange before the restart: recorded, not resent",
                            decision.client_order_id)
                self._record(decision, None, order, now_ms, "found on the exchange at start (sent before a "
                             "restart), not resent")
                found += 1
        return found

    # -- positions ------------------------------------------------------------------------------
    def exchange_position(self) -> float:
        """The account's position in the symbol, base units (spot: total base balance; swap: signed)."""
        if self.market.get("spot"):
            total = self.exchange.fetch_balance().get("total", {})
            return float(total.get(self.market["base"]) or 0.0)
        pos = 0.0
        for p in self.exchange.fetch_positions([self.symbol]):
            if p.get("symbol") != self.symbol:
                continue
            size = float(p.get("contracts") or 0.0) * float(p.get("contractSize") or 1.0)
            pos += -size if p.get("side") == "short" else size
        return pos

    def reconcile(self, now_ms: int) -> dict[str, float]:
        """Compare the exchange's position with the ledger's; log and store what differs.

        Returns:
            The reconciliation row (exchange position, baseline, ledger position, recorded fills,
            ``unexplained`` = exchange - baseline - recorded fills, ``model_minus_exchange``).
        """
        exch = self.exchange_position()
        c = self.ledger.conn
        fills = float(c.execute("SELECT COALESCE(SUM(filled_qty), 0.0) FROM exchange_orders").fetchone()[0])
        first = c.execute("SELECT baseline FROM reconciliations ORDER BY at_ms LIMIT 1").fetchone()
        last = self.ledger.last_settled()
        model = 0.0 if last is None else float(last.state[K.S_POS])
        unsettled = float(c.execute(
            "SELECT COALESCE(SUM(filled_qty), 0.0) FROM exchange_orders WHERE client_order_id NOT IN "
            "(SELECT client_order_id FROM steps)").fetchone()[0])
        if self.protective is not None:  # exchange-triggered exits (after the last settled bar: not settled yet)
            fills += float(c.execute("SELECT COALESCE(SUM(filled_qty), 0.0) FROM protective_orders").fetchone()[0])
            unsettled += float(c.execute(
                "SELECT COALESCE(SUM(filled_qty), 0.0) FROM protective_orders WHERE trigger_bar_ts > ?",
                (-1 if last is None else last.bar_ts,)).fetchone()[0])
        baseline = exch - fills if first is None else float(first[0])
        row = {"exchange_position": exch, "baseline": baseline, "ledger_position": model, "recorded_fills": fills,
               "unexplained": exch - baseline - fills, "model_minus_exchange": model - (fills - unsettled)}
        tol = float(self.market.get("precision", {}).get("amount") or 1e-8)
        notes = []
        if abs(row["unexplained"]) > tol:
            notes.append(f"the exchange holds {row['unexplained']:+.8g} {self.market['base']} that no order of this "
                         "ledger explains (other activity on the account, or an order the ledger never recorded)")
        if abs(row["model_minus_exchange"]) > tol:
            notes.append(f"the model's position {model:.8g} differs from the settled sandbox fills "
                         f"{fills - unsettled:.8g} by {row['model_minus_exchange']:+.8g} (precision rounding, orders "
                         "below the exchange minimum, a protective exit that triggered on one side only)")
        note = "; ".join(notes) or "ledger and exchange agree"
        with self.ledger.transaction() as tx:
            tx.execute("INSERT INTO reconciliations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (now_ms, exch, baseline, model, fills, row["unexplained"], row["model_minus_exchange"], note))
        log = logger.warning if notes else logger.info
        log("reconciliation with %s sandbox: exchange %.8g %s (baseline %.8g, ledger-recorded fills %.8g), "
            "model position %.8g: %s", self.exchange.id, exch, self.market["base"], baseline, fills, model, note)
        return row

    # -- orders ---------------------------------------------------------------------------------
    def intended_qty(self, decision: Decision) -> float:
        """Signed quantity (base units) the kernel would trade for ``decision`` if bar t+1 opened at close t.

        Runs `envs.sim.kernel.step_env` (sizing, rebalance threshold, minimum notional, risk rules) on a
        copy of the state at the decision bar against a next bar that opens, closes and ranges at
        close t with unlimited volume: the one implementation of the rules, no second sizing code.
        """
        return float(self.intended_state(decision)[K.S_TRADED_QTY, 0])

    def intended_state(self, decision: Decision) -> State:
        """The (S_ROWS, 1) kernel state after `intended_qty`'s step (bar rows: 0 = decision bar, 1 = the next)."""
        sim = self.tail.simulation()
        row = decision.bar_index - self.tail.offset
        if not 0 <= row < sim.market.shape[0]:
            raise RuntimeError(f"decision bar {decision.bar_index} is not in the tail (offset {self.tail.offset})")
        last = self.ledger.last_settled()
        if last is None:
            state: State = initial_state(sim, row, self.tail.offset)
        elif last.bar_index == decision.bar_index:
            state = last.state
        else:
            raise RuntimeError(f"the last settled bar {last.bar_index} is not the decision bar {decision.bar_index}")
        s = to_rows(state, decision.bar_index)
        market = np.repeat(sim.market[row:row + 1], 2, axis=0)
        close = market[0, K.M_CLOSE]
        market[1, [K.M_OPEN, K.M_HIGH, K.M_LOW, K.M_CLOSE]] = close
        market[1, K.M_VOLUME] = math.inf
        market[1, K.M_FUNDING] = 0.0
        K.step_env(0, decision.action, s, market, sim.params, sim.levels)
        return s

    def submit(self, decision: Decision, now_ms: int) -> bool:
        """Book the order (paper broker), then send it to the sandbox unless the exchange already has it,
        then mirror the model's exit levels for the next bar (perpetuals)."""
        new = super().submit(decision, now_ms)
        cid = decision.client_order_id
        if self.protective is not None:
            self.protective.refresh(now_ms, self.bar_ms)  # exits that triggered during the bar that just closed
        state = None
        if not self.ledger.conn.execute("SELECT 1 FROM exchange_orders WHERE client_order_id = ?", (cid,)).fetchone():
            state = self.intended_state(decision)
            self._send(decision, float(state[K.S_TRADED_QTY, 0]), now_ms)
        if self.protective is not None:
            self._protect(decision, state, now_ms)
        return new

    def _protect(self, decision: Decision, state: State | None, now_ms: int) -> None:
        """Mirror the kernel's exit levels on the next bar for the position the exchange now holds."""
        assert self.protective is not None
        if state is None:  # a resend after a restart: the same levels, unless the tail cannot size it
            try:
                state = self.intended_state(decision)
            except RuntimeError as err:
                logger.warning("protective orders of %s not re-checked (%s); the next bar does", decision.client_order_id,
                               err)
                return
        model = float(state[K.S_POS, 0])
        want = exit_orders(K.exit_levels(state, 0, 1, self.tail.simulation().params), model)
        held = self.exchange_position() if want else 0.0
        amount = 0.0
        if held != 0.0 and (held > 0.0) == (model > 0.0):
            amount = -math.copysign(float(self.exchange.amount_to_precision(self.symbol, abs(held))), held)
        elif want:
            logger.warning("the sandbox holds %.8g, the model %.8g: no protective order for %s", held, model,
                           decision.client_order_id)
        self.protective.sync(decision, want, amount, now_ms)

    def _lookup(self, cid: str) -> dict[str, Any] | None:
        try:
            return self.exchange.fetch_order(None, self.symbol, {"clientOrderId": cid})
        except ccxt.OrderNotFound:
            return None

    def _send(self, decision: Decision, qty: float, now_ms: int) -> None:
        cid = decision.client_order_id
        amount = float(self.exchange.amount_to_precision(self.symbol, abs(qty))) if qty else 0.0
        limits = self.market.get("limits", {})
        min_amount = float((limits.get("amount") or {}).get("min") or 0.0)
        min_cost = float((limits.get("cost") or {}).get("min") or 0.0)
        if amount <= 0.0 or amount < min_amount or amount * decision.price < min_cost:
            note = "nothing to trade" if qty == 0 else (f"{abs(qty):.8g} is below the exchange's minimum "
                                                          f"(amount {min_amount:g}, notional {min_cost:g})")
            self._insert(decision, qty, 0.0, "not_sent", None, 0.0, None, None, None, now_ms, note)
            return
        found = self._lookup(cid)
        if found is not None:
            logger.info("order %s is already on the exchange (sent before a restart): recorded, not resent", cid)
            self._record(decision, qty, found, now_ms, "found on the exchange (sent before a restart), not resent")
            return
        side = "buy" if qty > 0 else "sell"
        try:
            order = self.exchange.create_order(self.symbol, "market", side, amount, None, {"clientOrderId": cid})
        except ccxt.NetworkError as err:  # it may or may not have arrived: look again before giving up
            order = self._lookup(cid)
            if order is None:
                logger.warning("order %s not sent (%s); the model fills it, reconciliation will show it", cid,
                               type(err).__name__)
                self._insert(decision, qty, amount, "failed", None, 0.0, None, None, None, now_ms,
                             f"{type(err).__name__}: {str(err)[:200]}")
                return
        except ccxt.ExchangeError as err:
            logger.warning("order %s rejected by the sandbox: %s", cid, str(err)[:200])
            self._insert(decision, qty, amount, "rejected", None, 0.0, None, None, None, now_ms, str(err)[:300])
            return
        self._record(decision, qty, order, now_ms, f"{side} {amount:g} sent")

    def _record(self, decision: Decision, qty: float | None, order: dict[str, Any], now_ms: int, note: str) -> None:
        filled = float(order.get("filled") or 0.0)
        sign = -1.0 if order.get("side") == "sell" else 1.0
        fee, currency = self._fee(order)
        self._insert(decision, qty, sign * float(order.get("amount") or filled), str(order.get("status") or "unknown"),
                     str(order.get("id")), sign * filled, order.get("average"), fee, currency, now_ms, note)

    def _fee(self, order: dict[str, Any]) -> tuple[float | None, str | None]:
        """The order's fee in quote currency (from the order, else from its trades)."""
        fees = [f for f in (order.get("fees") or ([order["fee"]] if order.get("fee") else [])) if f]
        if not fees and order.get("id") and self.exchange.has.get("fetchMyTrades"):
            trades = self.exchange.fetch_my_trades(self.symbol, None, None, {"orderId": order["id"]})
            fees = [t["fee"] for t in trades if t.get("fee") and str(t.get("order")) == str(order["id"])]
        quote = self.market["quote"]
        costs = [float(f["cost"]) for f in fees if f.get("cost") is not None and f.get("currency") == quote]
        other = {f.get("currency") for f in fees if f.get("currency") != quote}
        if other:
            logger.warning("order %s paid fees in %s, not %s: fee_quote holds the %s part only",
                           order.get("clientOrderId"), sorted(map(str, other)), quote, quote)
        return (sum(costs) if costs else None), (quote if costs else None)

    def _insert(self, decision: Decision, qty: float | None, amount: float, status: str, order_id: str | None,
                filled: float, avg: float | None, fee: float | None, currency: str | None, now_ms: int,
                note: str) -> None:
        with self.ledger.transaction() as c:
            c.execute("INSERT INTO exchange_orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (decision.client_order_id, decision.bar_ts, qty, amount, status, order_id, filled,
                       None if avg is None else float(avg), fee, currency, now_ms, note))
        logger.info("sandbox order %s: %s, filled %.8g at %s, fee %s (%s)", decision.client_order_id, status,
                    filled, avg, fee, note)
