"""Hyperparameter search with Ray Tune: `python scripts/tune.py [tune=smoke|ppo|sac] [key=value ...]`.

Resume an interrupted experiment: `python scripts/tune.py tune=ppo tune.resume=true tune.storage_path=outputs/tune/<run>`.
Use a running Ray cluster: `python scripts/tune.py tune=ppo tune.ray_address=auto` (see docs/tune.md).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.config import register_configs  # noqa: E402
from agents.tune import register_tune_configs  # noqa: E402

register_configs()
register_tune_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="tune")
def main(cfg: DictConfig) -> float | None:
    """Compose, validate, run the search, summarise; returns the best validation metric."""
    from agents.tune import prepare_experiment, run_experiment

    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    exp = prepare_experiment({str(k): v for k, v in raw.items()}, hydra.utils.get_original_cwd(), HydraConfig.get().runtime.output_dir)
    exp_dir = exp.settings.experiment_dir
    print(f"Experiment: {exp_dir}\nWatch it:   tensorboard --logdir {exp_dir}")
    summary = run_experiment(exp)
    if summary.interrupted:
        print(f"\nInterrupted: {summary.finished_trials} of {summary.n_trials} trials finished. Resume with:\n"
              f"  {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} {summary.resume}")
        return None
    print(f"\nResults: {summary.results_md}")
    best = summary.best
    if best is None:
        print("No trial reported a validation metric; see the error column of the results table.")
        return None
    print(f"Best trial {best.trial_id}: validation {summary.metric} {best.score}, test Sharpe {best.test.sharpe}, "
          f"deflated Sharpe over {best.n_trials_for_dsr} trials {best.deflated_sharpe}")
    print(f"Summary: {exp_dir / 'summary.md'}\nRetrain: {best.retrain}")
    return best.score

if __name__ == "__main__":
    main()
