"""Resume: after SIGKILL at random bars, or a crash between the decision and its settlement, the ledger
ends exactly as an uninterrupted session's: no bar decided twice, none skipped, no order sent twice."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from agents.paper.broker import PaperBroker
from agents.paper.ledger import LEDGER_FILE, Decision
from agents.paper.session import run_paper
from tests.agents.paper.conftest import REPO, ledger_rows, paper_config


def assert_same_ledger(got: Path, ref: Path) -> None:
    a, b = ledger_rows(got), ledger_rows(ref)
    for table in ("decisions", "orders", "steps"):
        pd.testing.assert_frame_equal(a[table].drop(columns=["latency_ms"], errors="ignore"),
                                      b[table].drop(columns=["latency_ms"], errors="ignore"), obj=table)
    assert (a["orders"]["status"].iloc[:-1] == "filled").all()  # every order filled once, the last one pending


def _steps(paper_dir: Path) -> int:
    path = paper_dir / LEDGER_FILE
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM steps").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.slow
def test_sigkill_at_random_bars_three_times_then_resume_equals_uninterrupted(
        tiny_run: Path, replay_file: Path, uninterrupted: Path, tmp_path: Path) -> None:
    paper_dir = tmp_path / "paper"
    cmd = [sys.executable, str(REPO / "scripts" / "paper.py"), f"run_dir={tiny_run}", f"feed.path={replay_file}",
           f"paper.dir={paper_dir}", "paper.report_on_stop=false"]
    n_steps = len(ledger_rows(uninterrupted)["steps"])
    targets = sorted(random.Random(os.getpid()).sample(range(5, n_steps - 5), 3))
    for target in targets:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while _steps(paper_dir) < target:
            assert proc.poll() is None, f"the session ended before step {target}: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert target <= _steps(paper_dir) < n_steps, "killed mid-run"
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Feed ended" in out.stdout
    log = (paper_dir / "paper.log").read_text()
    assert "resuming" in log
    assert "| equity" in log and "| decision latency" in log  # the one-line status per bar
    conn = sqlite3.connect(paper_dir / LEDGER_FILE)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert_same_ledger(paper_dir, uninterrupted)


class SimulatedCrash(BaseException):
    """The process dying at a chosen point (not an `Exception`: nothing may handle it)."""


class CrashBeforeSend(PaperBroker):
    """Dies once, after the decision of the chosen bar was committed and before its order is sent."""

    crash_at: int = 0
    crashed = False

    def submit(self, decision: Decision, now_ms: int) -> bool:
        if decision.bar_index == self.crash_at and not CrashBeforeSend.crashed:
            CrashBeforeSend.crashed = True
            raise SimulatedCrash("crash between decision commit and order")
        return super().submit(decision, now_ms)


class CrashBeforeSettle(PaperBroker):
    """Dies once, after the order of the chosen bar was sent and before it is settled; counts resends."""

    crash_at: int = 0
    crashed = False
    resends: list[str] = []

    def settle(self, decision: Decision, *args, **kwargs):  # type: ignore[no-untyped-def]
        if decision.bar_index == self.crash_at and not CrashBeforeSettle.crashed:
            CrashBeforeSettle.crashed = True
            raise SimulatedCrash("crash between order and settlement")
        return super().settle(decision, *args, **kwargs)

    def submit(self, decision: Decision, now_ms: int) -> bool:
        new = super().submit(decision, now_ms)
        if not new:
            CrashBeforeSettle.resends.append(decision.client_order_id)
        return new


@pytest.mark.parametrize("broker", [CrashBeforeSend, CrashBeforeSettle])
def test_crash_between_decision_and_settlement_then_resume(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                                           tmp_path: Path, broker: type[PaperBroker]) -> None:
    crash_at = 100
    broker.crash_at = crash_at  # type: ignore[attr-defined]
    cfg = paper_config(tiny_run, replay_file, tmp_path / "paper")
    with pytest.raises(SimulatedCrash):
        run_paper(cfg, broker_cls=broker)
    rows = ledger_rows(tmp_path / "paper")
    decided = rows["decisions"]["bar_index"].max()
    sent = rows["orders"]["bar_ts"].max()
    if broker is CrashBeforeSend:  # the decision is committed, its order never left
        assert decided == crash_at and sent < rows["decisions"]["bar_ts"].max()
    else:  # the decision of crash_at was sent; the crash came when bar crash_at + 1 closed
        assert decided == crash_at and sent == rows["decisions"]["bar_ts"].max()
    summary = run_paper(cfg, broker_cls=broker)
    assert summary["resumed_at"] == crash_at  # the session restarts at the bar it was deciding
    if broker is CrashBeforeSettle:
        assert len(CrashBeforeSettle.resends) == 1  # the resend of the sent order was ignored by the broker
    assert_same_ledger(tmp_path / "paper", uninterrupted)


def test_rerunning_a_finished_session_changes_nothing(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                                      tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(uninterrupted, again)
    summary = run_paper(paper_config(tiny_run, replay_file, again))
    assert summary["bars"] == 1 and summary["resumed_at"] == len(pd.read_parquet(replay_file)) - 1
    assert_same_ledger(again, uninterrupted)


def test_a_paper_folder_refuses_another_session(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                                tmp_path: Path) -> None:
    other = tmp_path / "other.parquet"
    pd.read_parquet(replay_file).iloc[:100].to_parquet(other, index=False)
    with pytest.raises(ValueError, match="other settings"):
        run_paper(paper_config(tiny_run, other, uninterrupted))
    with pytest.raises(ValueError, match="other settings"):
        run_paper(paper_config(tiny_run, replay_file, uninterrupted, tail_bars=2048))


def test_replay_of_another_timeframe_is_refused(tiny_run: Path, replay_file: Path, tmp_path: Path) -> None:
    bars = pd.read_parquet(replay_file)
    two_hourly = bars.iloc[::2].reset_index(drop=True)
    path = tmp_path / "bars_2h.parquet"
    two_hourly.to_parquet(path, index=False)
    with pytest.raises(ValueError, match=r"every 2h but the run is configured for 1h bars"):
        run_paper(paper_config(tiny_run, path, tmp_path / "paper"))
    assert not (tmp_path / "paper").exists()  # refused before anything was written


class CrashAfterSettle(PaperBroker):
    """Dies once, right after the settlement of the chosen bar was committed (before the next decision)."""

    crash_at: int = 0
    crashed = False

    def settle(self, decision: Decision, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super().settle(decision, *args, **kwargs)
        if decision.bar_index == self.crash_at and not CrashAfterSettle.crashed:
            CrashAfterSettle.crashed = True
            raise SimulatedCrash("crash after a settlement")
        return out


def test_resume_when_the_history_is_longer_than_the_tail(tiny_run: Path, replay_file: Path, tmp_path: Path) -> None:
    # with a 64-bar tail, resuming must rebuild the tail from the bars before the ledger's last bar
    ref = tmp_path / "ref"
    run_paper(paper_config(tiny_run, replay_file, ref, tail_bars=64))
    CrashAfterSettle.crash_at = 150
    cfg = paper_config(tiny_run, replay_file, tmp_path / "paper", tail_bars=64)
    with pytest.raises(SimulatedCrash):
        run_paper(cfg, broker_cls=CrashAfterSettle)
    assert run_paper(cfg)["resumed_at"] == 151  # settled bar 151, its decision not made yet
    assert_same_ledger(tmp_path / "paper", ref)
