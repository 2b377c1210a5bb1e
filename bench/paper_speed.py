"""Paper-mode speed: bar close -> decision committed latency, replay throughput, ledger size per 100k bars.

Usage: python bench/paper_speed.py [--run-dir <training run>] [--bars N] [--tail-bars T]
Without ``--run-dir`` a small run of the main job's set-up (hourly features, LightGBM forecaster, PPO at a
tiny budget: only the decision path is measured, not the policy's quality) is trained on the shipped sample up
to 2023-06-01 first. The replay then trades the ``N`` hourly bars after the run's data through
`agents.paper.session.run_paper` exactly as ``scripts/paper.py`` does (write-ahead SQLite ledger, the kernel
as broker, features on the last ``paper.tail_bars`` bars, the forecaster's schedule continued bar by bar).

Latency = the ledger's ``latency_ms`` of each decision (bar received -> decision committed, wall time),
reported as median / p99 / max, and separately for bars with and without a forecaster refit or update.
Throughput = replayed bars / wall seconds. Ledger size = the SQLite file (+ WAL) per settled step x 100k.
Issue 12's target: <= 50 ms p99 on 2 cores with default features and a LightGBM forecaster.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "btcusdt_1h.parquet"
TRAIN_END = "2023-06-01"


def train_small_run(out: Path) -> Path:
    """A finished run of the main job's data, features and forecaster at a tiny PPO budget."""
    from agents.config import register_configs, to_run_config
    from agents.train import run

    register_configs()
    overrides = ["forecaster=gbm", f"data.end={TRAIN_END}", "train.total_timesteps=2048", "train.eval_freq=1024",
                 "train.checkpoint_freq=2048", "train.n_envs=2", "train.progress_bar=false",
                 "evaluation.n_random_seeds=1", "evaluation.n_boot=50", "env.episode_length=256"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    run(to_run_config(cfg, base_dir=str(REPO)), out, test_report=False)
    return out


def replay_file(out: Path, n_bars: int) -> Path:
    """The ``n_bars`` shipped hourly bars after the training span."""
    df = pd.read_parquet(SAMPLE)
    start = int(pd.Timestamp(TRAIN_END, tz="UTC").value // 1_000_000)
    path = out / "replay.parquet"
    df[df["timestamp"] >= start].iloc[:n_bars].reset_index(drop=True).to_parquet(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, help="a finished training run (default: train a small one)")
    ap.add_argument("--bars", type=int, default=1000, help="bars to replay after the run's data")
    ap.add_argument("--tail-bars", type=int, default=4096, help="paper.tail_bars")
    args = ap.parse_args()

    from agents.paper.config import PaperConfig, PaperFeedConfig
    from agents.paper.ledger import LEDGER_FILE
    from agents.paper.session import run_paper

    work = Path(tempfile.mkdtemp(prefix="qg_paper_bench_"))
    run_dir = args.run_dir
    if run_dir is None:
        t0 = time.perf_counter()
        run_dir = train_small_run(work / "run")
        print(f"trained a small run in {time.perf_counter() - t0:.0f} s: {run_dir}")
    bars = replay_file(work, args.bars)
    paper_dir = work / "paper"
    cfg = PaperConfig(run_dir=str(run_dir), dir=str(paper_dir), tail_bars=args.tail_bars,
                      feed=PaperFeedConfig(path=str(bars)), tensorboard=False, report_on_stop=False)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = run_paper(cfg, base_dir=str(REPO))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    with sqlite3.connect(paper_dir / LEDGER_FILE) as conn:
        dec = pd.read_sql_query("SELECT * FROM decisions ORDER BY bar_ts", conn)
    lat = dec["latency_ms"].dropna().to_numpy(np.float64)
    size = sum(p.stat().st_size for p in paper_dir.glob(LEDGER_FILE + "*"))
    steps = int(summary["steps"])
    print(f"replayed {summary['bars']} bars in {wall:.1f} s: {summary['bars'] / wall:.1f} bars/s "
          f"(process CPU {1000 * cpu / max(summary['bars'], 1):.1f} ms per bar)")
    print(f"decision latency (ms): median {np.median(lat):.1f}, p99 {np.percentile(lat, 99):.1f}, "
          f"max {lat.max():.1f} over {len(lat)} decisions (target: p99 <= 50)")
    if "forecaster_id" in dec:
        changed = dec["forecaster_id"].ne(dec["forecaster_id"].shift()).to_numpy()[-len(lat):]
        quiet, busy = lat[~changed], lat[changed]
        if len(busy):
            print(f"  bars without a forecaster refit/update: median {np.median(quiet):.1f}, "
                  f"p99 {np.percentile(quiet, 99):.1f}; with one ({len(busy)}): median {np.median(busy):.1f}")
    print(f"ledger: {size / 1e6:.1f} MB for {steps} steps = {size / max(steps, 1) * 1e5 / 1e9:.2f} GB per 100k bars")


if __name__ == "__main__":
    main()
