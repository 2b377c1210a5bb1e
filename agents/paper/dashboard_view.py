"""What the dashboard shows: a snapshot of the ledger (read-only) and its HTML, SVG, JSON and Prometheus forms.

No server here: `LedgerReader` / `read_snapshot` read a paper folder (incrementally) with
`agents.paper.ledger.read_table`; `page_html` / `panel_html` render it (charts as inline SVG, one point
per settled step up to `MAX_POINTS`, evenly thinned beyond); `Snapshot.state` is ``/api/state``;
`prometheus_text` is ``/metrics``. Optional ledger columns are shown when present: ``risk_state`` /
``risk_reason`` in ``steps`` (risk controls), ``slippage_vs_model`` in ``steps`` (a real broker's fill
against the paper model's), and any ``meta`` key or ``decisions`` column whose name contains
``forecast`` (forecaster provenance).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.paper.ledger import read_table
from envs.feeds.base import timeframe_ms
from envs.sim import kernel as K

#: most points drawn per chart (beyond: every k-th step, the last one always)
MAX_POINTS = 4000
#: fills listed
N_FILLS = 10
#: decisions the latency percentiles are taken over
N_LATENCY = 500
#: risk states (``risk_state`` of a ledger step or a status) as numbers for TensorBoard and Prometheus
RISK_CODES = {name: code for code, name in enumerate(K.RISK_STATES)}
_STEP_COLUMNS = ("step", "timestamp", "price", "equity", "cash", "position", "exposure", "fill_price", "traded_qty",
                 "fees_paid", "slippage_paid", "drawdown", "risk_state", "risk_reason", "slippage_vs_model")


@dataclass(frozen=True)
class Snapshot:
    """The ledger of a paper folder at one moment.

    Attributes:
        session: the paper folder's name.
        meta: the ledger's meta table (run, model id, feed, timeframe, ...).
        steps: settled steps (the info columns the dashboard uses, optional columns when present).
        n_decisions: committed decisions.
        last_decision: the latest decision row ({} before the first).
        latency_ms: decision latencies (wall ms) of the last `N_LATENCY` decisions.
        kill: the ``KILL`` file's reason when the kill switch was set, else None.
    """

    session: str
    meta: dict[str, str]
    steps: pd.DataFrame
    n_decisions: int
    last_decision: dict[str, Any]
    latency_ms: np.ndarray
    kill: str | None

    def last(self, column: str) -> Any:
        """The latest settled step's value of ``column`` (None before the first step or when absent)."""
        if self.steps.empty or column not in self.steps:
            return None
        value = self.steps[column].iloc[-1]
        return value.item() if hasattr(value, "item") else value

    def feed_lag_s(self) -> float | None:
        """Feed clock at the latest decision minus its bar's close, seconds."""
        d = self.last_decision
        if not d or "timeframe" not in self.meta:
            return None
        return (int(d["decided_at_ms"]) - int(d["bar_ts"]) - timeframe_ms(self.meta["timeframe"])) / 1000.0

    def forecaster(self) -> dict[str, Any]:
        """Forecaster provenance: ``forecast*`` meta keys and columns of the latest decision."""
        out: dict[str, Any] = {k: v for k, v in self.meta.items() if "forecast" in k}
        out.update({k: v for k, v in self.last_decision.items() if "forecast" in k})
        return out

    def fills(self) -> list[dict[str, Any]]:
        """The last `N_FILLS` steps that traded, newest first (fees and slippage of that step)."""
        s = self.steps
        if s.empty:
            return []
        fees = s["fees_paid"].diff().fillna(s["fees_paid"])
        slip = s["slippage_paid"].diff().fillna(s["slippage_paid"])
        traded = s.index[s["traded_qty"] != 0][-N_FILLS:][::-1]
        return [{"timestamp": int(s.at[i, "timestamp"]), "time": iso(int(s.at[i, "timestamp"])),
                 "side": "buy" if s.at[i, "traded_qty"] > 0 else "sell", "qty": float(abs(s.at[i, "traded_qty"])),
                 "fill_price": float(s.at[i, "fill_price"]), "fees": float(fees[i]), "slippage": float(slip[i])}
                for i in traded]

    def version(self) -> str:
        """Changes whenever a step, a decision or the kill switch is added."""
        return f"{len(self.steps)}-{self.n_decisions}-{int(self.kill is not None)}"

    def state(self, series: bool = False) -> dict[str, Any]:
        """The ``/api/state`` document (``series``: also the per-step timestamp, equity, drawdown, exposure)."""
        lat = self.latency_ms
        out: dict[str, Any] = {
            "session": self.session, "version": self.version(), "steps": len(self.steps),
            "decisions": self.n_decisions, "last_bar": None if self.steps.empty else iso(self.last("timestamp")),
            "last_bar_ts": self.last("timestamp"),
            **{k: self.last(k) for k in ("equity", "cash", "position", "exposure", "drawdown", "price")},
            "max_drawdown": None if self.steps.empty else float(self.steps["drawdown"].max()),
            **risk_fields(self.last("risk_state"), self.last("risk_reason")),
            "decision_latency_ms": self.last_decision.get("latency_ms"),
            "latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "latency_p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
            "feed_lag_s": self.feed_lag_s(), "slippage_vs_model": self.last("slippage_vs_model"),
            "kill_requested": self.kill, "model_id": self.meta.get("model_id"), "run_dir": self.meta.get("run_dir"),
            "feed": f"{self.meta.get('feed.kind', '')} {self.meta.get('feed.source', '')}".strip(),
            "forecaster": self.forecaster(), "fills": self.fills(),
        }
        if series:
            out["series"] = {k: self.steps[k].tolist() for k in ("timestamp", "equity", "drawdown", "exposure")}
        return out


