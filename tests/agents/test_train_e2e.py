"""Tiny real training runs: PPO and SAC end to end, TensorBoard read back, resume after SIGKILL, evaluator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.config import to_run_config
from agents.evaluate_run import evaluate_run
from agents.sb3 import load_model
from agents.train import run

REPO = Path(__file__).resolve().parents[2]
SMOKE = ["debug=smoke", "train.total_timesteps=2048", "train.eval_freq=1024", "train.checkpoint_freq=1024"]


def _scalars(run_dir: Path) -> dict[str, list]:
    runs = sorted((run_dir / "tb").iterdir())
    assert [r.name for r in runs] == ["run_1"], runs
    ea = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return {tag: ea.Scalars(tag) for tag in ea.Tags()["scalars"]} | {
        f"hist:{t}": [] for t in ea.Tags()["histograms"]}


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "sac"])
def test_tiny_run_logs_trading_and_eval_metrics_and_writes_report(compose_cfg, tmp_path: Path, agent: str) -> None:
    overrides = [*SMOKE, f"agent={agent}"]
    if agent == "sac":
        overrides += ["env=spot", "agent.algo_kwargs.learning_starts=256", "agent.algo_kwargs.batch_size=64",
                      "agent.algo_kwargs.buffer_size=4096", "train.total_timesteps=1536"]
    cfg = to_run_config(compose_cfg(overrides), base_dir=str(REPO))
    result = run(cfg, tmp_path)
    tags = _scalars(tmp_path)
    for key in ("trading/equity", "trading/episode_return", "trading/sharpe", "trading/max_drawdown",
                "trading/turnover", "trading/fees_paid", "trading/n_fills", "trading/avg_exposure",
                "eval/sharpe", "eval/total_return", "eval/max_drawdown", "eval/fees_paid"):
        assert key in tags, (key, sorted(tags))
    assert "hist:trading/actions_hist" in tags and "hist:trading/exposure_hist" in tags
    assert max(e.step for e in tags["eval/sharpe"]) >= 1024
    # checkpoints load (SAC's include the replay buffer)
    ckpts = sorted((tmp_path / "checkpoints").glob("model_*_steps.zip"))
    assert ckpts
    model = load_model(agent, ckpts[-1])
    assert model.num_timesteps >= 1024
    if agent == "sac":
        assert list((tmp_path / "checkpoints").glob("model_replay_buffer_*_steps.pkl"))
    # the report and metrics of the test split
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"agent", "buy_and_hold", "flat", "ma_crossover"} <= set(metrics["policies"])
    assert metrics["policies"]["flat"]["total_return"] == 0.0
    assert "verdict" in metrics["judgement"]
    for png in ("equity.png", "drawdown.png", "exposure.png", "trade_returns.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.num_timesteps >= cfg.train.total_timesteps and result.evaluation is not None
    # the evaluator reloads the run (model, config, normalisation) on another split
    again = evaluate_run(tmp_path, split="val", base_dir=str(REPO))
    assert again.report.exists() and "agent" in again.metrics


@pytest.mark.slow
def test_resume_after_sigkill_continues_steps_and_tensorboard_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "debug=smoke", "train.total_timesteps=12288",
           "train.checkpoint_freq=1024", "train.eval_freq=2048", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not (run_dir / "checkpoints" / "model_2048_steps.zip").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be interrupted"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "final_model.zip").exists()  # it really was interrupted
    killed_at = max(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("model_*_steps.zip"))

    out = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), f"train.resume_from={run_dir}",
                          f"hydra.run.dir={tmp_path / 'resume_invocation'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resuming" in out.stdout
    final = load_model("ppo", run_dir / "final_model.zip")
    assert final.num_timesteps >= 12288
    tags = _scalars(run_dir)  # still one TensorBoard run, now past the kill point
    steps = [e.step for e in tags["time/fps"]]
    assert max(steps) >= 12288 and min(steps) < killed_at
    history = json.loads((run_dir / "eval_history.json").read_text())
    assert [h["timesteps"] for h in history] == sorted(h["timesteps"] for h in history)


@pytest.mark.slow
def test_hydra_multirun_trains_each_combination(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "-m", "agent=ppo,a2c", "train.seed=0,1", "debug=smoke",
         "features=none", "train.total_timesteps=512", "train.eval_freq=512", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    reports = sorted(sweep.glob("*/report.md"))
    assert len(reports) == 4
    names = sorted(p.parent.name for p in reports)
    assert any("agent=a2c" in n and "train.seed=1" in n for n in names), names


@pytest.mark.slow
def test_resume_skips_a_checkpoint_cut_short_by_a_crash(compose_cfg, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A kill during SB3's checkpoint write leaves a truncated file: resume falls back to the one before."""
    cfg = to_run_config(compose_cfg([*SMOKE, "features=none", "train.normalize_reward=true"]), base_dir=str(REPO))
    run(cfg, tmp_path, test_report=False)
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "model_2048_steps.zip").exists() and (ckpts / "model_1024_steps.zip").exists()
    normaliser = ckpts / "model_vecnormalize_2048_steps.pkl"
    normaliser.write_bytes(normaliser.read_bytes()[:40])  # the write that the kill interrupted
    (tmp_path / "final_model.zip").unlink()
    with caplog.at_level("WARNING", logger="agents.train"):
        result = run(cfg, tmp_path, resume=True, test_report=False)
    assert "checkpoint at 2048 steps is incomplete" in caplog.text
    assert str(normaliser) in caplog.text  # the warning names the file
    assert result.num_timesteps >= cfg.train.total_timesteps
    assert load_model("ppo", tmp_path / "final_model.zip").num_timesteps >= cfg.train.total_timesteps


@pytest.mark.slow
def test_readme_multirun_of_ppo_and_sac_over_three_seeds(tmp_path: Path) -> None:
    """README: `python scripts/train.py -m agent=ppo,sac train.seed=0,1,2` (6 runs), at a tiny budget."""
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "-m", "agent=ppo,sac", "train.seed=0,1,2", "debug=smoke",
         "features=none", "train.total_timesteps=512", "train.eval_freq=512",
         "env.episode_length=128", "evaluation.n_boot=50", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(sorted(sweep.glob("*/report.md"))) == 6
