"""The observation's per-bar rows: the feature matrix the kernel's `write_obs` reads, built once.

Two kinds (`EnvConfig.observation`), one kernel routine for both (`envs.sim.kernel.write_obs`, used by
`TradingEnv`, `VecTradingEnv`, evaluation and paper mode alike):

- ``"window"``: the observation of decision bar t is every feature of bars t-W+1..t (W =
  ``window_size``), then the account values. The matrix is the (T, F) feature matrix itself.
- ``"compact"``: every feature of the last ``compact_bars`` bars, then for each look-back ``s`` in
  `EnvConfig.summaries` (``summary_windows``; by default ``compact_bars`` and ``window_size``) the mean
  of every feature over bars t-s+1..t, then the account values. The matrix is
  (T, F x (1 + len(summaries))): row t holds bar t's features, then its means. A
  learner's cost grows with the observation; this keeps the long history as a few numbers per feature.

Causality: row t of the means reads bars t-s+1..t only (s <= window_size, so every decision bar has
its full look-back), summed directly per row, so a row's value does not depend on bars outside its
look-back (a paper session's short tail gives the same numbers as the backtest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import numpy.typing as npt

from envs.sim.config import EnvConfig
from envs.sim.layout import N_ACCOUNT_OBS


@numba.njit(cache=True)
def _window_means(feats: np.ndarray, windows: np.ndarray, out: np.ndarray) -> None:
    """``out[t, j*F:(j+1)*F]`` = mean of ``feats[max(0, t-s+1):t+1]`` with s = ``windows[j]`` (float64 sums)."""
    n, nf = feats.shape
    acc = np.empty(nf, dtype=np.float64)
    for t in range(n):
        for j in range(windows.shape[0]):
            lo = max(0, t - windows[j] + 1)
            acc[:] = 0.0
            for r in range(lo, t + 1):
                for f in range(nf):
                    acc[f] += feats[r, f]
            inv = 1.0 / (t + 1 - lo)
            for f in range(nf):
                out[t, j * nf + f] = acc[f] * inv


def summary_means(feats: npt.NDArray[np.float32], windows: Sequence[int]) -> npt.NDArray[np.float32]:
    """(T, len(windows) x F) float32: per look-back s (bars), per feature, the mean over bars t-s+1..t.

    Rows before a full look-back (t < s - 1) average the bars 0..t that exist; an env never decides
    there (its first decision bar is ``window_size - 1`` >= s - 1). Cost O(T x F x sum(windows)), once.
    """
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    out = np.empty((feats.shape[0], len(windows) * feats.shape[1]), dtype=np.float32)
    _window_means(feats, np.asarray(windows, dtype=np.int64), out)
    return out


def observation_matrix(feats: npt.NDArray[np.float32], config: EnvConfig) -> npt.NDArray[np.float32]:
    """The C-contiguous (T, C) float32 matrix `write_obs` reads for ``config.observation``.

    Args:
        feats: (T, F) observation features (normalised, clipped, finite), see `MarketData.observation_features`.
        config: the validated env config.
    """
    if config.observation == "window" or not config.summaries:
        return np.ascontiguousarray(feats, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([feats, summary_means(feats, config.summaries)]))


def observation_bars(config: EnvConfig) -> int:
    """Bars whose every feature the observation holds (``window_size`` or ``compact_bars``)."""
    return config.compact_bars if config.observation == "compact" else config.window_size


def observation_size(config: EnvConfig, n_features: int) -> int:
    """Floats in one observation with ``n_features`` features per bar (account values included)."""
    n_means = len(config.summaries) if config.observation == "compact" else 0
    return (observation_bars(config) + n_means) * n_features + N_ACCOUNT_OBS
