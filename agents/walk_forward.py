"""Walk-forward evaluation: K folds, each trained on a window and tested on the next unseen span.

The bars are cut into K + 1 consecutive segments of equal length. Fold k trains on segment k (its
last ``val_frac / (train_frac + val_frac)`` part is the validation split used for model selection,
after ``embargo_bars``) and tests on segment k + 1, which no fold before k + 1 has seen. Test spans
are disjoint and consecutive, so their returns are also judged together.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import RunConfig, SplitConfig
from agents.data import SplitBounds, Splits, load_splits
from agents.evaluation.report import to_json_value
from agents.evaluation.suite import judge
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


def run_walk_forward(cfg: RunConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train and test every fold (in ``run_dir/fold_<k>``); write walk_forward.md and .json."""
    run_dir = Path(run_dir)
    loaded = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
    full, forecasts = loaded.full, loaded.forecasts
    folds = walk_forward_bounds(len(full), cfg.evaluation.walk_forward_folds, cfg.data.split, cfg.env.window_size,
                                forecasts.first_bar if forecasts is not None else 0)
    rows, agent_returns, bh_returns, stamps = [], [], [], []
    for k, bounds in enumerate(folds):
        logger.info("walk-forward fold %d/%d", k + 1, len(folds))
        result = run(cfg, run_dir / f"fold_{k}", splits=Splits(full=full, bounds=bounds, forecasts=forecasts))
        agent, bh = result["results"]["agent"], result["results"]["buy_and_hold"]
        rows.append({"fold": k, **Splits(full=full, bounds=bounds).describe()["test"],
                     **{f"agent_{m}": agent[m] for m in FOLD_METRICS}, "buy_and_hold_sharpe": bh["sharpe"],
                     "best_validation_sharpe": result["best_validation_sharpe"]})
        records = result["records"]
        agent_returns.append(records["agent"].returns)
        bh_returns.append(records["buy_and_hold"].returns)
        stamps.append(records["agent"].timestamps)
    aggregate = {m: (float(np.nanmean([r[f"agent_{m}"] for r in rows])), float(np.nanstd([r[f"agent_{m}"] for r in rows])))
                 for m in FOLD_METRICS}
    ppy = metrics.bars_per_year(np.concatenate(stamps), cfg.data.calendar)
    verdict = judge(np.concatenate(agent_returns), np.concatenate(bh_returns), ppy, cfg.evaluation, cfg.train.seed)
    lines = ["# Walk-forward evaluation", "", f"{len(folds)} folds; each tests on the span after its training window.",
             "", "| fold | test span | agent Sharpe | agent return | max DD | round trips | buy&hold Sharpe |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['first_decision'][:10]} .. {r['last_bar'][:10]} | {r['agent_sharpe']:.2f} | "
                     f"{100 * r['agent_total_return']:.2f}% | {100 * r['agent_max_drawdown']:.2f}% | "
                     f"{r['agent_n_round_trips']:.0f} | {r['buy_and_hold_sharpe']:.2f} |")
    lines += ["", "Mean ± std over folds: " + ", ".join(f"{m} {v[0]:.3f} ± {v[1]:.3f}" for m, v in aggregate.items()),
              "", "## All test spans together", "", verdict.text, ""]
    (run_dir / "walk_forward.md").write_text("\n".join(lines), encoding="utf-8")
    payload = {"folds": rows, "aggregate": {m: {"mean": v[0], "std": v[1]} for m, v in aggregate.items()},
               "judgement": verdict.to_dict()}
    (run_dir / "walk_forward.json").write_text(json.dumps(to_json_value(payload), indent=2, allow_nan=False))
    return payload
