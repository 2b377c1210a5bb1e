"""Tuning reports: the hyperparameter-influence statistic, the plots and the markdown pages."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from agents.tune.reevaluate import SCORE_KEYS
from agents.tune.trainable import TIME_ATTR

if TYPE_CHECKING:
    from agents.tune.results import TuneSummary


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a markdown table (floats to 4 significant digits, non-finite cells empty, no run_dir)."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [c for c in table.columns if c != "run_dir"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _numeric(values: pd.Series) -> pd.Series | None:
    try:
        out = pd.to_numeric(values)
    except (TypeError, ValueError):
        return None
    return out.astype(float)


def hyperparameter_influence(table: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """Per searched key: Spearman rank correlation with the metric (numeric keys) or the correlation
    ratio eta (categorical keys, in [0, 1]); rows sorted by absolute strength."""
    scored = table[table[metric].notna()]
    y = scored[metric].astype(float)
    rows = []
    for key in keys:
        x = scored[key]
        if x.nunique(dropna=True) < 2 or len(scored) < 3:
            rows.append({"key": key, "kind": "n/a", "value": float("nan")})
            continue
        num = _numeric(x)
        if num is not None:
            rows.append({"key": key, "kind": "spearman", "value": float(num.rank().corr(y.rank()))})
        else:
            groups = y.groupby(x.astype(str))
            total = float(((y - y.mean()) ** 2).sum())
            between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
            eta = math.sqrt(between / total) if total > 0 else float("nan")
            rows.append({"key": key, "kind": "eta", "value": eta})
    out = pd.DataFrame(rows, columns=["key", "kind", "value"])
    return out.reindex(out["value"].abs().sort_values(ascending=False, na_position="last").index)


def plot_metric_by_trial(table: pd.DataFrame, curves: dict[str, pd.DataFrame], metric: str, mode: str,
                         path: Path) -> Path:
    """Left: each trial's best metric in trial order with the running best. Right: metric vs steps per trial."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax, ax2 = fig.subplots(1, 2)
    t = table.assign(idx=table["trial"]).sort_values("idx")
    colors = {"completed": "tab:blue", "stopped early": "tab:orange", "error": "tab:red"}
    for status, part in t.groupby("status"):
        ax.scatter(part["idx"], part[metric], label=str(status), color=colors.get(str(status), "grey"), zorder=3)
    vals = t[metric].astype(float)
    running = vals.cummax() if mode == "max" else vals.cummin()
    ax.step(t["idx"], running, where="post", color="black", lw=1, label=f"best so far ({mode})")
    ax.set_xlabel("trial (in order of start)")
    ax.set_xticks(list(t["idx"]))
    ax.set_ylabel(f"validation {metric} (best report)")
    ax.set_title(f"validation {metric} across trials")
    ax.legend(fontsize=8)
    for trial_id, df in curves.items():
        if metric in df and TIME_ATTR in df:
            ax2.plot(df[TIME_ATTR], df[metric], marker=".", lw=1, label=trial_id)
    ax2.set_xlabel("environment steps")
    ax2.set_ylabel(f"validation {metric}")
    ax2.set_title("every validation report (early-stopped trials end early)")
    if len(curves) <= 12:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_influence(influence: pd.DataFrame, metric: str, path: Path) -> Path:
    """Horizontal bars of `hyperparameter_influence`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.5 * max(len(influence), 2) + 1.5), dpi=110)
    ax = fig.subplots()
    inf = influence.iloc[::-1]
    labels = [f"{k} ({kind})" for k, kind in zip(inf["key"], inf["kind"], strict=True)]
    vals = inf["value"].fillna(0.0)
    ax.barh(labels, vals, color=["tab:green" if v >= 0 else "tab:red" for v in vals])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"vs. validation {metric}: Spearman rank corr. / correlation ratio eta")
    ax.set_title("most influential hyperparameters (few trials: indicative only)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_summary_report(summary: TuneSummary, exp_dir: Path) -> Path:
    """summary.md through the one report module: the winner's validation vs test metrics, its
    hyperparameters, the deflated Sharpe and how to retrain it (the table also in summary_metrics.json, everything in summary.json)."""
    from agents.evaluation.report import write_report

    b = summary.best
    assert b is not None

    def f(v: Any) -> str:
        return "" if v is None else f"{v:.4g}"

    table = {"validation (used for selection)": {k: getattr(b.validation, k) for k in SCORE_KEYS},
             "test (used once, after selection)": {k: getattr(b.test, k) for k in SCORE_KEYS}}
    sections = {
        "Best trial": (f"Best of {summary.n_trials} trials by validation {summary.metric} ({summary.mode}): "
                       f"trial `{b.trial_id}`.\n\n| hyperparameter | value |\n|---|---|\n"
                       + "\n".join(f"| {k} | {v} |" for k, v in b.hyperparameters.items())),
        "Selection": (f"- Deflated Sharpe ratio over {b.n_trials_for_dsr} trials: **{f(b.deflated_sharpe)}** "
                      f"(probabilistic Sharpe without the selection penalty: {f(b.probabilistic_sharpe)}). The gap "
                      "is how much of the winner's score could be luck from picking the best of many trials.\n"
                      f"- Test report: `{b.test_report}`\n- Retrain it: `{b.retrain}`\n"
                      f"- All trials: `results.md` / `results.csv`; TensorBoard: "
                      f"`tensorboard --logdir {summary.experiment_dir}`"),
    }
    plots = {"Validation metric by trial": exp_dir / "metric_by_trial.png",
             "Hyperparameter influence": exp_dir / "hyperparameter_influence.png"}
    md, _ = write_report(exp_dir, table, {"test split": b.verdict}, {k: v for k, v in plots.items() if v.exists()},
                         sections, title=f"Tuning summary: {Path(summary.experiment_dir).name}", md_name="summary.md",
                         json_name="summary_metrics.json", number_format=".4g")
    return md
