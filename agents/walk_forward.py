"""Walk-forward evaluation: K folds, each trained on a window and tested on the next unseen span.

The bars are cut into K + 1 consecutive segments of equal length. Fold k trains on segment k (its
last ``val_frac / (train_frac + val_frac)`` part is the validation split used for model selection,
after ``embargo_bars``) and tests on segment k + 1, which no fold before k + 1 has seen. Test spans
are disjoint and consecutive, so their returns are also judged together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import RunConfig, SplitConfig
from agents.data import SplitBounds, Splits, load_splits
from agents.evaluation.report import write_report
from agents.evaluation.suite import Judgement, judge
from agents.train import run
from envs import metrics

logger = logging.getLogger(__name__)

FOLD_METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "n_fills", "n_round_trips", "turnover",
                "fees_paid")


def walk_forward_bounds(n: int, folds: int, split: SplitConfig, window_size: int,
                        first_usable: int = 0) -> list[dict[str, SplitBounds]]:
    """Split index ranges of each fold (see the module docstring) over bars ``first_usable .. n - 1``.

    ``first_usable`` is the end of the forecaster's warm-up (`agents.forecasts.RunForecasts.first_bar`):
    the segments start there, so no fold is shown a forecast that does not exist yet.
    """
    if folds < 2:
        raise ValueError(f"evaluation.walk_forward_folds={folds} is invalid: use >= 2 folds (0 = off)")
    seg = (n - first_usable) // (folds + 1)
    val_share = split.val_frac / (split.train_frac + split.val_frac)
    out = []
    for k in range(folds):
        a, b = first_usable + k * seg, first_usable + (k + 1) * seg
        c = first_usable + (k + 2) * seg if k < folds - 1 else n
        val_len = int((b - a) * val_share)
        edges = {"train": (a, b - val_len - split.embargo_bars), "val": (b - val_len, b), "test": (b + split.embargo_bars, c)}
        fold = {}
        for name, (start, end) in edges.items():
            first = max(start, window_size - 1, first_usable + window_size - 1)
            if end - first < max(window_size, 2):
                raise ValueError(
                    f"walk-forward fold {k}: the {name} span has {end - first} bars, fewer than env.window_size="
                    f"{window_size}; use fewer folds (evaluation.walk_forward_folds) or more data"
                )
            fold[name] = SplitBounds(name, max(first - (window_size - 1), 0), first, end)
        out.append(fold)
    return out


@dataclass(frozen=True, slots=True)
class FoldResult:
    """One walk-forward fold: its test span and the best model's metrics there.

    Attributes:
        fold: fold number k (tests on segment k + 1).
        first_decision, last_bar: the test span (ISO UTC).
        agent: the agent's `FOLD_METRICS` on the test span.
        buy_and_hold_sharpe: buy-and-hold's annualised Sharpe on the same span.
        best_validation_sharpe: the fold's model-selection score.
    """

    fold: int
    first_decision: str
    last_bar: str
    agent: dict[str, float]
    buy_and_hold_sharpe: float
    best_validation_sharpe: float


@dataclass(frozen=True, slots=True)
class WalkForwardResult:
    """Every fold, the mean and std of each metric over folds, and the verdict over all test spans together.

    Attributes:
        folds: one `FoldResult` per fold, in time order.
        aggregate: metric -> (mean, std) over folds.
        judgement: bootstrap verdict of the concatenated test returns vs buy-and-hold.
        report: ``walk_forward.md``; its JSON twin is ``walk_forward.json``.
    """

    folds: tuple[FoldResult, ...]
    aggregate: dict[str, tuple[float, float]]
    judgement: Judgement
    report: Path


def run_walk_forward(cfg: RunConfig, run_dir: str | Path) -> WalkForwardResult:
    """Train and test every fold (in ``run_dir/fold_<k>``); write walk_forward.md and .json (the one report module)."""
    run_dir = Path(run_dir)
    loaded = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
    full, forecasts = loaded.full, loaded.forecasts
    bounds_list = walk_forward_bounds(len(full), cfg.evaluation.walk_forward_folds, cfg.data.split,
                                      cfg.env.window_size, forecasts.first_bar if forecasts is not None else 0)
    folds, agent_returns, bh_returns, stamps = [], [], [], []
    for k, bounds in enumerate(bounds_list):
        logger.info("walk-forward fold %d/%d", k + 1, len(bounds_list))
        trained = run(cfg, run_dir / f"fold_{k}", splits=Splits(full=full, bounds=bounds, forecasts=forecasts))
        ev = trained.evaluation
        assert ev is not None  # run() evaluates on the test split unless test_report=False
        span = Splits(full=full, bounds=bounds).describe()["test"]
        folds.append(FoldResult(
            fold=k, first_decision=str(span["first_decision"]), last_bar=str(span["last_bar"]),
            agent={m: ev.agent_metrics[m] for m in FOLD_METRICS},
            buy_and_hold_sharpe=ev.metrics["buy_and_hold"]["sharpe"],
            best_validation_sharpe=trained.best_validation_sharpe))
        agent_returns.append(ev.agent.returns)
        bh_returns.append(ev.buy_and_hold.returns)
        stamps.append(ev.agent.timestamps)
    aggregate = {m: (float(np.nanmean([f.agent[m] for f in folds])), float(np.nanstd([f.agent[m] for f in folds])))
                 for m in FOLD_METRICS}
    ppy = metrics.bars_per_year(np.concatenate(stamps), cfg.data.calendar)
    verdict = judge(np.concatenate(agent_returns), np.concatenate(bh_returns), ppy, cfg.evaluation, cfg.train.seed)
    table = {f"fold {f.fold}": {**f.agent, "buy_and_hold_sharpe": f.buy_and_hold_sharpe,
                                "best_validation_sharpe": f.best_validation_sharpe} for f in folds}
    table["mean"] = {m: v[0] for m, v in aggregate.items()}
    table["std"] = {m: v[1] for m, v in aggregate.items()}
    spans = "\n".join(f"- fold {f.fold}: {f.first_decision[:10]} .. {f.last_bar[:10]}" for f in folds)
    report, _ = write_report(
        run_dir, table, {"all test spans together": verdict.text}, title="Walk-forward evaluation",
        extra_sections={"Test spans": f"{len(folds)} folds; each tests on the span after its training window "
                                      f"(reports in fold_<k>/report.md).\n{spans}"},
        md_name="walk_forward.md", json_name="walk_forward.json",
        extra_json={"folds": [_fold_row(f) for f in folds],
                    "aggregate": {m: {"mean": v[0], "std": v[1]} for m, v in aggregate.items()},
                    "judgement": verdict.to_dict()})
    return WalkForwardResult(folds=tuple(folds), aggregate=aggregate, judgement=verdict, report=report)


def _fold_row(f: FoldResult) -> dict[str, Any]:
    """A fold as one flat JSON row (``agent_<metric>`` columns)."""
    return {"fold": f.fold, "first_decision": f.first_decision, "last_bar": f.last_bar,
            **{f"agent_{m}": v for m, v in f.agent.items()}, "buy_and_hold_sharpe": f.buy_and_hold_sharpe,
            "best_validation_sharpe": f.best_validation_sharpe}
