"""Report a paper session from its ledger: `python scripts/paper_report.py paper_dir=outputs/paper/<session>`."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.paper.config import register_paper_configs  # noqa: E402

register_paper_configs()  # the if_null resolver of conf/paper_report.yaml


@hydra.main(version_base="1.3", config_path="../conf", config_name="paper_report")
def main(cfg: DictConfig) -> None:
    """Build report.md, metrics.json and the plots from the ledger."""
    from agents.paper.report import paper_report

    out = hydra.utils.to_absolute_path(cfg.out_dir) if cfg.out_dir else None
    result = paper_report(hydra.utils.to_absolute_path(cfg.paper_dir), out)
    print(result.summary)
    print(f"Report: {result.report}")


if __name__ == "__main__":
    main()
