"""The paper report is built from the ledger through the evaluation report code, with evaluation's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agents.evaluate_run import evaluate_run
from tests.agents.paper.conftest import REPO


def test_paper_report_from_the_ledger_equals_the_evaluation_of_the_same_bars(
        tiny_run: Path, replay_file: Path, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "paper_report.py"), f"paper_dir={uninterrupted}",
                           f"out_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    paper = json.loads((out / "metrics.json").read_text())["policies"]["paper"]
    evaluated = evaluate_run(tiny_run, data_path=str(replay_file), out_dir=tmp_path / "eval")
    agent = json.loads(evaluated.metrics_json.read_text())["policies"]["agent"]
    assert set(agent) <= set(paper)
    for key, value in agent.items():  # every metric of the evaluator's agent column, from the ledger alone
        assert paper[key] == value, key
    assert paper["n_fills"] > 0 and paper["n_bars"] > 100
    text = (out / "report.md").read_text()
    assert "Paper session" in text and "equity.png" in text
    for png in ("equity.png", "drawdown.png", "exposure.png", "trade_returns.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
