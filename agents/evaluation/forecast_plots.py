"""PNG plots of forecast skill: predicted vs realised, rolling IC, feature importance.

Same conventions as `agents.evaluation.plots` (explicit Agg canvas, no pyplot, returns the path).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agents.evaluation.forecast_skill import spearman
from agents.evaluation.plots import _new_figure, _save, _x_axis

logger = logging.getLogger(__name__)

__all__ = ["plot_predicted_vs_realised", "plot_rolling_ic", "plot_importance"]


def plot_predicted_vs_realised(pred: npt.ArrayLike, realised: npt.ArrayLike, path: str | Path,
                               target: str = "target") -> Path:
    """Scatter of prediction (x) against realised label (y) on rows where both are known."""
    p, y = np.asarray(pred, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(y)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.scatter(p[ok], y[ok], s=3, alpha=0.3)
    if ok.any():
        lo, hi = float(min(p[ok].min(), y[ok].min())), float(max(p[ok].max(), y[ok].max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, label="y = x")
        ax.legend(loc="upper left")
    ax.set_xlabel(f"predicted {target}")
    ax.set_ylabel(f"realised {target}")
    ax.set_title(f"Out-of-sample {target}: predicted vs realised (n={int(ok.sum())})")
    return _save(fig, path)


def rolling_ic(pred: npt.ArrayLike, realised: npt.ArrayLike, window: int, stride: int = 1) -> np.ndarray:
    """Spearman IC over the trailing ``window`` known rows, every ``stride`` rows (NaN before the first window)."""
    p, y = np.asarray(pred, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    out = np.full(p.size, np.nan)
    for end in range(window, p.size + 1, max(1, stride)):
        a, b = p[end - window : end], y[end - window : end]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= 10:
            out[end - 1] = spearman(a[ok], b[ok])
    return out


def plot_rolling_ic(pred: npt.ArrayLike, realised: npt.ArrayLike, window: int, path: str | Path,
                    timestamps_ms: npt.ArrayLike | None = None) -> Path:
    """Rolling Spearman IC (``window`` rows) over time, with the zero line."""
    p = np.asarray(pred, dtype=np.float64)
    ic = rolling_ic(p, realised, window, stride=max(1, window // 20))
    x, xlabel = _x_axis(p.size, timestamps_ms)
    ok = np.isfinite(ic)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot(x[ok], ic[ok], linewidth=1.0)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Spearman IC")
    ax.set_title(f"Rolling IC over {window} predictions")
    return _save(fig, path)


def plot_importance(importance: Mapping[str, float], path: str | Path, top: int = 20,
                    title: str = "LightGBM feature importance (gain)") -> Path:
    """Horizontal bars of the ``top`` largest importances."""
    items = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig = _new_figure()
    ax = fig.add_subplot()
    names = [k for k, _ in items][::-1]
    ax.barh(np.arange(len(names)), [v for _, v in items][::-1])
    ax.set_yticks(np.arange(len(names)), labels=names, fontsize=7)
    ax.set_xlabel("importance")
    ax.set_title(title)
    return _save(fig, path)
