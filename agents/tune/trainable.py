"""The Ray Tune trainable: one training run through `agents.train.run`, reporting every validation.

A trial's run folder is ``<experiment>/trial_<id>/run``. After every validation pass the validation
metrics and ``timesteps`` are reported with a Tune checkpoint (newest SB3 checkpoint, history, best
model); a retried trial restores it from `ray.tune.get_checkpoint` and resumes training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agents.config import RunConfig, to_run_config
from agents.tune.space import parse_space
from agents.tune.trials import trial_config, trial_index_of

logger = logging.getLogger(__name__)

#: the Tune time axis: environment steps of the trial (ASHA rungs and grace_period are in steps)
TIME_ATTR = "timesteps"
#: the trial's training run folder inside its Tune trial folder
TRIAL_RUN = "run"
#: one JSON line per start of a trial (first run, retries after a crash, resumes of the experiment)
ATTEMPTS_LOG = "attempts.jsonl"


def finite(x: Any) -> float | None:
    """``float(x)`` when it is a finite number, else None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _checkpoint_files(run_dir: Path) -> list[Path]:
    """Files that let a retried trial continue: newest SB3 checkpoint, validation history, best model.

    The replay buffer of off-policy agents is left out (it can be gigabytes); it stays in the run
    folder on the shared storage, where a resumed run finds it.
    """
    from agents.train import latest_checkpoint

    files = [run_dir / n for n in ("eval_history.json", "best_model.zip", "best_vecnormalize.pkl")]
    found = latest_checkpoint(run_dir)
    if found is not None:
        path, steps = found
        files += [path, run_dir / "checkpoints" / f"model_vecnormalize_{steps}_steps.pkl"]
    return [f for f in files if f.exists()]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _restore_run_dir(checkpoint_dir: Path | None, run_dir: Path) -> bool:
    """Prepare ``run_dir`` for a (re)started trial; returns whether `agents.train.run` should resume."""
    if checkpoint_dir is None or not any(checkpoint_dir.glob("checkpoints/model_*_steps.zip")):
        if run_dir.exists():  # an earlier attempt crashed before its first SB3 checkpoint: start clean
            shutil.rmtree(run_dir)
        return False
    for src in checkpoint_dir.rglob("*"):
        if src.is_file():
            dst = run_dir / src.relative_to(checkpoint_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return True


def _start_attempt(trial_dir: Path, run_dir: Path) -> bool:
    """Restore the run folder from Tune's checkpoint (if any) and log the attempt; returns resume."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = _restore_run_dir(Path(d), run_dir)
    else:
        resume = _restore_run_dir(None, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / ATTEMPTS_LOG, "a", encoding="utf-8") as f:  # one line per start: retries are visible
        f.write(json.dumps({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resume": resume,
                            "checkpoint": None if checkpoint is None else Path(checkpoint.path).name}) + "\n")
    return resume


def report_validation(summary: dict[str, float], steps: int, metric: str, mode: str, trial_dir: Path,
                      run_dir: Path) -> None:
    """Report one validation pass to Tune with a checkpoint of the run folder.

    A non-finite or missing ``metric`` is reported as the worst result (-1e9 for max, 1e9 for min).
    """
    from ray import tune

    metrics: dict[str, Any] = {k: finite(v) for k, v in summary.items()}
    metrics[TIME_ATTR] = int(steps)
    if metrics.get(metric) is None:
        metrics[metric] = -1e9 if mode == "max" else 1e9
    # staged beside the run (hard links, same filesystem); Tune copies it into trial_<id>/checkpoint_*
    with tempfile.TemporaryDirectory(dir=trial_dir, prefix=".staging_") as tmp:
        for f in _checkpoint_files(run_dir):
            _link_or_copy(f, Path(tmp) / f.relative_to(run_dir))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def quantgym_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Ray Tune trainable: one training run through `agents.train.run`, reporting every validation.

    Args:
        config: the sampled values, keyed by the dotted config keys.
        setup: (via `tune.with_parameters`) the plain base config, the raw space, the experiment
            folder, metric/mode and torch threads (`agents.tune.experiment.Experiment.setup`).
    """
    import torch
    from ray import tune

    from agents.train import run

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    specs = parse_space(setup["space"])
    raw = trial_config(setup["base"], specs, config, trial_index_of(trial_id), setup["torch_threads"])
    cfg: RunConfig = to_run_config(raw)
    torch.set_num_threads(cfg.train.torch_threads)
    trial_dir = Path(setup["experiment_dir"]) / Path(ctx.get_trial_dir()).name
    run_dir = trial_dir / TRIAL_RUN
    resume = _start_attempt(trial_dir, run_dir)
    OmegaConf.save(OmegaConf.create(raw), run_dir / "trial_config.yaml")
    logger.info("trial %s: %s (resume=%s)", trial_id, run_dir, resume)

    def report(summary: dict[str, float], steps: int) -> None:
        report_validation(summary, steps, setup["metric"], setup["mode"], trial_dir, run_dir)

    run(cfg, run_dir, resume=resume, on_validation=report, test_report=False)
