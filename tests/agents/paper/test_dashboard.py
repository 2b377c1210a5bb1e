"""The dashboard's server over HTTP (no browser): state and metrics from the ledger, the guarded kill switch."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.paper.dashboard import KILL_FILE, Dashboard
from agents.paper.dashboard_view import LedgerReader, page_html, prometheus_text, read_snapshot
from agents.paper.killswitch import read_kill
from agents.paper.ledger import LEDGER_FILE, Ledger, read_steps
from envs.sim import kernel as K

TOKEN = "tok-9f3c2a7d41e8b6"


@pytest.fixture()
def paper_copy(uninterrupted: Path, tmp_path: Path) -> Path:
    """A copy of the replay's paper folder (the kill switch writes into it)."""
    folder = tmp_path / "session"
    folder.mkdir()
    shutil.copy(uninterrupted / LEDGER_FILE, folder / LEDGER_FILE)
    return folder


@pytest.fixture()
def dash(paper_copy: Path) -> Iterator[Dashboard]:
    d = Dashboard(paper_copy, 0, token=TOKEN).start()
    yield d
    d.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def post_kill(dash: Dashboard, body: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(dash.url + "api/kill", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def metrics(text: str) -> dict[str, float]:
    """Prometheus text format: metric name (labels dropped) -> value; every sample has HELP and TYPE lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        base = name.split("{", 1)[0]
        assert f"# TYPE {base} " in text and f"# HELP {base} " in text
        out[base] = float(value)
    return out


def test_state_and_metrics_are_the_ledger(dash: Dashboard, paper_copy: Path) -> None:
    steps = read_steps(paper_copy)
    last = steps.iloc[-1]
    code, body = get(dash.url + "api/state?series=1")
    assert code == 200
    state = json.loads(body)
    assert state["steps"] == len(steps)
    for key in ("equity", "cash", "position", "exposure", "drawdown"):
        assert state[key] == last[key], key
    assert state["series"]["equity"] == steps["equity"].tolist()
    assert (state["risk_state"], state["risk_reason"]) == ("ACTIVE", None) and state["kill_requested"] is None
    assert state["feed_lag_s"] == 0.0 and state["decision_latency_ms"] > 0
    traded = steps[steps["traded_qty"] != 0]
    assert state["fills"][0]["timestamp"] == traded["timestamp"].iloc[-1]
    assert state["fills"][0]["fill_price"] == traded["fill_price"].iloc[-1]
    code, text = get(dash.url + "metrics")
    assert code == 200
    m = metrics(text)
    assert m["quantgym_paper_steps_total"] == len(steps)
    assert m["quantgym_paper_equity"] == last["equity"] and m["quantgym_paper_position"] == last["position"]
    assert m["quantgym_paper_drawdown"] == last["drawdown"] and m["quantgym_paper_kill_requested"] == 0
    assert "quantgym_paper_decision_latency_ms" in m and m["quantgym_paper_risk_state"] == 0
    code, page = get(dash.url)
    assert code == 200 and f'data-steps="{len(steps)}"' in page and "ACTIVE" in page
    assert TOKEN not in page and TOKEN not in text and TOKEN not in body


def test_risk_state_and_slippage_vs_model_are_shown_when_the_ledger_has_them(dash: Dashboard, paper_copy: Path) -> None:
    conn = sqlite3.connect(paper_copy / LEDGER_FILE)
    with conn:  # the kernel's codes, as the ledger stores them: HALTED because of the drawdown halt
        conn.execute("ALTER TABLE steps ADD COLUMN slippage_vs_model REAL")
        conn.execute("UPDATE steps SET risk_state = ?, risk_reason = ?, slippage_vs_model = 0.25",
                     (K.RISK_STATES.index("HALTED"), K.RISK_REASONS.index("drawdown")))
    conn.close()
    m = metrics(get(dash.url + "metrics")[1])
    assert m["quantgym_paper_risk_state"] == 2 and m["quantgym_paper_slippage_vs_model"] == 0.25
    state = json.loads(get(dash.url + "api/state")[1])
    assert (state["risk_state"], state["risk_reason"]) == ("HALTED", "drawdown")
    assert "HALTED — drawdown" in get(dash.url)[1]


def test_kill_switch_needs_the_token_and_writes_the_file_atomically(dash: Dashboard, paper_copy: Path) -> None:
    kill = paper_copy / KILL_FILE
    assert post_kill(dash, {"reason": "no token"})[0] == 403
    assert post_kill(dash, {"token": TOKEN[:-1], "reason": "wrong"})[0] == 403
    assert post_kill(dash, {"token": TOKEN}, {"Origin": "http://evil.example"})[0] == 403  # another site's page
    assert post_kill(dash, {"token": TOKEN}, {"Host": "evil.example"})[0] == 403  # DNS rebinding
    assert not kill.exists()
    code, answer = post_kill(dash, {"token": TOKEN, "reason": "manual\nstop  now"})
    assert code == 200 and answer["ok"]
    assert read_kill(paper_copy) == "manual stop now"  # what the risk controls read
    assert sorted(p.name for p in paper_copy.iterdir() if p.name.startswith(".KILL")) == []  # no temp file left
    assert json.loads(get(dash.url + "api/state")[1])["kill_requested"] == "manual stop now"
    assert metrics(get(dash.url + "metrics")[1])["quantgym_paper_kill_requested"] == 1
    for f in paper_copy.rglob("*"):
        assert TOKEN.encode() not in f.read_bytes(), f


def test_a_foreign_host_header_is_refused(dash: Dashboard) -> None:
    assert get(dash.url + "api/state", {"Host": "attacker.example:80"})[0] == 403


def test_a_taken_port_is_a_clear_error(dash: Dashboard, paper_copy: Path) -> None:
    port = int(dash.url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ValueError, match="paper.dashboard_port"):
        Dashboard(paper_copy, port).start()


def test_the_incremental_reader_equals_a_full_read_as_the_ledger_grows(uninterrupted: Path, paper_copy: Path) -> None:
    """Rows appended after a first read (real SQLite inserts) are picked up; nothing is read twice."""
    conn = sqlite3.connect(paper_copy / LEDGER_FILE)
    with conn:
        conn.execute("DELETE FROM steps WHERE step > 100")
        conn.execute("DELETE FROM decisions WHERE bar_ts > (SELECT MAX(decision_ts) FROM steps)")
    reader = LedgerReader(paper_copy)
    first = reader.snapshot()
    assert len(first.steps) == 100 and first.n_decisions == 100
    with conn:
        conn.execute("ATTACH DATABASE ? AS ref", (str(uninterrupted / LEDGER_FILE),))
        conn.execute("INSERT INTO steps SELECT * FROM ref.steps WHERE step > 100")
        conn.execute("INSERT INTO decisions SELECT * FROM ref.decisions WHERE bar_ts > (SELECT MAX(bar_ts) FROM decisions)")
    conn.close()
    grown, full = reader.snapshot(), read_snapshot(uninterrupted)
    assert len(first.steps) == 100  # an earlier snapshot does not change
    pd.testing.assert_frame_equal(grown.steps, full.steps)
    assert {**grown.state(series=True), "session": None} == {**full.state(series=True), "session": None}
    np.testing.assert_array_equal(grown.latency_ms, full.latency_ms)


def test_a_session_without_settled_steps_renders(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.check_meta({"run_dir": "/runs/x", "model_id": "ppo:best_model.zip:00", "timeframe": "1h"})
    ledger.close()
    snap = read_snapshot(tmp_path)
    assert snap.state()["steps"] == 0 and snap.state()["equity"] is None
    page = page_html(snap)
    assert "no settled step yet" in page and 'data-points="0"' in page
    assert "quantgym_paper_steps_total{" in prometheus_text(snap)
