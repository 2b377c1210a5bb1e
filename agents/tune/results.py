"""Results of an experiment: the per-trial table, the typed summary, and the files written at the end.

Written into the experiment folder: ``results.csv`` / ``results.md`` (one row per trial, sorted by the
metric), ``best_config.yaml``, ``best_test/`` (the winner on the test split), ``summary.md`` /
``summary.json`` and the plots ``metric_by_trial.png`` and ``hyperparameter_influence.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agents.tune.best import retrain_command, write_best_config
from agents.tune.reevaluate import SplitScores, evaluate_best_on_test
from agents.tune.report import (
    hyperparameter_influence,
    markdown_table,
    plot_influence,
    plot_metric_by_trial,
    write_summary_report,
)
from agents.tune.settings import TuneSettings
from agents.tune.space import ParamSpec
from agents.tune.trainable import TIME_ATTR, TRIAL_RUN, finite

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BestTrial:
    """The winning trial.

    Attributes:
        trial_id: its Tune id.
        run_dir: its training run folder.
        best_config: path of best_config.yaml.
        hyperparameters: its searched values (names for named choices), by dotted key.
        score: its best validation value of the tuned metric.
        validation: its headline validation metrics (of the report with the best score).
        test: the same metrics on the test split (evaluated once, after selection).
        n_trials_for_dsr: trials in the deflated-Sharpe selection pool.
        deflated_sharpe: deflated Sharpe ratio over those trials, in [0, 1], or None.
        probabilistic_sharpe: probabilistic Sharpe ratio without the selection penalty, or None.
        verdict: the test evaluation's verdict.
        test_report: path of the test report.
        retrain: the command that retrains it (`agents.tune.best.retrain_command`).
    """

    trial_id: str
    run_dir: str
    best_config: str
    hyperparameters: dict[str, Any]
    score: float | None
    validation: SplitScores
    test: SplitScores
    n_trials_for_dsr: int
    deflated_sharpe: float | None
    probabilistic_sharpe: float | None
    verdict: str
    test_report: str
    retrain: str


@dataclass(frozen=True, slots=True)
class TuneSummary:
    """What `agents.tune.run_experiment` returns (and writes as summary.json when it finished).

    Attributes:
        experiment_dir: the experiment folder.
        metric, mode: the tuned validation metric and its direction.
        n_trials: trials Tune knows of.
        interrupted: True when some trials did not finish (resume with `resume`).
        finished_trials: trials that finished (set when interrupted).
        resume: the overrides that resume the experiment (set when interrupted).
        results_csv, results_md: paths of the results table.
        influence: per searched key, `hyperparameter_influence`'s value (None: not computable).
        plots: paths of the plots.
        best: the winner, or None when no trial reported the metric.
    """

    experiment_dir: str
    metric: str
    mode: str
    n_trials: int
    interrupted: bool = False
    finished_trials: int | None = None
    resume: str | None = None
    results_csv: str | None = None
    results_md: str | None = None
    influence: dict[str, float | None] = field(default_factory=dict)
    plots: tuple[str, ...] = ()
    best: BestTrial | None = None

    def to_json(self) -> str:
        """The summary as indented JSON."""
        return json.dumps(asdict(self), indent=2, default=str)


def _trial_row(r: Any, specs: Sequence[ParamSpec], s: TuneSettings, total_steps: int) -> dict[str, Any]:
    """One results row of Tune result ``r``: searched values, metrics of its best report, status."""
    trial_id = (r.metrics or {}).get("trial_id") or Path(r.path).name.removeprefix("trial_")
    row: dict[str, Any] = {"trial_id": trial_id}
    for spec in specs:
        row[spec.key] = r.config.get(spec.key) if r.config else None
    df = r.metrics_dataframe
    best: dict[str, Any] = {}
    if df is not None and len(df) and s.metric in df:
        col = df[s.metric].astype(float)
        best = df.loc[col.idxmax() if s.mode == "max" else col.idxmin()].to_dict()
        row["timesteps"] = int(df[TIME_ATTR].max()) if TIME_ATTR in df else None
        row["reports"] = len(df)
    row[s.metric] = finite(best.get(s.metric))
    for key in ("sharpe", "total_return", "max_drawdown", "sortino", "n_fills", "n_round_trips"):
        if key != s.metric:
            row[key] = finite(best.get(key))
    row["best_at_step"] = best.get(TIME_ATTR)
    if r.error is not None:
        row["status"] = "error"
    elif row.get("timesteps") is not None and row["timesteps"] < total_steps:
        row["status"] = "stopped early"
    else:
        row["status"] = "completed"
    row["error"] = None if r.error is None else f"{type(r.error).__name__}: {str(r.error).strip()[-300:]}"
    row["run_dir"] = str(Path(r.path) / TRIAL_RUN)
    row["_started"] = float(df["timestamp"].min()) if df is not None and len(df) and "timestamp" in df else float("inf")
    return row


def results_table(settings: TuneSettings, specs: Sequence[ParamSpec], total_steps: int, grid: Any) -> pd.DataFrame:
    """One row per trial, sorted by its best reported ``metric`` (mode-aware), errors last.

    Args:
        settings: the experiment's settings.
        specs: the parsed search space.
        total_steps: the trials' training budget (env steps); fewer means stopped early.
        grid: Tune's ResultGrid.
    """
    s = settings
    table = pd.DataFrame([_trial_row(r, specs, s, total_steps) for r in grid])
    if table.empty:
        return table
    table = table.sort_values(["_started", "trial_id"], kind="stable")
    table.insert(0, "trial", range(1, len(table) + 1))  # in order of their first report
    table = table.drop(columns="_started").sort_values([s.metric, "trial"], ascending=[s.mode == "min", True],
                                                       na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def _curves(grid: Any) -> dict[str, pd.DataFrame]:
    curves = {}
    for r in grid:
        df = r.metrics_dataframe
        if df is not None and len(df):
            curves[str(df["trial_id"].iloc[0]) if "trial_id" in df else Path(r.path).name] = df
    return curves


def _best_trial(settings: TuneSettings, specs: Sequence[ParamSpec], base: Mapping[str, Any], grid: Any,
                scored: pd.DataFrame) -> BestTrial:
    """Write best_config.yaml and best_test/ for the top row of ``scored``."""
    exp_dir = settings.experiment_dir
    best = scored.iloc[0]
    best_result = next(r for r in grid if Path(r.path).name == f"trial_{best['trial_id']}")
    best_cfg = write_best_config(base, specs, best_result.config, str(best["trial_id"]), settings.torch_threads,
                                 exp_dir)
    run_dir = Path(str(best["run_dir"]))
    sharpes = [float(x) for x in scored["sharpe" if "sharpe" in scored else settings.metric].dropna()]
    test = evaluate_best_on_test(run_dir, sharpes, exp_dir / "best_test")
    return BestTrial(
        trial_id=str(best["trial_id"]), run_dir=str(run_dir), best_config=str(best_cfg),
        hyperparameters={sp.key: best[sp.key] for sp in specs}, score=finite(best.get(settings.metric)),
        validation=SplitScores.of(best), test=test.scores, n_trials_for_dsr=test.n_trials,
        deflated_sharpe=test.deflated_sharpe, probabilistic_sharpe=test.probabilistic_sharpe,
        verdict=test.verdict, test_report=test.report, retrain=retrain_command(exp_dir),
    )


def summarize_experiment(settings: TuneSettings, specs: Sequence[ParamSpec], base: Mapping[str, Any],
                         grid: Any) -> TuneSummary:
    """Write results.csv/.md, best_config.yaml, best_test/, plots and summary.md/.json; return the summary."""
    s = settings
    exp_dir = s.experiment_dir
    table = results_table(s, specs, int(base["train"]["total_timesteps"]), grid)
    table.to_csv(exp_dir / "results.csv", index=False)
    header = (f"# Tuning results: {s.experiment_name}\n\n{len(table)} trials, sorted by validation {s.metric} "
              f"({s.mode}); hyperparameters and the validation metrics of each trial's best report.\n\n")
    (exp_dir / "results.md").write_text(header + markdown_table(table))
    influence: dict[str, float | None] = {}
    plots: tuple[str, ...] = ()
    if not table.empty:
        plots = (str(plot_metric_by_trial(table, _curves(grid), s.metric, s.mode, exp_dir / "metric_by_trial.png")),)
        inf = hyperparameter_influence(table, [sp.key for sp in specs], s.metric)
        plots += (str(plot_influence(inf, s.metric, exp_dir / "hyperparameter_influence.png")),)
        influence = {k: finite(v) for k, v in zip(inf["key"], inf["value"], strict=True)}
    scored = table[table[s.metric].notna() & (table["status"] != "error")] if not table.empty else table
    best = None
    if scored.empty:
        logger.error("no trial reported %s; see the error column of %s", s.metric, exp_dir / "results.md")
    else:
        best = _best_trial(s, specs, base, grid, scored)
    summary = TuneSummary(experiment_dir=str(exp_dir), metric=s.metric, mode=s.mode, n_trials=len(table),
                          results_csv=str(exp_dir / "results.csv"), results_md=str(exp_dir / "results.md"),
                          influence=influence, plots=plots, best=best)
    (exp_dir / "summary.json").write_text(summary.to_json())
    if best is not None:
        write_summary_report(summary, exp_dir)
    return summary
