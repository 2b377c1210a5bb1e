"""SB3 callbacks: trading metrics to TensorBoard, validation with best-model keeping, resume state."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback

from agents.checkpoints import normalization_writer
from agents.evaluation.runner import EpisodeRecord
from envs.sim.kernel import RISK_HALTED

logger = logging.getLogger(__name__)

#: summary keys of finished training episodes logged under trading/ (mean over the episodes)
EPISODE_KEYS = ("total_return", "sharpe", "max_drawdown", "turnover", "fees_paid", "n_fills", "avg_exposure")
#: metrics of a validation pass logged under eval/
EVAL_KEYS = ("total_return", "sharpe", "sortino", "max_drawdown", "turnover", "fees_paid", "n_fills",
             "n_round_trips", "avg_exposure", "annual_volatility", "win_rate")
_NOT_STDOUT = ("stdout", "log", "json", "csv")


class TradingMetricsCallback(BaseCallback):
    """Logs ``trading/*`` scalars and histograms of actions and exposure.

    Reads the finished episodes' ``episode_summary`` from infos and the live account arrays of
    `VecTradingEnv` (no per-step dicts). ``trading/risk_limited`` and ``trading/risk_halted`` are
    the fractions of env steps since the last write whose order a risk control limited (any
    ``risk_reason``) or that were HALTED (an env's last step before an auto-reset is not counted:
    the arrays already show the new episode). Values are written to TensorBoard every ``log_every_steps``
    environment steps (``train.log_every_steps``), on a schedule of their own: SB3 dumps its logger
    only every ``log_interval`` episodes (off-policy) or rollouts, which a short run may never reach.
    """

    def __init__(self, log_every_steps: int = 1000, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.log_every_steps = log_every_steps
        self._episodes: list[dict[str, float]] = []
        self._actions: list[np.ndarray] = []
        self._exposure: list[np.ndarray] = []
        self._risk_counts = np.zeros(3, dtype=np.int64)  # env steps: limited, halted, all
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.log_every_steps + 1) * self.log_every_steps

    def _account(self) -> dict[str, np.ndarray]:
        return self.training_env.unwrapped.account  # type: ignore[attr-defined]

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", [])
        dones = self.locals.get("dones")
        if dones is not None and np.any(dones):
            for i in np.flatnonzero(dones):
                summary = infos[i].get("episode_summary")
                if summary is not None:
                    self._episodes.append(summary)
        actions = self.locals.get("actions")
        if actions is not None:
            self._actions.append(np.asarray(actions, dtype=np.float32).reshape(-1))
        account = self._account()
        self._exposure.append(account["exposure"].astype(np.float32))
        reason = account["risk_reason"]
        self._risk_counts += np.array([np.count_nonzero(reason), np.count_nonzero(account["risk_state"] == RISK_HALTED),
                                       reason.size], dtype=np.int64)
        if self.num_timesteps >= self._next:
            self._next += self.log_every_steps
            self.write()
        return True

    def write(self) -> None:
        """Record the ``trading/*`` values gathered since the last write and dump them at this step."""
        account = self._account()
        self.logger.record("trading/equity", float(np.mean(account["equity"])))
        self.logger.record("trading/exposure", float(np.mean(np.abs(account["exposure"]))))
        limited, halted, n = self._risk_counts.tolist()
        if n:
            self.logger.record("trading/risk_limited", limited / n)
            self.logger.record("trading/risk_halted", halted / n)
            self._risk_counts[:] = 0
        if self._episodes:
            self.logger.record("trading/episodes", len(self._episodes))
            for key in EPISODE_KEYS:
                values = np.array([e[key] for e in self._episodes], dtype=np.float64)
                name = "episode_return" if key == "total_return" else key
                self.logger.record(f"trading/{name}", float(np.nanmean(values)))
            self._episodes.clear()
        if self._actions:
            self.logger.record("trading/actions_hist", np.concatenate(self._actions), exclude=_NOT_STDOUT)
            self._actions.clear()
        if self._exposure:
            self.logger.record("trading/exposure_hist", np.concatenate(self._exposure), exclude=_NOT_STDOUT)
            self._exposure.clear()
        self.logger.dump(self.num_timesteps)


class BoundedProgressBar(ProgressBarCallback):
    """SB3's progress bar that stops at its total.

    SB3 steps all envs together and finishes its last rollout, so a run ends a little past
    ``train.total_timesteps`` (301,056 of 300,000 with PPO's 8 x 256-step rollouts); the bar counts
    up to the total and no further. The step numbers in logs and TensorBoard are the true ones.
    """

    def _on_step(self) -> bool:
        self.pbar.update(max(0, min(self.training_env.num_envs, self.pbar.total - self.pbar.n)))
        return True


class ValidationCallback(BaseCallback):
    """Every ``eval_freq`` env steps: one deterministic pass on the validation split.

    Logs ``eval/*``, keeps the model with the best validation Sharpe (``best_model.zip`` and, when
    rewards are normalised, ``best_vecnormalize.pkl``) and appends to ``eval_history.json`` so a
    resumed run keeps its best score. ``evaluate`` maps the model to an `EpisodeRecord`.
    """

    def __init__(
        self,
        evaluate: Callable[[Any], EpisodeRecord],
        eval_freq: int,
        run_dir: Path,
        calendar: str = "24/7",
        on_result: Callable[[dict[str, float], int], None] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.evaluate = evaluate
        self.eval_freq = eval_freq
        self.run_dir = Path(run_dir)
        self.calendar = calendar
        self.on_result = on_result
        self.history_path = self.run_dir / "eval_history.json"
        self.history: list[dict[str, Any]] = []
        if self.history_path.exists():
            self.history = json.loads(self.history_path.read_text())
        self.best_sharpe = max((h["sharpe"] for h in self.history if h.get("sharpe") is not None),
                               default=-np.inf)
        self._next_eval = 0

    def _on_training_start(self) -> None:
        self._next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._next_eval += self.eval_freq
            self.run_validation()
        return True

    def run_validation(self) -> dict[str, float]:
        """Evaluate now, log, keep the best model; returns the metrics."""
        record = self.evaluate(self.model)
        summary = record.summary(self.calendar)
        for key in EVAL_KEYS:
            self.logger.record(f"eval/{key}", float(summary[key]))
        self.logger.record("eval/equity", float(record.equity[-1]))
        sharpe = float(summary["sharpe"]) if np.isfinite(summary["sharpe"]) else -np.inf
        entry = {"timesteps": int(self.num_timesteps), **{k: _finite(summary[k]) for k in EVAL_KEYS}}
        self.history.append(entry)
        if sharpe > self.best_sharpe:
            self.best_sharpe = sharpe
            self.model.save(self.run_dir / "best_model.zip")
            write_normalization = normalization_writer(self.model)
            if write_normalization is not None:
                write_normalization(self.run_dir / "best_vecnormalize.pkl")
            logger.info("new best validation Sharpe %.3f at %d steps", sharpe, self.num_timesteps)
        self.history_path.write_text(json.dumps(self.history, indent=1))
        self.logger.dump(self.num_timesteps)  # written now, whatever SB3's own dump schedule
        if self.on_result is not None:
            self.on_result(summary, self.num_timesteps)
        return summary


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
