"""Walk-forward forecasts and their skill: `python scripts/forecast.py data.path=<bars.parquet> forecaster=gbm`.

Writes predictions.parquet, forecast_metrics.json, forecast_report.md and plots into
outputs/forecast/<date_time>/ (see docs/forecasting.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.forecast_run import register_forecast_configs, to_forecast_run_config  # noqa: E402

register_forecast_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="forecast")
def main(cfg: DictConfig) -> float | None:
    """Compose, validate, forecast, score; returns the corrected p-value (for sweepers)."""
    from agents.forecast_run import run_forecast

    run_cfg = to_forecast_run_config(cfg, base_dir=hydra.utils.get_original_cwd())
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    print(f"Run folder: {run_dir}")
    metrics = run_forecast(run_cfg, run_dir)
    print(metrics["verdict"])
    print(f"Report: {metrics['report']}")
    return float(metrics["p_value_corrected"])


if __name__ == "__main__":
    main()
