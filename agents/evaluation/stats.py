"""Is it skill or luck? Bootstrap intervals and deflated Sharpe ratios for evaluation returns.

All returns are simple per-bar returns (fractions), as in `envs.metrics`; Sharpe ratios come from
`envs.metrics.sharpe_from_moments`, so every number here uses the same formula as the env and reports.

* Bootstrap intervals (`bootstrap_sharpe_ci`, `bootstrap_sharpe_diff_ci`) are **annualised** and use the
  circular moving-block bootstrap (`block_bootstrap_indices`), which keeps the short-range dependence of
  bar returns (volatility clustering) inside each block. Intervals are percentile intervals.
* `probabilistic_sharpe_ratio` and `deflated_sharpe_ratio` follow Bailey & López de Prado (2012, 2014)
  and work in **per-bar** (non-annualised) Sharpe units throughout, as the formulas require: divide an
  annualised Sharpe by ``sqrt(periods_per_year)`` before passing it as a benchmark.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from envs import metrics

logger = logging.getLogger(__name__)

__all__ = [
    "EULER_GAMMA",
    "default_block_len",
    "block_bootstrap_indices",
    "bootstrap_sharpe_ci",
    "bootstrap_sharpe_diff_ci",
    "probabilistic_sharpe_ratio",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "verdict",
]

#: Euler–Mascheroni constant, used in the expected maximum of n_trials Gaussian Sharpe estimates
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
FloatArray = npt.NDArray[np.float64]


def _returns(x: npt.ArrayLike, name: str, min_len: int = 2) -> FloatArray:
    r = np.asarray(x, dtype=np.float64)
    if r.ndim != 1 or r.size < min_len:
        raise ValueError(f"{name} must be 1-D with at least {min_len} returns, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{name} must be finite (simple per-bar returns as fractions)")
    return r


def default_block_len(n: int) -> int:
    """Default bootstrap block length: ``round(n ** (1/3))``, at least 1 (the usual block-bootstrap rate)."""
    return max(1, round(n ** (1.0 / 3.0)))


def _check_bootstrap_args(n: int, block_len: int, n_boot: int, alpha: float = 0.05) -> None:
    if n < 2:
        raise ValueError(f"the bootstrap needs at least 2 returns, got n={n}")
    if not 1 <= block_len <= n:
        raise ValueError(f"block_len={block_len} is invalid: must be in [1, n={n}] bars")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} is invalid: must be >= 1 resamples (2000 is a good default)")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} is invalid: must be in (0, 1); 0.05 gives a 95% interval")


def _block_starts(n: int, block_len: int, n_boot: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Random block start positions, shape ``(n_boot, ceil(n / block_len))``, uniform on ``[0, n)``."""
    return rng.integers(0, n, size=(n_boot, -(-n // block_len)), dtype=np.int64)


def block_bootstrap_indices(
    n: int, block_len: int, n_boot: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Index matrix of a circular moving-block bootstrap.

    Each resample concatenates ``ceil(n / block_len)`` blocks of ``block_len`` consecutive indices whose
    starts are drawn uniformly from ``[0, n)``; blocks wrap around the end of the series (circular, so
    every bar is equally likely to be drawn) and the concatenation is cut to length ``n``.

    Memory is ``n_boot x n`` int64 values; `bootstrap_sharpe_ci` draws the same blocks without building
    this matrix.

    Args:
        n: length of the series, >= 2.
        block_len: bars per block, in [1, n].
        n_boot: number of resamples, >= 1.
        rng: numpy random generator (seed it for reproducible intervals).

    Returns:
        int64 array of shape ``(n_boot, n)`` with indices into the series.
    """
    _check_bootstrap_args(n, block_len, n_boot)
    starts = _block_starts(n, block_len, n_boot, rng)
    idx = (starts[:, :, None] + np.arange(block_len, dtype=np.int64)) % n
    return idx.reshape(n_boot, -1)[:, :n]


def _resampled_sums(
    values: FloatArray, starts: npt.NDArray[np.int64], block_len: int
) -> FloatArray:
    """Sum of ``values`` over each resample drawn with ``starts`` (as indexing would; O(n_boot x blocks)).

    The last block of each resample is cut to ``n - (blocks - 1) * block_len`` values, exactly as in
    `block_bootstrap_indices`.
    """
    n = values.size
    k = starts.shape[1]
    ext = np.concatenate((values, values[:block_len]))
    csum = np.concatenate(([0.0], np.cumsum(ext)))
    last_len = n - (k - 1) * block_len
    full = csum[starts[:, :-1] + block_len] - csum[starts[:, :-1]]
    last = csum[starts[:, -1] + last_len] - csum[starts[:, -1]]
    return full.sum(axis=1) + last


def _bootstrap_sharpes(
    r: FloatArray, starts: npt.NDArray[np.int64], block_len: int, periods_per_year: float
) -> FloatArray:
    s1 = _resampled_sums(r, starts, block_len)
    s2 = _resampled_sums(r * r, starts, block_len)
    n = r.size
    pairs = zip(s1.tolist(), s2.tolist(), strict=True)
    return np.array([metrics.sharpe_from_moments(a, b, n, periods_per_year) for a, b in pairs])


def bootstrap_sharpe_ci(
    returns: npt.ArrayLike,
    periods_per_year: float,
    n_boot: int = 2000,
    block_len: int | None = None,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """Annualised Sharpe ratio with a circular block-bootstrap percentile interval.

    Args:
        returns: simple per-bar returns (fractions), at least 2.
        periods_per_year: bars per year (> 0), from `envs.metrics.bars_per_year`.
        n_boot: number of bootstrap resamples, >= 1.
        block_len: bars per block; None uses `default_block_len` (``~ n ** (1/3)``).
        alpha: 1 - confidence level, in (0, 1); 0.05 gives a 95% interval.
        rng: random generator; None uses ``np.random.default_rng(0)`` so results are reproducible.

    Returns:
        ``(point, low, high)``: the Sharpe ratio of ``returns`` and the ``alpha/2`` and ``1 - alpha/2``
        quantiles of the bootstrap distribution, all annualised.
    """
    r = _returns(returns, "returns")
    n = r.size
    bl = default_block_len(n) if block_len is None else int(block_len)
    _check_bootstrap_args(n, bl, n_boot, alpha)
    gen = np.random.default_rng(0) if rng is None else rng
    starts = _block_starts(n, bl, n_boot, gen)
    boot = _bootstrap_sharpes(r, starts, bl, periods_per_year)
    low, high = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    point = metrics.sharpe(r, periods_per_year)
    logger.debug(
        "bootstrap Sharpe n=%d block_len=%d n_boot=%d: %.3f [%.3f, %.3f]", n, bl, n_boot, point, low, high
    )
    return point, float(low), float(high)


def bootstrap_sharpe_diff_ci(
    returns_a: npt.ArrayLike,
    returns_b: npt.ArrayLike,
    periods_per_year: float,
    n_boot: int = 2000,
    block_len: int | None = None,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """Difference of annualised Sharpe ratios, A minus B, with a paired block-bootstrap interval.

    Both series are resampled with the *same* blocks (same bar indices), so the interval accounts for
    their correlation: two policies on the same market bars share most of their luck.

    Args:
        returns_a: simple per-bar returns of policy A (e.g. the agent), fractions.
        returns_b: simple per-bar returns of policy B (e.g. buy-and-hold) on the same bars, same length.
        periods_per_year: bars per year (> 0).
        n_boot: number of bootstrap resamples, >= 1.
        block_len: bars per block; None uses `default_block_len`.
        alpha: 1 - confidence level, in (0, 1).
        rng: random generator; None uses ``np.random.default_rng(0)``.

    Returns:
        ``(point, low, high)`` of ``sharpe(A) - sharpe(B)``, annualised.
    """
    a = _returns(returns_a, "returns_a")
    b = _returns(returns_b, "returns_b")
    if a.size != b.size:
        raise ValueError(
            f"returns_a and returns_b must cover the same bars for a paired bootstrap, got lengths "
            f"{a.size} and {b.size}"
        )
    n = a.size
    bl = default_block_len(n) if block_len is None else int(block_len)
    _check_bootstrap_args(n, bl, n_boot, alpha)
    gen = np.random.default_rng(0) if rng is None else rng
    starts = _block_starts(n, bl, n_boot, gen)
    # paired: the same block starts for both series
    diff = _bootstrap_sharpes(a, starts, bl, periods_per_year) - _bootstrap_sharpes(
        b, starts, bl, periods_per_year
    )
    low, high = np.quantile(diff, [alpha / 2.0, 1.0 - alpha / 2.0])
    point = metrics.sharpe(a, periods_per_year) - metrics.sharpe(b, periods_per_year)
    return point, float(low), float(high)


def _skew_kurtosis(r: FloatArray) -> tuple[float, float]:
    """Population skewness and (non-excess) kurtosis; a normal distribution has (0, 3)."""
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0.0:
        return 0.0, 3.0
    return float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, sr_benchmark: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_benchmark`` (Bailey & López de Prado, 2012).

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR**2))`` with ``SR`` the
    per-bar Sharpe ratio of ``returns`` (sample std, ddof=1), ``skew`` and ``kurt`` the population
    skewness and non-excess kurtosis of the returns, and ``Phi`` the standard normal CDF.

    Args:
        returns: simple per-bar returns (fractions), at least 2.
        sr_benchmark: benchmark Sharpe ratio **per bar** (annualised value / sqrt(periods_per_year)).

    Returns:
        Probability in [0, 1].
    """
    r = _returns(returns, "returns")
    sr = metrics.sharpe(r, 1.0)
    skew, kurt = _skew_kurtosis(r)
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if denom <= 0.0:  # only for extreme skew with a large Sharpe; the estimate's variance is ~0
        logger.warning(
            "PSR variance term %.3g <= 0 (skew=%.3g, SR=%.3g); treating as certain", denom, skew, sr
        )
        return 1.0 if sr > sr_benchmark else 0.0
    z = (sr - sr_benchmark) * math.sqrt(r.size - 1) / math.sqrt(denom)
    return _NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe estimates whose true value is 0 (per-bar units).

    ``E[max] ~ sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))`` with ``gamma`` the
    Euler–Mascheroni constant (Bailey & López de Prado, 2014, eq. for SR_0). One trial means no selection:
    0.0.

    Args:
        n_trials: number of independent strategy configurations tried, >= 1.
        sr_variance: variance of the per-bar Sharpe estimates across those trials, >= 0.

    Returns:
        The Sharpe level (per bar) that the best of ``n_trials`` lucky trials would reach on average.
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials={n_trials} is invalid: must be >= 1 (configurations tried)")
    if not sr_variance >= 0.0:
        raise ValueError(f"sr_variance={sr_variance} is invalid: must be >= 0 (per-bar Sharpe units squared)")
    n = int(n_trials)
    if n == 1:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(sr_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(
    returns: npt.ArrayLike,
    n_trials: int,
    sr_variance_across_trials: float | None = None,
    trial_sharpes: Sequence[float] | npt.ArrayLike | None = None,
    trial_periods_per_year: float = 1.0,
) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado, 2014): PSR against the best-of-N luck level.

    ``DSR = PSR(SR_0)`` with ``SR_0 = expected_max_sharpe(n_trials, V)``: the probability that the
    selected strategy's true Sharpe beats what the best of ``n_trials`` zero-skill trials would show.
    Give the variance ``V`` of the trials' Sharpe ratios directly or the trials' Sharpe ratios themselves
    (``V`` is then their sample variance, ddof=1). The computation is in **per-bar** Sharpe units; trial
    values that were annualised (e.g. ``sharpe`` from `envs.metrics.summarize`) are converted when
    ``trial_periods_per_year`` says how they were annualised.

    Args:
        returns: simple per-bar returns of the selected strategy (fractions), at least 2.
        n_trials: number of independent configurations tried (e.g. tuning trials), >= 1.
        sr_variance_across_trials: variance of the trials' Sharpe ratios, >= 0.
        trial_sharpes: Sharpe ratios of all trials (at least 2); used when the variance is None.
        trial_periods_per_year: bars per year the trial Sharpe values were annualised with; they are
            divided by ``sqrt(trial_periods_per_year)`` (the variance by ``trial_periods_per_year``).
            1.0 (default) means they are already per bar.

    Returns:
        Probability in [0, 1]; it falls as ``n_trials`` grows.
    """
    if (sr_variance_across_trials is None) == (trial_sharpes is None):
        raise ValueError(
            "pass exactly one of sr_variance_across_trials or trial_sharpes; with n_trials=1 use "
            "probabilistic_sharpe_ratio instead"
        )
    tppy = float(trial_periods_per_year)
    if not (math.isfinite(tppy) and tppy > 0.0):
        raise ValueError(
            f"trial_periods_per_year={trial_periods_per_year} is invalid: must be > 0 (1.0 = per bar)"
        )
    if sr_variance_across_trials is None:
        ts = np.asarray(trial_sharpes, dtype=np.float64)
        if ts.ndim != 1 or ts.size < 2 or not np.all(np.isfinite(ts)):
            raise ValueError("trial_sharpes must be a 1-D finite sequence of at least 2 Sharpe ratios")
        variance = float(np.var(ts, ddof=1))
    else:
        variance = float(sr_variance_across_trials)
    return probabilistic_sharpe_ratio(returns, expected_max_sharpe(n_trials, variance / tppy))


def _fmt(x: float) -> str:
    """One decimal with a real minus sign (U+2212), for prose."""
    s = f"{x:.1f}"
    if s in ("-0.0", "0.0"):
        return "0.0"
    return s.replace("-", "\u2212")


def verdict(
    sharpe_ci: tuple[float, float, float],
    diff_ci: tuple[float, float, float] | None = None,
    name: str = "agent",
    baseline_name: str = "buy-and-hold",
    alpha: float = 0.05,
    deflated_sharpe: float | None = None,
    n_trials: int | None = None,
) -> str:
    """Plain-words judgement of skill vs. luck from bootstrap intervals.

    Args:
        sharpe_ci: ``(point, low, high)`` annualised Sharpe of the policy, from `bootstrap_sharpe_ci`.
        diff_ci: optional ``(point, low, high)`` of Sharpe(policy) - Sharpe(baseline), from
            `bootstrap_sharpe_diff_ci`.
        name: the policy's name as it should read in the sentence.
        baseline_name: the baseline's name.
        alpha: the ``alpha`` the intervals were computed with (only used for the "95%" label).
        deflated_sharpe: optional deflated Sharpe ratio (probability) to mention.
        n_trials: the number of trials behind ``deflated_sharpe``.

    Returns:
        One or more sentences, e.g. "The agent's Sharpe of 1.2 (95% CI −0.4 to 2.7) is not
        distinguishable from luck: the interval includes 0."
    """
    level = f"{round(100 * (1 - alpha)):d}%"
    point, low, high = sharpe_ci
    head = f"The {name}'s Sharpe of {_fmt(point)} ({level} CI {_fmt(low)} to {_fmt(high)})"
    if low > 0.0:
        parts = [f"{head} is positive beyond luck: the interval excludes 0."]
    elif high < 0.0:
        parts = [f"{head} is negative beyond luck: the interval lies below 0."]
    else:
        parts = [f"{head} is not distinguishable from luck: the interval includes 0."]
    if diff_ci is not None:
        _, dlow, dhigh = diff_ci
        span = f"the {level} CI of the Sharpe difference ({_fmt(dlow)} to {_fmt(dhigh)})"
        if dlow > 0.0:
            parts.append(f"It beats {baseline_name}: {span} excludes 0.")
        elif dhigh < 0.0:
            parts.append(f"It underperforms {baseline_name}: {span} excludes 0.")
        else:
            parts.append(f"It is not distinguishable from {baseline_name}: {span} includes 0.")
    if deflated_sharpe is not None:
        trials = f" over {n_trials} trials" if n_trials is not None else ""
        parts.append(
            f"Deflated Sharpe ratio{trials}: {deflated_sharpe:.2f} (probability that the true Sharpe beats "
            f"the best-of-trials luck level; below 0.95 is not convincing)."
        )
    return " ".join(parts)
