"""Monitoring of a paper session: status line, TensorBoard scalars read back from the event files, stop report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.paper.ledger import read_steps, read_table
from agents.paper.monitor import TB_DIR, feed_lag_s, status_line
from agents.paper.report import paper_report


def test_status_line_has_every_field_and_the_risk_state_only_when_known() -> None:
    status = {"bar": "2023-01-02 08:00", "equity": 10012.3456, "position": -0.25, "drawdown": 0.0123,
              "latency_ms": 3.21, "feed_lag_s": 1.5}
    line = status_line(status)
    assert line == ("bar 2023-01-02 08:00 | equity 10012.35 | position -0.25 | drawdown 1.23% | "
                    "decision latency 3.2 ms | feed lag 1.5 s")
    risky = status_line({**status, "latency_ms": None, "risk_state": "HALTED", "risk_reason": "max drawdown"})
    assert "| risk HALTED (max drawdown) |" in risky and "decision latency resumed" in risky


def test_feed_lag_is_the_clock_at_arrival_minus_the_bar_close() -> None:
    hour = 3_600_000
    assert feed_lag_s(bar_ts=10 * hour, now_ms=11 * hour + 2_500, bar_ms=hour) == 2.5
    assert feed_lag_s(bar_ts=10 * hour, now_ms=11 * hour, bar_ms=hour) == 0.0


def test_tensorboard_scalars_are_the_ledger_steps(uninterrupted: Path) -> None:
    """The real event files of a replay hold one point per settled step, equal to the ledger's values."""
    acc = EventAccumulator(str(uninterrupted / TB_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    steps = read_steps(uninterrupted)
    n = len(steps)
    assert n > 100
    for key, column in (("equity", "equity"), ("drawdown", "drawdown"), ("position", "position"),
                        ("exposure", "exposure")):
        events = acc.Scalars(f"paper/{key}")
        assert [e.step for e in events] == list(range(1, n + 1)), key
        np.testing.assert_allclose([e.value for e in events], steps[column].to_numpy(np.float64), rtol=1e-6,
                                   atol=1e-9, err_msg=key)  # TensorBoard stores float32
    latency = acc.Scalars("paper/decision_latency_ms")
    decisions = read_table(uninterrupted, "decisions").set_index("bar_ts")
    # the latency logged at step k is the one of the decision made at the bar step k settled
    decided_at = set(decisions.index)
    expected = [decisions.at[int(ts), "latency_ms"] for ts in steps["timestamp"] if int(ts) in decided_at]
    np.testing.assert_allclose([e.value for e in latency], expected, rtol=1e-6)
    assert [e.value for e in acc.Scalars("paper/feed_lag_s")] == [0.0] * n  # a replay's clock is at the bar close


def test_the_session_writes_the_evaluation_report_when_it_stops(uninterrupted: Path, tmp_path: Path) -> None:
    """The stop report is the one `scripts/paper_report.py` writes (same module, same numbers)."""
    stop = uninterrupted / "report"
    assert (stop / "report.md").exists() and (stop / "equity.png").exists()
    fresh = paper_report(uninterrupted, tmp_path / "again")
    assert json.loads((stop / "metrics.json").read_text()) == json.loads(fresh.metrics_json.read_text())
