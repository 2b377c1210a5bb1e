"""The best trial's config as a primary config for scripts/train.py, and the command that retrains it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agents.tune.space import ParamSpec
from agents.tune.trials import trial_config, trial_index_of

BEST_CONFIG = "best_config"


def retrain_command(config_dir: Path | str) -> str:
    """The command that retrains the best trial from ``config_dir/best_config.yaml``.

    The Python running this process (the project's ``.venv/bin/python`` after ``make``) and
    scripts/train.py are given as absolute paths, so the command works as printed from a fresh shell in
    any folder (``python`` may be missing or another interpreter there). The venv's interpreter is
    kept as the symlink it is: resolving it would leave the venv.
    """
    python = Path(sys.executable).absolute()
    script = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
    return shlex.join([str(python), str(script), "--config-path", str(Path(config_dir).absolute()),
                       "--config-name", BEST_CONFIG])


def write_best_config(base: Mapping[str, Any], specs: Sequence[ParamSpec], sample: Mapping[str, Any],
                      trial_id: str, torch_threads: int, exp_dir: Path) -> Path:
    """Write ``exp_dir/best_config.yaml``: the best trial's complete config as a Hydra primary config.

    Args:
        base: the experiment's plain base config.
        specs: the parsed search space.
        sample: the best trial's sampled values (Tune's config).
        trial_id: the best trial's Tune id (its seed offset derives from it).
        torch_threads: torch threads of the trial.
        exp_dir: the experiment folder.
    """
    path = exp_dir / f"{BEST_CONFIG}.yaml"
    raw = trial_config(base, specs, sample, trial_index_of(trial_id), torch_threads)
    raw["train"]["progress_bar"] = True
    doc = {"defaults": ["run_schema", "_self_"], **raw,
           "hydra": {"run": {"dir": "outputs/train/${now:%Y-%m-%d_%H-%M-%S}"}}}
    header = (f"# Best trial {trial_id} of tune experiment {exp_dir}\n"
              f"# Retrain: {retrain_command(exp_dir)}\n")
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(doc)))
    return path