class LedgerReader:
    """Reads a paper folder's ledger incrementally (read-only): each `snapshot` fetches only the new rows.

    The paper process serves the dashboard, so a poll must not cost O(history) per bar: steps and
    decisions are read with ``read_table(..., after=<last key seen>)`` and appended.

    Args:
        paper_dir: the paper folder.
    """

    def __init__(self, paper_dir: str | Path) -> None:
        self.paper = Path(paper_dir)
        self._steps: pd.DataFrame | None = None
        self._n_decisions = 0
        self._last_decision: dict[str, Any] = {}
        self._latency = np.zeros(0)

    def snapshot(self) -> Snapshot:
        """The ledger now.

        Raises:
            ValueError: when the folder has no ledger yet.
        """
        meta = dict(read_table(self.paper, "meta")[["key", "value"]].itertuples(index=False, name=None))
        last_step = None if self._steps is None or self._steps.empty else int(self._steps["step"].iloc[-1])
        new = read_table(self.paper, "steps", after=last_step)
        new = new[[c for c in _STEP_COLUMNS if c in new.columns]]
        if self._steps is None or self._steps.empty:
            self._steps = new.reset_index(drop=True)
        elif not new.empty:
            self._steps = pd.concat([self._steps, new], ignore_index=True)
        dec = read_table(self.paper, "decisions", after=self._last_decision.get("bar_ts"))
        if not dec.empty:
            self._n_decisions += len(dec)
            self._last_decision = {k: (v.item() if hasattr(v, "item") else v) for k, v in dec.iloc[-1].items()}
            self._latency = np.r_[self._latency, dec["latency_ms"].to_numpy(np.float64)][-N_LATENCY:]
        kill_path = self.paper / "KILL"
        kill = kill_path.read_text(encoding="utf-8").strip() if kill_path.exists() else None
        return Snapshot(session=self.paper.name, meta=meta, steps=self._steps, n_decisions=self._n_decisions,
                        last_decision=dict(self._last_decision), latency_ms=self._latency.copy(), kill=kill)


def read_snapshot(paper_dir: str | Path) -> Snapshot:
    """The ledger of a paper folder now (one full read-only read).

    Raises:
        ValueError: when the folder has no ledger yet.
    """
    return LedgerReader(paper_dir).snapshot()


def risk_fields(state: Any, reason: Any) -> dict[str, Any]:
    """``risk_state`` / ``risk_reason`` as names: the ledger stores the kernel's integer codes."""
    if state is None:
        return {"risk_state": None, "risk_reason": None}
    code, why = int(state), int(reason or 0)
    return {"risk_state": K.RISK_STATES[code] if 0 <= code < len(K.RISK_STATES) else str(code),
            "risk_reason": None if why == K.REASON_NONE else K.RISK_REASONS[why]}


def risk_code(state: Any) -> int:
    """Numeric code of a risk state: ACTIVE 0, REDUCING 1, HALTED 2, anything else -1."""
    return RISK_CODES.get(str(state).upper(), -1)


def iso(ms: int) -> str:
    """``YYYY-mm-dd HH:MM`` (UTC) of a ms timestamp."""
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


