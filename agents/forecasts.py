"""Forecast columns in a run: walk-forward predictions as observation features, their state, their skill.

With ``forecaster=<model>`` (conf/forecaster/), `add_forecasts` runs the walk-forward schedule of
`envs.forecasting` over the run's whole span once (cached by content and config hash, like the
features), checks provenance and appends the ``fc_<target>`` columns with the join guard
(`envs.forecasting.walk_forward.join_predictions`). Every forecast a split sees is out of sample: it
comes from a model fitted or updated only on labels known by that bar's close. The feature
normaliser then treats the columns like any other feature.

Bars before the first forecast are the forecaster's warm-up (``RunForecasts.first_bar``): the
training split starts its first observation window after them (`agents.data.split_bounds`), so no
policy is shown a forecast column that does not exist yet.

The run saves the forecaster state (latest models, scalers, schedule position) in
``<run>/forecaster_state`` (`RunForecasts.save_state`); `forecasts_on_new_bars` continues that
schedule on bars after the run's data for ``scripts/evaluate.py data_path=...``. `skill_section`
measures the forecasts on an evaluated span with `agents.evaluation.forecast_skill` for the report.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agents.evaluation.forecast_skill import SkillConfig, evaluate_predictions
from agents.evaluation.report import to_json_value
from envs.features.pipeline import FeatureConfig, build_features, data_hash
from envs.forecasting.cache import PredictionCache, cached_predictions
from envs.forecasting.config import ForecastConfig
from envs.forecasting.state import continue_walk_forward, read_state, save_state
from envs.forecasting.walk_forward import (
    WalkForwardResult,
    baseline_configs,
    forecast_columns,
    join_predictions,
    run_walk_forward,
)

if TYPE_CHECKING:
    from agents.config import EvaluationConfig
    from agents.data import Splits

logger = logging.getLogger(__name__)

#: folder of the forecaster state inside a run folder
STATE_DIR = "forecaster_state"
#: the skill measurements of an evaluation span, beside its report
METRICS_FILE = "forecast_metrics.json"


@dataclass(frozen=True, eq=False)
class RunForecasts:
    """The forecasts of a run's whole span.

    Attributes:
        config: the forecaster.
        predictions: the walk-forward prediction frame (``timestamp``, ``fc_*``, ``y_true``, ``model_id``,
            ``train_label_end``) from the first forecast to the last bar.
        baselines: naive baseline name -> its prediction frame on the same schedule (for skill).
        first_bar: index (into the run's bars) of the first bar with every forecast column.
        state: folder holding the saved state (the cache), or the in-memory result when not cached.
        state_extra: what `save_state` adds to ``schedule.json`` (the bars' content hash and count).
    """

    config: ForecastConfig
    predictions: pd.DataFrame
    baselines: dict[str, pd.DataFrame] = field(default_factory=dict)
    first_bar: int = 0
    state: Path | WalkForwardResult | None = None
    state_extra: dict[str, object] = field(default_factory=dict)

    def save_state(self, run_dir: str | Path) -> Path:
        """Write the forecaster state into ``<run_dir>/forecaster_state`` and return that folder."""
        dest = Path(run_dir) / STATE_DIR
        if dest.exists():
            shutil.rmtree(dest)
        if isinstance(self.state, Path):
            shutil.copytree(self.state, dest)
        else:
            assert self.state is not None
            save_state(self.state, self.config, dest, extra=self.state_extra)
        return dest


def _state_extra(bars: pd.DataFrame) -> dict[str, object]:
    return {"data_hash": data_hash(bars), "n_bars": len(bars)}


def _walk_forward(bars: pd.DataFrame, feats: pd.DataFrame | None, features: FeatureConfig,
                  forecast: ForecastConfig, cache: PredictionCache | None) -> tuple[pd.DataFrame, Path | WalkForwardResult]:
    """Predictions and state of ``forecast`` on ``bars``: from the cache (both files), else computed."""
    if cache is None:
        result = run_walk_forward(bars, feats, forecast)
        return result.predictions, result
    key = PredictionCache.key(bars, features, forecast)
    state = cache.directory / f"state_{key}"
    hit = cache.load(key)
    if hit is not None and (state / "schedule.json").is_file():
        cache.hits += 1
        logger.info("forecast: cache hit %s", cache.path(key))
        return hit, state
    cache.misses += 1
    result = run_walk_forward(bars, feats, forecast)
    cache.save(key, result.predictions)
    if not (state / "schedule.json").is_file():  # the same key always holds the same state
        tmp = Path(tempfile.mkdtemp(prefix=state.name + ".", dir=cache.directory))
        try:  # written aside, then renamed: a crash leaves no half state behind
            save_state(result, forecast, tmp, extra=_state_extra(bars))
            tmp.rename(state)
        except OSError:
            if not (state / "schedule.json").is_file():  # not merely a parallel writer (tune trials) that won
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("forecast: cached to %s", cache.path(key))
    return result.predictions, state


def add_forecasts(bars: pd.DataFrame, built: pd.DataFrame, features: FeatureConfig, forecast: ForecastConfig,
                  cache_dir: str | Path | None) -> tuple[pd.DataFrame, RunForecasts]:
    """``built`` with the ``fc_*`` columns of walk-forward forecasts over the whole span appended.

    Args:
        bars: the run's loaded bars (before features): what the forecasts and their cache key use.
        built: ``bars`` with the run's feature columns (``attrs["feature_columns"]``), or ``bars``.
        features: the run's feature config (part of the cache key).
        forecast: the forecaster; must be enabled.
        cache_dir: folder of the prediction cache (``predictions_<key>.parquet`` and ``state_<key>/``),
            or None to compute in memory.

    Raises:
        ValueError: when the span is too short for a single forecast.
    """
    cols = list(built.attrs.get("feature_columns", []))
    feats = built[cols] if cols else None
    cache = PredictionCache(cache_dir) if cache_dir is not None else None
    preds, state = _walk_forward(bars, feats, features, forecast, cache)
    fc_cols = forecast_columns(preds)
    complete = preds[fc_cols].notna().all(axis=1).to_numpy()
    if not complete.any():
        raise ValueError(
            f"forecaster={forecast.model} made no forecast on the {len(bars)} bars: its first fit needs "
            f"forecaster.min_train={forecast.min_train} labelled bars after the features' warm-up, plus "
            f"horizon={forecast.horizon} and embargo={forecast.embargo}. Give more data or lower forecaster.min_train"
        )
    ts = bars["timestamp"].to_numpy(dtype=np.int64)
    first_bar = int(np.searchsorted(ts, int(preds["timestamp"].to_numpy()[np.argmax(complete)])))
    baselines = {name: cached_predictions(bars, features, cfg, cache, feature_frame=feats)
                 for name, cfg in baseline_configs(forecast).items()}
    joined = join_predictions(built, preds)
    joined.attrs = dict(built.attrs)
    logger.info("forecast columns %s: the first %d bars are the forecaster's warm-up (first forecast at %s)",
                fc_cols, first_bar, pd.Timestamp(int(ts[first_bar]), unit="ms", tz="UTC").isoformat())
    return joined, RunForecasts(forecast, preds, baselines, first_bar, state, _state_extra(bars))


def _span(frame: pd.DataFrame, first_ms: int, last_ms: int) -> pd.DataFrame:
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    return frame[(ts >= first_ms) & (ts <= last_ms)].reset_index(drop=True)


def _fmt(x: object, spec: str = ".4f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def skill_section(predictions: pd.DataFrame, baselines: dict[str, pd.DataFrame], config: ForecastConfig,
                  first_ms: int, last_ms: int, skill: SkillConfig, out_dir: str | Path) -> str:
    """The report's forecast section for the bars ``first_ms .. last_ms`` (open times, inclusive).

    Scores the forecasts against the best naive baseline on the span's rows whose labels are known
    (`agents.evaluation.forecast_skill.evaluate_predictions`), writes ``forecast_metrics.json`` into
    ``out_dir`` and returns the markdown section (a short note when the span is too short to score).
    """
    frames = {config.model: _span(predictions, first_ms, last_ms),
              **{k: _span(v, first_ms, last_ms) for k, v in baselines.items()}}
    head = (f"Out-of-sample forecasts of `{config.model}` ({', '.join(config.targets)}, horizon {config.horizon} "
            "bars) that the agent saw as observation features on this span: each comes from a model fitted or "
            "updated only on labels known by the close of its bar (walk-forward). Scored against the best naive "
            "baseline on the same bars (one-sided Diebold-Mariano test, Holm-corrected).")
    try:
        m = evaluate_predictions(frames, config.model, config.targets, config.horizon, skill)
    except ValueError as exc:
        return f"{head}\n\nNot scored: {exc}."
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / METRICS_FILE).write_text(json.dumps(to_json_value(m), indent=2, allow_nan=False) + "\n",
                                              encoding="utf-8")
    rows = [m, *[c for c in m["components"].values() if c.get("model") == config.model]]
    lines = ["| target | n | IC (CI) | hit rate | MAE | RMSE | best baseline (RMSE) | DM p | Holm p |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        ci = r["ic_ci"]
        lines.append(f"| {r['target']} | {r['n_predictions']} | {_fmt(r['ic'], '+.3f')} ({_fmt(ci[0], '+.3f')} to "
                     f"{_fmt(ci[1], '+.3f')}) | {_fmt(r['hit_rate'], '.3f')} | {_fmt(r['mae'], '.4g')} | "
                     f"{_fmt(r['rmse'], '.4g')} | {r['baseline']['name']} ({_fmt(r['baseline']['rmse'], '.4g')}) | "
                     f"{_fmt(r['dm_pvalue'], '.3g')} | {_fmt(r['p_value_corrected'], '.3g')} |")
    verdicts = "\n".join(f"- {r['verdict']}" for r in rows)
    return f"{head}\n\n" + "\n".join(lines) + f"\n\n{verdicts}\n\nAll numbers: {METRICS_FILE}."


def run_history(history: pd.DataFrame, first_new_ms: int, state_dir: str | Path) -> pd.DataFrame:
    """The run's bars the saved forecaster state was computed on, checked for a continuation.

    Args:
        history: the run's bars (``load_frame`` of its data config; later bars are cut off).
        first_new_ms: open time of the first bar the forecaster is to continue on (ms UTC).
        state_dir: the run's ``forecaster_state`` folder.

    Raises:
        ValueError: when the bars changed since training (content hash) or the new bars do not
            start after the run's last bar.
    """
    state = read_state(state_dir)
    last_ms = int(state["last_bar_ms"])
    history = history[history["timestamp"] <= last_ms].reset_index(drop=True)
    if "data_hash" in state and data_hash(history) != state["data_hash"]:
        raise ValueError(f"the run's bars up to {pd.Timestamp(last_ms, unit='ms', tz='UTC')} changed since training "
                         f"(content hash differs from {Path(state_dir) / 'schedule.json'}): the saved forecaster "
                         "cannot be continued on them; restore the run's data file")
    if first_new_ms <= last_ms:
        raise ValueError(
            f"the new bars start at {pd.Timestamp(first_new_ms, unit='ms', tz='UTC')}, not after the run's last bar "
            f"{pd.Timestamp(last_ms, unit='ms', tz='UTC')}: the run's forecaster continues its schedule on bars it has "
            "not seen; pass only the bars after that time"
        )
    return history


def continue_on_new_bars(history: pd.DataFrame, new: pd.DataFrame, features: FeatureConfig,
                         forecast: ForecastConfig, state_dir: str | Path) -> tuple[pd.DataFrame, RunForecasts]:
    """Features and continued forecasts of ``new`` bars that follow a run's bars ``history``.

    The features of the new bars are computed over history + new (as over one longer series); the
    forecasts continue the run's schedule from its saved state (`continue_walk_forward`); the naive
    baselines run on the same schedule over the joined series (they are cheap and, the schedule being
    anchored at the first bar, equal to a continuation).

    Returns:
        ``(frame of the new bars with feature and fc_* columns, RunForecasts of the new bars)``.

    Raises:
        ValueError: when ``history`` is not the span the state was saved on, or ``new`` does not
            start after it.
    """
    history = run_history(history, int(new["timestamp"].iloc[0]), state_dir)
    last_ms = int(read_state(state_dir)["last_bar_ms"])
    missing = [c for c in new.columns if c not in history.columns]
    if missing:
        raise ValueError(f"the new bars have columns {missing} that the run's bars lack; pass plain bars")
    joined = pd.concat([history[list(new.columns)], new], ignore_index=True)
    built = build_features(joined, features) if features != FeatureConfig.none() else joined
    cols = list(built.attrs.get("feature_columns", []))
    feats = built[cols] if cols else None
    preds = continue_walk_forward(joined, feats, forecast, state_dir)
    baselines = {name: run_walk_forward(joined, feats, cfg).predictions for name, cfg in baseline_configs(forecast).items()}
    baselines = {k: v[v["timestamp"] > last_ms].reset_index(drop=True) for k, v in baselines.items()}
    out = join_predictions(built, preds).iloc[len(history):].reset_index(drop=True)
    out.attrs = {}
    return out, RunForecasts(forecast, preds, baselines, 0, Path(state_dir))



def skill_config(evaluation: EvaluationConfig, seed: int) -> SkillConfig:
    """Skill settings of a run's evaluation: its bootstrap size, significance level and seed."""
    return SkillConfig(n_boot=evaluation.n_boot, alpha=evaluation.alpha, seed=seed)


def split_sections(splits: Splits, split: str, evaluation: EvaluationConfig, seed: int,
                   out_dir: str | Path) -> dict[str, str]:
    """``{"Forecasts": section}`` for the decision bars of ``split`` (empty without a forecaster)."""
    if splits.forecasts is None:
        return {}
    b = splits.bounds[split]
    ts = splits.full.timestamp
    f = splits.forecasts
    return {"Forecasts": skill_section(f.predictions, f.baselines, f.config, int(ts[b.start]), int(ts[b.end - 1]),
                                       skill_config(evaluation, seed), out_dir)}
