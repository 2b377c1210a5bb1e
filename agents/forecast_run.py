"""Standalone forecasting run: load bars, build features, walk forward, measure skill, write the report.

`python scripts/forecast.py data.path=<bars.parquet> forecaster=gbm` composes conf/forecast.yaml
(typed by `ForecastRunSchema`: a typo or wrong type fails at composition), converts it with
`to_forecast_run_config` and calls `run_forecast`, which writes into the run folder:

* ``predictions.parquet``: the chosen forecaster's walk-forward predictions (``timestamp``,
  ``fc_<target>``, ``y_true``, ``model_id``, ``train_label_end``);
* ``forecast_metrics.json``: skill of the primary target at top level, the rest under ``components``;
* ``forecast_report.md`` (+ its JSON twin) through `agents.evaluation.report.write_report`, and the
  plots under ``plots/``;
* ``forecaster_state/``: the latest model per target and the schedule position;
* ``tb/``: TensorBoard ``forecast/`` scalars per refit period.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents.config import DataConfig, data_config, schema_of
from agents.data import load_frame
from agents.evaluation.forecast_plots import plot_importance, plot_predicted_vs_realised, plot_rolling_ic
from agents.evaluation.forecast_skill import SkillConfig, evaluate_predictions
from agents.evaluation.report import to_json_value, write_report
from envs.features.pipeline import FeatureCache, FeatureConfig, build_features
from envs.forecasting.cache import PredictionCache, cached_predictions
from envs.forecasting.config import ForecastConfig
from envs.forecasting.state import save_state
from envs.forecasting.walk_forward import baseline_configs, run_walk_forward

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ForecastRunConfig:
    """Everything a forecasting run needs, validated.

    Attributes:
        data: the bars (as in training: a Parquet path or a store span).
        features: the causal feature set the models read.
        forecaster: model, targets and walk-forward schedule.
        skill: bootstrap and significance settings.
        cache_dir: folder of the feature and prediction caches, or None for no caching.
        task_name: run-folder prefix (``outputs/<task_name>/...``).
    """

    data: DataConfig
    features: FeatureConfig
    forecaster: ForecastConfig
    skill: SkillConfig = SkillConfig()
    cache_dir: str | None = None
    task_name: str = "forecast"


#: Hydra schema of a forecasting run
ForecastRunSchema = schema_of(ForecastRunConfig, "ForecastRunSchema")


def register_forecast_configs() -> None:
    """Register the forecast-run schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="forecast_schema", node=ForecastRunSchema)


def to_forecast_run_config(cfg: DictConfig | dict[str, Any], base_dir: str | None = None) -> ForecastRunConfig:
    """Convert a composed conf/forecast.yaml into a validated `ForecastRunConfig`."""
    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(raw, dict)
    cache_dir = raw.get("cache_dir")
    if cache_dir is not None and base_dir is not None and not Path(cache_dir).is_absolute():
        cache_dir = str(Path(base_dir) / cache_dir)
    return ForecastRunConfig(
        data=data_config(raw["data"], base_dir),
        features=FeatureConfig.from_mapping(raw["features"]) if raw.get("features") else FeatureConfig.none(),
        forecaster=ForecastConfig.from_mapping(raw["forecaster"]),
        skill=SkillConfig(**(raw.get("skill") or {})),
        cache_dir=cache_dir,
        task_name=raw.get("task_name", "forecast"),
    )


def _features(df: pd.DataFrame, cfg: ForecastRunConfig) -> pd.DataFrame | None:
    if cfg.features == FeatureConfig.none():
        return None
    cache = FeatureCache(Path(cfg.cache_dir) / "features") if cfg.cache_dir else None
    built = build_features(df, cfg.features, cache)
    return built[built.attrs["feature_columns"]]


