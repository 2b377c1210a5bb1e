"""A replay paper session equals `evaluate_run` on the same bars file, step by step, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agents.evaluate_run import evaluate_run, load_run
from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.ledger import read_steps
from agents.paper.session import run_paper
from envs.data.store import ParquetStore
from envs.sim.simulation import INFO_KEYS
from tests.agents.paper.conftest import REPO, ledger_rows, paper_config


def test_replay_equals_evaluation_step_by_step(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                               tmp_path: Path) -> None:
    result = evaluate_run(tiny_run, data_path=str(replay_file), out_dir=tmp_path / "eval")
    evaluated = pd.read_parquet(result.steps)
    paper = read_steps(uninterrupted)
    assert list(evaluated.columns) == list(INFO_KEYS)
    assert len(paper) == len(evaluated) > 100
    for key in INFO_KEYS:  # bit-identical: equity, position, fills, costs, timestamps
        assert np.array_equal(paper[key].to_numpy(), evaluated[key].to_numpy()), key
    assert paper["position"].abs().max() > 0 and paper["n_fills"].iloc[-1] > 0  # the agent really traded
    # the same first decision bar: window_size - 1 of the file, whose fill is marked at the next bar
    cfg, _ = load_run(tiny_run)
    ts = pd.read_parquet(replay_file)["timestamp"].to_numpy()
    decisions = ledger_rows(uninterrupted)["decisions"]
    assert decisions["bar_ts"].iloc[0] == ts[cfg.env.window_size - 1]
    assert evaluated["timestamp"].iloc[0] == ts[cfg.env.window_size]
    # every bar after the history is decided once; the last decision waits for a bar that never came
    assert list(decisions["bar_ts"]) == list(ts[cfg.env.window_size - 1:])


def test_decisions_do_not_see_later_bars(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                         tmp_path: Path) -> None:
    bars = pd.read_parquet(replay_file)
    cut = 150
    changed = bars.copy()
    later = np.arange(len(bars)) > cut
    for col in ("open", "high", "low", "close"):  # every later bar moves 50%, with 3x the volume
        changed[col] = bars[col] * np.where(later, 1.5, 1.0)
    changed["volume"] = bars["volume"] * np.where(later, 3.0, 1.0)
    path = tmp_path / "changed.parquet"
    changed.to_parquet(path, index=False)
    run_paper(paper_config(tiny_run, path, tmp_path / "paper"))
    ref = ledger_rows(uninterrupted)["decisions"].set_index("bar_ts")
    got = ledger_rows(tmp_path / "paper")["decisions"].set_index("bar_ts")
    upto = bars["timestamp"].iloc[cut]
    cols = ["action", "target_exposure", "obs_hash"]
    pd.testing.assert_frame_equal(got.loc[:upto, cols], ref.loc[:upto, cols])
    assert not got.loc[upto:, "obs_hash"].iloc[1:].equals(ref.loc[upto:, "obs_hash"].iloc[1:])  # later ones did change


def test_a_store_span_replays_like_the_same_bars_in_a_file(tiny_run: Path, replay_file: Path, uninterrupted: Path,
                                                           tmp_path: Path) -> None:
    cfg, _ = load_run(tiny_run)
    bars = pd.read_parquet(replay_file)
    sample = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    first, last = int(bars["timestamp"].iloc[0]), int(bars["timestamp"].iloc[-1])
    store = ParquetStore(tmp_path / "store")  # a month more on each side: start/end must cut them off
    store.append(cfg.data.exchange, cfg.data.symbol, cfg.data.timeframe,
                 sample[(sample["timestamp"] >= first - 31 * 86_400_000) & (sample["timestamp"] <= last + 31 * 86_400_000)])
    feed = PaperFeedConfig(store_root=str(tmp_path / "store"), start=_iso(first), end=_iso(last + 1))
    run_paper(PaperConfig(run_dir=str(tiny_run), dir=str(tmp_path / "paper"), feed=feed))
    got, ref = ledger_rows(tmp_path / "paper"), ledger_rows(uninterrupted)
    pd.testing.assert_frame_equal(got["steps"], ref["steps"])
    pd.testing.assert_frame_equal(got["decisions"], ref["decisions"])


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()


def test_evaluation_of_a_file_goes_through_the_runs_loader(tiny_run: Path, replay_file: Path, tmp_path: Path) -> None:
    """``data_path`` gets the run's cleaning policies like its training data (it used to be read raw)."""
    import shutil

    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(saved)
    cfg.data.cleaning.non_positive = "drop"  # a run whose data policy drops bars with a non-positive price
    OmegaConf.save(cfg, saved)
    bars = pd.read_parquet(replay_file)
    bad = bars.copy()
    bad.loc[300, ["open", "high", "low", "close"]] = [-1.0, -1.0, -1.0, -1.0]
    bad_path = tmp_path / "bad.parquet"
    bad.to_parquet(bad_path, index=False)
    dropped_path = tmp_path / "dropped.parquet"
    bars.drop(index=300).reset_index(drop=True).to_parquet(dropped_path, index=False)

    evaluate_run(run_dir, data_path=str(bad_path), out_dir=tmp_path / "bad")
    evaluate_run(run_dir, data_path=str(dropped_path), out_dir=tmp_path / "dropped")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "bad" / "steps.parquet"),
                                  pd.read_parquet(tmp_path / "dropped" / "steps.parquet"))
