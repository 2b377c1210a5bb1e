"""broker=testnet against the local fake Binance, which checks HMAC signatures, serves a sandbox URL
and refuses orders anywhere else, keeps client order ids unique, balances and positions.

Real ccxt, real sockets, real SQLite; the model's accounting must stay the paper session's (same
ledger as broker=paper), each decision's order must reach the sandbox once (also across a crash
between sending and recording it), and there must be no way to trade outside a sandbox.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd
import pytest

from agents.paper.brokers.config import BrokerConfig
from agents.paper.brokers.testnet import TestnetBroker, sandbox_exchange, verify_sandbox
from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.ledger import Decision, read_table
from agents.paper.session import run_paper
from envs.feeds.clock import SimulatedClock
from tests.agents.paper.live.conftest import END_MS, HOUR, T0, assert_same_session, live_config
from tests.fake_exchange import FakeExchange

KEY = "qg-test-KEY-7c1f0e"
SECRET = "qg-test-SECRET-94b2d1"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTGYM_API_KEY", KEY)
    monkeypatch.setenv("QUANTGYM_API_SECRET", SECRET)


@pytest.fixture
def sandbox(exchange: FakeExchange) -> FakeExchange:
    exchange.enable_trading(KEY, SECRET)
    return exchange


def sandbox_config(run_dir: Path, paper_dir: Path, fx: FakeExchange, end_ms: int = END_MS, **feed: object) -> PaperConfig:
    cfg = live_config(run_dir, paper_dir, fx.url, end_ms=end_ms, **feed)
    return dataclasses.replace(cfg, broker=BrokerConfig(kind="testnet", api_url=fx.sandbox_url, timeout_ms=3000,
                                                         rate_limit_ms=2))


@pytest.mark.parametrize(("market", "symbol", "order_path"), [("spot", "BTC/USDT", "/api/v3/order"),
                                                             ("swap", "BTC/USDT:USDT", "/fapi/v1/order")])
def test_testnet_session_trades_the_sandbox_and_keeps_the_models_ledger(
        tiny_run: Path, reference: Path, hourly: pd.DataFrame, sandbox: FakeExchange, clock: SimulatedClock,
        tmp_path: Path, keys: None, market: str, symbol: str, order_path: str) -> None:
    run_paper(sandbox_config(tiny_run, tmp_path, sandbox, market=market, symbol=symbol), clock=clock)
    assert_same_session(tmp_path, reference)  # the model's accounting is the paper broker's
    signed = [r for r in sandbox.requests if r.signed]
    assert signed and all(r.sandbox for r in signed)  # the sandbox URL only
    lookups = [r for r in signed if r.method == "GET" and r.path == order_path]
    # protective orders (perpetuals: the kernel's liquidation level of this run) are looked up before sending too
    algo_lookups = [r for r in signed if r.method == "GET" and r.path == "/fapi/v1/algoOrder"]
    assert all(r.status == 200 for r in signed if r not in lookups and r not in algo_lookups)  # signatures valid
    assert all(r.status == 400 for r in lookups)  # each id looked up (not there) before its order was sent
    ex = read_table(tmp_path, "exchange_orders")
    dec = read_table(tmp_path, "decisions")
    assert ex.client_order_id.tolist() == dec.client_order_id.tolist()  # one record per decision
    sent = ex[ex.status == "closed"]
    assert len(sent) >= 3, "the tiny run must trade a few times for this test to mean something"
    assert len(lookups) == len(ex[ex.status != "not_sent"])
    orders = pd.DataFrame(sandbox.orders())
    assert orders.clientOrderId.tolist() == sent.client_order_id.tolist()  # exactly one order each, our ids
    # the sandbox filled at the open of the bar after the decision (+2 bps against us): the next bar's open
    nxt = hourly.set_index("timestamp").open.reindex(sent.bar_ts + HOUR).to_numpy()
    side = np.sign(sent.filled_qty.to_numpy())
    np.testing.assert_allclose(sent.avg_price.to_numpy(), nxt * (1 + side * 2e-4), rtol=1e-12)
    np.testing.assert_allclose(sent.fee_quote.to_numpy(), np.abs(sent.filled_qty) * sent.avg_price * 1e-3, rtol=1e-9)
    np.testing.assert_allclose(np.abs(sent.amount), np.abs(sent.intended_qty), atol=1e-5)  # precision 1e-5 BTC
    # fills_vs_model: the exchange's fill next to the model's, slippage vs model in bps
    # (an order of the feed's last decision fills after the session ended: it has no settled step)
    all_steps = read_table(tmp_path, "steps").set_index("client_order_id")
    settled = sent[sent.client_order_id.isin(all_steps.index)]
    assert set(sent.client_order_id) - set(settled.client_order_id) <= {dec.client_order_id.iloc[-1]}
    fvm = read_table(tmp_path, "fills_vs_model").set_index("client_order_id").loc[settled.client_order_id]
    steps = all_steps.loc[settled.client_order_id]
    side = np.sign(settled.filled_qty.to_numpy())
    np.testing.assert_allclose(fvm.model_price, steps.fill_price)
    np.testing.assert_allclose(fvm.slippage_vs_model_bps, side * (fvm.exchange_price - steps.fill_price)
                               / steps.fill_price * 1e4)
    np.testing.assert_allclose(fvm.model_qty, steps.traded_qty)
    np.testing.assert_allclose(fvm.model_qty, fvm.exchange_qty, atol=1e-5)  # the order mirrors the model's trade
    rec = read_table(tmp_path, "reconciliations")
    assert len(rec) == 1 and rec.note[0] == "ledger and exchange agree"
    assert rec.baseline[0] == (1.0 if market == "spot" else 0.0)  # spot: the BTC balance; swap: the position


class CrashAfterSend(TestnetBroker):
    """Dies once right after the sandbox accepted the chosen bar's order, before the ledger records it."""

    crash_at_ts = 0
    crashed = False

    def _record(self, decision: Decision, *args, **kwargs):  # type: ignore[no-untyped-def]
        if decision.bar_ts >= self.crash_at_ts and not CrashAfterSend.crashed:
            CrashAfterSend.crashed = True
            raise KeyboardInterrupt("the process dies after the order left")
        return super()._record(decision, *args, **kwargs)


