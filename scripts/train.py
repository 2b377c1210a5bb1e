"""Train an agent: `python scripts/train.py [agent=sac env=perp train.total_timesteps=200000 ...]`.

Resume an interrupted run: `python scripts/train.py train.resume_from=outputs/train/<run>`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.cli import ConfigError, hydra_entry  # noqa: E402
from agents.config import check_resume_overrides, register_configs, to_run_config  # noqa: E402

register_configs()
logger = logging.getLogger("quantgym.train")


@hydra_entry("config")
def main(cfg: DictConfig) -> float | None:
    """Compose, validate, train, evaluate; returns the test Sharpe (for sweepers)."""
    from agents.train import run

    base = hydra.utils.get_original_cwd()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resume_from = cfg.train.resume_from
    if resume_from:
        run_dir = Path(hydra.utils.to_absolute_path(resume_from))
        saved = run_dir / ".hydra" / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"train.resume_from={resume_from}: {saved} not found; is this a quantgym run folder?")
        saved_cfg = OmegaConf.load(saved)
        resume_only = [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").startswith("train.resume_from=")]
        check_resume_overrides(cfg, hydra.compose(config_name="config", overrides=resume_only), saved_cfg)
        cfg = saved_cfg
        print(f"Resuming {run_dir} with its saved config")
    run_cfg = to_run_config(cfg, base_dir=base)
    print(f"Run folder: {run_dir}\nWatch it:   tensorboard --logdir {run_dir / 'tb'}")
    if run_cfg.evaluation.walk_forward_folds:
        from agents.walk_forward import run_walk_forward

        wf = run_walk_forward(run_cfg, run_dir)
        print(f"\nWalk-forward over {len(wf.folds)} folds: {wf.judgement.text}")
        print(f"Report: {wf.report}\nTensorBoard: tensorboard --logdir {run_dir}")
        return wf.aggregate["sharpe"][0]
    result = run(run_cfg, run_dir, resume=bool(resume_from))
    assert result.evaluation is not None  # run() evaluates on the test split by default
    print(f"\nTest split: {result.evaluation.judgement.text}")
    print(f"Report: {result.evaluation.report}\nTensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    return result.test_sharpe


if __name__ == "__main__":
    main()
