"""Risk controls in paper mode: parity with evaluation with limits on, the kill switch by file and by
SIGTERM (real subprocesses of scripts/paper.py), SIGINT without flattening (a real signal to this
process), and the risk state restored after ``kill -9`` (real SQLite)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from agents.evaluate_run import evaluate_run, load_run
from agents.model_age import training_end_ms
from agents.paper.broker import PaperBroker, initial_state
from agents.paper.dashboard_view import panel_html, prometheus_text, read_snapshot
from agents.paper.engine import feed_lag_bars
from agents.paper.killswitch import KILL_FILE, read_kill, request_kill
from agents.paper.ledger import LEDGER_FILE, Decision, Ledger, read_steps
from agents.paper.market import simulation_of
from agents.paper.session import run_paper
from envs.market.market_data import MarketData
from envs.sim import kernel as K
from envs.sim.config import EnvConfig, RiskConfig
from envs.sim.simulation import INFO_KEYS
from tests.agents.paper.conftest import REPO, TRAIN_END, ledger_rows, paper_config

N_BARS = 320
HALTED, REDUCING, ACTIVE = K.RISK_HALTED, K.RISK_REDUCING, K.RISK_ACTIVE
REASON = {name: code for code, name in enumerate(K.RISK_REASONS)}


@pytest.fixture(scope="module")
def long_replay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """320 real hourly bars after the training span (enough for evaluation's feature warm-up check)."""
    df = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    start = int(pd.Timestamp(TRAIN_END, tz="UTC").value // 1_000_000)
    path = tmp_path_factory.mktemp("long_replay") / "bars.parquet"
    df[df["timestamp"] >= start].iloc[:N_BARS].reset_index(drop=True).to_parquet(path, index=False)
    return path


#: replay bar from which the model is older than ``max_model_age`` (and the absolute ``expires_at``)
AGE_BAR, EXPIRES_BAR = 230, 290


def model_age_hours(run_dir: Path, bars: Path, bar: int) -> int:
    """Whole hours from the run's training end (close of its last training bar) to replay bar ``bar``'s open."""
    end = training_end_ms(run_dir, "1h")
    return (int(pd.read_parquet(bars)["timestamp"].iloc[bar]) - end) // 3_600_000


def risk_limits(bars: Path, run_dir: Path) -> dict[str, object]:
    ts = pd.read_parquet(bars)["timestamp"]
    return {"max_exposure": 0.6, "max_order_notional": 3000.0, "daily_loss_limit": 0.004,
            "expires_at": pd.Timestamp(int(ts.iloc[EXPIRES_BAR]), unit="ms", tz="UTC").isoformat(),
            "max_model_age": f"{model_age_hours(run_dir, bars, AGE_BAR)}h"}


@pytest.fixture(scope="module")
def risky_run(tiny_run: Path, long_replay: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run with risk limits in its saved config (as `risk=...` at training time would save them)."""
    run_dir = tmp_path_factory.mktemp("risky") / "run"
    shutil.copytree(tiny_run, run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(saved)
    cfg.env.risk = risk_limits(long_replay, tiny_run)
    OmegaConf.save(cfg, saved)
    return run_dir


@pytest.fixture(scope="module")
def risky_session(risky_run: Path, long_replay: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    paper_dir = tmp_path_factory.mktemp("risky_paper") / "paper"
    run_paper(paper_config(risky_run, long_replay, paper_dir))
    return paper_dir


def test_replay_equals_evaluation_with_risk_limits_from_the_runs_config(risky_run: Path, long_replay: Path,
                                                                       risky_session: Path, tmp_path: Path) -> None:
    cfg, _ = load_run(risky_run)
    assert cfg.env.risk == RiskConfig(**risk_limits(long_replay, risky_run))  # type: ignore[arg-type]
    evaluated = pd.read_parquet(evaluate_run(risky_run, data_path=str(long_replay), out_dir=tmp_path / "eval").steps)
    paper = read_steps(risky_session)
    assert len(paper) == len(evaluated) == N_BARS - cfg.env.window_size
    for key in INFO_KEYS:  # bit-identical, risk state and reason included
        assert np.array_equal(paper[key].to_numpy(), evaluated[key].to_numpy()), key
    reasons = {K.RISK_REASONS[r] for r in paper["risk_reason"]}
    assert {"max_exposure", "max_order_notional", "daily_loss", "model_age", "expired"} <= reasons, reasons
    # the limits held: the agent's long/flat target 1.0 never reached the market
    assert (paper["exposure"] <= 0.6 * 1.05).all()
    # without the limits the same bars trade differently
    free = pd.read_parquet(evaluate_run(risky_run, data_path=str(long_replay), out_dir=tmp_path / "free",
                                        risk=RiskConfig()).steps)
    assert not np.array_equal(free["position"].to_numpy(), paper["position"].to_numpy())
    assert (free["risk_state"] == ACTIVE).all()


def test_risk_overrides_in_paper_and_evaluation_equal_the_runs_saved_limits(
        tiny_run: Path, long_replay: Path, risky_session: Path, tmp_path: Path) -> None:
    risk = RiskConfig(**risk_limits(long_replay, tiny_run))  # type: ignore[arg-type]
    ref = read_steps(risky_session)[list(INFO_KEYS)]
    evaluated = pd.read_parquet(evaluate_run(tiny_run, data_path=str(long_replay), out_dir=tmp_path / "eval",
                                             risk=risk).steps)
    pd.testing.assert_frame_equal(evaluated, ref)
    # paper mode's override, on the first 100 bars (a decision never depends on later bars)
    head = tmp_path / "head.parquet"
    pd.read_parquet(long_replay).iloc[:100].to_parquet(head, index=False)
    run_paper(paper_config(tiny_run, head, tmp_path / "paper", risk=risk))
    got = read_steps(tmp_path / "paper")[list(INFO_KEYS)]
    pd.testing.assert_frame_equal(got, ref.iloc[:len(got)])
    assert (got["risk_reason"] != REASON["none"]).any()
    # a resume with other limits is refused: a redone settlement must apply the same rules
    with pytest.raises(ValueError, match="env.risk"):
        run_paper(paper_config(tiny_run, head, tmp_path / "paper", risk=RiskConfig(max_exposure=0.5)))


# -- subprocesses of scripts/paper.py ---------------------------------------------------------------------------


def _cmd(run_dir: Path, bars: Path, paper_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "paper.py"), f"run_dir={run_dir}", f"feed.path={bars}",
            f"paper.dir={paper_dir}", *extra]


def _last_steps(paper_dir: Path) -> pd.DataFrame:
    path = paper_dir / LEDGER_FILE
    if not path.exists():
        return pd.DataFrame()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return pd.read_sql_query("SELECT step, position, risk_state FROM steps ORDER BY step", conn)
        finally:
            conn.close()
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        return pd.DataFrame()


def _wait_for(proc: subprocess.Popen[str], paper_dir: Path, ok: object, what: str) -> pd.DataFrame:
    deadline = time.monotonic() + 240
    while True:
        steps = _last_steps(paper_dir)
        if len(steps) and ok(steps):  # type: ignore[operator]
            return steps
        assert proc.poll() is None, f"the session ended before {what}: {proc.stderr.read()[-3000:]}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _assert_flattened_by_kill(paper_dir: Path, bars: Path, reason: str) -> None:
    rows = ledger_rows(paper_dir)
    conn = sqlite3.connect(paper_dir / LEDGER_FILE)
    decisions = pd.read_sql_query("SELECT bar_ts, kill_reason FROM decisions ORDER BY bar_ts", conn)
    conn.close()
    steps = rows["steps"]
    killed = decisions[decisions["kill_reason"].notna()]
    assert list(killed["kill_reason"]) == [reason]  # one kill decision, the last one
    assert killed["bar_ts"].iloc[0] == decisions["bar_ts"].iloc[-1]
    last, before = steps.iloc[-1], steps.iloc[-2]
    assert last["decision_ts"] == killed["bar_ts"].iloc[0]  # the kill decision settled, then the session stopped
    assert (last["risk_state"], last["risk_reason"]) == (HALTED, REASON["kill"]) and last["position"] == 0.0
    assert (steps["risk_reason"].iloc[:-1] != REASON["kill"]).all()
    # flattened at the open of the bar after the kill decision's bar: a market sell of the whole position
    ts = pd.read_parquet(bars).set_index("timestamp")
    assert last["timestamp"] == ts.index[ts.index.get_loc(last["decision_ts"]) + 1]
    assert last["traded_qty"] == -before["position"] and before["position"] > 0
    bar_open = ts.loc[last["timestamp"], "open"]
    assert abs(last["fill_price"] / bar_open - 1) <= 5e-4  # the open with the run's 2 bps slippage
    assert len(steps) < len(ts) - 40  # stopped long before the feed's end


@pytest.fixture(scope="module")
def short_replay(replay_file: Path) -> Path:
    """The first 80 bars of ``replay_file`` (the bars of the shared ``uninterrupted`` session)."""
    path = replay_file.parent / "short.parquet"
    pd.read_parquet(replay_file).iloc[:80].to_parquet(path, index=False)
    return path


def _long_stretch(ref: Path, n: int = 3) -> int:
    """The first step after which the reference session stays long for ``n`` steps (where a kill must flatten:
    the kill file or signal reaches the session within a bar of the step's settlement)."""
    long = read_steps(ref)["position"].to_numpy() > 0
    for k in range(3, 40):
        if long[k:k + n].all():
            return k
    raise AssertionError("the reference session is never long for long enough")


def _assert_prefix_of(paper_dir: Path, ref: Path) -> None:
    """Up to the kill decision's settlement (the last step) the session is the uninterrupted one."""
    got, want = ledger_rows(paper_dir)["steps"], ledger_rows(ref)["steps"]
    cols = [c for c in got.columns if c != "settled_at_ms"]
    pd.testing.assert_frame_equal(got[cols].iloc[:-1], want[cols].iloc[:len(got) - 1])


class KillFileAfter(PaperBroker):
    """Writes ``<paper.dir>/KILL`` (atomically, as the dashboard does) once step ``after`` has settled."""

    after = 0
    written = False

    def settle(self, decision: Decision, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super().settle(decision, *args, **kwargs)
        if not KillFileAfter.written and self.ledger.counts()["steps"] > self.after:
            KillFileAfter.written = True
            request_kill(self.ledger.path.parent, "operator: test kill\n")
        return out


def test_kill_file_flattens_at_the_next_open_and_stops_until_removed(tiny_run: Path, short_replay: Path,
                                                                      uninterrupted: Path, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    paper_dir = tmp_path / "paper"
    KillFileAfter.after = _long_stretch(uninterrupted)  # the session is long after this step
    cfg = paper_config(tiny_run, short_replay, paper_dir)
    with caplog.at_level("INFO", logger="agents.paper"):
        assert run_paper(cfg, broker_cls=KillFileAfter)["stopped"] == "operator: test kill"
    _assert_prefix_of(paper_dir, uninterrupted)
    _assert_flattened_by_kill(paper_dir, short_replay, "operator: test kill")
    assert "risk HALTED (kill)" in caplog.text  # the console status line
    # a rerun with the file still there does not trade
    before = ledger_rows(paper_dir)
    assert run_paper(cfg)["stopped"] == "operator: test kill"
    for table in ("decisions", "orders", "steps"):
        pd.testing.assert_frame_equal(ledger_rows(paper_dir)[table], before[table])
    # removed: the session resumes trading where it stopped, to the feed's end
    (paper_dir / KILL_FILE).unlink()
    assert run_paper(cfg)["stopped"] is None
    steps = read_steps(paper_dir)
    assert len(steps) == 80 - load_run(tiny_run)[0].env.window_size
    assert (steps["risk_state"].iloc[len(before["steps"]):] == ACTIVE).all()


@pytest.mark.slow
def test_sigterm_flattens_at_the_next_open_and_stops(tiny_run: Path, short_replay: Path, uninterrupted: Path,
                                                     tmp_path: Path) -> None:
    paper_dir = tmp_path / "paper"
    k = _long_stretch(uninterrupted)
    proc = subprocess.Popen(_cmd(tiny_run, short_replay, paper_dir, "feed.speed=10"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, paper_dir, lambda s: len(s) > k, f"step {k}")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "Stopped (SIGTERM)" in out
    _assert_prefix_of(paper_dir, uninterrupted)
    _assert_flattened_by_kill(paper_dir, short_replay, "SIGTERM")
    assert read_kill(paper_dir) is None  # SIGTERM leaves no KILL file: a rerun trades again
    assert "risk HALTED (kill)" in (paper_dir / "paper.log").read_text()  # the console status line


class SigintWhileLong(PaperBroker):
    """Sends this process a real SIGINT once a settlement after step ``after`` leaves a long position."""

    after = 0
    sent = False

    def settle(self, decision: Decision, *args, **kwargs):  # type: ignore[no-untyped-def]
        state, info = super().settle(decision, *args, **kwargs)
        if not SigintWhileLong.sent and self.ledger.counts()["steps"] > self.after and info["position"] > 0:
            SigintWhileLong.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return state, info


@pytest.mark.slow
def test_risk_state_survives_kill_9_and_sigint_stops_without_flattening(
        risky_run: Path, long_replay: Path, risky_session: Path, tmp_path: Path) -> None:
    ref = read_steps(risky_session)
    first_limit = int(np.flatnonzero(ref["risk_state"].to_numpy() == REDUCING)[0])
    paper_dir = tmp_path / "paper"
    # SIGKILL once the daily loss limit has engaged (REDUCING, latched until the next UTC day)
    proc = subprocess.Popen(_cmd(risky_run, long_replay, paper_dir), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(proc, paper_dir, lambda s: len(s) > first_limit, "the first REDUCING step")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_killed = len(_last_steps(paper_dir))
    assert n_killed < len(ref)
    # resume in this process; a real SIGINT while long stops the session after that bar, nothing flattened
    SigintWhileLong.after = n_killed + 3
    summary = run_paper(paper_config(risky_run, long_replay, paper_dir), broker_cls=SigintWhileLong)
    assert SigintWhileLong.sent and summary["stopped"] == "SIGINT"
    got = read_steps(paper_dir)
    assert n_killed + 3 < len(got) < len(ref)
    # the ledger is a prefix of the uninterrupted session's: the risk state (latches, day, regime) was restored
    # bit for bit after the kill -9, and SIGINT changed nothing
    cols = [*INFO_KEYS, "state"]
    pd.testing.assert_frame_equal(got[cols], ref[cols].iloc[:len(got)])
    assert got["position"].iloc[-1] > 0 and (got["risk_reason"] != REASON["kill"]).all()
    assert (got["risk_state"].iloc[:n_killed] != ACTIVE).any()
    assert len(ledger_rows(paper_dir)["decisions"]) == len(got) + 1  # the last decision's order stays pending


def test_feed_lag_in_whole_bars_after_the_bars_close() -> None:
    hour = 3_600_000
    assert [feed_lag_bars(0, now, hour) for now in (hour, 2 * hour - 1, 2 * hour, 5 * hour + 7)] == [0, 0, 1, 4]
    assert feed_lag_bars(0, 0, hour) == 0  # a clock behind the bar's close is no lag


def test_a_decisions_risk_inputs_are_stored_and_applied_at_settlement(sample_1h: pd.DataFrame, tmp_path: Path) -> None:
    cfg = EnvConfig(window_size=4, rebalance_threshold=0.5, risk=RiskConfig(stale_after=2))
    sim = simulation_of(MarketData.load(sample_1h.iloc[:40].reset_index(drop=True)), cfg, None)
    ledger = Ledger(tmp_path)
    broker = PaperBroker(ledger)
    state = initial_state(sim, 3, 0)
    regimes = []
    for k, (lag, kill) in enumerate([(0, None), (3, None), (2, None), (0, "drill"), (0, None)]):
        bar = 3 + k
        ts = int(sim.timestamps[bar])
        ledger.commit_decision(Decision(bar_ts=ts, bar_index=bar, client_order_id=f"o{bar}", action=1.0,
                                        target_exposure=1.0, obs_hash="-", model_id="-", price=1.0, feed_lag=lag,
                                        kill_reason=kill), ts, 0.0)
        decision = ledger.decision(ts)
        assert decision is not None and (decision.feed_lag, decision.kill_reason) == (lag, kill)
        broker.submit(decision, ts)
        state, info = broker.settle(decision, state, sim, 0, ts)
        regimes.append((K.RISK_STATES[info["risk_state"]], K.RISK_REASONS[info["risk_reason"]], info["traded_qty"] != 0))
    assert regimes == [("ACTIVE", "none", True), ("HALTED", "stale_feed", False), ("ACTIVE", "none", False),
                       ("HALTED", "kill", True), ("ACTIVE", "none", True)]
    assert ledger.last_settled_decision() == ledger.decision(int(sim.timestamps[7]))
    ledger.close()


@pytest.mark.slow
def test_model_age_engages_at_the_training_end_plus_age_and_survives_a_resume(
        risky_run: Path, long_replay: Path, risky_session: Path, tmp_path: Path) -> None:
    ref = read_steps(risky_session)
    decided = ledger_rows(risky_session)["decisions"]["bar_index"].to_numpy()[:len(ref)]  # step k settles decision k
    state, reason = ref["risk_state"].to_numpy(), ref["risk_reason"].to_numpy()
    # the limit is hours from the close of the run's last training bar: the first bar opening that late is AGE_BAR
    assert not (reason[decided < AGE_BAR] == REASON["model_age"]).any()
    at = int(np.flatnonzero(decided == AGE_BAR)[0])
    assert (state[at], reason[at]) == (REDUCING, REASON["model_age"])
    after = slice(at, int(np.flatnonzero(decided == EXPIRES_BAR)[0]))
    assert set(reason[after]) <= {REASON["model_age"], REASON["daily_loss"]} and (state[after] == REDUCING).all()
    assert (np.diff(np.abs(ref["position"].to_numpy()[at - 1:])) <= 0).all()  # reduce-only from then on
    # the session's limits name the age and the run's training end it was resolved against
    meta = dict(sqlite3.connect(risky_session / LEDGER_FILE).execute("SELECT key, value FROM meta").fetchall())
    assert '"max_model_age": "' in meta["env.risk"] and '"trained_until": "' in meta["env.risk"]
    # stopped right after the limit engaged, resumed with the rest of the bars: the same ledger
    bars, paper_dir = tmp_path / "bars.parquet", tmp_path / "paper"
    pd.read_parquet(long_replay).iloc[:AGE_BAR + 3].to_parquet(bars, index=False)
    run_paper(paper_config(risky_run, bars, paper_dir))
    # the dashboard's view of the ledger names the regime and why, as for every control
    snap = read_snapshot(paper_dir)
    assert (snap.state()["risk_state"], snap.state()["risk_reason"]) == ("REDUCING", "model_age")
    assert "model_age" in panel_html(snap)
    assert 'quantgym_paper_risk_state{' in prometheus_text(snap)
    shutil.copy(long_replay, bars)
    summary = run_paper(paper_config(risky_run, bars, paper_dir))
    assert summary["resumed_at"] == AGE_BAR + 2
    cols = [*INFO_KEYS, "state"]
    pd.testing.assert_frame_equal(read_steps(paper_dir)[cols], ref[cols])


def test_model_age_without_the_runs_training_end_is_refused_at_start(tiny_run: Path, short_replay: Path,
                                                                      tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    (run_dir / "splits.json").unlink()
    with pytest.raises(ValueError, match=r"max_model_age needs the run's training end.*splits\.json"):
        run_paper(paper_config(run_dir, short_replay, tmp_path / "paper", risk=RiskConfig(max_model_age="30d")))
    with pytest.raises(ValueError, match=r"max_model_age needs the run's training end"):
        evaluate_run(run_dir, data_path=str(short_replay), out_dir=tmp_path / "eval",
                     risk=RiskConfig(max_model_age="30d"))
