"""Monitoring of a paper session: the console status line, TensorBoard ``paper/`` scalars, the dashboard, the stop report.

`SessionMonitor` receives the engine's status of every processed bar (`PaperEngine.on_bar`) and

- logs one line per bar (`status_line`): last bar, equity, position, drawdown, risk state (when the
  ledger has risk controls), decision latency (bar received to decision committed, wall ms) and feed
  lag (feed clock at the bar's arrival minus the bar's close, seconds);
- writes TensorBoard scalars under ``paper/`` into ``<paper.dir>/tb`` for every settled step, the
  x-axis being the ledger's settled-step number (so a resumed session continues the curves);
- runs the web dashboard (`agents.paper.dashboard`) when ``paper.dashboard=true``;
- writes the evaluation report of the ledger into ``<paper.dir>/report`` when the session stops
  (`agents.paper.report.paper_report`, the same as ``scripts/paper_report.py``).

TensorBoard and the log are views; the ledger is the record (after ``kill -9`` the last scalars may be
missing from the event file, never from the ledger).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from agents.paper.config import PaperConfig
from agents.paper.dashboard_view import risk_code
from envs.feeds.base import timeframe_ms

logger = logging.getLogger(__name__)

#: TensorBoard sub-folder of the paper folder
TB_DIR = "tb"


def feed_lag_s(bar_ts: int, now_ms: int, bar_ms: int) -> float:
    """Feed lag in seconds: the feed clock when the bar arrived minus the bar's close (open + bar length)."""
    return (int(now_ms) - (int(bar_ts) + int(bar_ms))) / 1000.0


def status_line(status: dict[str, Any]) -> str:
    """The one-line console status of a processed bar.

    Args:
        status: the engine's status (``bar``, ``equity``, ``position``, ``drawdown``, ``latency_ms``
            (None for a bar the ledger already held), optional ``feed_lag_s``, ``risk_state``, ``risk_reason``).
    """
    parts = [f"bar {status['bar']}", f"equity {status['equity']:.2f}", f"position {status['position']:.6g}",
             f"drawdown {100 * status['drawdown']:.2f}%"]
    if status.get("risk_state") is not None:
        why = status.get("risk_reason")
        parts.append(f"risk {status['risk_state']}" + (f" ({why})" if why else ""))
    lat = status.get("latency_ms")
    parts.append("decision latency " + ("resumed" if lat is None else f"{lat:.1f} ms"))
    if status.get("feed_lag_s") is not None:
        parts.append(f"feed lag {status['feed_lag_s']:.1f} s")
    return " | ".join(parts)


class SessionMonitor:
    """Console, TensorBoard, dashboard and stop report of one paper session.

    Args:
        cfg: the session config (``tensorboard``, ``dashboard``, ``dashboard_port``, ``report_on_stop``).
        timeframe: the run's bar length (e.g. ``1h``), for the feed lag.
        settled_steps: steps the ledger already holds (a resumed session continues the x-axis).
    """

    def __init__(self, cfg: PaperConfig, timeframe: str, settled_steps: int) -> None:
        self.cfg = cfg
        self.bar_ms = timeframe_ms(timeframe)
        self.step = settled_steps
        self.writer: Any = None
        self.dashboard: Any = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(cfg.dir) / TB_DIR))
        if cfg.dashboard:
            from agents.paper.dashboard import Dashboard

            self.dashboard = Dashboard(cfg.dir, cfg.dashboard_port)
            self.dashboard.start()

    def on_status(self, status: dict[str, Any] | None) -> None:
        """Log the bar's status line; write the scalars of a settled step."""
        if status is None:
            return
        if "bar_ts" in status and "now_ms" in status:
            status = {**status, "feed_lag_s": feed_lag_s(status["bar_ts"], status["now_ms"], self.bar_ms)}
        logger.info("%s", status_line(status))
        if status.get("settled"):
            self.step += 1
            if self.writer is not None:
                self._scalars(status)

    def _scalars(self, status: dict[str, Any]) -> None:
        values = {"equity": status["equity"], "drawdown": status["drawdown"], "position": status["position"],
                  "exposure": status.get("exposure"), "decision_latency_ms": status.get("latency_ms"),
                  "feed_lag_s": status.get("feed_lag_s")}
        if status.get("risk_state") is not None:
            values["risk_state"] = risk_code(status["risk_state"])
        for key, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self.writer.add_scalar(f"paper/{key}", float(value), self.step)
        self.writer.flush()

    def close(self, report: bool) -> None:
        """Stop the dashboard, close TensorBoard, and write the stop report when asked (and enabled)."""
        if self.dashboard is not None:
            self.dashboard.stop()
        if self.writer is not None:
            self.writer.close()
        if report and self.cfg.report_on_stop:
            write_stop_report(self.cfg.dir)


def write_stop_report(paper_dir: str | Path) -> str | None:
    """The evaluation report of the ledger into ``<paper_dir>/report`` (None, with a log line, before any settled step)."""
    from agents.paper.ledger import read_table
    from agents.paper.report import paper_report

    if read_table(paper_dir, "steps").empty:
        logger.info("no settled step in %s: no report", paper_dir)
        return None
    result = paper_report(paper_dir)
    return str(result.report)

