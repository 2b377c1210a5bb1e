"""A forecaster run paper-traded on a live feed: the schedule continues from the run's last bar.

The local fake Binance serves the run's own bars followed by new ones (real ccxt, real sockets, real
SQLite, the real LightGBM run of ``tests/agents/paper/conftest.py``). The live session backfills every
bar since the run's end, the forecaster catches up over them, and the decisions from the first live
bar on equal a replay of the same bars (itself equal to ``evaluate_run``, tests/agents/paper/
test_forecasts.py): same observations, same forecaster model behind each, same steps bit for bit.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.evaluate_run import load_run
from agents.paper.feeds import LiveBars
from agents.paper.ledger import read_table
from agents.paper.session import run_paper
from envs.data.store import ParquetStore
from envs.feeds.clock import SimulatedClock
from tests.agents.paper.conftest import REPO
from tests.agents.paper.live.conftest import HOUR, T0, assert_same_session, decisions, live_config, steps
from tests.fake_exchange import FakeExchange

pytestmark = pytest.mark.slow

#: the replay's (and evaluation's) tail: the run's bars and the session's fit in it, so all is bit-identical
FULL_TAIL = 4096
N = 60  # live bars decided: the schedule's updates every 50 bars fall inside


@pytest.fixture(scope="module")
def served() -> pd.DataFrame:
    """The run's bars (from its data.start) followed by 400 new hourly bars, as the exchange serves them."""
    df = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    first = int(pd.Timestamp("2022-11-01", tz="UTC").value // 1_000_000)
    return df[(df.timestamp >= first) & (df.timestamp < T0 + 400 * HOUR)].reset_index(drop=True)


@pytest.fixture(scope="module")
def window(fc_run: Path) -> int:
    return load_run(fc_run)[0].env.window_size


def _session(fc_run: Path, served: pd.DataFrame, paper_dir: Path, clock: SimulatedClock, end_ms: int,
             fx: FakeExchange | None = None, **feed: object) -> dict:
    own = fx is None
    fx = fx or FakeExchange(served, now_ms=clock.now_ms, timeframe="1h").start()
    try:
        return run_paper(live_config(fc_run, paper_dir, fx.url, end_ms=end_ms, tail_bars=FULL_TAIL, **feed),
                         clock=clock)
    finally:
        if own:
            fx.stop()


@pytest.fixture(scope="module")
def fc_live(fc_run: Path, served: pd.DataFrame, window: int, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted live session: it starts when bar ``window - 1`` after the run's end has just closed
    (the replay's first decision bar), and decides N bars."""
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    paper_dir = tmp_path_factory.mktemp("fc_live")
    summary = _session(fc_run, served, paper_dir, clock, T0 + (window - 1 + N) * HOUR)
    assert summary["bars"] == N
    return paper_dir


def test_live_forecasts_equal_the_replay_of_the_same_bars(fc_live: Path, fc_paper: Path, window: int) -> None:
    got, ref = decisions(fc_live), decisions(fc_paper).head(N)
    assert got.bar_ts.tolist() == [T0 + (window - 1 + i) * HOUR for i in range(N)]
    assert got.bar_index.tolist() == list(range(window - 1, window - 1 + N))  # bar 0 = the bar after the run's last
    cols = ["bar_ts", "bar_index", "action", "target_exposure", "obs_hash", "forecaster_id", "forecast_label_end",
            "price", "model_id"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])  # same observations (forecast columns included)
    assert got.forecaster_id.str.startswith("gbm:fit").all() and got.forecaster_id.nunique() >= 2  # an update inside
    assert (got.forecast_label_end <= got.bar_ts + HOUR).all()
    pd.testing.assert_frame_equal(steps(fc_live), steps(fc_paper).head(N - 1))  # bit-identical accounting
    meta = dict(read_table(fc_live, "meta")[["key", "value"]].to_numpy())
    assert meta["feed.kind"] == "live"


def test_live_forecaster_session_resumes_after_downtime(fc_run: Path, served: pd.DataFrame, fc_live: Path,
                                                        window: int, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Stopped after 20 bars, down for 30 hours (an update of the schedule falls in the downtime), its store
    lost: the resume backfills every bar since the run's end again, reconstructs the forecaster from them and
    ends with the uninterrupted session's ledger."""
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    fx = FakeExchange(served, now_ms=clock.now_ms, timeframe="1h").start()
    try:
        first = _session(fc_run, served, tmp_path, clock, T0 + (window - 1 + 20) * HOUR, fx)
        assert first["bars"] == 20
        clock.advance_ms(30 * HOUR)
        shutil.rmtree(tmp_path / "store")
        with caplog.at_level(logging.INFO):
            second = _session(fc_run, served, tmp_path, clock, T0 + (window - 1 + N) * HOUR, fx)
    finally:
        fx.stop()
    assert second["resumed_at"] == window - 1 + 19 and "backfilling" in caplog.text and "backfilled" in caplog.text
    ids = read_table(tmp_path, "decisions").forecaster_id
    assert not set(ids.iloc[20:]) <= set(ids.iloc[:20])  # the resumed session continued the schedule past an event
    assert_same_session(tmp_path, fc_live)


@pytest.mark.parametrize("live", [False, True], ids=["backfill", "live"])
def test_a_gap_in_the_exchange_history_is_refused(fc_run: Path, served: pd.DataFrame, window: int, tmp_path: Path,
                                                  live: bool) -> None:
    """Two bars the exchange never serves, in the backfill since the run's end or after the session started:
    refused with the missing span named (the feed alone would skip them); nothing is decided on the far side."""
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    fx = FakeExchange(served, now_ms=clock.now_ms, timeframe="1h").start()
    gap = T0 + (window + 5 if live else 5) * HOUR
    try:
        assert fx.omit(gap, gap + 2 * HOUR) == 2
        with pytest.raises(ValueError, match=f"bars from {iso_min(gap)} to {iso_min(gap + HOUR)} are missing") as err:
            # (polls every 10 minutes: while a bar is missing the feed asks again every poll_interval_s)
            _session(fc_run, served, tmp_path, clock, T0 + (window + 20) * HOUR, fx, poll_interval_s=600.0)
    finally:
        fx.stop()
    assert "no bar is invented" in str(err.value)
    decided = read_table(tmp_path, "decisions").bar_ts
    assert decided.tolist() == ([T0 + (window - 1 + i) * HOUR for i in range(6)] if live else [])


def iso_min(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("hole", [False, True], ids=["complete", "hole"])
def test_a_long_backfill_since_the_runs_end_logs_its_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              hole: bool) -> None:
    """15,000 hourly bars since a run's end: the catch-up says how many, logs each chunk of 10 REST pages and
    returns every one of them; a hole longer than a chunk (the exchange serves nothing in it) is refused."""
    bars = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet").head(15_100)
    bars["timestamp"] = int(bars.timestamp[0]) + np.arange(len(bars), dtype=np.int64) * HOUR  # no gap (the sample has some)
    since = int(bars.timestamp[10])
    clock = SimulatedClock(int(bars.timestamp[10 + 15_000]) + HOUR // 2)  # bar 15,009 closed, 15,010 forming
    fx = FakeExchange(bars, now_ms=clock.now_ms, timeframe="1h").start()
    if hole:
        fx.omit(since + 100 * HOUR, since + 12_100 * HOUR)
    cfg = live_config(Path("unused"), tmp_path, fx.url).feed
    source = LiveBars(cfg, "1h", 64, 32, tmp_path, clock, since_ms=since)
    try:
        with caplog.at_level(logging.INFO, logger="agents.paper.feeds"):
            if hole:
                with pytest.raises(ValueError, match="are missing \\(the exchange served none of them\\)"):
                    source.open(None)
                return
            history, first = source.open(None)
    finally:
        source.close()
        fx.stop()
    assert "backfilling 15000 bars since" in caplog.text and "about 15 REST pages" in caplog.text
    assert "backfilled 10000 of 15000 bars (67%)" in caplog.text and "(100%)" in caplog.text
    assert first == 0 and len(history) == 14_999  # every bar before the latest closed one, from the run's end on
    pd.testing.assert_frame_equal(history, bars.iloc[10:10 + 14_999].reset_index(drop=True))


def test_the_bars_since_the_runs_end_can_come_from_feed_store_root(fc_run: Path, served: pd.DataFrame, fc_live: Path,
                                                                  window: int, tmp_path: Path) -> None:
    """The exchange no longer serves the bars since the run's end (only the latest ones): a store that holds them
    (feed.store_root) gives the same session."""
    store = tmp_path / "bars_store"
    since = served[served.timestamp >= T0]
    ParquetStore(store).append("binance", "BTC/USDT", "1h", since[since.timestamp < T0 + (window - 1) * HOUR])
    clock = SimulatedClock(T0 + window * HOUR + HOUR // 2)
    fx = FakeExchange(since[since.timestamp >= T0 + (window - 1) * HOUR].reset_index(drop=True), now_ms=clock.now_ms,
                      timeframe="1h").start()
    try:
        run_paper(live_config(fc_run, tmp_path / "paper", fx.url, end_ms=T0 + (window - 1 + 10) * HOUR,
                              tail_bars=FULL_TAIL, store_root=str(store)), clock=clock)
    finally:
        fx.stop()
    pd.testing.assert_frame_equal(decisions(tmp_path / "paper"), decisions(fc_live).head(10))
    pd.testing.assert_frame_equal(steps(tmp_path / "paper"), steps(fc_live).head(9))
