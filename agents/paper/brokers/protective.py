"""The model's protective exits mirrored in the sandbox as reduce-only conditional orders (perpetuals).

After each decision the testnet broker asks the kernel for the exit levels it will apply on the next bar
(`envs.sim.kernel.exit_levels` on the state of its order-sizing step: the stop, i.e. the nearer of the fixed
and the trailing stop, the take-profit and the liquidation price) and keeps at most one order of each kind
on the exchange for the position the exchange holds:

- ``sl``: ``STOP_MARKET`` at the stop, or at the model's liquidation price when that is nearer (the kernel
  closes at whichever adverse level the price reaches first);
- ``tp``: ``TAKE_PROFIT_MARKET`` at the take-profit.

An order whose level and amount are unchanged stays; otherwise it is cancelled and replaced (a trailing
stop moves it, an added position resizes it); a flat model, a flip or a level that is not live (the bar of
an entry: the kernel's stops start the bar after) cancels it. Client order ids are deterministic,
``<decision client_order_id>-sl`` / ``-tp`` (at most 36 characters, Binance's limit). Every order is written
to the ledger (``protective_orders``, status ``sending``) BEFORE it is sent and looked up on the exchange
before it is sent, so a restart after ``kill -9`` neither duplicates nor forgets one; at start the
``sending`` rows are resolved and the exchange's open conditional orders compared with the ledger's.
Exchange-triggered exits are read back each bar (the triggered order's fill, fee and time) and set next to
the model's step of the bar they triggered in (view ``exits_vs_model``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import ccxt

from agents.paper.ledger import Decision, Ledger

logger = logging.getLogger(__name__)

#: ledger status of an order written ahead and not yet confirmed by the exchange
SENDING = "sending"
KINDS = {"sl": "stopLossPrice", "tp": "takeProfitPrice"}

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS protective_orders (client_order_id TEXT PRIMARY KEY, decision_id TEXT NOT NULL, "
    "bar_ts INTEGER NOT NULL, kind TEXT NOT NULL, trigger_price REAL NOT NULL, amount REAL NOT NULL, "
    "status TEXT NOT NULL, exchange_order_id TEXT, filled_qty REAL NOT NULL DEFAULT 0.0, avg_price REAL, "
    "fee_quote REAL, fee_currency TEXT, placed_at_ms INTEGER NOT NULL, triggered_at_ms INTEGER, "
    "trigger_bar_ts INTEGER, closed_at_ms INTEGER, note TEXT NOT NULL)",
    # an exchange-triggered exit next to the model's step of the bar it triggered in
    "CREATE VIEW IF NOT EXISTS exits_vs_model AS SELECT p.client_order_id, p.kind, p.trigger_price, "
    "p.trigger_bar_ts, p.filled_qty AS exchange_qty, p.avg_price AS exchange_price, p.fee_quote AS exchange_fee, "
    "s.fill_price AS model_price, s.position AS model_position, "
    "CASE WHEN s.fill_price > 0 AND p.avg_price > 0 AND p.filled_qty != 0 THEN "
    "(CASE WHEN p.filled_qty > 0 THEN 1.0 ELSE -1.0 END) * (p.avg_price - s.fill_price) / s.fill_price * 10000.0 "
    "END AS slippage_vs_model_bps FROM protective_orders p LEFT JOIN steps s ON s.timestamp = p.trigger_bar_ts "
    "WHERE p.filled_qty != 0",
)


def exit_orders(levels: tuple[float, float, float], position: float) -> dict[str, float]:
    """Trigger price per kind (``sl`` / ``tp``) for a position of sign ``position`` from the kernel's
    ``(stop, take_profit, liquidation)`` levels (NaN = none); the stop is the nearer adverse level."""
    if position == 0.0:
        return {}
    stop, tp, liq = levels
    adverse = [x for x in (stop, liq) if not math.isnan(x) and x > 0.0]
    out = {}
    if adverse:
        out["sl"] = max(adverse) if position > 0 else min(adverse)
    if not math.isnan(tp) and tp > 0.0:
        out["tp"] = tp
    return out


class ProtectiveOrders:
    """The ledger's and the exchange's protective orders of one symbol (see module docstring).

    Args:
        ledger: the session's ledger (gets ``protective_orders`` and ``exits_vs_model``).
        exchange: the sandboxed ccxt exchange.
        symbol: unified symbol.
        fee: the broker's fee reader (order -> (fee in quote, currency)).
    """

    def __init__(self, ledger: Ledger, exchange: ccxt.Exchange, symbol: str,
                 fee: Callable[[dict[str, Any]], tuple[float | None, str | None]]) -> None:
        self.ledger = ledger
        self.exchange = exchange
        self.symbol = symbol
        self.fee = fee
        with ledger.transaction() as c:
            for sql in SCHEMA:
                c.execute(sql)

    # -- exchange calls -------------------------------------------------------------------------
    def _fetch(self, cid: str) -> dict[str, Any] | None:
        try:
            return self.exchange.fetch_order(None, self.symbol, {"clientOrderId": cid, "trigger": True})
        except ccxt.OrderNotFound:
            return None

    def _rows(self, where: str, *args: object) -> list[tuple[Any, ...]]:
        return self.ledger.conn.execute(
            f"SELECT client_order_id, kind, trigger_price, amount, status FROM protective_orders WHERE {where} "
            "ORDER BY placed_at_ms, client_order_id", args).fetchall()

    def _update(self, cid: str, **values: object) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.ledger.transaction() as c:
            c.execute(f"UPDATE protective_orders SET {cols} WHERE client_order_id = ?", (*values.values(), cid))

    # -- start ----------------------------------------------------------------------------------
    def recover(self, now_ms: int, bar_ms: int) -> list[str]:
        """Resolve rows written ahead before a crash, read back exits that triggered meanwhile, and name the
        exchange's open conditional orders the ledger does not hold open. Returns those orders' ids."""
        for cid, *_ in self._rows("status = ?", SENDING):
            order = self._fetch(cid)
            if order is None:
                self._update(cid, status="not_sent", closed_at_ms=now_ms, note="written ahead, never reached "
                             "the exchange (a restart)")
            else:
                logger.info("protective order %s reached the exchange before the restart: recorded, not resent", cid)
                self._update(cid, status="open", exchange_order_id=str(order.get("id")),
                             note="found on the exchange at start (sent before a restart), not resent")
        self.refresh(now_ms, bar_ms)
        held = {r[0] for r in self._rows("status = 'open'")}
        stray = [str(o.get("clientOrderId")) for o in self.exchange.fetch_open_orders(self.symbol, None, None,
                                                                                     {"trigger": True})
                 if o.get("clientOrderId") not in held]
        if stray:
            logger.warning("the %s sandbox holds open conditional orders this ledger did not place: %s (left alone)",
                           self.exchange.id, stray)
        return stray

    # -- every bar ------------------------------------------------------------------------------
    def refresh(self, now_ms: int, bar_ms: int) -> int:
        """Read back the ledger's open protective orders; record triggered exits (fill, fee, the bar of the
        trigger, ``bar_ms`` = the bar interval). Returns how many triggered."""
        triggered = 0
        for cid, kind, price, _, _ in self._rows("status = 'open'"):
            order = self._fetch(cid)
            if order is None or order.get("status") == "open":
                continue
            status = str(order.get("status"))
            info = order.get("info") or {}
            actual = str(info.get("actualOrderId") or "")
            if status == "closed" and actual:
                fill = self.exchange.fetch_order(actual, self.symbol)
                at = int(info.get("triggerTime") or fill.get("timestamp") or now_ms)
                bar_ts = self._bar_of(at, bar_ms)
                sign = -1.0 if fill.get("side") == "sell" else 1.0
                fee, currency = self.fee(fill)
                self._update(cid, status="filled", filled_qty=sign * float(fill.get("filled") or 0.0),
                             avg_price=fill.get("average"), fee_quote=fee, fee_currency=currency, triggered_at_ms=at,
                             trigger_bar_ts=bar_ts, closed_at_ms=now_ms, note=f"{kind} triggered at {price:g}")
                logger.warning("the sandbox's %s order %s triggered: %+.8g at %s", kind, cid,
                               sign * float(fill.get("filled") or 0.0), fill.get("average"))
                triggered += 1
            else:
                self._update(cid, status=status, closed_at_ms=now_ms, note=f"{status} on the exchange")
        return triggered

    def _bar_of(self, at_ms: int, bar_ms: int) -> int:
        """Open time of the bar containing ``at_ms`` (bars aligned on the ledger's decisions)."""
        row = self.ledger.conn.execute("SELECT MAX(bar_ts) FROM decisions").fetchone()
        ref = int(row[0]) if row and row[0] is not None else 0
        return at_ms - (at_ms - ref) % bar_ms

    def sync(self, decision: Decision, want: dict[str, float], amount: float, now_ms: int) -> None:
        """Keep exactly the orders ``want`` (kind -> trigger price) for ``amount`` (signed exit quantity,
        base units; 0 = none) on the exchange: unchanged ones stay, others are cancelled / placed."""
        for kind in KINDS:
            price = want.get(kind)
            if price is not None and amount != 0.0:
                price = float(self.exchange.price_to_precision(self.symbol, price))
            current = self._rows("status = 'open' AND kind = ?", kind)
            keep = None
            for cid, _, cur_price, cur_amount, _ in current:
                if price is not None and amount != 0.0 and keep is None and cur_price == price and cur_amount == amount:
                    keep = cid
                else:
                    self._cancel(cid, now_ms)
            if keep is None and price is not None and amount != 0.0:
                self._place(decision, kind, price, amount, now_ms)

    def _cancel(self, cid: str, now_ms: int) -> None:
        try:
            self.exchange.cancel_order(None, self.symbol, {"clientOrderId": cid, "trigger": True})
        except ccxt.OrderNotFound:  # it triggered or expired meanwhile: the next refresh reads it back
            logger.info("protective order %s was no longer open when cancelled", cid)
            return
        self._update(cid, status="canceled", closed_at_ms=now_ms, note="cancelled (level or position changed)")

    def _place(self, decision: Decision, kind: str, price: float, amount: float, now_ms: int) -> None:
        cid = f"{decision.client_order_id}-{kind}"
        if self.ledger.conn.execute("SELECT 1 FROM protective_orders WHERE client_order_id = ?", (cid,)).fetchone():
            return  # this decision's order of that kind was placed (or tried) already
        with self.ledger.transaction() as c:  # written ahead: a crash after sending leaves a row to resolve
            c.execute("INSERT INTO protective_orders (client_order_id, decision_id, bar_ts, kind, trigger_price, "
                      "amount, status, placed_at_ms, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (cid, decision.client_order_id, decision.bar_ts, kind, price, amount, SENDING, now_ms, ""))
        found = self._fetch(cid)
        if found is not None:
            self._update(cid, status="open", exchange_order_id=str(found.get("id")),
                         note="found on the exchange (sent before a restart), not resent")
            return
        side = "buy" if amount > 0 else "sell"
        try:
            order = self.exchange.create_order(self.symbol, "market", side, abs(amount), None,
                                               {"clientOrderId": cid, KINDS[kind]: price, "reduceOnly": True})
        except ccxt.NetworkError as err:  # it may or may not have arrived: look again
            order = self._fetch(cid)
            if order is None:
                logger.warning("protective order %s not sent (%s); the next bar places it again", cid,
                               type(err).__name__)
                self._update(cid, status="failed", closed_at_ms=now_ms, note=f"{type(err).__name__}: {str(err)[:200]}")
                return
        except ccxt.ExchangeError as err:
            logger.warning("protective order %s rejected by the sandbox: %s", cid, str(err)[:200])
            self._update(cid, status="rejected", closed_at_ms=now_ms, note=str(err)[:300])
            return
        self._update(cid, status="open", exchange_order_id=str(order.get("id")), note=f"{side} {abs(amount):g} "
                     f"{kind} at {price:g}")
        logger.info("protective order %s: %s %g at %g", cid, side, abs(amount), price)
