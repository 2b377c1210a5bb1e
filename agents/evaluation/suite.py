"""Evaluate a policy against the baselines on one span, judge skill vs. luck, write the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import EvaluationConfig
from agents.evaluation import plots, stats
from agents.evaluation.baselines import aggregate_random, run_baselines
from agents.evaluation.report import write_report
from agents.evaluation.runner import EpisodeRecord, Policy, evaluation_env, run_policy
from envs import metrics
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Judgement:
    """Bootstrap intervals and deflated Sharpe of the agent on one span.

    Attributes:
        sharpe_ci: (point, low, high) annualised Sharpe of the agent.
        diff_ci: (point, low, high) Sharpe of the agent minus buy-and-hold's.
        psr: probability that the true Sharpe exceeds 0.
        deflated_sharpe: PSR against the best-of-``n_trials`` luck level.
        n_trials: how many runs/trials the selection considered.
        text: the verdict in plain words.
    """

    sharpe_ci: tuple[float, float, float]
    diff_ci: tuple[float, float, float]
    psr: float
    deflated_sharpe: float
    n_trials: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"sharpe_ci": list(self.sharpe_ci), "sharpe_diff_vs_buy_and_hold_ci": list(self.diff_ci),
                "probabilistic_sharpe": self.psr, "deflated_sharpe": self.deflated_sharpe,
                "n_trials": self.n_trials, "verdict": self.text}


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """What `evaluate_policy` found and wrote.

    Attributes:
        metrics: policy name -> its `envs.metrics.summarize` values (the report's table: ``agent`` first,
            then ``buy_and_hold``, ``ma_crossover``, ``flat``, the random mean and std).
        judgement: the agent's bootstrap intervals, deflated Sharpe and verdict.
        report: ``report.md``.
        metrics_json: ``metrics.json`` (the same numbers, full precision).
        agent: the agent's pass (per-bar equity, positions, ...).
        buy_and_hold: the buy-and-hold pass over the same bars.
        steps: ``steps.parquet`` (one row per step with the env's info keys) when written.
    """

    metrics: dict[str, dict[str, float]]
    judgement: Judgement
    report: Path
    metrics_json: Path
    agent: EpisodeRecord
    buy_and_hold: EpisodeRecord
    steps: Path | None = None

    @property
    def agent_metrics(self) -> dict[str, float]:
        """The agent's column of the report's table."""
        return self.metrics["agent"]


def judge(r_a: np.ndarray, r_b: np.ndarray, periods_per_year: float, cfg: EvaluationConfig,
          seed: int = 0, trial_sharpes: list[float] | None = None) -> Judgement:
    """Block-bootstrap CIs of the Sharpe of returns ``r_a`` and of its difference to benchmark ``r_b``; DSR.

    Args:
        r_a: the agent's simple per-bar returns.
        r_b: the benchmark's per-bar returns over the same bars (paired blocks).
        periods_per_year: annualisation factor.
        cfg: bootstrap settings and ``n_trials``.
        seed: seed of the bootstrap generator.
        trial_sharpes: annualised Sharpe ratios (with ``periods_per_year``) of every trial compared, for
            the deflated Sharpe; without them and ``cfg.n_trials > 1`` the trials' Sharpe variance is taken
            as the estimator's null variance 1 / T.
    """
    n = min(len(r_a), len(r_b))
    rng = np.random.default_rng(seed)
    sharpe_ci = stats.bootstrap_sharpe_ci(r_a, periods_per_year, cfg.n_boot, cfg.block_len, cfg.alpha, rng)
    diff_ci = stats.bootstrap_sharpe_diff_ci(r_a[:n], r_b[:n], periods_per_year, cfg.n_boot, cfg.block_len,
                                             cfg.alpha, rng)
    n_trials = max(cfg.n_trials, len(trial_sharpes) if trial_sharpes else 1)
    psr = stats.probabilistic_sharpe_ratio(r_a)
    if n_trials <= 1:
        dsr = psr
    elif trial_sharpes is not None and len(trial_sharpes) >= 2:
        dsr = stats.deflated_sharpe_ratio(r_a, n_trials, trial_sharpes=trial_sharpes,
                                          trial_periods_per_year=periods_per_year)
    else:  # trials unknown: the null variance of a per-bar Sharpe estimate over len(r_a) bars, ~1/T
        dsr = stats.deflated_sharpe_ratio(r_a, n_trials, sr_variance_across_trials=1.0 / max(len(r_a), 2))
    text = stats.verdict(sharpe_ci, diff_ci, alpha=cfg.alpha, deflated_sharpe=dsr, n_trials=n_trials)
    return Judgement(sharpe_ci, diff_ci, psr, dsr, n_trials, text)


def evaluate_policy(
    policy: Policy,
    data: MarketData,
    env_config: EnvConfig,
    normalizer: FeatureNormalizer | None,
    cfg: EvaluationConfig,
    out_dir: str | Path,
    calendar: str = "24/7",
    title: str = "Evaluation report",
    seed: int = 0,
    extra_sections: dict[str, str] | None = None,
    trial_sharpes: list[float] | None = None,
) -> EvaluationResult:
    """Agent vs. baselines on ``data`` (one sequential pass each); writes report.md, metrics.json, PNGs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    agent = run_policy(evaluation_env(data, env_config, normalizer), policy, seed)
    base = run_baselines(data, env_config, normalizer, cfg.n_random_seeds, cfg.ma_fast, cfg.ma_slow, seed)
    bh, flat, ma, randoms = base.buy_and_hold, base.flat, base.ma_crossover, base.random
    results = {
        "agent": agent.summary(calendar), "buy_and_hold": bh.summary(calendar),
        "ma_crossover": ma.summary(calendar), "flat": flat.summary(calendar),
    }
    rand_mean, rand_std = aggregate_random([r.summary(calendar) for r in randoms])
    results[f"random (mean of {len(randoms)})"] = rand_mean
    results["random (std)"] = rand_std
    ppy = metrics.bars_per_year(agent.timestamps, calendar)
    judgement = judge(agent.returns, bh.returns, ppy, cfg, seed, trial_sharpes)
    logger.info("%s: %s", title, judgement.text)

    trade_returns = metrics.trades_from_positions(agent.position, agent.equity)
    figures = {
        "Equity: agent vs. baselines": plots.plot_equity(
            {"agent": agent.equity, "buy & hold": bh.equity, "MA crossover": ma.equity, "random (seed 0)":
             randoms[0].equity, "flat": flat.equity}, out / "equity.png", agent.timestamps),
        "Drawdown": plots.plot_drawdown({"agent": agent.equity, "buy & hold": bh.equity}, out / "drawdown.png",
                                        agent.timestamps),
        "Exposure and price": plots.plot_exposure(agent.exposure, agent.price[1:], out / "exposure.png",
                                                  agent.timestamps[1:]),
        "Per-trade returns": plots.plot_trade_returns(trade_returns, out / "trade_returns.png"),
    }
    sections = {
        "Bootstrap details": (
            f"- Sharpe {judgement.sharpe_ci[0]:.2f}, {100 * (1 - cfg.alpha):.0f}% block-bootstrap CI "
            f"[{judgement.sharpe_ci[1]:.2f}, {judgement.sharpe_ci[2]:.2f}]\n"
            f"- Sharpe minus buy-and-hold {judgement.diff_ci[0]:.2f}, CI [{judgement.diff_ci[1]:.2f}, "
            f"{judgement.diff_ci[2]:.2f}]\n"
            f"- probabilistic Sharpe (P[true Sharpe > 0]) {judgement.psr:.3f}; deflated Sharpe over "
            f"{judgement.n_trials} trial(s) {judgement.deflated_sharpe:.3f}"),
        "How to read this": (
            "Every policy ran one sequential pass over the same bars with the same fees, slippage, funding and "
            "margin rules; decisions at a bar's close fill at the next bar's open. Baselines use fixed sizing "
            "and no stops. Random is the mean (and std) over seeds of uniformly random actions."),
        **(extra_sections or {}),
    }
    report_md, metrics_json = write_report(out, results, [judgement.text], figures, sections, title=title,
                                           extra_json={"judgement": judgement.to_dict()})
    return EvaluationResult(metrics=results, judgement=judgement, report=report_md, metrics_json=metrics_json,
                            agent=agent, buy_and_hold=bh)