# -- HTML and SVG ---------------------------------------------------------------------------------
def svg_chart(chart_id: str, title: str, ts: np.ndarray, values: np.ndarray, unit: str = "",
              scale: float = 1.0) -> str:
    """A line chart as inline SVG: one polyline vertex per value (thinned beyond `MAX_POINTS`).

    Args:
        chart_id: the element id (``data-points`` holds the vertices drawn, ``data-steps`` the values).
        title: caption.
        ts: (n,) ms timestamps (x axis, for the labels).
        values: (n,) values (y axis).
        unit: suffix of the y labels.
        scale: factor applied to the labels (100 for percent).
    """
    w, h, pad = 640, 170, 8
    n = len(values)
    idx = np.arange(n) if n <= MAX_POINTS else np.unique(np.r_[np.linspace(0, n - 1, MAX_POINTS).astype(int), n - 1])
    v = np.asarray(values, dtype=np.float64)[idx]
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = hi - lo or 1.0
    xs = pad + (np.arange(len(idx)) / max(len(idx) - 1, 1)) * (w - 2 * pad)
    ys = pad + (1.0 - (np.nan_to_num(v, nan=lo) - lo) / span) * (h - 30 - 2 * pad)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    thinned = "" if n <= MAX_POINTS else f" (every {n / len(idx):.1f}th step)"
    left = iso(int(ts[0])) if n else ""
    right = iso(int(ts[-1])) if n else ""
    e = html.escape
    return (f'<figure class="chart"><figcaption>{e(title)}{e(thinned)}</figcaption>'
            f'<svg id="{e(chart_id)}" data-points="{len(idx)}" data-steps="{n}" viewBox="0 0 {w} {h}" '
            f'width="{w}" height="{h}" role="img" aria-label="{e(title)}">'
            f'<rect x="0" y="0" width="{w}" height="{h - 22}" class="bg"/>'
            f'<polyline points="{points}" class="line"/>'
            f'<text x="{pad}" y="{h - 8}">{e(left)}</text><text x="{w - pad}" y="{h - 8}" text-anchor="end">{e(right)}</text>'
            f'<text x="{w - pad}" y="20" text-anchor="end">{hi * scale:.6g}{e(unit)}</text>'
            f'<text x="{w - pad}" y="{h - 32}" text-anchor="end">{lo * scale:.6g}{e(unit)}</text></svg></figure>')


def _fmt(x: Any, spec: str = ".6g", suffix: str = "") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:{spec}}{suffix}"


def _table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}" class="kv">{body}</table>'


def panel_html(snap: Snapshot) -> str:
    """The live part of the page (replaced by the script when the ledger changes)."""
    s = snap.state()
    risk = s["risk_state"]
    risk_text = "no risk controls in this ledger" if risk is None else f"{risk}" + (
        f" — {s['risk_reason']}" if s["risk_reason"] else "")
    status = [("last bar", s["last_bar"] or "no settled step yet"), ("equity", _fmt(s["equity"], ".2f")),
              ("position", _fmt(s["position"])), ("exposure", _fmt(s["exposure"], ".3f")),
              ("drawdown", _fmt(None if s["drawdown"] is None else 100 * s["drawdown"], ".2f", " %")),
              ("risk state", risk_text), ("decision latency", _fmt(s["decision_latency_ms"], ".1f", " ms")),
              ("latency p50 / p99", f"{_fmt(s['latency_p50_ms'], '.1f')} / {_fmt(s['latency_p99_ms'], '.1f')} ms"),
              ("feed lag", _fmt(s["feed_lag_s"], ".1f", " s")), ("settled steps", str(s["steps"])),
              ("decisions", str(s["decisions"]))]
    if s["slippage_vs_model"] is not None:
        status.append(("slippage vs model", _fmt(s["slippage_vs_model"], ".6g")))
    if s["kill_requested"] is not None:
        status.append(("kill switch", f"requested: {s['kill_requested']}"))
    session = [("run", s["run_dir"] or ""), ("model", s["model_id"] or ""), ("feed", s["feed"])]
    session += [(k, str(v)) for k, v in s["forecaster"].items()] or [("forecaster", "none")]
    st = snap.steps
    ts = st["timestamp"].to_numpy(np.int64) if not st.empty else np.zeros(0, np.int64)
    charts = "".join(svg_chart(cid, title, ts, st[col].to_numpy(np.float64) if not st.empty else np.zeros(0), unit, k)
                     for cid, title, col, unit, k in (
                         ("equity-chart", "Equity (quote currency)", "equity", "", 1.0),
                         ("drawdown-chart", "Drawdown", "drawdown", " %", 100.0),
                         ("exposure-chart", "Exposure (position value / equity)", "exposure", "", 1.0)))
    fills = "".join(f"<tr><td>{f['time']}</td><td>{f['side']}</td><td>{f['qty']:.6g}</td><td>{f['fill_price']:.6g}</td>"
                    f"<td>{f['fees']:.4g}</td><td>{f['slippage']:.4g}</td></tr>" for f in s["fills"])
    fills = fills or '<tr><td colspan="6">no fill yet</td></tr>'
    return (f'<div id="panel-body" data-version="{html.escape(s["version"])}" data-steps="{s["steps"]}">'
            f'<div class="cols"><section><h2>Status</h2>{_table(status, "status")}</section>'
            f'<section><h2>Session</h2>{_table(session, "session")}</section></div>'
            f'<section class="charts">{charts}</section>'
            f'<section><h2>Last fills</h2><table id="fills"><tr><th>bar (UTC)</th><th>side</th><th>qty</th>'
            f'<th>fill price</th><th>fees</th><th>slippage</th></tr>{fills}</table></section></div>')


