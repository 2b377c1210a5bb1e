"""Training: SB3 on `VecTradingEnv`, validation-based model selection, checkpoints, resume, test report.

Run folder layout (``run_dir``)::

    .hydra/                Hydra's resolved config and overrides (written by scripts/train.py)
    tb/run_1/              TensorBoard events (SB3 losses, trading/*, eval/*)
    checkpoints/           the last train.keep_checkpoints checkpoints (agents/checkpoints.py)
    normalizer.json        feature normalisation fitted on the training split only
    forecaster_state/      with a forecaster: its latest models, scalers and schedule position
    best_model.zip         best validation Sharpe (+ best_vecnormalize.pkl)
    final_model.zip        last weights (+ vecnormalize.pkl: reward normalisation, an SB3 VecNormalize pickle)
    eval_history.json      every validation result
    report.md, metrics.json, *.png   the test-split evaluation against baselines
    splits.json            spans of train / val / test
    collinearity.md        with features.prune_vif/prune_corr: which feature columns were dropped and why
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from agents.artifacts import sb3_policy
from agents.callbacks import BoundedProgressBar, TradingMetricsCallback, ValidationCallback
from agents.checkpoints import RollingCheckpointCallback, normalization_writer, resume_model
from agents.checkpoints import latest_checkpoint as latest_checkpoint  # re-exported for agents.tune
from agents.config import RunConfig
from agents.data import Splits, check_tradable, load_splits, prune_features
from agents.evaluation.runner import evaluation_env, run_policy
from agents.evaluation.suite import EvaluationResult, evaluate_policy
from agents.forecasts import split_sections
from agents.model_age import check_forecaster_age, resolve_model_age
from agents.sb3 import algorithm_class, build_model, load_model
from envs.features.collinearity import PruneResult
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.vec_env import NormalizeConfig, VecTradingEnv

logger = logging.getLogger(__name__)

TB_NAME = "run"


class ConfigTextCallback(BaseCallback):
    """Logs the resolved run config once as a markdown table (TensorBoard's text tab)."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        rows = []

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                rows.append(f"|{prefix}|{value}|")

        walk("", asdict(config))
        self.text = "|key|value|\n|-|-|\n" + "\n".join(rows)

    def _on_training_start(self) -> None:
        self.logger.record("config", self.text, exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


def _make_vec(data: MarketData, cfg: RunConfig, normalizer: FeatureNormalizer) -> VecTradingEnv:
    """The training envs. On-policy agents get SB3's VecMonitor + VecNormalize semantics inside the env
    (tested equal; no wrapper layers). Off-policy agents keep SB3's wrappers (`_wrap`): their replay
    buffers store the original rewards, read through the VecNormalize wrapper."""
    inside = issubclass(algorithm_class(cfg.agent.name), OnPolicyAlgorithm)
    gamma = float(cfg.agent.algo_kwargs.get("gamma", 0.99))
    return VecTradingEnv(
        data, cfg.env, n_envs=cfg.train.n_envs, seed=cfg.train.seed, normalizer=normalizer, double_buffer_obs=True,
        episode_stats=inside, normalize=NormalizeConfig(gamma=gamma) if inside and cfg.train.normalize_reward else None,
    )


def _wrap(vec: VecTradingEnv, cfg: RunConfig) -> VecEnv:
    if vec.episode_stats:  # statistics and normalisation inside the env
        return vec
    venv: VecEnv = VecMonitor(vec)
    if cfg.train.normalize_reward:
        gamma = float(cfg.agent.algo_kwargs.get("gamma", 0.99))
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma)
    return venv


@dataclass(frozen=True, slots=True)
class TrainResult:
    """A finished training run.

    Attributes:
        run_dir: the run folder (models, checkpoints, TensorBoard, report).
        best_validation_sharpe: the best annualised Sharpe on the validation split (selects best_model.zip).
        num_timesteps: env steps trained.
        evaluation: the best model on the test split (report.md, metrics.json), or None when the run
            was asked not to touch the test split (tuning trials).
    """

    run_dir: Path
    best_validation_sharpe: float
    num_timesteps: int
    evaluation: EvaluationResult | None = None

    @property
    def test_sharpe(self) -> float | None:
        """The best model's annualised Sharpe on the test split (None when not evaluated or undefined)."""
        if self.evaluation is None:
            return None
        value = float(self.evaluation.agent_metrics["sharpe"])
        return value if np.isfinite(value) else None


def _prepare_run(cfg: RunConfig, run_dir: Path, splits: Splits | None
                 ) -> tuple[Splits, PruneResult | None, FeatureNormalizer]:
    """The run folder before training: saved config, forecaster state, pruned splits, the normaliser (train split)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_cfg = run_dir / ".hydra" / "config.yaml"
    if not saved_cfg.exists():  # library use (tests, tune trials): keep the config beside the run
        saved_cfg.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(asdict(cfg)), saved_cfg)
    if splits is None:
        splits = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
    if splits.forecasts is not None:
        splits.forecasts.save_state(run_dir)  # what evaluation on new bars continues from
    check_tradable(cfg.env, splits.full, f"env on {cfg.data.symbol}")
    splits, pruning = prune_features(splits, cfg.features)  # decided on this run's training split
    if pruning is not None:
        (run_dir / "collinearity.md").write_text(pruning.to_markdown() + "\n")
    normalizer = FeatureNormalizer.fit(splits.get("train"))  # the training split only
    (run_dir / "normalizer.json").write_text(json.dumps(normalizer.to_dict()))
    (run_dir / "splits.json").write_text(json.dumps(splits.describe(), indent=1))
    logger.info("splits: %s", splits.describe())
    return splits, pruning, normalizer


def _test_report(cfg: RunConfig, run_dir: Path, splits: Splits, normalizer: FeatureNormalizer,
                 pruning: PruneResult | None, validation: ValidationCallback) -> EvaluationResult:
    """The best model (by validation) once on the test split: report.md, metrics.json, plots in ``run_dir``."""
    best_path = run_dir / "best_model.zip"
    best = load_model(cfg.agent.name, best_path, device=cfg.train.device)
    test_env = resolve_model_age(cfg, run_dir).env  # env.risk.max_model_age counts from the training end
    return evaluate_policy(
        sb3_policy(best), splits.get("test"), test_env, normalizer, cfg.evaluation, run_dir, cfg.data.calendar,
        title=f"{cfg.agent.name.upper()} on {cfg.data.symbol} {cfg.data.timeframe}: test split",
        seed=cfg.train.seed,
        extra_sections={
            "Data splits": "\n".join(f"- **{k}**: {v}" for k, v in splits.describe().items()),
            **({"Collinearity pruning": f"kept {len(pruning.kept)} of {len(pruning.vif_before)} feature "
                f"columns, decided on the training split (dropped: {', '.join(c for c, _ in pruning.dropped) or 'none'}); "
                "see collinearity.md."} if pruning is not None else {}),
            "Model selection": f"best validation Sharpe {validation.best_sharpe:.3f} over "
                               f"{len(validation.history)} evaluations; the test split was never used for "
                               "selection.",
            **split_sections(splits, "test", cfg.evaluation, cfg.train.seed, run_dir),
        },
    )


def run(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
        on_validation: Callable[[dict[str, float], int], None] | None = None,
        test_report: bool = True, splits: Splits | None = None) -> TrainResult:
    """Train, validate, checkpoint and evaluate on the test split.

    Args:
        cfg: the validated run config.
        run_dir: the run folder (Hydra's output dir, or the folder being resumed).
        resume: continue from the newest checkpoint in ``run_dir`` (same config, same TensorBoard run).
        on_validation: called with ``(validation summary, env steps)`` after every validation pass
            (e.g. to report to Ray Tune).
        test_report: evaluate the best model on the test split and write the report; False (tuning
            trials) skips it and returns only the training summary, so the test split stays unseen.
        splits: explicit splits (walk-forward folds); default: the configured chronological split.
    """
    check_forecaster_age(cfg)  # a max_model_age its forecaster cannot meet fails before training
    run_dir = Path(run_dir)
    torch.set_num_threads(cfg.train.torch_threads)
    splits, pruning, normalizer = _prepare_run(cfg, run_dir, splits)
    train_md, val_md = splits.get("train"), splits.get("val")

    vec = _make_vec(train_md, cfg, normalizer)
    if resume:
        model, venv = resume_model(cfg.agent.name, cfg.train.device, cfg.train.normalize_reward, run_dir, vec)
    else:
        venv = _wrap(vec, cfg)
        model = build_model(cfg.agent, venv, cfg.train.seed, cfg.train.device, str(run_dir / "tb"))
    model.tensorboard_log = str(run_dir / "tb")

    val_env = evaluation_env(val_md, cfg.env, normalizer)
    validation = ValidationCallback(lambda m: run_policy(val_env, sb3_policy(m)), cfg.train.eval_freq, run_dir,
                                    cfg.data.calendar, on_result=on_validation)
    checkpoints = RollingCheckpointCallback(cfg.train.checkpoint_freq, run_dir / "checkpoints",
                                            cfg.train.keep_checkpoints, cfg.train.save_replay_buffer)
    callbacks = CallbackList([ConfigTextCallback(cfg), TradingMetricsCallback(cfg.train.log_every_steps), validation,
                              checkpoints, *([BoundedProgressBar()] if cfg.train.progress_bar else [])])
    remaining = cfg.train.total_timesteps - (model.num_timesteps if resume else 0)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=callbacks, tb_log_name=TB_NAME,
                    reset_num_timesteps=not resume)
    if not validation.history or validation.history[-1]["timesteps"] < model.num_timesteps:
        validation.run_validation()  # the final weights are a candidate too
    model.save(run_dir / "final_model.zip")
    write_normalization = normalization_writer(model)
    if write_normalization is not None:
        write_normalization(run_dir / "vecnormalize.pkl")
    trained = TrainResult(run_dir=run_dir, best_validation_sharpe=float(validation.best_sharpe),
                          num_timesteps=int(model.num_timesteps))
    if not test_report:
        return trained

    return dataclasses.replace(trained, evaluation=_test_report(cfg, run_dir, splits, normalizer, pruning, validation))
