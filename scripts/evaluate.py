"""Evaluate a trained run against baselines: `python scripts/evaluate.py run_dir=outputs/train/<run> split=test`."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.cli import hydra_entry  # noqa: E402


@hydra_entry("evaluate")
def main(cfg: DictConfig) -> float | None:
    """Evaluate and print the verdict; returns the agent's Sharpe on the span."""
    from agents.evaluate_run import evaluate_run

    base = hydra.utils.get_original_cwd()
    result = evaluate_run(
        hydra.utils.to_absolute_path(cfg.run_dir), split=cfg.split,
        data_path=hydra.utils.to_absolute_path(cfg.data_path) if cfg.data_path else None,
        model=cfg.model, out_dir=hydra.utils.to_absolute_path(cfg.out_dir) if cfg.out_dir else None, base_dir=base,
    )
    print(result["judgement"]["verdict"])
    print(f"Report: {result['report']}")
    return result["results"]["agent"]["sharpe"]


if __name__ == "__main__":
    main()
