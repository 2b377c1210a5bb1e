"""Tests of agents/evaluation/stats.py: block bootstrap, Sharpe intervals, PSR/DSR, verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.evaluation import stats
from envs import metrics

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "btcusdt_1h.parquet"


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, float]:
    """Real hourly BTC/USDT close-to-close returns and their annualisation factor."""
    df = pd.read_parquet(SAMPLE)
    close = df["close"].to_numpy()
    return close[1:] / close[:-1] - 1.0, metrics.bars_per_year(df["timestamp"].to_numpy())


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


# ------------------------------------------------------------------------------------------------
# block bootstrap
# ------------------------------------------------------------------------------------------------
def test_block_bootstrap_indices_are_circular_blocks() -> None:
    n, block_len = 23, 5
    idx = stats.block_bootstrap_indices(n, block_len, 40, np.random.default_rng(3))
    assert idx.shape == (40, n) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n
    # inside each block consecutive indices step by +1 modulo n
    for row in idx:
        for b in range(0, n, block_len):
            block = row[b : b + block_len]
            np.testing.assert_array_equal(np.diff(block) % n, np.ones(block.size - 1))
    # reproducible from the seed, different for another seed
    again = stats.block_bootstrap_indices(n, block_len, 40, np.random.default_rng(3))
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, stats.block_bootstrap_indices(n, block_len, 40, np.random.default_rng(4)))


def test_block_bootstrap_covers_every_bar_evenly() -> None:
    # circular blocks: every bar has the same chance to be drawn (no edge under-sampling)
    n = 50
    idx = stats.block_bootstrap_indices(n, 10, 4000, np.random.default_rng(0))
    counts = np.bincount(idx.ravel(), minlength=n) / idx.size
    np.testing.assert_allclose(counts, 1.0 / n, rtol=0.1)


@pytest.mark.parametrize(("n", "block_len", "n_boot"), [(1, 1, 10), (10, 0, 10), (10, 11, 10), (10, 2, 0)])
def test_block_bootstrap_rejects_bad_arguments(n: int, block_len: int, n_boot: int) -> None:
    with pytest.raises(ValueError):
        stats.block_bootstrap_indices(n, block_len, n_boot, np.random.default_rng(0))


def test_bootstrap_ci_equals_explicit_resampling() -> None:
    # the fast block-sum path must give exactly the Sharpe of r[indices] for the same draws
    r = np.random.default_rng(11).normal(0.001, 0.01, 157)
    ppy = 8766.0
    point, low, high = stats.bootstrap_sharpe_ci(r, ppy, n_boot=300, block_len=6, rng=np.random.default_rng(5))
    idx = stats.block_bootstrap_indices(r.size, 6, 300, np.random.default_rng(5))
    boot = np.array([metrics.sharpe(r[row], ppy) for row in idx])
    ref_low, ref_high = np.quantile(boot, [0.025, 0.975])
    assert point == metrics.sharpe(r, ppy)
    assert low == pytest.approx(ref_low, rel=1e-9)
    assert high == pytest.approx(ref_high, rel=1e-9)


def test_default_block_len_is_cube_root() -> None:
    assert stats.default_block_len(1000) == 10
    assert stats.default_block_len(20182) == 27
    assert stats.default_block_len(2) == 1


# ------------------------------------------------------------------------------------------------
# skill vs luck on real data
# ------------------------------------------------------------------------------------------------
def test_random_policy_is_not_distinguishable_from_luck(real: tuple[np.ndarray, float]) -> None:
    r, ppy = real
    positions = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], size=r.size)  # random policy
    agent = positions * r
    ci = stats.bootstrap_sharpe_ci(agent, ppy, rng=np.random.default_rng(0))
    point, low, high = ci
    assert low < 0.0 < high
    assert low < point < high
    diff = stats.bootstrap_sharpe_diff_ci(agent, r, ppy, rng=np.random.default_rng(1))
    assert diff[1] < 0.0 < diff[2]
    text = stats.verdict(ci, diff, name="random agent")
    assert "not distinguishable from luck" in text
    assert "not distinguishable from buy-and-hold" in text
    assert text.startswith("The random agent's Sharpe of")


def test_random_policies_rarely_look_skilled(real: tuple[np.ndarray, float]) -> None:
    # A 95% interval should include the true Sharpe (0 for a random policy) about 95% of the time.
    # Any single seed can be unlucky (seed 2024 of this generator gives Sharpe -1.5, CI -2.7 to -0.3),
    # so check the rate over 30 random policies: >= 26 of 30 (expected 28.5).
    r, ppy = real
    covered = 0
    for seed in range(30):
        positions = np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], size=r.size)
        _, low, high = stats.bootstrap_sharpe_ci(positions * r, ppy, n_boot=1000, rng=np.random.default_rng(seed))
        covered += int(low < 0.0 < high)
    assert covered >= 26


def test_strong_drift_excludes_zero(real: tuple[np.ndarray, float]) -> None:
    r, ppy = real
    # +5 bp per hour on top of BTC's own moves: ~44 %/yr of extra drift at ~55 %/yr vol over 2.3 years
    skilled = r + 0.0005
    point, low, high = stats.bootstrap_sharpe_ci(skilled, ppy, rng=np.random.default_rng(0))
    assert low > 0.0
    diff = stats.bootstrap_sharpe_diff_ci(skilled, r, ppy, rng=np.random.default_rng(0))
    assert diff[1] > 0.0
    text = stats.verdict((point, low, high), diff)
    assert "positive beyond luck" in text and "It beats buy-and-hold" in text
    # and the mirror image underperforms
    worse = stats.bootstrap_sharpe_diff_ci(r - 0.0005, r, ppy, rng=np.random.default_rng(0))
    assert worse[2] < 0.0
    assert "underperforms buy-and-hold" in stats.verdict((0.0, -1.0, 1.0), worse)


def test_paired_bootstrap_of_identical_series_is_exactly_zero(real: tuple[np.ndarray, float]) -> None:
    r, ppy = real
    assert stats.bootstrap_sharpe_diff_ci(r, r.copy(), ppy, n_boot=200) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same bars"):
        stats.bootstrap_sharpe_diff_ci(r, r[:-1], ppy)


def test_wider_confidence_level_gives_wider_interval(real: tuple[np.ndarray, float]) -> None:
    r, ppy = real
    _, lo95, hi95 = stats.bootstrap_sharpe_ci(r, ppy, alpha=0.05, rng=np.random.default_rng(0))
    _, lo50, hi50 = stats.bootstrap_sharpe_ci(r, ppy, alpha=0.5, rng=np.random.default_rng(0))
    assert lo95 < lo50 < hi50 < hi95


# ------------------------------------------------------------------------------------------------
# PSR / DSR
# ------------------------------------------------------------------------------------------------
def test_psr_hand_computation() -> None:
    r = np.array([0.1, -0.1, 0.3])
    # per-bar SR: mean 0.1 / std(ddof=1) 0.2 = 0.5
    # deviations 0, -0.2, 0.2: skew 0; m2 = 0.08/3, m4 = 2 * 0.0016 / 3 -> kurtosis m4 / m2^2 = 1.5
    # PSR(0) = Phi(0.5 * sqrt(3 - 1) / sqrt(1 - 0 * 0.5 + (1.5 - 1) / 4 * 0.25))
    z = 0.5 * math.sqrt(2.0) / math.sqrt(1.0 + 0.5 / 4.0 * 0.25)
    assert stats.probabilistic_sharpe_ratio(r) == pytest.approx(_phi(z), rel=1e-12)
    assert stats.probabilistic_sharpe_ratio(r, sr_benchmark=0.5) == pytest.approx(0.5, abs=1e-12)


def test_psr_skew_adjustment_direction() -> None:
    # same mean and std, negative skew -> lower PSR for a positive Sharpe (left tail risk)
    base = np.array([0.02, -0.01, 0.015, -0.005, 0.01, 0.0, 0.012, -0.008])
    left_skewed = np.concatenate([base, [-0.06]])
    right_skewed = -left_skewed[::-1] + 2 * left_skewed.mean()  # mirror: same mean and std, skew flipped
    assert metrics.sharpe(left_skewed, 1.0) == pytest.approx(metrics.sharpe(right_skewed, 1.0), rel=1e-9)
    assert stats.probabilistic_sharpe_ratio(right_skewed) > stats.probabilistic_sharpe_ratio(left_skewed)


def test_expected_max_sharpe_hand() -> None:
    # N = 2, V = 1: (1 - g) * Phi^-1(1/2) + g * Phi^-1(1 - 1/(2e)) = g * Phi^-1(1 - 1/(2e))
    from statistics import NormalDist

    expected = stats.EULER_GAMMA * NormalDist().inv_cdf(1.0 - 1.0 / (2.0 * math.e))
    assert stats.expected_max_sharpe(2, 1.0) == pytest.approx(expected, rel=1e-12)
    assert stats.expected_max_sharpe(1, 1.0) == 0.0
    assert stats.expected_max_sharpe(100, 0.04) == pytest.approx(2 * stats.expected_max_sharpe(100, 0.01))


def test_deflated_sharpe_decreases_with_trials(real: tuple[np.ndarray, float]) -> None:
    r, _ = real
    strategy = r + 0.0002
    dsr = [stats.deflated_sharpe_ratio(strategy, n, sr_variance_across_trials=1e-4) for n in (1, 2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(dsr, dsr[1:], strict=False))
    assert dsr[0] == pytest.approx(stats.probabilistic_sharpe_ratio(strategy))  # one trial: no deflation
    assert all(0.0 <= d <= 1.0 for d in dsr)


def test_deflated_sharpe_from_trial_sharpes_matches_variance(real: tuple[np.ndarray, float]) -> None:
    r, _ = real
    trial_sharpes = np.array([0.01, -0.005, 0.02, 0.0, 0.007])
    a = stats.deflated_sharpe_ratio(r, 5, trial_sharpes=trial_sharpes)
    b = stats.deflated_sharpe_ratio(r, 5, sr_variance_across_trials=float(np.var(trial_sharpes, ddof=1)))
    assert a == b
    # the same trials reported as annualised Sharpes (hourly bars) give the same DSR
    annualised = trial_sharpes * math.sqrt(8766.0)
    c = stats.deflated_sharpe_ratio(r, 5, trial_sharpes=annualised, trial_periods_per_year=8766.0)
    assert c == pytest.approx(a, rel=1e-9)
    # ... while forgetting the conversion deflates far too much
    assert stats.deflated_sharpe_ratio(r, 5, trial_sharpes=annualised) < a
    with pytest.raises(ValueError, match="exactly one"):
        stats.deflated_sharpe_ratio(r, 5)


# ------------------------------------------------------------------------------------------------
# verdict wording
# ------------------------------------------------------------------------------------------------
def test_verdict_text_matches_the_example() -> None:
    text = stats.verdict((1.2, -0.4, 2.7))
    assert text == (
        "The agent's Sharpe of 1.2 (95% CI \u22120.4 to 2.7) is not distinguishable from luck: "
        "the interval includes 0."
    )
    text = stats.verdict((1.2, 0.5, 2.7), (0.9, 0.3, 1.9), deflated_sharpe=0.42, n_trials=20)
    assert "positive beyond luck" in text
    assert "It beats buy-and-hold: the 95% CI of the Sharpe difference (0.3 to 1.9) excludes 0." in text
    assert "over 20 trials: 0.42" in text
    assert "negative beyond luck" in stats.verdict((-2.0, -3.0, -1.0))
    assert "90% CI" in stats.verdict((1.0, 0.1, 2.0), alpha=0.1)