_STYLE = """body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222}h1{font-size:1.3em}h2{font-size:1.05em}
.cols{display:flex;gap:3em;flex-wrap:wrap}table{border-collapse:collapse}th,td{padding:2px 10px;text-align:left}
.kv th{color:#555;font-weight:normal}#fills td,#fills th{border-bottom:1px solid #ddd}.chart{margin:.5em 0}
.bg{fill:#fafafa;stroke:#ddd}.line{fill:none;stroke:#1f77b4;stroke-width:1.5}svg text{font-size:11px;fill:#555}
#kill{margin-top:1.5em;padding:.8em;border:1px solid #c33;max-width:640px}#kill button{background:#c33;color:#fff}
"""


def page_html(snap: Snapshot) -> str:
    """The whole page: header, the live panel, the kill-switch form, the refresh script (same origin only)."""
    e = html.escape
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>quantgym paper · {e(snap.session)}'
            f'</title><style>{_STYLE}</style></head><body><h1>quantgym paper session {e(snap.session)}</h1>'
            f'<div id="panel">{panel_html(snap)}</div>'
            '<form id="kill" method="post" action="/api/kill"><h2>Kill switch</h2><p>Flatten at the next open and '
            'stop. Needs the token logged when the session started.</p>'
            '<label>token <input id="kill-token" name="token" type="password" autocomplete="off"></label> '
            '<label>reason <input id="kill-reason" name="reason" maxlength="200"></label> '
            '<button id="kill-button" type="submit">Kill</button><p id="kill-result" role="status"></p></form>'
            '<script src="/static/dashboard.js"></script></body></html>')


# -- Prometheus -----------------------------------------------------------------------------------
_METRICS = (  # name, help, state key
    ("equity", "Equity after the last settled step, quote currency.", "equity"),
    ("cash", "Cash after the last settled step, quote currency.", "cash"),
    ("position", "Position after the last settled step, base units (signed).", "position"),
    ("exposure", "Position value / equity after the last settled step.", "exposure"),
    ("drawdown", "Drawdown from the equity peak after the last settled step, fraction.", "drawdown"),
    ("decision_latency_ms", "Bar received to decision committed for the latest decision, wall ms.",
     "decision_latency_ms"),
    ("decision_latency_p99_ms", "99th percentile of the last 500 decision latencies, wall ms.", "latency_p99_ms"),
    ("feed_lag_seconds", "Feed clock at the latest decision minus its bar's close, seconds.", "feed_lag_s"),
    ("slippage_vs_model", "The broker's slippage minus the paper model's on the last step, quote currency.",
     "slippage_vs_model"),
    ("last_bar_timestamp_seconds", "Open time of the last settled bar, Unix seconds.", "last_bar_ts"),
)


def prometheus_text(snap: Snapshot) -> str:
    """The ``/metrics`` document (Prometheus text format 0.0.4); absent values are left out."""
    s = snap.state()
    label = f'session="{_label(snap.session)}"'
    lines: list[str] = []

    def put(name: str, kind: str, doc: str, value: float, extra: str = "") -> None:
        full = f"quantgym_paper_{name}"
        lines.extend([f"# HELP {full} {doc}", f"# TYPE {full} {kind}", f"{full}{{{label}{extra}}} {float(value)!r}"])

    put("steps_total", "counter", "Settled steps in the ledger.", s["steps"])
    put("decisions_total", "counter", "Committed decisions in the ledger.", s["decisions"])
    for name, doc, key in _METRICS:
        if s[key] is not None:
            put(name, "gauge", doc, s[key] / 1000.0 if key == "last_bar_ts" else s[key])
    if s["risk_state"] is not None:
        put("risk_state", "gauge", "Risk state: 0 ACTIVE, 1 REDUCING, 2 HALTED, -1 other.",
            risk_code(s["risk_state"]), f',state="{_label(str(s["risk_state"]))}"')
    put("kill_requested", "gauge", "1 when the KILL file is in the paper folder.", int(s["kill_requested"] is not None))
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value with backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
