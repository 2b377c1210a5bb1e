"""Paper-trade a trained run: `python scripts/paper.py run_dir=outputs/train/<run> feed.path=<bars>` (replay), or
`paper_feed=binance_spot` (live, REST) / `binance_spot_ws` (websocket), `broker=testnet` (exchange sandbox).

Rerunning the same command with the same ``paper.dir`` resumes from the ledger (docs/paper.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.paper.config import register_paper_configs, to_paper_config  # noqa: E402

register_paper_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="paper")
def main(cfg: DictConfig) -> None:
    """Compose, validate, run (or resume) the session until the feed ends."""
    from agents.paper.session import run_paper

    base = hydra.utils.get_original_cwd()
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    node = dict(raw["paper"])
    node["dir"] = node["dir"] or HydraConfig.get().runtime.output_dir
    risk = (raw.get("env") or {}).get("risk")  # `risk=<preset>` replaces the run's env.risk
    paper = to_paper_config({"run_dir": raw["run_dir"], **node, "feed": raw["feed"], "broker": raw["broker"],
                             "risk": risk}, base_dir=base)
    print(f"Paper folder: {paper.dir}")
    summary = run_paper(paper, base_dir=base)
    end = "Feed ended" if summary["stopped"] is None else f"Stopped ({summary['stopped']})"
    print(f"{end}: {summary['bars']} bars, {summary['steps']} settled steps, ledger {summary['ledger']}")


if __name__ == "__main__":
    main()
