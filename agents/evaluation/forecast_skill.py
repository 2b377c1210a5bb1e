"""Is a forecaster skilful? Out-of-sample error, IC and a Diebold–Mariano test against naive baselines.

Every number is computed on walk-forward predictions only (``envs.forecasting.walk_forward``: each
prediction comes from a model that never saw its label) and only on rows whose label is known.

* ``mae``, ``rmse``: in the target's unit (log return, probability, k-bar volatility).
* ``hit_rate``: fraction of rows where the predicted and realised direction agree ("up" = > 0 for
  returns, P(up) > 0.5 for ``direction``; NaN for ``realized_vol``). It is always shown next to the
  best baseline's hit rate: on a series that is up 90 % of bars the class prior scores 90 % too.
* ``ic``: Spearman rank correlation of prediction and realisation, with a circular moving-block
  bootstrap percentile interval (`agents.evaluation.stats.block_bootstrap_indices`).
* ``log_loss`` / ``brier`` for ``direction`` (P(up) against the 0/1 label).
* The **best naive baseline** is the one with the lowest mean loss on the same rows (squared error;
  log loss for ``direction``); choosing it after the fact makes the test harder, never easier.
* `diebold_mariano`: one-sided test that the model's mean loss is below the baseline's, with a
  Newey–West (Bartlett) long-run variance over ``horizon - 1`` lags (overlapping k-bar labels make
  the loss differential MA(k-1)) and the Harvey–Leybourne–Newbold small-sample correction (t with
  n - 1 degrees of freedom).
* `holm`: Holm–Bonferroni correction across the targets and models tested in one run. The verdict
  says "no evidence of skill" unless the corrected p-value is below ``alpha``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from agents.evaluation.stats import block_bootstrap_indices, default_block_len

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_EPS = 1e-15


@dataclass(frozen=True, slots=True)
class SkillConfig:
    """How skill is measured.

    Attributes:
        n_boot: bootstrap resamples of the IC interval, >= 1.
        block_len: bars per bootstrap block; None = ``max(round(n ** (1/3)), horizon)``.
        alpha: significance level of the corrected DM test and 1 - the IC interval's level, in (0, 0.5).
        rolling_ic_window: bars of the rolling IC plot, >= 10.
        seed: seed of the bootstrap.
    """

    n_boot: int = 500
    block_len: int | None = None
    alpha: float = 0.05
    rolling_ic_window: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise ValueError(f"skill.n_boot={self.n_boot} is invalid: must be >= 1")
        if self.block_len is not None and self.block_len < 1:
            raise ValueError(f"skill.block_len={self.block_len} is invalid: must be >= 1 or null")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"skill.alpha={self.alpha} is invalid: must be in (0, 0.5)")
        if self.rolling_ic_window < 10:
            raise ValueError(f"skill.rolling_ic_window={self.rolling_ic_window} is invalid: must be >= 10")


def spearman(a: FloatArray, b: FloatArray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    ra, rb = sps.rankdata(a), sps.rankdata(b)
    sa, sb = ra.std(), rb.std()
    if sa == 0.0 or sb == 0.0:
        return float("nan")
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


def ic_with_ci(pred: FloatArray, y: FloatArray, block_len: int, n_boot: int, alpha: float,
               rng: np.random.Generator) -> tuple[float, float, float]:
    """Spearman IC and its circular block-bootstrap percentile interval ``(ic, low, high)``."""
    ic = spearman(pred, y)
    n = pred.size
    if not math.isfinite(ic) or n < 2:
        return ic, float("nan"), float("nan")
    boot: list[float] = []
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bounded index-matrix memory
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        for idx in block_bootstrap_indices(n, min(block_len, n), m, rng):
            boot.append(spearman(pred[idx], y[idx]))
        done += m
    vals = np.asarray(boot)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return ic, float("nan"), float("nan")
    low, high = np.quantile(vals, [alpha / 2.0, 1.0 - alpha / 2.0])
    return ic, float(low), float(high)


def newey_west_variance(d: FloatArray, lags: int) -> float:
    """Long-run variance of ``d`` with Bartlett weights over ``lags`` autocovariances (lags >= 0)."""
    x = d - d.mean()
    n = x.size
    lrv = float(np.dot(x, x)) / n
    for j in range(1, min(lags, n - 1) + 1):
        lrv += 2.0 * (1.0 - j / (lags + 1.0)) * float(np.dot(x[j:], x[:-j])) / n
    return lrv


def diebold_mariano(loss_model: FloatArray, loss_base: FloatArray, horizon: int) -> tuple[float, float]:
    """One-sided DM test of "the model's expected loss is below the baseline's".

    Args:
        loss_model: per-row loss of the model (same rows as ``loss_base``).
        loss_base: per-row loss of the baseline.
        horizon: label horizon in bars (>= 1); HAC lags = horizon - 1.

    Returns:
        ``(statistic, p_value)``; a negative statistic favours the model. Identical losses give p = 1.
    """
    d = np.asarray(loss_model, dtype=np.float64) - np.asarray(loss_base, dtype=np.float64)
    n = d.size
    if n < 3:
        return float("nan"), 1.0
    lrv = newey_west_variance(d, horizon - 1)
    if not lrv > 0.0:
        return float("nan"), 1.0
    stat = float(d.mean() / math.sqrt(lrv / n))
    h = horizon
    stat *= math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 0.0))  # Harvey-Leybourne-Newbold
    return stat, float(sps.t.cdf(stat, df=n - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def losses(pred: FloatArray, y: FloatArray, classifier: bool) -> FloatArray:
    """Per-row loss: log loss of P(up) for classifiers, squared error otherwise."""
    if classifier:
        p = np.clip(pred, _EPS, 1.0 - _EPS)
        return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    return (pred - y) ** 2


def point_metrics(pred: FloatArray, y: FloatArray, target: str) -> dict[str, float]:
    """MAE, RMSE, hit rate (and log loss / Brier for ``direction``) of one model on known rows."""
    err = pred - y
    out = {"n": float(pred.size), "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}
    if target == "direction":
        out["hit_rate"] = float(np.mean((pred > 0.5) == (y > 0.5)))
        out["log_loss"] = float(np.mean(losses(pred, y, True)))
        out["brier"] = float(np.mean(err**2))
    elif target == "fwd_log_return":
        out["hit_rate"] = float(np.mean((pred > 0.0) == (y > 0.0)))
    else:
        out["hit_rate"] = float("nan")
    return out


@dataclass(frozen=True, slots=True)
class SkillResult:
    """Skill of one model on one target (see the module docstring for every field's meaning)."""

    model: str
    target: str
    horizon: int
    metrics: dict[str, float]
    ic: float
    ic_ci: tuple[float, float]
    baseline: str
    baseline_metrics: dict[str, float]
    dm_stat: float
    dm_pvalue: float
    folds: list[dict[str, float]]


def score_model(
    model: str, target: str, horizon: int, pred: FloatArray, y: FloatArray,
    baselines: Mapping[str, FloatArray], folds: npt.NDArray[np.int64], cfg: SkillConfig,
) -> SkillResult:
    """Score ``pred`` against the best of ``baselines`` on the rows where every series is finite.

    Args:
        model: the model's name.
        target: target name (``direction`` is scored as a probability).
        horizon: label horizon in bars.
        pred: the model's predictions, one per row.
        y: realised labels (NaN where not known: those rows are dropped).
        baselines: name -> predictions of each naive baseline on the same rows.
        folds: refit-period number of each row (per-fold metrics).
        cfg: bootstrap and significance settings.
    """
    if not baselines:
        raise ValueError(f"no naive baseline to compare {model} on {target} with")
    ok = np.isfinite(pred) & np.isfinite(y)
    for b in baselines.values():
        ok &= np.isfinite(b)
    n = int(ok.sum())
    if n < 10:
        raise ValueError(f"only {n} out-of-sample predictions of {target} with known labels; use more data "
                         "or a smaller forecaster.min_train")
    p, t = pred[ok], y[ok]
    classifier = target == "direction"
    loss_m = losses(p, t, classifier)
    base_losses = {k: losses(v[ok], t, classifier) for k, v in baselines.items()}
    best = min(base_losses, key=lambda k: float(np.mean(base_losses[k])))
    stat, pval = diebold_mariano(loss_m, base_losses[best], horizon)
    bl = cfg.block_len or max(default_block_len(n), horizon)
    ic, low, high = ic_with_ci(p, t, bl, cfg.n_boot, cfg.alpha, np.random.default_rng(cfg.seed))
    fold_rows = []
    for f in np.unique(folds[ok]):
        sel = folds[ok] == f
        if sel.sum() >= 3:
            fm = point_metrics(p[sel], t[sel], target)
            fold_rows.append({"fold": int(f), **fm, "ic": spearman(p[sel], t[sel])})
    return SkillResult(model, target, horizon, point_metrics(p, t, target), ic, (low, high), best,
                       point_metrics(baselines[best][ok], t, target), stat, pval, fold_rows)


def skill_summary(result: SkillResult, p_corrected: float, alpha: float) -> dict[str, object]:
    """The ``forecast_metrics.json`` entry of one model/target (keys as in the issue)."""
    m = result.metrics
    significant = bool(p_corrected < alpha)
    out: dict[str, object] = {
        "model": result.model,
        "target": result.target,
        "horizon": result.horizon,
        "n_predictions": int(m["n"]),
        "ic": result.ic,
        "ic_ci": list(result.ic_ci),
        "hit_rate": m["hit_rate"],
        "mae": m["mae"],
        "rmse": m["rmse"],
        "baseline": {"name": result.baseline, **{k: v for k, v in result.baseline_metrics.items() if k != "n"}},
        "dm_stat": result.dm_stat,
        "dm_pvalue": result.dm_pvalue,
        "p_value_corrected": p_corrected,
        "significant": significant,
        "verdict": verdict(result, p_corrected, alpha),
        "folds": result.folds,
    }
    for key in ("log_loss", "brier"):
        if key in m:
            out[key] = m[key]
    return out


def verdict(result: SkillResult, p_corrected: float, alpha: float) -> str:
    """One sentence: evidence of skill only when the Holm-corrected DM p-value is below ``alpha``."""
    loss = "log loss" if result.target == "direction" else "squared error"
    head = (f"{result.model} on {result.target} (h={result.horizon}, n={int(result.metrics['n'])}) vs the best naive "
            f"baseline '{result.baseline}' on {loss}: DM p={result.dm_pvalue:.3g}, Holm-corrected p={p_corrected:.3g}")
    if p_corrected < alpha:
        return f"Evidence of skill: {head} < {alpha:g}; IC {result.ic:+.3f} (CI {result.ic_ci[0]:+.3f} to {result.ic_ci[1]:+.3f})."
    return f"No evidence of skill: {head} (needs < {alpha:g})."


def summarize_skill(results: Sequence[SkillResult], alpha: float) -> list[dict[str, object]]:
    """`skill_summary` of every result with Holm correction across all of them (one run's family)."""
    corrected = holm([r.dm_pvalue for r in results])
    return [skill_summary(r, c, alpha) for r, c in zip(results, corrected, strict=True)]


def _target_column(frame: object, target: str, primary: str) -> str:
    return "y_true" if target == primary else f"y_{target}"


def evaluate_predictions(
    frames: Mapping[str, object], model: str, targets: Sequence[str], horizon: int, cfg: SkillConfig,
) -> dict[str, Any]:
    """``forecast_metrics.json`` content from walk-forward prediction frames of one run.

    Args:
        frames: model name -> prediction frame (``envs.forecasting.walk_forward`` layout, same
            schedule); must hold ``model`` and at least one naive baseline per target.
        model: the forecaster being judged (its primary target's numbers go to the top level).
        targets: the run's targets; the first is the primary one.
        horizon: label horizon in bars.
        cfg: bootstrap and significance settings.

    Returns:
        The primary target's summary at top level, other targets of ``model`` and every baseline's
        point metrics under ``components`` (keyed ``<target>/<model>``), Holm-corrected across targets.
    """
    import pandas as pd

    from envs.forecasting.models import FORECASTERS
    from envs.forecasting.walk_forward import fold_ids

    main = frames[model]
    assert isinstance(main, pd.DataFrame)
    ts = main["timestamp"].to_numpy()
    results: list[SkillResult] = []
    baseline_parts: dict[str, dict[str, object]] = {}
    for target in targets:
        col = "fc_" + target
        y = main[_target_column(main, target, targets[0])].to_numpy(dtype=np.float64)
        base: dict[str, FloatArray] = {}
        for name, frame in frames.items():
            assert isinstance(frame, pd.DataFrame)
            if name == model or col not in frame.columns or not FORECASTERS[name].baseline:
                continue
            if not np.array_equal(frame["timestamp"].to_numpy(), ts):
                raise ValueError(f"baseline {name} predicts other bars than {model}; run both on one schedule")
            base[name] = frame[col].to_numpy(dtype=np.float64)
            known = np.isfinite(y) & np.isfinite(base[name])
            bm = point_metrics(base[name][known], y[known], target)
            n_known = int(bm.pop("n"))
            baseline_parts[f"{target}/{name}"] = {"model": name, "target": target, "n_predictions": n_known, **bm,
                                                  "ic": spearman(base[name][known], y[known])}
        folds = fold_ids(main["model_id"].tolist())
        results.append(score_model(model, target, horizon, main[col].to_numpy(dtype=np.float64), y, base, folds, cfg))
    summaries = summarize_skill(results, cfg.alpha)
    top = dict(summaries[0])
    top["components"] = {
        **{f"{s['target']}/{model}": s for s in summaries[1:]},
        **baseline_parts,
    }
    for s in summaries:
        logger.info("%s", s["verdict"])
    return top
