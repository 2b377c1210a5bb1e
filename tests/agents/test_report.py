"""Tests of agents/evaluation/plots.py and report.py: real PNG files, strict JSON, readable markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.evaluation import plots, report, stats
from envs import metrics

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "btcusdt_1h.parquet"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> dict[str, np.ndarray]:
    """A random long/flat/short policy and buy-and-hold on the first 1500 real hourly bars."""
    df = pd.read_parquet(SAMPLE).iloc[:1500]
    close = df["close"].to_numpy()
    r = close[1:] / close[:-1] - 1.0
    pos = np.random.default_rng(3).choice([-1.0, 0.0, 1.0], size=r.size)
    equity = 10_000.0 * np.concatenate(([1.0], np.cumprod(1.0 + pos * r)))
    traded = np.abs(np.diff(np.concatenate(([0.0], pos)))) * equity[:-1]
    return {"ts": df["timestamp"].to_numpy(), "close": close, "r": r, "pos": pos, "equity": equity,
            "traded": traded, "bh_equity": 10_000.0 * close / close[0]}


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # a real rendered figure, not an empty stub


def test_plots_write_png_files(run: dict[str, np.ndarray], tmp_path: Path) -> None:
    curves = {"agent": run["equity"], "buy-and-hold": run["bh_equity"]}
    written = [
        plots.plot_equity(curves, tmp_path / "equity.png", timestamps_ms=run["ts"]),
        plots.plot_drawdown(curves, tmp_path / "sub" / "drawdown.png"),
        plots.plot_exposure(run["pos"], run["close"][1:], tmp_path / "exposure.png", timestamps_ms=run["ts"]),
        plots.plot_trade_returns(metrics.trades_from_positions(run["pos"], run["equity"]), tmp_path / "trades.png"),
        plots.plot_trade_returns(np.empty(0), tmp_path / "no_trades.png"),
    ]
    for p in written:
        _assert_png(p)
    assert written[1] == tmp_path / "sub" / "drawdown.png"  # parent folders are created


def test_plots_reject_mismatched_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same"):
        plots.plot_exposure(np.zeros(5), np.ones(4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_equity({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="timestamps_ms"):
        plots.plot_equity({"a": np.ones(10)}, tmp_path / "x.png", timestamps_ms=np.arange(5))


def _strict_json(text: str) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=reject)


def test_write_report_markdown_and_json(run: dict[str, np.ndarray], tmp_path: Path) -> None:
    agent = metrics.summarize(run["equity"], run["pos"], run["traded"], 3.0, 1.0, 0.5, run["ts"])
    n = run["r"].size
    bh = metrics.summarize(run["bh_equity"], np.ones(n), np.r_[10_000.0, np.zeros(n - 1)], 0.0, 0.0, 0.0,
                           run["ts"])
    # a flat policy: no trades -> NaN trade stats, no drawdown -> NaN calmar
    flat = metrics.summarize(np.full(n + 1, 10_000.0), np.zeros(n), np.zeros(n), 0.0, 0.0, 0.0, run["ts"])
    assert math.isnan(flat["win_rate"]) and math.isnan(flat["calmar"])
    winner = dict(agent, profit_factor=math.inf)  # no losing trades -> inf must survive as a string

    ppy = agent["bars_per_year"]
    agent_r = run["pos"] * run["r"]
    text = stats.verdict(stats.bootstrap_sharpe_ci(agent_r, ppy, n_boot=300),
                         stats.bootstrap_sharpe_diff_ci(agent_r, run["r"], ppy, n_boot=300))
    plot_path = plots.plot_equity({"agent": run["equity"]}, tmp_path / "plots" / "equity.png")
    results = {"agent": agent, "buy-and-hold": bh, "flat": flat, "winner": winner}

    md_path, json_path = report.write_report(
        tmp_path / "run", results, {"agent": text}, {"Equity": plot_path},
        {"Data": "BTC/USDT 1h, first 1500 bars of the shipped sample."},
    )
    assert md_path == tmp_path / "run" / "report.md" and json_path == tmp_path / "run" / "metrics.json"

    md = md_path.read_text(encoding="utf-8")
    for key in agent:
        assert f"| {key}" in md, key  # every metric has a row
    header = next(line for line in md.splitlines() if line.startswith("| metric |"))
    assert header == "| metric | agent | buy-and-hold | flat | winner |"
    assert text in md
    assert "![Equity](../plots/equity.png)" in md
    assert "## Data" in md and "first 1500 bars" in md
    assert "n/a" in md and "∞" in md
    sharpe_row = next(line for line in md.splitlines() if line.startswith("| sharpe |"))
    assert f"{agent['sharpe']:.2f}" in sharpe_row

    payload = _strict_json(json_path.read_text(encoding="utf-8"))
    assert isinstance(payload, dict)
    assert set(payload["policies"]) == set(results)
    assert payload["policies"]["agent"]["sharpe"] == pytest.approx(agent["sharpe"], rel=1e-15)
    assert payload["policies"]["agent"]["max_drawdown"] == agent["max_drawdown"]
    assert payload["policies"]["flat"]["win_rate"] is None
    assert payload["policies"]["winner"]["profit_factor"] == "inf"
    assert payload["verdicts"] == {"agent": text}
    assert payload["plots"] == {"Equity": "../plots/equity.png"}
    for name, summary in results.items():  # same numbers as the table, metric by metric
        for key, value in summary.items():
            stored = payload["policies"][name][key]
            if math.isnan(value):
                assert stored is None
            elif math.isinf(value):
                assert stored == ("inf" if value > 0 else "-inf")
            else:
                assert stored == value


def test_to_json_value_handles_numpy_and_non_finite() -> None:
    value = report.to_json_value({"a": np.float64("nan"), "b": np.int64(3), "c": np.array([1.0, -np.inf]),
                                  "d": (np.bool_(True), Path("x/y.png"))})
    assert value == {"a": None, "b": 3, "c": [1.0, "-inf"], "d": [True, "x/y.png"]}
    json.dumps(value, allow_nan=False)


def test_write_report_accepts_a_single_verdict_string(tmp_path: Path) -> None:
    md_path, json_path = report.write_report(tmp_path, {"agent": {"sharpe": 0.5}}, "Luck.")
    assert "- Luck." in md_path.read_text(encoding="utf-8")
    assert json.loads(json_path.read_text(encoding="utf-8"))["verdicts"] == ["Luck."]


def test_write_report_requires_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one policy"):
        report.write_report(tmp_path, {})


def test_fills_and_round_trips_are_named_apart_and_counts_print_as_integers(tmp_path: Path) -> None:
    """A long/flat toggle every 10 bars: each round trip is two fills; the report and JSON say which is which."""
    from agents.config import EvaluationConfig
    from agents.evaluation.suite import evaluate_policy
    from envs import EnvConfig, MarketData

    data = MarketData.load(pd.read_parquet(SAMPLE).iloc[:600])
    env = EnvConfig(window_size=8, action_mode="discrete", exposure_levels=(0.0, 1.0), long_only=True,
                    max_leverage=1.0, taker_fee=0.001, slippage_bps=2.0, slippage_model="fixed_bps",
                    rebalance_threshold=0.5)
    out = evaluate_policy(lambda obs, info, t: (t // 10) % 2, data, env, None,
                          EvaluationConfig(n_random_seeds=2, n_boot=50), tmp_path, seed=0)
    agent = out.agent_metrics
    assert agent["n_round_trips"] > 10 and abs(agent["n_fills"] - 2 * agent["n_round_trips"]) <= 1
    assert "n_trades" not in agent
    policies = json.loads((tmp_path / "metrics.json").read_text())["policies"]
    for key in ("n_fills", "n_round_trips", "n_liquidations", "n_bars"):
        assert isinstance(policies["agent"][key], int), (key, policies["agent"][key])
    md = (tmp_path / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("|")}
    assert "n_fills" in rows and "n_round_trips" in rows and "n_trades" not in md
    assert "0.00" not in rows["n_liquidations"] and f"| {int(agent['n_fills'])} " in rows["n_fills"].replace(",", "")
