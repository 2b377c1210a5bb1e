"""Paper mode continues a forecaster run's walk-forward schedule bar by bar, exactly as evaluation does.

A real tiny training run with a LightGBM forecaster whose refits and updates fall INSIDE the replay
(refit every 100 bars, update every 50); real SQLite ledger, real subprocess SIGKILLs; no mocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
from envs.sim.config import RiskConfig
from envs.sim.simulation import INFO_KEYS
from tests.agents.paper.conftest import BUDGET, CONF, FORECASTER, REPO, SMOKE, ledger_rows, paper_config

#: a cheap ensemble (ridge + the last return, weights over 30 trailing bars) on the same schedule
ENSEMBLE = ["forecaster=ensemble", "forecaster.params.members=[ridge,last]", "forecaster.params.trailing=30",
            *[o for o in FORECASTER if not o.startswith(("forecaster=", "forecaster.params."))]]

pytestmark = pytest.mark.slow


def _train(tmp_path_factory: pytest.TempPathFactory, forecaster: list[str], name: str) -> Path:
    register_configs()
    cache = tmp_path_factory.mktemp(f"{name}_cache")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*SMOKE, *forecaster, f"paths.feature_cache={cache}", *BUDGET])
    run_dir = tmp_path_factory.mktemp(f"{name}_run")
    run(to_run_config(cfg, base_dir=str(REPO)), run_dir, test_report=False)
    return run_dir


def test_replay_with_forecasts_equals_evaluation_step_by_step(fc_run: Path, replay_file: Path, fc_paper: Path,
                                                              tmp_path: Path) -> None:
    result = evaluate_run(fc_run, data_path=str(replay_file), out_dir=tmp_path / "eval")
    evaluated = pd.read_parquet(result.steps)
    paper = read_steps(fc_paper)
    assert len(paper) == len(evaluated) > 100
    for key in INFO_KEYS:  # bit-identical: equity, position, fills, costs, timestamps
        assert np.array_equal(paper[key].to_numpy(), evaluated[key].to_numpy()), key
    assert paper["position"].abs().max() > 0
    cfg, normalizer = load_run(fc_run)
    assert "fc_fwd_log_return" in normalizer.names  # the policy really sees the forecasts
    ts = pd.read_parquet(replay_file)["timestamp"].to_numpy()
    decisions = read_table(fc_paper, "decisions")
    assert list(decisions["bar_ts"]) == list(ts[cfg.env.window_size - 1:])
    # each decision names the forecaster model behind it: fits/updates every 50 bars inside the replay
    ids = decisions["forecaster_id"]
    assert ids.str.startswith("gbm:fit").all() and ids.nunique() >= 7
    assert (decisions["forecast_label_end"] <= decisions["bar_ts"] + 3_600_000).all()
    events = decisions.loc[ids != ids.shift(), ["bar_ts", "forecaster_id"]].iloc[1:]
    assert all(fid.endswith(f"@{bar}") for bar, fid in events.itertuples(index=False))  # a new model at its own bar


@pytest.mark.slow
def test_replay_with_forecasts_and_risk_limits_equals_evaluation(fc_run: Path, replay_file: Path,
                                                                 tmp_path: Path) -> None:
    """Issue 12.4: parity holds with forecasts AND risk controls on (both engage inside the replay)."""
    ts = pd.read_parquet(replay_file)["timestamp"]
    risk = RiskConfig(max_exposure=0.5, max_order_notional=2500.0, daily_loss_limit=0.004,
                      expires_at=pd.Timestamp(int(ts.iloc[300]), unit="ms", tz="UTC").isoformat())
    evaluated = pd.read_parquet(evaluate_run(fc_run, data_path=str(replay_file), out_dir=tmp_path / "eval",
                                             risk=risk).steps)
    run_paper(paper_config(fc_run, replay_file, tmp_path / "paper", risk=risk))
    paper = read_steps(tmp_path / "paper")
    assert len(paper) == len(evaluated) > 100
    for key in INFO_KEYS:
        assert np.array_equal(paper[key].to_numpy(), evaluated[key].to_numpy()), key
    assert paper["risk_reason"].nunique() > 1  # the limits really engaged
    assert read_table(tmp_path / "paper", "decisions")["forecaster_id"].nunique() >= 7  # refits inside too


def test_forecast_decisions_do_not_see_later_bars(fc_run: Path, replay_file: Path, fc_paper: Path,
                                                  tmp_path: Path) -> None:
    bars = pd.read_parquet(replay_file)
    cut = 170  # between the replay's refits: later bars feed the next fit's labels only after they close
    bars = bars.iloc[: cut + 20]  # a few bars after the cut are enough
    changed = bars.copy()
    later = np.arange(len(bars)) > cut
    for col in ("open", "high", "low", "close"):
        changed[col] = bars[col] * np.where(later, 1.5, 1.0)
    changed["volume"] = bars["volume"] * np.where(later, 3.0, 1.0)
    path = tmp_path / "changed.parquet"
    changed.to_parquet(path, index=False)
    run_paper(paper_config(fc_run, path, tmp_path / "paper"))
    cols = ["action", "target_exposure", "obs_hash", "forecaster_id", "forecast_label_end"]
    ref = read_table(fc_paper, "decisions").set_index("bar_ts")[cols].iloc[: len(bars)]
    got = read_table(tmp_path / "paper", "decisions").set_index("bar_ts")[cols]
    upto = bars["timestamp"].iloc[cut]
    pd.testing.assert_frame_equal(got.loc[:upto], ref.loc[:upto])
    assert not got.loc[upto:, "obs_hash"].iloc[1:].equals(ref.loc[upto:, "obs_hash"].iloc[1:])


def _paper_cmd(run_dir: Path, bars: Path, paper_dir: Path) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "paper.py"), f"run_dir={run_dir}", f"feed.path={bars}",
            f"paper.dir={paper_dir}", "paper.report_on_stop=false", f"paper.tail_bars={SHORT_TAIL}"]


#: shorter than the run's bars + replay: a resume after bar 300 seeds the tail with replay bars only
SHORT_TAIL = 300


def test_sigkill_then_resume_continues_the_forecaster_schedule(fc_run: Path, replay_file: Path, tmp_path: Path) -> None:
    """The models at the resume point are reconstructed, not stored: the last fit before the resume bar's
    observation window and every update since rerun on their own bars, as the uninterrupted session ran them."""
    ref_dir, paper_dir = tmp_path / "ref", tmp_path / "paper"
    run_paper(paper_config(fc_run, replay_file, ref_dir, tail_bars=SHORT_TAIL))
    for kill_after in (330,):  # decided bars: after in-replay refits/updates, the resume bar past the tail
        proc = subprocess.Popen(_paper_cmd(fc_run, replay_file, paper_dir), cwd=REPO, env=os.environ.copy(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                if (paper_dir / "ledger.sqlite").exists() and _n(paper_dir) >= kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            proc.wait(timeout=300)
        assert proc.returncode == -signal.SIGKILL, "the session ended before it was killed"
    run_paper(paper_config(fc_run, replay_file, paper_dir, tail_bars=SHORT_TAIL))
    got, ref = ledger_rows(paper_dir), ledger_rows(ref_dir)
    pd.testing.assert_frame_equal(got["steps"].drop(columns="settled_at_ms"), ref["steps"].drop(columns="settled_at_ms"))
    cols = ["bar_ts", "action", "target_exposure", "obs_hash", "forecaster_id", "forecast_label_end"]
    pd.testing.assert_frame_equal(read_table(paper_dir, "decisions")[cols], read_table(ref_dir, "decisions")[cols])
    assert read_table(ref_dir, "decisions")["forecaster_id"].nunique() >= 7  # the resumes crossed fits and updates


def _n(paper_dir: Path) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{paper_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_a_feed_that_does_not_start_after_the_runs_bars_is_refused(fc_run: Path, replay_file: Path,
                                                                  tmp_path: Path) -> None:
    """The forecaster continues on bars it has not seen: a feed overlapping the run's data is refused, as in evaluation."""
    bars = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    first = int(pd.read_parquet(replay_file)["timestamp"].iloc[0])
    overlap = tmp_path / "overlap.parquet"
    bars[bars["timestamp"] >= first - 50 * 3_600_000].iloc[:400].to_parquet(overlap, index=False)
    with pytest.raises(ValueError, match="not after the run's last bar"):
        run_paper(paper_config(fc_run, overlap, tmp_path / "paper"))


