"""Re-evaluate a finished run folder on any split or data file (deterministic policy, one pass)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from agents.artifacts import sb3_policy
from agents.config import RunConfig, to_run_config
from agents.data import check_tradable, load_frame, load_splits, require_usable
from agents.evaluation.steps import STEPS_FILE, evaluation_steps
from agents.evaluation.suite import EvaluationResult, evaluate_policy
from agents.forecasts import STATE_DIR, continue_on_new_bars, skill_config, skill_section, split_sections
from agents.model_age import resolve_model_age
from agents.sb3 import load_model
from envs.features.pipeline import FeatureConfig, build_features
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import RiskConfig

logger = logging.getLogger(__name__)


def load_run(run_dir: str | Path, base_dir: str | None = None) -> tuple[RunConfig, FeatureNormalizer]:
    """The saved config and feature normaliser of a run folder."""
    run = Path(run_dir)
    saved = run / ".hydra" / "config.yaml"
    if not saved.exists():
        raise ValueError(f"{saved} not found: run_dir must be a quantgym training run folder (outputs/train/<run>)")
    saved_cfg = OmegaConf.load(saved)
    if not isinstance(saved_cfg, DictConfig):
        raise ValueError(f"{saved} is not a run config (a mapping of config nodes)")
    cfg = to_run_config(saved_cfg, base_dir=base_dir)
    norm_path = run / "normalizer.json"
    if not norm_path.exists():
        raise ValueError(f"{norm_path} not found: the run did not finish its set-up; retrain or resume it")
    return cfg, FeatureNormalizer.from_dict(json.loads(norm_path.read_text()))


def run_features(data: MarketData, normalizer: FeatureNormalizer) -> MarketData:
    """``data`` with the observation features the run was trained on (those its normaliser holds).

    They differ from freshly built features when the run pruned collinear columns
    (``features.prune_vif`` / ``prune_corr``, decided on its training split).
    """
    if tuple(normalizer.names) == data.feature_names:
        return data
    return data.select_features(normalizer.names)


def output_dir(run_dir: str | Path, split: str = "test", data_path: str | None = None,
               out_dir: str | Path | None = None) -> Path:
    """Where `evaluate_run` writes: ``out_dir``, else ``<run>/eval_<split>`` or ``<run>/eval_<file stem>``."""
    if out_dir is not None:
        return Path(out_dir)
    return Path(run_dir) / f"eval_{Path(data_path).stem if data_path is not None else split}"


def evaluate_run(run_dir: str | Path, split: str = "test", data_path: str | None = None, model: str = "best",
                 out_dir: str | Path | None = None, base_dir: str | None = None,
                 risk: RiskConfig | None = None) -> EvaluationResult:
    """Evaluate the run's ``best`` (or ``final``) model on ``split`` of its data, or on ``data_path``.

    With ``data_path`` the whole file is one evaluation span (its features are normalised with the
    run's training statistics). A run with a forecaster needs bars after its own: their features are
    computed over the run's bars + the file, and the forecasts continue the run's walk-forward
    schedule from ``<run>/forecaster_state`` (no model sees a label before it is known). The report
    then gains a forecast section (skill on the evaluated span). Writes the report and
    ``steps.parquet`` (one row per step, the env's info keys: the columns of paper mode's ledger)
    into ``out_dir`` (default ``<run>/eval_<name>``). The run's risk limits (``env.risk`` of its saved
    config) apply unless ``risk`` replaces them.
    """
    run = Path(run_dir)
    cfg, normalizer = load_run(run, base_dir)
    if risk is not None:
        cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, risk=risk))
        logger.info("risk limits replaced for this evaluation: %s", risk)
    cfg = resolve_model_age(cfg, run)  # env.risk.max_model_age counts from the run's training end
    out = output_dir(run, split, data_path, out_dir)
    if data_path is not None:
        # the run's one loader: its cleaning policies, timeframe check and funding join apply to the file too
        frame = load_frame(dataclasses.replace(cfg.data, path=str(data_path), store_root=None, start=None, end=None))
        forecasts = None
        if cfg.forecaster.enabled:
            frame, forecasts = continue_on_new_bars(load_frame(cfg.data), frame, cfg.features, cfg.forecaster,
                                                    run / STATE_DIR)
        elif cfg.features != FeatureConfig.none():
            frame = build_features(frame, cfg.features)
        data = MarketData.load(frame)
        require_usable(data, cfg.env.window_size, f"data_path={data_path!r}")
        name = Path(data_path).stem
        sections = {} if forecasts is None else {"Forecasts": skill_section(
            forecasts.predictions, forecasts.baselines, cfg.forecaster, int(data.timestamp[0]),
            int(data.timestamp[-1]), skill_config(cfg.evaluation, cfg.train.seed), out)}
    else:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r} is invalid: choose train, val or test (or give data_path)")
        splits = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
        data = splits.get(split)
        name = split
        sections = split_sections(splits, split, cfg.evaluation, cfg.train.seed, out)
    data = run_features(data, normalizer)
    check_tradable(cfg.env, data, f"evaluating {run} on {name}")
    model_path = run / f"{model}_model.zip"
    if not model_path.exists():
        raise ValueError(f"{model_path} not found: model must be 'best' or 'final' of a finished run")
    policy = sb3_policy(load_model(cfg.agent.name, model_path, device=cfg.train.device))
    result = evaluate_policy(policy, data, cfg.env, normalizer, cfg.evaluation, out, cfg.data.calendar,
                             title=f"{cfg.agent.name.upper()} ({model} model) on {name}", seed=cfg.train.seed,
                             extra_sections=sections)
    steps = evaluation_steps(policy, data, cfg.env, normalizer, out / STEPS_FILE, seed=cfg.train.seed)
    return dataclasses.replace(result, steps=steps)