def _log_tensorboard(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``forecast/`` scalars per refit period (x-axis: the refit number)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    try:
        for fold in metrics["folds"]:
            for key in ("ic", "mae", "rmse", "hit_rate"):
                value = fold.get(key)
                if value is not None and np.isfinite(value):
                    writer.add_scalar(f"forecast/{key}", float(value), int(fold["fold"]))
        writer.add_text("forecast/verdict", str(metrics["verdict"]))
    finally:
        writer.close()


def _plots(run_dir: Path, preds: pd.DataFrame, cfg: ForecastRunConfig, importance: dict[str, float] | None
           ) -> dict[str, Path]:
    target = cfg.forecaster.targets[0]
    pred = preds["fc_" + target].to_numpy(dtype=np.float64)
    y = preds["y_true"].to_numpy(dtype=np.float64)
    out = {
        "Predicted vs realised": plot_predicted_vs_realised(pred, y, run_dir / "plots" / "predicted_vs_realised.png",
                                                            target),
        "Rolling IC": plot_rolling_ic(pred, y, min(cfg.skill.rolling_ic_window, max(10, len(preds) // 4)),
                                      run_dir / "plots" / "rolling_ic.png", preds["timestamp"].to_numpy()),
    }
    if importance:
        out["Feature importance"] = plot_importance(
            importance, run_dir / "plots" / "feature_importance.png",
            title=f"{cfg.forecaster.model} feature importance ({target}, last model)")
    return out


def _report_table(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Columns ``<target>/<model>`` of the report table (the judged model first, then the rest)."""
    keys = ("n_predictions", "ic", "hit_rate", "mae", "rmse", "log_loss", "brier", "dm_pvalue", "p_value_corrected")
    cols = {f"{metrics['target']}/{metrics['model']}": {k: metrics[k] for k in keys if k in metrics}}
    for name, comp in metrics["components"].items():
        cols[name] = {k: comp[k] for k in keys if k in comp}
    return cols


def run_forecast(cfg: ForecastRunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run the walk-forward forecaster of ``cfg`` and its baselines; write everything into ``run_dir``.

    Returns:
        The ``forecast_metrics.json`` content.
    """
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    fc = cfg.forecaster
    if not fc.enabled:
        raise ValueError("forecaster=none makes no forecasts to measure; use forecaster=ridge or forecaster=gbm")
    df = load_frame(cfg.data)
    feats = _features(df, cfg)
    logger.info("forecast: %d bars, %d feature columns, model %s", len(df), 0 if feats is None else feats.shape[1],
                fc.model)
    result = run_walk_forward(df, feats, fc)
    if result.predictions.empty:
        raise ValueError(f"no predictions: {len(df)} bars are too few for forecaster.min_train={fc.min_train}")
    save_state(result, fc, out / "forecaster_state")
    cache = PredictionCache(Path(cfg.cache_dir) / "predictions") if cfg.cache_dir else None
    frames = {fc.model: result.predictions}
    for name, bcfg in baseline_configs(fc).items():
        frames[name] = cached_predictions(df, cfg.features, bcfg, cache, feature_frame=feats)
    metrics = evaluate_predictions(frames, fc.model, fc.targets, fc.horizon, cfg.skill)
    metrics["config"] = {"forecaster": asdict(fc), "skill": asdict(cfg.skill)}
    result.predictions.to_parquet(out / "predictions.parquet", index=False)
    (out / "forecast_metrics.json").write_text(
        json.dumps(to_json_value(metrics), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    model = result.models.get(fc.targets[0])
    plots = _plots(out, result.predictions, cfg, model.importance() if model is not None else None)
    _log_tensorboard(out, metrics)
    verdicts = {f"{metrics['target']}/{fc.model}": str(metrics["verdict"])}
    verdicts.update({k: str(v["verdict"]) for k, v in metrics["components"].items() if "verdict" in v})
    sections = {
        "How to read this": (
            "Every number is out of sample: each prediction comes from a model fitted or updated only on labels "
            "known by the close of the bar it predicts at (walk-forward, purged by the label horizon"
            f"{f', embargo {fc.embargo} bars' if fc.embargo else ''}). Baselines run on the same schedule; the "
            "best of them (lowest loss on the same rows) is the bar to clear. p-values are one-sided "
            "Diebold-Mariano tests with HAC variance, Holm-corrected across the run's targets."),
        "Forecaster": "```\n" + json.dumps(asdict(fc), indent=2, default=list) + "\n```",
    }
    md, _ = write_report(out, _report_table(metrics), verdicts, plots, sections, title="Forecast report",
                         table_note=("Out-of-sample values in the target's unit (log return, P(up), k-bar volatility); "
                                     "hit_rate and IC are fractions; p-values are one-sided."),
                         md_name="forecast_report.md", json_name="forecast_report.json", number_format=".4g")
    metrics["report"] = str(md)
    return metrics
