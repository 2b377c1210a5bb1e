"""Funding events in paper mode: a perpetual run (``data.funding_path``) trades a live USDⓈ-M feed.

The local fake Binance serves 2023's hourly bars on ``/fapi/v1/klines`` and the real BTCUSDT funding
history on ``/fapi/v1/fundingRate`` (real ccxt ``fetch_funding_rate_history``, real sockets, real SQLite).
The session joins the events to its bars with the training loader's join, so it equals
``evaluate_run(run, data_path=<the same bars>)`` (which joins the run's funding file) bit for bit,
funding payments included; a later funding event changes no earlier decision; an event the exchange
has not published stops the session instead of being replaced by an older rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from agents.config import register_configs, to_run_config
from agents.evaluate_run import evaluate_run, load_run
from agents.paper.ledger import read_steps, read_table
from agents.paper.session import run_paper
from agents.train import run
from envs.data.store import ParquetStore
from envs.feeds.clock import SimulatedClock
from envs.sim.simulation import INFO_KEYS
from tests.agents.paper.conftest import CONF, REPO, SMOKE, paper_config
from tests.agents.paper.live.conftest import HOUR, T0, assert_same_session, decisions, live_config
from tests.fake_exchange import SAMPLE_FUNDING, FakeExchange

FUNDING = str(REPO / "data" / "sample" / "btcusdt_perp_funding_8h.parquet")
#: a perpetual run with the real funding history; no feature set, so a short span is one evaluation window
PERP = ["env=perp", f"data.funding_path={FUNDING}", "data.symbol=BTC/USDT:USDT", "features=none",
        "env.rebalance_threshold=0.0",  # the tiny policy's small targets trade, so positions pay funding
        "train.total_timesteps=512", "train.eval_freq=256", "train.checkpoint_freq=512"]
pytestmark = pytest.mark.slow

N = 45  # live bars decided (5-6 funding times; evaluation needs a full window after the warm-up)
TAIL = 256  # every bar of the session fits: bit-identical with evaluation


@pytest.fixture(scope="module")
def perp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*SMOKE, *PERP])
    run_dir = tmp_path_factory.mktemp("perp_run")
    run(to_run_config(cfg, base_dir=str(REPO)), run_dir, test_report=False)
    return run_dir


@pytest.fixture(scope="module")
def window(perp_run: Path) -> int:
    return load_run(perp_run)[0].env.window_size


def _live(run_dir: Path, hourly: pd.DataFrame, paper_dir: Path, window: int, funding: pd.DataFrame, end_bar: int,
          market: str = "swap") -> dict:
    """A live session that starts when bar ``window - 1`` of 2023 has closed (as a replay's first decision)."""
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    fx = FakeExchange(hourly, funding, now_ms=clock.now_ms, timeframe="1h").start()
    try:
        cfg = live_config(run_dir, paper_dir, fx.url, end_ms=T0 + end_bar * HOUR, tail_bars=TAIL, market=market,
                          symbol="BTC/USDT:USDT" if market == "swap" else "BTC/USDT")
        return run_paper(cfg, clock=clock)
    finally:
        fx.stop()


@pytest.fixture(scope="module")
def perp_live(perp_run: Path, hourly: pd.DataFrame, window: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    paper_dir = tmp_path_factory.mktemp("perp_live")
    summary = _live(perp_run, hourly, paper_dir, window, pd.read_parquet(SAMPLE_FUNDING), window - 1 + N)
    assert summary["bars"] == N
    return paper_dir


def _assert_equal_steps(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert len(got) == len(want) > 0
    for key in INFO_KEYS:  # bit-identical: equity, position, fills, costs, funding
        assert np.array_equal(got[key].to_numpy(), want[key].to_numpy()), key


def test_live_usdm_session_with_funding_equals_evaluation(perp_live: Path, perp_run: Path, hourly: pd.DataFrame,
                                                          window: int, tmp_path: Path) -> None:
    bars = tmp_path / "bars.parquet"
    hourly.iloc[:window - 1 + N].to_parquet(bars, index=False)  # the bars the live session saw
    evaluated = pd.read_parquet(evaluate_run(perp_run, data_path=str(bars), out_dir=tmp_path / "eval").steps)
    paper = read_steps(perp_live)
    _assert_equal_steps(paper, evaluated)
    assert paper["funding_paid"].abs().iloc[-1] > 0  # funding was charged, at its times
    assert paper["funding_paid"].diff().fillna(0).ne(0).sum() >= 3
    assert "funding_rate_bps" in load_run(perp_run)[1].names  # the policy sees the rate too
    stored = ParquetStore(perp_live / "store").read("binanceusdm", "BTC/USDT:USDT", "funding")  # the feed's store
    sample = pd.read_parquet(SAMPLE_FUNDING)
    sample = sample[sample.timestamp >= int(stored.timestamp.iloc[0])].head(len(stored)).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[["timestamp", "funding_rate"]], sample[["timestamp", "funding_rate"]])


def test_replay_with_funding_equals_the_live_session(perp_run: Path, perp_live: Path, hourly: pd.DataFrame,
                                                     window: int, tmp_path: Path) -> None:
    """A replay of the same bars joins the run's funding file: the same steps (so the same as evaluation)."""
    bars = tmp_path / "bars.parquet"
    hourly.iloc[:window - 1 + N].to_parquet(bars, index=False)
    run_paper(paper_config(perp_run, bars, tmp_path / "paper", tail_bars=TAIL))
    _assert_equal_steps(read_steps(tmp_path / "paper"), read_steps(perp_live))


def test_a_later_funding_event_changes_no_earlier_decision(perp_run: Path, perp_live: Path, hourly: pd.DataFrame,
                                                           window: int, tmp_path: Path) -> None:
    cut = window - 1 + 10  # the last bar whose decision must not change
    funding = pd.read_parquet(SAMPLE_FUNDING)
    later = funding["timestamp"] >= T0 + (cut + 1) * HOUR  # published after bar `cut` closed
    funding.loc[later, "funding_rate"] *= 50.0
    _live(perp_run, hourly, tmp_path, window, funding, cut + 12)  # a funding time (08:00 or 16:00) after the cut
    cols = ["bar_ts", "action", "target_exposure", "obs_hash"]
    got, ref = decisions(tmp_path)[cols], decisions(perp_live)[cols].head(10 + 12)
    upto = T0 + cut * HOUR
    pd.testing.assert_frame_equal(got[got.bar_ts <= upto], ref[ref.bar_ts <= upto])
    after = (got[got.bar_ts > upto].obs_hash.to_numpy() != ref[ref.bar_ts > upto].obs_hash.to_numpy())
    assert len(after) == 11 and after.any()  # the bars holding the changed funding time saw it


def test_an_unpublished_funding_event_stops_the_session(perp_run: Path, hourly: pd.DataFrame, window: int,
                                                        tmp_path: Path) -> None:
    funding = pd.read_parquet(SAMPLE_FUNDING)
    missing = T0 + 48 * HOUR  # 2023-01-03 00:00
    funding = funding[(funding["timestamp"] - missing).abs() > 60_000]
    with pytest.raises(ValueError, match="has not published the funding event of 2023-01-03 00:00"):
        _live(perp_run, hourly, tmp_path, window, funding, window - 1 + N)
    decided = read_table(tmp_path, "decisions").bar_ts
    assert decided.max() == missing - HOUR  # the bar holding that funding time was never decided


def test_funding_run_on_a_spot_feed_is_refused(perp_run: Path, hourly: pd.DataFrame, window: int,
                                               tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feed.market='spot': paper-trade it on the perpetual's feed"):
        _live(perp_run, hourly, tmp_path, window, pd.read_parquet(SAMPLE_FUNDING), window + 5, market="spot")


def test_funding_session_resumes_after_downtime(perp_run: Path, perp_live: Path, hourly: pd.DataFrame, window: int,
                                                tmp_path: Path) -> None:
    """Stopped after 20 bars and down for 10 hours (a funding time inside): the resume reads the events back from
    the store, asks the exchange for the newer ones, and ends with the uninterrupted session's ledger."""
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    fx = FakeExchange(hourly, pd.read_parquet(SAMPLE_FUNDING), now_ms=clock.now_ms, timeframe="1h").start()
    try:
        for end_bar in (window - 1 + 20, window - 1 + N):
            run_paper(live_config(perp_run, tmp_path, fx.url, end_ms=T0 + end_bar * HOUR, tail_bars=TAIL,
                                  market="swap", symbol="BTC/USDT:USDT"), clock=clock)
            clock.advance_ms(10 * HOUR)
    finally:
        fx.stop()
    assert_same_session(tmp_path, perp_live)