def test_restart_after_a_crash_between_send_and_record_never_resends(
        tiny_run: Path, reference: Path, sandbox: FakeExchange, clock: SimulatedClock, tmp_path: Path,
        keys: None, caplog: pytest.LogCaptureFixture) -> None:
    CrashAfterSend.crash_at_ts = T0 + 105 * HOUR
    with pytest.raises(KeyboardInterrupt):
        run_paper(sandbox_config(tiny_run, tmp_path, sandbox), broker_cls=CrashAfterSend, clock=clock)
    assert CrashAfterSend.crashed
    lost = sandbox.orders()[-1]["clientOrderId"]
    assert lost not in set(read_table(tmp_path, "exchange_orders").client_order_id)
    run_paper(sandbox_config(tiny_run, tmp_path, sandbox), clock=clock)
    ex = read_table(tmp_path, "exchange_orders").set_index("client_order_id")
    assert "not resent" in ex.loc[lost, "note"]
    ids = [o["clientOrderId"] for o in sandbox.orders()]
    posts = [r for r in sandbox.requests if r.method == "POST"]
    assert len(ids) == len(set(ids)) == len(posts) and all(r.status == 200 for r in posts)  # no resend, no -2010
    rec = read_table(tmp_path, "reconciliations")
    assert len(rec) == 2 and abs(rec.unexplained.iloc[1]) < 1e-9  # the restart found every fill
    assert_same_session(tmp_path, reference)


def test_reconciliation_says_what_differs(tiny_run: Path, sandbox: FakeExchange, clock: SimulatedClock,
                                          tmp_path: Path, keys: None, caplog: pytest.LogCaptureFixture) -> None:
    run_paper(sandbox_config(tiny_run, tmp_path, sandbox, end_ms=T0 + 101 * HOUR), clock=clock)
    assert sandbox.trading is not None
    sandbox.trading.balances["BTC"] += 0.25  # someone else traded on the account meanwhile
    run_paper(sandbox_config(tiny_run, tmp_path, sandbox, end_ms=T0 + 101 * HOUR), clock=clock)
    rec = read_table(tmp_path, "reconciliations")
    assert rec.unexplained.iloc[-1] == pytest.approx(0.25)
    assert "+0.25 BTC that no order of this ledger explains" in rec.note.iloc[-1]
    assert "+0.25 BTC that no order of this ledger explains" in caplog.text


def test_the_fake_refuses_a_wrong_signature_and_the_real_money_url(sandbox: FakeExchange) -> None:
    feed = PaperFeedConfig(kind="live", api_url=sandbox.url)
    wrong = sandbox_exchange(feed, BrokerConfig(kind="testnet", api_url=sandbox.sandbox_url),
                             env={"QUANTGYM_API_KEY": KEY, "QUANTGYM_API_SECRET": "not-the-secret"})
    with pytest.raises(ccxt.AuthenticationError):
        wrong.fetch_balance()
    live = ccxt.binance({"apiKey": KEY, "secret": SECRET, "options": {"fetchCurrencies": False}})
    live.urls["api"] = {k: v.replace("https://api.binance.com", sandbox.url) for k, v in live.urls["api"].items()
                        if isinstance(v, str)}
    with pytest.raises(ccxt.BaseError, match="real-money endpoint refused"):
        live.fetch_balance()


def test_no_real_money_path(sandbox: FakeExchange, keys: None) -> None:
    feed = PaperFeedConfig(kind="live", api_url=sandbox.url)
    with pytest.raises(ValueError, match="sandbox mode is off"):
        verify_sandbox(ccxt.binance())  # a real ccxt exchange outside its sandbox
    real = ccxt.binance()
    real.set_sandbox_mode(True)
    real.urls["api"]["private"] = "https://api.binance.com/api/v3"  # one URL leaves the sandbox
    with pytest.raises(ValueError, match=r"REST hosts \['api.binance.com'\] are not the exchange's sandbox"):
        verify_sandbox(real)
    with pytest.raises(ValueError, match="bitfinex has no sandbox"):
        sandbox_exchange(dataclasses.replace(feed, exchange="bitfinex"), BrokerConfig(kind="testnet"))
    with pytest.raises(ValueError, match="may only name a local test server"):
        BrokerConfig(kind="testnet", api_url="https://api.binance.com")
    with pytest.raises(ValueError, match="there is no real-money broker"):
        BrokerConfig(kind="live")
    with pytest.raises(ValueError, match="needs a live feed"):
        PaperConfig(run_dir="r", dir="d", feed=PaperFeedConfig(path="x.parquet"), broker=BrokerConfig(kind="testnet"))
    ex = sandbox_exchange(feed, BrokerConfig(kind="testnet"))  # no api_url: ccxt's own sandbox hosts
    assert ex.urls["api"]["private"].startswith("https://testnet.binance.vision/")


def test_keys_come_from_the_environment_only(sandbox: FakeExchange, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTGYM_API_KEY", raising=False)
    monkeypatch.delenv("QUANTGYM_API_SECRET", raising=False)
    with pytest.raises(ValueError, match="export QUANTGYM_API_KEY=... and QUANTGYM_API_SECRET="):
        sandbox_exchange(PaperFeedConfig(kind="live"), BrokerConfig(kind="testnet"))
