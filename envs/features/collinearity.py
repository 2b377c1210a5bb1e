"""Collinearity diagnostics and pruning, decided on the TRAINING split only.

``prune_collinear(train_df)`` returns the feature columns to keep; apply that list to the
validation and test splits (never re-decide on them, that would leak their statistics):

    keep = prune_collinear(train[feature_cols])
    train_x, val_x, test_x = train[keep], val[keep], test[keep]

VIF_j = 1 / (1 - R_j^2), where R_j^2 is from regressing feature j on all the others; it equals the
j-th diagonal element of the inverse correlation matrix. Rows with any non-finite value (warm-up)
are ignored; constant columns are always dropped (their VIF is undefined).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_RIDGE = 1e-10
_VIF_INF = 1e9


def _finite_matrix(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    x = df[list(columns)].to_numpy(dtype=np.float64)
    return x[np.isfinite(x).all(axis=1)]


def correlation_matrix(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Pearson correlation of ``columns`` over rows where all of them are finite.

    Returns:
        Square DataFrame in [-1, 1]; NaN rows/columns for constant features.
    """
    cols = list(df.columns if columns is None else columns)
    x = _finite_matrix(df, cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(x, rowvar=False) if x.shape[0] > 1 else np.full((len(cols), len(cols)), np.nan)
    return pd.DataFrame(np.atleast_2d(c), index=cols, columns=cols)


def vif(df: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """Variance inflation factor per column (>= 1; inf for exact collinearity; NaN if constant).

    Computed as the diagonal of the inverse correlation matrix (plus a 1e-10 ridge so that exact
    linear dependencies stay invertible; VIF > 1e9 is reported as inf).
    """
    cols = list(df.columns if columns is None else columns)
    x = _finite_matrix(df, cols)
    std = x.std(axis=0) if x.shape[0] else np.zeros(len(cols))
    const = ~(std > 0)
    out = pd.Series(np.nan, index=cols, dtype=np.float64)
    live = [c for c, k in zip(cols, const, strict=True) if not k]
    if not live:
        return out
    xs = x[:, ~const]
    if len(live) == 1:
        out[live[0]] = 1.0
        return out
    corr = np.corrcoef(xs, rowvar=False)
    # A tiny ridge keeps exact dependencies invertible; their VIF then exceeds 1e9 -> inf.
    d = np.diag(np.linalg.inv(corr + _RIDGE * np.eye(len(live))))
    d = np.where(d > _VIF_INF, np.inf, d)
    out[live] = np.maximum(d, 1.0)
    return out


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Outcome of ``prune_collinear_report``.

    Attributes:
        kept: columns kept, in input order.
        dropped: (column, reason) in the order dropped.
        vif_before: VIF of every input column on the training rows.
        vif_after: VIF of the kept columns.
    """

    kept: list[str]
    dropped: list[tuple[str, str]]
    vif_before: pd.Series
    vif_after: pd.Series

    def to_markdown(self) -> str:
        """Markdown report: kept/dropped counts and a VIF table."""
        lines = [
            f"**collinearity pruning (training split)**: kept {len(self.kept)} of {len(self.vif_before)} features",
            "",
            "| feature | VIF before | VIF after | decision |",
            "| --- | ---: | ---: | --- |",
        ]
        reasons = dict(self.dropped)
        for col, v in self.vif_before.items():
            after = self.vif_after.get(col, np.nan)
            decision = "keep" if col in self.kept else f"drop ({reasons[col]})"
            lines.append(f"| {col} | {v:.2f} | {after:.2f} | {decision} |")
        return "\n".join(lines)


def prune_collinear_report(
    train_df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    threshold_vif: float = 10.0,
    threshold_corr: float | None = None,
) -> PruneResult:
    """Decide which columns to keep on the training split (see ``prune_collinear``)."""
    if not threshold_vif > 1.0:
        raise ValueError(f"threshold_vif={threshold_vif} is invalid: must be > 1 (10 is common)")
    if threshold_corr is not None and not 0.0 < threshold_corr <= 1.0:
        raise ValueError(f"threshold_corr={threshold_corr} is invalid: must be in (0, 1]")
    cols = list(train_df.columns if columns is None else columns)
    before = vif(train_df, cols)
    kept = list(cols)
    dropped: list[tuple[str, str]] = []
    for c in cols:
        if np.isnan(before[c]):
            kept.remove(c)
            dropped.append((c, "constant"))
    if threshold_corr is not None and len(kept) > 1:
        corr = correlation_matrix(train_df, kept).abs().to_numpy()
        alive = np.ones(len(kept), dtype=bool)
        for j in range(len(kept)):  # keep the earlier column of each highly correlated pair
            if alive[j]:
                for i in range(j):
                    if alive[i] and corr[i, j] > threshold_corr:
                        alive[j] = False
                        dropped.append((kept[j], f"|corr| {corr[i, j]:.3f} with {kept[i]}"))
                        break
        kept = [c for c, a in zip(kept, alive, strict=True) if a]
    while len(kept) > 1:
        v = vif(train_df, kept)
        worst = str(v.idxmax())
        if not v[worst] > threshold_vif:
            break
        kept.remove(worst)
        dropped.append((worst, f"VIF {v[worst]:.1f} > {threshold_vif:g}"))
    after = vif(train_df, kept) if kept else pd.Series(dtype=np.float64)
    for col, why in dropped:
        logger.info("collinearity: drop %s (%s)", col, why)
    return PruneResult(kept, dropped, before, after)


def prune_collinear(
    train_df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    threshold_vif: float = 10.0,
    threshold_corr: float | None = None,
) -> list[str]:
    """Columns to keep so that every kept VIF <= ``threshold_vif`` (decided on ``train_df`` only).

    Constant columns are dropped; then, if ``threshold_corr`` is given, the later column of every
    pair with |corr| > ``threshold_corr``; then the column with the highest VIF, repeatedly, until
    all VIFs are <= ``threshold_vif`` (ties: the first such column).

    Args:
        train_df: TRAINING split only (features; warm-up rows with NaN are ignored).
        columns: candidate columns; None = all columns of ``train_df``.
        threshold_vif: VIF limit, > 1 (10 = R^2 of 0.9 against the other features).
        threshold_corr: optional |correlation| limit in (0, 1].

    Returns:
        Names of kept columns, in their original order; apply them to the other splits.
    """
    return prune_collinear_report(train_df, columns, threshold_vif, threshold_corr).kept
