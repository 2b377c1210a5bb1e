"""broker=testnet mirrors the model's protective exits on a USDⓈ-M sandbox: reduce-only STOP_MARKET /
TAKE_PROFIT_MARKET orders at the kernel's levels, moved with the trailing stop, cancelled when the position
closes, triggered by the local fake Binance on its bars and recorded next to the model's exit; a restart
after a crash between sending one and recording it neither duplicates nor loses it.

Real ccxt (Binance's algo-order endpoints), real sockets, real SQLite; the run is the tiny PPO run with
stops added to its saved env config (the policy is unchanged, the kernel applies the exits).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from agents.paper.brokers.config import BrokerConfig
from agents.paper.brokers.protective import ProtectiveOrders
from agents.paper.brokers.testnet import TestnetBroker, sandbox_exchange
from agents.paper.config import PaperFeedConfig
from agents.paper.ledger import Decision, Ledger, read_table
from agents.paper.session import run_paper
from envs.feeds.clock import SimulatedClock
from envs.sim import kernel as K
from tests.agents.paper.live.conftest import HOUR, START_MS, assert_same_session, live_config
from tests.agents.paper.live.test_testnet import KEY, SECRET, sandbox_config
from tests.fake_exchange import FakeExchange

SWAP = {"market": "swap", "symbol": "BTC/USDT:USDT"}
#: tight levels: the sample's hours in January 2023 range about 10-25 bps
STOP, TAKE_PROFIT, TRAIL = 0.001, 0.002, 0.0015


@pytest.fixture(scope="module")
def stops_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run with a stop-loss, a take-profit and a trailing stop in its saved env config."""
    run_dir = tmp_path_factory.mktemp("stops") / "run"
    shutil.copytree(tiny_run, run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(saved)
    cfg.env.stop_loss, cfg.env.take_profit, cfg.env.trailing_stop = STOP, TAKE_PROFIT, TRAIL
    OmegaConf.save(cfg, saved)
    return run_dir


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTGYM_API_KEY", KEY)
    monkeypatch.setenv("QUANTGYM_API_SECRET", SECRET)


@pytest.fixture(scope="module")
def paper_reference(stops_run: Path, hourly: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same session with broker=paper: the model's ledger a testnet session must keep."""
    clock = SimulatedClock(START_MS)
    fx = FakeExchange(hourly, now_ms=clock.now_ms, timeframe="1h").start()
    paper_dir = tmp_path_factory.mktemp("stops_ref")
    try:
        run_paper(live_config(stops_run, paper_dir, fx.url, **SWAP), clock=clock)
    finally:
        fx.stop()
    return paper_dir


def _levels(state: bytes) -> tuple[float, float]:
    """README rule 8 by hand on a settled state: (stop = nearer of fixed and trailing, take-profit), long."""
    s = np.frombuffer(state, dtype="<f8")
    entry, best = s[K.S_ENTRY_PX], s[K.S_BEST_PX]
    return max(entry * (1 - STOP), best * (1 - TRAIL)), entry * (1 + TAKE_PROFIT)


def test_protective_orders_follow_the_kernels_exits_and_trigger_on_the_exchange(
        stops_run: Path, paper_reference: Path, hourly: pd.DataFrame, exchange: FakeExchange, clock: SimulatedClock,
        tmp_path: Path, keys: None) -> None:
    exchange.enable_trading(KEY, SECRET)
    run_paper(sandbox_config(stops_run, tmp_path, exchange, **SWAP), clock=clock)
    assert_same_session(tmp_path, paper_reference)  # the model's accounting is the paper broker's
    steps = read_table(tmp_path, "steps").set_index("timestamp")  # by marked bar: the state a decision there saw
    prot = read_table(tmp_path, "protective_orders")
    algo = pd.DataFrame(exchange.algo_orders())
    # every protective order in the ledger reached the exchange once, under our deterministic id
    assert algo.clientAlgoId.tolist() == prot.client_order_id.tolist()
    assert algo.clientAlgoId.is_unique and (algo.quantity > 0).all()
    assert set(prot.kind) == {"sl", "tp"} and (prot.status != "sending").all()
    # held positions (no order at the decision): the orders stand at the kernel's levels of the settled state
    orders = read_table(tmp_path, "exchange_orders").set_index("bar_ts")
    checked = 0
    for row in prot.itertuples():
        if row.bar_ts not in steps.index:  # the first decision bar: no settled state yet (an entry's levels)
            continue
        state = steps.loc[row.bar_ts]
        if state.position <= 0 or orders.loc[row.bar_ts, "amount"] != 0:  # held: no order at that decision
            continue
        stop, tp = _levels(state.state)
        assert row.trigger_price == pytest.approx(stop if row.kind == "sl" else tp, abs=0.01)  # price precision
        checked += 1
    assert checked >= 2
    # exchange-triggered exits, next to the model's own exit on the same bar
    exits = read_table(tmp_path, "exits_vs_model")
    assert len(exits) >= 1, "the stops must trigger at least once for this test to mean something"
    assert (exits.model_position == 0).all()  # the model exited on the bar the exchange did
    sent = prot.set_index("client_order_id").loc[exits.client_order_id]
    np.testing.assert_allclose(exits.exchange_qty, sent.amount.to_numpy())  # the whole position (amount: the exit's)
    bars = hourly.set_index("timestamp")
    for row in exits.itertuples():  # the fake's fill: the level (or the open through a gap) + 2 bps against us
        bar = bars.loc[row.trigger_bar_ts]
        ref = min(bar.open, row.trigger_price) if row.kind == "sl" else max(bar.open, row.trigger_price)
        assert row.exchange_price == pytest.approx(ref * (1 - 2e-4), rel=1e-12)
        assert row.slippage_vs_model_bps == pytest.approx(-(row.exchange_price - row.model_price)
                                                          / row.model_price * 1e4)
    # nothing left open on the exchange for a flat model; the exchange position follows the model's
    # (an order of the feed's last decision fills after the session ended: it has no settled step yet)
    all_steps = read_table(tmp_path, "steps")
    last = all_steps.iloc[-1]
    sent = read_table(tmp_path, "exchange_orders")
    pending = sent[~sent.client_order_id.isin(all_steps.client_order_id)]
    assert len(pending) <= 1
    expected = float(last.position + pending.filled_qty.sum())
    open_algo = algo[algo.algoStatus == "NEW"]
    if abs(expected) < 1e-9:
        assert open_algo.empty
    assert exchange.trading is not None
    assert exchange.trading.position == pytest.approx(expected, abs=1e-5)


class CrashingProtective(ProtectiveOrders):
    """Dies once right after the sandbox accepted a protective order, before the ledger recorded it."""

    crashed = False

    def _update(self, cid: str, **values: object) -> None:
        if values.get("status") == "open" and not CrashingProtective.crashed:
            CrashingProtective.crashed = True
            raise KeyboardInterrupt("the process dies after the protective order left")
        super()._update(cid, **values)


class CrashAfterProtective(TestnetBroker):
    protective_cls = CrashingProtective


def test_restart_after_a_crash_between_a_protective_order_and_its_record_never_duplicates(
        stops_run: Path, paper_reference: Path, exchange: FakeExchange, clock: SimulatedClock, tmp_path: Path,
        keys: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agents.paper.brokers.protective")
    exchange.enable_trading(KEY, SECRET)
    with pytest.raises(KeyboardInterrupt):
        run_paper(sandbox_config(stops_run, tmp_path, exchange, **SWAP), broker_cls=CrashAfterProtective, clock=clock)
    assert CrashingProtective.crashed
    lost = exchange.algo_orders()[-1]["clientAlgoId"]
    assert read_table(tmp_path, "protective_orders").set_index("client_order_id").loc[lost, "status"] == "sending"
    run_paper(sandbox_config(stops_run, tmp_path, exchange, **SWAP), clock=clock)
    prot = read_table(tmp_path, "protective_orders").set_index("client_order_id")
    assert f"protective order {lost} reached the exchange before the restart: recorded, not resent" in caplog.text
    algo = {o["clientAlgoId"]: o for o in exchange.algo_orders()}
    assert prot.loc[lost, "exchange_order_id"] == str(algo[lost]["algoId"])  # the ledger adopted the sent order
    ids = [o["clientAlgoId"] for o in exchange.algo_orders()]
    posts = [r for r in exchange.requests if r.method == "POST" and r.path == "/fapi/v1/algoOrder"]
    assert len(ids) == len(set(ids)) == len(posts) and all(r.status == 200 for r in posts)  # no resend, no -2010
    assert (prot.status != "sending").all()
    assert_same_session(tmp_path, paper_reference)
    rec = read_table(tmp_path, "reconciliations")
    assert len(rec) == 2 and abs(rec.unexplained.iloc[1]) < 1e-9  # the restart found every fill


def test_unchanged_orders_stay_a_moved_level_is_replaced_and_a_flat_model_cancels_all(
        exchange: FakeExchange, hourly: pd.DataFrame, clock: SimulatedClock, tmp_path: Path) -> None:
    exchange.enable_trading(KEY, SECRET)
    feed = PaperFeedConfig(kind="live", api_url=exchange.url, **SWAP)
    ex = sandbox_exchange(feed, BrokerConfig(kind="testnet", api_url=exchange.sandbox_url),
                          env={"QUANTGYM_API_KEY": KEY, "QUANTGYM_API_SECRET": SECRET})
    ex.load_markets()
    ex.create_order(SWAP["symbol"], "market", "buy", 0.5, None, {"clientOrderId": "entry"})
    ledger = Ledger(tmp_path)
    try:
        orders = ProtectiveOrders(ledger, ex, SWAP["symbol"], lambda order: (None, None))

        def sync(k: int, want: dict[str, float], amount: float) -> None:
            decision = Decision(bar_ts=START_MS + k * HOUR, bar_index=k, client_order_id=f"qgtest-{k}", action=1.0,
                                target_exposure=1.0, obs_hash="", model_id="", price=0.0)
            orders.sync(decision, want, amount, clock.now_ms())

        def posts() -> int:
            return len([r for r in exchange.requests if r.method == "POST" and r.path == "/fapi/v1/algoOrder"])

        sync(1, {"sl": 16000.0, "tp": 17500.0}, -0.5)
        sync(2, {"sl": 16000.0, "tp": 17500.0}, -0.5)  # the same levels: nothing sent
        assert posts() == 2
        sync(3, {"sl": 16010.0, "tp": 17500.0}, -0.5)  # the trailing stop moved: the stop is replaced
        assert posts() == 3
        state = {o["clientAlgoId"]: o["algoStatus"] for o in exchange.algo_orders()}
        assert state == {"qgtest-1-sl": "CANCELED", "qgtest-1-tp": "NEW", "qgtest-3-sl": "NEW"}
        table = read_table(tmp_path, "protective_orders").set_index("client_order_id")
        assert table.status.to_dict() == {"qgtest-1-sl": "canceled", "qgtest-1-tp": "open", "qgtest-3-sl": "open"}
        assert table.loc["qgtest-3-sl", "trigger_price"] == 16010.0
        sync(4, {}, 0.0)  # the model is flat: every protective order goes
        assert [o for o in exchange.algo_orders() if o["algoStatus"] == "NEW"] == []
        assert set(read_table(tmp_path, "protective_orders").status) == {"canceled"}
    finally:
        ledger.close()
