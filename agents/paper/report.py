"""The evaluation report of a paper session, built from its ledger alone (also while it runs).

The ledger's steps become the evaluator's `EpisodeRecord` (the same per-bar series), so the metrics
come from `envs.metrics` and the page from `agents.evaluation.report` / `plots`, exactly as for
``scripts/evaluate.py``. Baselines and the bootstrap verdict need the bars, which the ledger does not
hold; the report says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents.evaluate_run import load_run
from agents.evaluation import plots
from agents.evaluation.report import write_report
from agents.evaluation.runner import EpisodeRecord
from agents.paper.ledger import read_table
from envs import metrics
from envs.sim import kernel as K

logger = logging.getLogger(__name__)


def ledger_record(steps: pd.DataFrame, decisions: pd.DataFrame, initial_cash: float) -> EpisodeRecord:
    """The settled steps as the evaluator's `EpisodeRecord` (decision bar first, then each marked bar).

    Raises:
        ValueError: when the ledger has no settled step yet.
    """
    if steps.empty:
        raise ValueError("the ledger has no settled step yet: report again after the first bar settles")
    first = decisions.loc[decisions["bar_ts"] == steps["decision_ts"].iloc[0]].iloc[0]
    states = np.stack([np.frombuffer(b, dtype="<f8") for b in steps["state"]])
    acts = decisions.set_index("bar_ts").loc[steps["decision_ts"], "action"].to_numpy(np.float64)
    last = steps.iloc[-1]
    return EpisodeRecord(
        timestamps=np.concatenate([[int(first["bar_ts"])], steps["timestamp"].to_numpy(np.int64)]),
        equity=np.concatenate([[initial_cash], steps["equity"].to_numpy(np.float64)]),
        price=np.concatenate([[float(first["price"])], steps["price"].to_numpy(np.float64)]),
        position=steps["position"].to_numpy(np.float64), exposure=steps["exposure"].to_numpy(np.float64),
        traded_notional=states[:, K.S_STEP_NOTIONAL].copy(), actions=acts,
        fees_paid=float(last["fees_paid"]), slippage_paid=float(last["slippage_paid"]),
        funding_paid=float(last["funding_paid"]), n_fills=int(last["n_fills"]),
        n_liquidations=int(steps["liquidated"].sum()), terminated=bool(last["terminated"]),
    )


@dataclass(frozen=True, slots=True)
class PaperReport:
    """The report of a paper folder.

    Attributes:
        report: ``report.md``.
        metrics_json: ``metrics.json`` (the same numbers).
        summary: the session's `envs.metrics.summarize` values (the ``paper`` column).
    """

    report: Path
    metrics_json: Path
    summary: dict[str, float]


def paper_report(paper_dir: str | Path, out_dir: str | Path | None = None) -> PaperReport:
    """Write report.md, metrics.json and the PNGs of a paper folder into ``out_dir`` (default ``<paper_dir>/report``)."""
    paper = Path(paper_dir)
    meta = dict(read_table(paper, "meta")[["key", "value"]].itertuples(index=False, name=None))
    cfg, _ = load_run(meta["run_dir"])
    rec = ledger_record(read_table(paper, "steps"), read_table(paper, "decisions"), cfg.env.initial_cash)
    out = Path(out_dir) if out_dir is not None else paper / "report"
    out.mkdir(parents=True, exist_ok=True)
    summary = rec.summary(cfg.data.calendar)
    ts = rec.timestamps
    figures = {
        "Equity": plots.plot_equity({"paper": rec.equity}, out / "equity.png", ts),
        "Drawdown": plots.plot_drawdown({"paper": rec.equity}, out / "drawdown.png", ts),
        "Exposure and price": plots.plot_exposure(rec.exposure, rec.price[1:], out / "exposure.png", ts[1:]),
        "Per-trade returns": plots.plot_trade_returns(metrics.trades_from_positions(rec.position, rec.equity),
                                                      out / "trade_returns.png"),
    }
    span = f"{_iso(int(ts[0]))} .. {_iso(int(ts[-1]))}"
    sections = {
        "Session": (f"- run: `{meta['run_dir']}`\n- model: `{meta['model_id']}`\n- feed: {meta['feed.kind']} "
                    f"`{meta['feed.source']}`\n- settled steps: {len(rec.position)} ({span})"
                    + ("\n- the session ended early (bankruptcy or the drawdown stop)" if rec.terminated else "")),
        "How to read this": (
            "Built from the paper ledger only: every settled step (the env's execution model, decisions at a "
            "bar's close filled at the next open). Baselines and the bootstrap verdict need the bars and are in "
            "`scripts/evaluate.py run_dir=<run> data_path=<same bars>`, whose agent column equals this one for a "
            "replay."),
    }
    verdict = f"Paper session: total return {100 * summary['total_return']:.2f}% over {len(rec.position)} steps ({span})."
    report_md, metrics_json = write_report(out, {"paper": summary}, [verdict], figures, sections,
                                           title=f"Paper session {paper.name}")
    logger.info("paper report: %s", report_md)
    return PaperReport(report=report_md, metrics_json=metrics_json, summary=summary)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
