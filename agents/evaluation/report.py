"""Evaluation report: a markdown page and a metrics.json holding the same numbers.

The markdown table has one row per metric and one column per policy (the agent and each baseline), with
units in the row label; the JSON keeps full precision. Non-finite values, which `envs.metrics` uses for
undefined statistics, are written as ``null`` (NaN) or the strings ``"inf"`` / ``"-inf"`` so the file is
strict JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["METRIC_ORDER", "write_report", "to_json_value"]

#: preferred row order (the keys of `envs.metrics.summarize`); other keys follow in first-seen order
METRIC_ORDER = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration_bars", "win_rate", "profit_factor", "n_fills", "n_round_trips", "avg_holding_bars",
    "avg_exposure", "time_in_market", "turnover", "fees_paid", "slippage_paid", "funding_paid",
    "n_bars", "bars_per_year",
)
_PERCENT = {"total_return", "cagr", "annual_volatility", "max_drawdown", "win_rate", "avg_exposure",
            "time_in_market"}
#: counts: printed without decimals, whole values stored as JSON integers
_COUNT = {"n_fills", "n_round_trips", "n_liquidations", "n_bars", "max_drawdown_duration_bars", "bars_per_year"}
_QUOTE = {"fees_paid", "slippage_paid", "funding_paid"}
_UNITS = {
    **{k: "%" for k in _PERCENT},
    "turnover": "x equity / year",
    **{k: "quote" for k in _QUOTE},
}


def to_json_value(x: object) -> object:
    """Convert a metric value (or nested dict/list of them) to strict-JSON-safe Python objects.

    NaN becomes None (``null``), +/-inf the strings ``"inf"`` / ``"-inf"``; numpy scalars and arrays become
    Python numbers and lists; paths become strings.
    """
    if isinstance(x, Mapping):
        return {str(k): to_json_value(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return [to_json_value(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [to_json_value(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(x, Path):
        return str(x)
    return x


def _typed_counts(values: Mapping[str, object]) -> dict[str, object]:
    """Whole-valued counts as ints (``n_fills: 216``, not ``216.0``); every other value unchanged."""
    return {k: int(v) if k in _COUNT and isinstance(v, (int, float)) and float(v).is_integer() else v
            for k, v in values.items()}


def _format(metric: str, value: object, number_format: str = ".2f") -> str:
    if value is None:
        return "—"
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if metric in _PERCENT:
        return f"{100.0 * v:.2f}"
    if metric in _COUNT:
        return f"{v:,.0f}"
    if metric in _QUOTE:
        return f"{v:,.2f}"
    if metric == "avg_holding_bars":
        return f"{v:.1f}"
    return f"{v:{number_format}}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metric_rows(results: Mapping[str, Mapping[str, object]]) -> list[str]:
    seen: dict[str, None] = {}
    for summary in results.values():
        for k in summary:
            seen.setdefault(k, None)
    ordered = [k for k in METRIC_ORDER if k in seen]
    return ordered + [k for k in seen if k not in METRIC_ORDER]


def _link(path: Path, run_dir: Path) -> str:
    try:
        rel = os.path.relpath(path.resolve(), run_dir.resolve())
    except ValueError:  # different drive (Windows)
        rel = str(path)
    return Path(rel).as_posix()


def write_report(
    run_dir: str | Path,
    results: Mapping[str, Mapping[str, float]],
    verdicts: Mapping[str, str] | Sequence[str] = (),
    plots: Mapping[str, str | Path] | None = None,
    extra_sections: Mapping[str, str] | None = None,
    title: str = "Evaluation report",
    md_name: str = "report.md",
    json_name: str = "metrics.json",
    number_format: str = ".2f",
    table_note: str = "Fractions are shown in percent; ratios are annualised; costs are in quote currency.",
    extra_json: Mapping[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``metrics.json`` into ``run_dir``.

    Args:
        run_dir: output folder (created if missing), e.g. the Hydra run folder.
        results: policy name -> metric dict (typically `envs.metrics.summarize` output), agent first, then
            baselines; the table columns follow this order.
        verdicts: plain-words judgements from `agents.evaluation.stats.verdict`, either as a list or as a
            mapping of label (e.g. policy name) -> sentence.
        plots: caption -> PNG path; embedded in the markdown with links relative to ``run_dir``.
        extra_sections: heading -> markdown body, appended in order (e.g. config, data split, caveats).
        title: top-level heading of the markdown page.
        md_name: file name of the markdown page (e.g. ``forecast_report.md``).
        json_name: file name of the JSON twin (e.g. ``forecast_report.json``).
        number_format: format spec of metrics without a unit rule (``".4g"`` for small statistics).
        table_note: the sentence under the "Metrics" heading (units of the table).
        extra_json: more top-level keys of the JSON twin (e.g. ``judgement``), written once with the rest.

    Returns:
        ``(report_md_path, metrics_json_path)``.
    """
    if not results:
        raise ValueError("results must contain at least one policy: {name: summary dict}")
    out_dir = Path(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths = {str(k): Path(v) for k, v in (plots or {}).items()}
    if isinstance(verdicts, str):  # one sentence, not a sequence of characters
        verdicts = [verdicts]
    verdict_items: list[tuple[str | None, str]] = (
        list(verdicts.items()) if isinstance(verdicts, Mapping) else [(None, v) for v in verdicts]
    )
    sections = dict(extra_sections or {})

    names = list(results)
    lines = [f"# {title}", "", "## Metrics", ""]
    lines.append(table_note)
    lines.append("")
    lines.append("| metric | " + " | ".join(_cell(n) for n in names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for metric in _metric_rows(results):
        unit = _UNITS.get(metric)
        label = f"{metric} ({unit})" if unit else metric
        cells = [_format(metric, results[n].get(metric), number_format) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if verdict_items:
        lines += ["## Skill or luck?", ""]
        for who, text in verdict_items:
            lines.append(f"- **{_cell(str(who))}**: {text}" if who is not None else f"- {text}")
        lines.append("")
    if plot_paths:
        lines += ["## Plots", ""]
        for caption, p in plot_paths.items():
            lines += [f"### {caption}", "", f"![{caption}]({_link(p, out_dir)})", ""]
    for heading, body in sections.items():
        lines += [f"## {heading}", "", body.rstrip(), ""]

    md_path = out_dir / md_name
    md_path.write_text("\n".join(lines), encoding="utf-8")

    payload = {
        "policies": to_json_value({name: _typed_counts(m) for name, m in results.items()}),
        "verdicts": to_json_value(dict(verdict_items) if isinstance(verdicts, Mapping) else list(verdicts)),
        "plots": {k: _link(p, out_dir) for k, p in plot_paths.items()},
        "extra_sections": sections,
    }
    for key, value in (extra_json or {}).items():
        if key in payload:
            raise ValueError(f"extra_json key {key!r} would replace the report's own {key!r}")
        payload[key] = to_json_value(value)
    json_path = out_dir / json_name
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    logger.info("wrote %s and %s", md_path, json_path)
    return md_path, json_path
