"""Evaluate a trained run against baselines: `python scripts/evaluate.py run_dir=outputs/train/<run> split=test`."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.cli import hydra_entry  # noqa: E402


@hydra_entry("evaluate")
def main(cfg: DictConfig) -> float | None:
    """Evaluate and print the verdict; returns the agent's Sharpe on the span."""
    from agents.evaluate_run import evaluate_run, output_dir
    from envs.sim.config import RiskConfig

    base = hydra.utils.get_original_cwd()
    run_dir = hydra.utils.to_absolute_path(cfg.run_dir)
    data_path = hydra.utils.to_absolute_path(cfg.data_path) if cfg.data_path else None
    out = output_dir(run_dir, cfg.split, data_path, hydra.utils.to_absolute_path(cfg.out_dir) if cfg.out_dir else None)
    if not (Path(run_dir) / ".hydra" / "config.yaml").exists():  # before any folder is made for the results
        raise ValueError(f"run_dir={cfg.run_dir} is not a quantgym training run folder (no .hydra/config.yaml)")
    risk_node = (cfg.get("env") or {}).get("risk")  # `risk=<preset>` replaces the run's env.risk
    risk = RiskConfig.from_dict(OmegaConf.to_container(risk_node)) if risk_node is not None else None  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(out / "evaluate.log")  # the log lives with the results it describes
    log_file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(log_file)
    try:
        result = evaluate_run(run_dir, split=cfg.split, data_path=data_path, model=cfg.model, out_dir=out,
                              base_dir=base, risk=risk)
    except Exception:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
        if [p.name for p in out.iterdir()] == ["evaluate.log"]:  # nothing evaluated: leave no folder behind
            shutil.rmtree(out)
        raise
    print(result.judgement.text)
    print(f"Report: {result.report}")
    return result.agent_metrics["sharpe"]


if __name__ == "__main__":
    main()
