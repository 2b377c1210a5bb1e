"""Forecast targets (labels) and model inputs, all from closes and the causal feature matrix.

Label of bar ``s`` with horizon ``k`` (known at the close of bar ``s + k``, NaN for the last ``k``
bars of a span):

* ``fwd_log_return``: ``log(close[s+k]) - log(close[s])`` (log return, unitless).
* ``direction``: 1.0 if that return is > 0 else 0.0 (a flat bar counts as "not up").
* ``realized_vol``: ``sqrt(sum_{j=1..k} r[s+j]**2)`` with ``r`` the one-bar log returns (per k bars,
  not annualised).

The *latest known label* at bar ``t`` is the label of bar ``t - k``; it is a function of the last
``k`` one-bar log returns (`past_label`), which the naive ``last`` baseline uses.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

TARGETS: tuple[str, ...] = ("fwd_log_return", "direction", "realized_vol")
#: targets scored as probabilities of "up" (log loss / Brier) rather than as values
CLASSIFICATION_TARGETS: tuple[str, ...] = ("direction",)


def check_target(name: str) -> None:
    """Raise ``ValueError`` naming the allowed targets when ``name`` is not one of them."""
    if name not in TARGETS:
        raise ValueError(f"forecaster.targets has {name!r}: allowed {list(TARGETS)} (conf/forecaster/*.yaml)")


def log_returns(close: npt.ArrayLike) -> FloatArray:
    """One-bar log returns ``r[t] = log(close[t] / close[t-1])``; ``r[0]`` is NaN.

    Raises:
        ValueError: when a close is not finite and > 0.
    """
    c = np.asarray(close, dtype=np.float64)
    if not np.all(np.isfinite(c) & (c > 0)):
        bad = int(np.flatnonzero(~(np.isfinite(c) & (c > 0)))[0])
        raise ValueError(f"close[{bad}]={c[bad]!r}: forecasting needs finite closes > 0; clean the bars first")
    r = np.empty_like(c)
    r[0] = np.nan
    r[1:] = np.diff(np.log(c))
    return r


def make_target(close: npt.ArrayLike, target: str, horizon: int) -> FloatArray:
    """Label of every bar (NaN where not known within the span: the last ``horizon`` bars)."""
    check_target(target)
    if horizon < 1:
        raise ValueError(f"forecaster.horizon={horizon} is invalid: must be >= 1 bar")
    logc = np.log(np.asarray(close, dtype=np.float64))
    n = logc.size
    y = np.full(n, np.nan)
    if n <= horizon:
        return y
    if target == "realized_vol":
        sq = np.nan_to_num(log_returns(close)) ** 2
        acc = sq[1 : n - horizon + 1].copy()  # summed bar by bar, not as a difference of running sums:
        for j in range(2, horizon + 1):  # a label's bits then depend on its own bars only (paper mode
            acc += sq[j : n - horizon + j]  # computes labels on a recent tail, evaluation on the whole span)
        y[: n - horizon] = np.sqrt(acc)
        return y
    fwd = logc[horizon:] - logc[:-horizon]
    y[: n - horizon] = fwd if target == "fwd_log_return" else (fwd > 0.0).astype(np.float64)
    return y


def past_label(lags: FloatArray, target: str, horizon: int) -> FloatArray:
    """Latest known label at each row (the label of bar ``t - horizon``) from the lag columns.

    Args:
        lags: ``(n, n_lags)`` one-bar log returns, column j = ``r[t - j]``; needs n_lags >= horizon.
        target: one of ``TARGETS``.
        horizon: bars, >= 1.
    """
    if lags.shape[1] < horizon:
        raise ValueError(
            f"the naive 'last' forecaster needs forecaster.n_lags >= forecaster.horizon, got "
            f"n_lags={lags.shape[1]} and horizon={horizon}; raise n_lags"
        )
    last = lags[:, :horizon]
    if target == "realized_vol":
        return np.sqrt(np.sum(last * last, axis=1))
    s = np.sum(last, axis=1)
    return s if target == "fwd_log_return" else np.where(np.isnan(s), np.nan, (s > 0.0).astype(np.float64))


def lag_matrix(close: npt.ArrayLike, n_lags: int) -> FloatArray:
    """``(n, n_lags)`` matrix whose column j is the one-bar log return of bar ``t - j`` (NaN before data)."""
    if n_lags < 0:
        raise ValueError(f"forecaster.n_lags={n_lags} is invalid: must be >= 0")
    r = log_returns(close)
    out = np.full((r.size, n_lags), np.nan)
    for j in range(n_lags):
        out[j:, j] = r[: r.size - j]
    return out


def build_inputs(bars: pd.DataFrame, feature_columns: list[str], n_lags: int) -> tuple[FloatArray, list[str]]:
    """Model inputs: the causal feature columns of ``bars`` then ``lag_0 .. lag_{n_lags-1}``.

    Args:
        bars: bars with feature columns (``envs.features.pipeline.build_features`` output).
        feature_columns: names of the feature columns to use (may be empty).
        n_lags: number of one-bar log-return lags, >= 0.

    Returns:
        ``(X, names)``: float64 C-ordered ``(n, len(names))`` matrix and its column names.
    """
    missing = [c for c in feature_columns if c not in bars.columns]
    if missing:
        raise ValueError(f"feature columns {missing} are not in the bars frame; build them with build_features")
    cols = [bars[c].to_numpy(dtype=np.float64) for c in feature_columns]
    lags = lag_matrix(bars["close"].to_numpy(), n_lags)
    names = [*feature_columns, *(f"lag_{j}" for j in range(n_lags))]
    X = np.empty((len(bars), len(names)), dtype=np.float64)
    for j, col in enumerate(cols):
        X[:, j] = col
    X[:, len(cols):] = lags
    if not names:
        raise ValueError("no model inputs: give feature columns or forecaster.n_lags >= 1")
    return X, names