def test_ensemble_replay_stopped_and_resumed_equals_evaluation(replay_file: Path, tmp_path: Path,
                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    """forecaster=ensemble (ridge + last): a replay that stops after bar 250 and resumes on the whole file equals
    evaluation on that file step by step, bit for bit. The first part is a plain replay; the resume rebuilds from
    bars (`PaperForecasts.catch_up`) the members' models and their forecasts of the trailing bars the weights read."""
    ens_run = _train(tmp_path_factory, ENSEMBLE, "ens")
    bars, feed, paper_dir = pd.read_parquet(replay_file), tmp_path / "feed.parquet", tmp_path / "paper"
    bars.iloc[:250].to_parquet(feed, index=False)
    run_paper(paper_config(ens_run, feed, paper_dir))
    bars.to_parquet(feed, index=False)
    assert run_paper(paper_config(ens_run, feed, paper_dir))["resumed_at"] == 249
    evaluated = pd.read_parquet(evaluate_run(ens_run, data_path=str(feed), out_dir=tmp_path / "eval").steps)
    paper = read_steps(paper_dir)
    assert len(paper) == len(evaluated) > 100
    for key in INFO_KEYS:  # bit-identical: equity, position, fills, costs, timestamps
        assert np.array_equal(paper[key].to_numpy(), evaluated[key].to_numpy()), key
    assert paper["position"].abs().max() > 0
    decisions = read_table(paper_dir, "decisions")
    ids = decisions["forecaster_id"]
    assert ids.str.startswith("ensemble(ridge+last):fit").all() and ids.nunique() >= 7  # fits/updates inside
    assert (decisions["forecast_label_end"] == decisions["bar_ts"] + 3_600_000).all()  # weights: labels known by then
