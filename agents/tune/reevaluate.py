"""Re-evaluation of the best trial's model, once, on the test split (after selection)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.tune.trainable import finite

#: the headline metrics shown for validation and test side by side
SCORE_KEYS = ("sharpe", "total_return", "max_drawdown", "sortino")


@dataclass(frozen=True, slots=True)
class SplitScores:
    """Headline metrics of one split (None where not finite).

    Attributes:
        sharpe: annualised Sharpe ratio.
        total_return: total return, fraction (0.1 = +10%).
        max_drawdown: maximum drawdown, fraction.
        sortino: annualised Sortino ratio.
    """

    sharpe: float | None = None
    total_return: float | None = None
    max_drawdown: float | None = None
    sortino: float | None = None

    @classmethod
    def of(cls, values: Any) -> SplitScores:
        """From a mapping (or pandas row) holding the `SCORE_KEYS`."""
        return cls(**{k: finite(values.get(k)) for k in SCORE_KEYS})


@dataclass(frozen=True, slots=True)
class TestEvaluation:
    """The best model on the test split.

    Attributes:
        scores: its headline test metrics.
        n_trials: trials in the deflated-Sharpe selection pool.
        deflated_sharpe: deflated Sharpe ratio over the trials, in [0, 1], or None.
        probabilistic_sharpe: probabilistic Sharpe ratio without the selection penalty, or None.
        verdict: the evaluation's one-line verdict.
        report: path of the test report (report.md).
        model: path of the evaluated model file.
    """

    scores: SplitScores
    n_trials: int
    deflated_sharpe: float | None
    probabilistic_sharpe: float | None
    verdict: str
    report: str
    model: str


def evaluate_best_on_test(run_dir: Path, trial_sharpes: Sequence[float], out_dir: Path) -> TestEvaluation:
    """The best trial's best model, once, on the test split; deflated Sharpe over all trials' Sharpes.

    Args:
        run_dir: the best trial's run folder.
        trial_sharpes: every scored trial's annualised validation Sharpe (the selection pool).
        out_dir: where report.md, metrics.json and the plots go.
    """
    from agents.artifacts import sb3_policy
    from agents.data import load_splits
    from agents.evaluate_run import load_run, run_features
    from agents.evaluation.suite import evaluate_policy
    from agents.sb3 import load_model

    cfg, normalizer = load_run(run_dir)
    test_md = run_features(load_splits(cfg.data, cfg.env.window_size, cfg.features,
                                     cfg.paths.feature_cache_dir).get("test"),
                           normalizer)
    model_path = run_dir / "best_model.zip"
    if not model_path.exists():
        model_path = run_dir / "final_model.zip"
    model = load_model(cfg.agent.name, model_path, device=cfg.train.device)
    finite_sharpes = [float(x) for x in trial_sharpes if x is not None and math.isfinite(x)]
    result = evaluate_policy(
        sb3_policy(model), test_md, cfg.env, normalizer, cfg.evaluation, out_dir, cfg.data.calendar,
        title=f"Best tuning trial ({cfg.agent.name.upper()}) on the test split", seed=cfg.train.seed,
        extra_sections={"Selection": f"selected by validation among {len(trial_sharpes)} trials; the test split "
                                     "was used once, after selection."},
        trial_sharpes=finite_sharpes if len(finite_sharpes) >= 2 else None,
    )
    j = result.judgement
    return TestEvaluation(
        scores=SplitScores.of(result.agent_metrics), n_trials=j.n_trials,
        deflated_sharpe=finite(j.deflated_sharpe), probabilistic_sharpe=finite(j.psr),
        verdict=j.text, report=str(result.report), model=str(model_path),
    )
