"""A tiny real training run (PPO, smoke budget) and replay files cut from the shipped sample."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from agents.config import register_configs, to_run_config
from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.ledger import LEDGER_FILE
from agents.paper.session import run_paper
from agents.train import run

REPO = Path(__file__).resolve().parents[3]
CONF = REPO / "conf"
#: the run trains on 2022 (about 8.7k hourly bars); replays use bars after it
TRAIN_END = "2023-01-01"
SMOKE = ["debug=smoke", "train.total_timesteps=1024", "train.eval_freq=512", "train.checkpoint_freq=1024",
         "train.n_envs=1", "evaluation.n_random_seeds=1", "evaluation.n_boot=50", "env.episode_length=128",
         f"data.end={TRAIN_END}"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished training run folder (best_model.zip, normalizer.json, .hydra/config.yaml)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=SMOKE)
    run_dir = tmp_path_factory.mktemp("tiny_run")
    run(to_run_config(cfg, base_dir=str(REPO)), run_dir, test_report=False)
    return run_dir


@pytest.fixture(scope="session")
def replay_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 real hourly bars after the training span (history for the window, then bars to trade).

    The hourly features' warm-up is 244 bars and evaluation refuses a span without one full window after it.
    """
    df = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1h.parquet")
    start = int(pd.Timestamp(TRAIN_END, tz="UTC").value // 1_000_000)
    path = tmp_path_factory.mktemp("replay") / "bars.parquet"
    df[df["timestamp"] >= start].iloc[:400].reset_index(drop=True).to_parquet(path, index=False)
    return path


def paper_config(run_dir: Path, bars: Path, paper_dir: Path, **kw: object) -> PaperConfig:
    """A replay session config (no stop report unless asked: it costs seconds; `uninterrupted` writes one)."""
    kw.setdefault("report_on_stop", False)
    return PaperConfig(run_dir=str(run_dir), dir=str(paper_dir), feed=PaperFeedConfig(path=str(bars)), **kw)  # type: ignore[arg-type]


def ledger_rows(paper_dir: Path) -> dict[str, pd.DataFrame]:
    """Decisions (without wall-clock columns), orders and steps of a ledger, for comparisons."""
    conn = sqlite3.connect(Path(paper_dir) / LEDGER_FILE)
    try:
        return {
            "decisions": pd.read_sql_query("SELECT bar_ts, bar_index, client_order_id, action, target_exposure, "
                                           "obs_hash, model_id, price, decided_at_ms FROM decisions ORDER BY bar_ts", conn),
            "orders": pd.read_sql_query("SELECT client_order_id, bar_ts, action, status, filled_bar_ts FROM orders "
                                        "ORDER BY bar_ts", conn),
            "steps": pd.read_sql_query("SELECT * FROM steps ORDER BY step", conn),
        }
    finally:
        conn.close()


@pytest.fixture(scope="session")
def uninterrupted(tiny_run: Path, replay_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper folder of one uninterrupted in-process replay of ``replay_file`` (with its stop report)."""
    paper_dir = tmp_path_factory.mktemp("paper_ref")
    run_paper(paper_config(tiny_run, replay_file, paper_dir, report_on_stop=True))
    return paper_dir


#: LightGBM forecaster small enough that the replay of 400 bars holds 4 refits and 4 updates
FORECASTER = ["forecaster=gbm", "forecaster.min_train=200", "forecaster.train_window=300",
              "forecaster.refit_every=100", "forecaster.update_every=50", "forecaster.params.n_estimators=20",
              "forecaster.params.min_data_in_leaf=20", "data.start=2022-11-01",
              "features.mtf_timeframes=[]"]

#: a smaller SB3 budget than the paper tests' tiny run (the policy only has to trade)
BUDGET = ["train.total_timesteps=512", "train.eval_freq=256", "train.checkpoint_freq=512"]


@pytest.fixture(scope="session")
def fc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished training run with forecaster=gbm (its bars + a replay fit in paper.tail_bars)."""
    register_configs()
    cache = tmp_path_factory.mktemp("fc_cache")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*SMOKE, *FORECASTER, f"paths.feature_cache={cache}", *BUDGET])
    run_dir = tmp_path_factory.mktemp("fc_run")
    run(to_run_config(cfg, base_dir=str(REPO)), run_dir, test_report=False)
    return run_dir


@pytest.fixture(scope="session")
def fc_paper(fc_run: Path, replay_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted replay of ``replay_file`` with the forecaster run."""
    paper_dir = tmp_path_factory.mktemp("fc_paper")
    run_paper(paper_config(fc_run, replay_file, paper_dir))
    return paper_dir
