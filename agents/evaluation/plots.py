"""PNG plots for evaluation reports: equity, drawdown, exposure vs. price, per-trade returns.

Figures are built with `matplotlib.figure.Figure` on an explicit Agg canvas, never through pyplot, so no
display is needed, no global backend is switched and no figure is left open. Each function takes arrays
and an output path and returns the path written. The x-axis is the bar index, or UTC time when
``timestamps_ms`` (int64 milliseconds) is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from envs import metrics

logger = logging.getLogger(__name__)

__all__ = ["plot_equity", "plot_drawdown", "plot_exposure", "plot_trade_returns"]

_FIGSIZE = (10.0, 4.5)
_DPI = 110


def _new_figure() -> Figure:
    fig = Figure(figsize=_FIGSIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _x_axis(n: int, timestamps_ms: npt.ArrayLike | None) -> tuple[np.ndarray, str]:
    """X values of length n: UTC datetimes from the last n timestamps, else bar indices."""
    if timestamps_ms is None:
        return np.arange(n), "bar"
    ts = np.asarray(timestamps_ms, dtype=np.int64)
    if ts.ndim != 1 or ts.size < n:
        raise ValueError(
            f"timestamps_ms must be 1-D with at least {n} values (one per point), got {ts.shape}"
        )
    return ts[-n:].astype("datetime64[ms]"), "time (UTC)"


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    logger.info("wrote plot %s", out)
    return out


def _curves(curves: Mapping[str, npt.ArrayLike]) -> dict[str, np.ndarray]:
    if not curves:
        raise ValueError("curves must name at least one equity curve, e.g. {'agent': equity}")
    out = {str(k): np.asarray(v, dtype=np.float64) for k, v in curves.items()}
    for name, v in out.items():
        if v.ndim != 1 or v.size < 1:
            raise ValueError(f"curve {name!r} must be a non-empty 1-D array, got shape {v.shape}")
    return out


def plot_equity(
    curves: Mapping[str, npt.ArrayLike],
    path: str | Path,
    timestamps_ms: npt.ArrayLike | None = None,
    normalize: bool = True,
    title: str = "Equity: agent vs. baselines",
) -> Path:
    """Equity curves of several policies on one axis.

    Args:
        curves: name -> equity curve in quote currency (e.g. ``{"agent": eq, "buy-and-hold": eq_bh}``).
            Curves may differ in length; each is aligned to the end of ``timestamps_ms``.
        path: output PNG path (parent folders are created).
        timestamps_ms: optional bar timestamps, int64 ms UTC, at least as long as the longest curve.
        normalize: divide each curve by its first value, so all start at 1.0 (growth of 1 unit).
        title: figure title.

    Returns:
        The path written.
    """
    data = _curves(curves)
    fig = _new_figure()
    ax = fig.add_subplot()
    for name, eq in data.items():
        x, xlabel = _x_axis(eq.size, timestamps_ms)
        ax.plot(x, eq / eq[0] if normalize else eq, label=name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("equity (start = 1)" if normalize else "equity (quote)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def plot_drawdown(
    curves: Mapping[str, npt.ArrayLike],
    path: str | Path,
    timestamps_ms: npt.ArrayLike | None = None,
    title: str = "Drawdown",
) -> Path:
    """Drawdown (fraction below the running peak, from `envs.metrics.drawdown_series`) of each curve.

    Args:
        curves: name -> equity curve in quote currency.
        path: output PNG path.
        timestamps_ms: optional bar timestamps, int64 ms UTC.
        title: figure title.

    Returns:
        The path written.
    """
    data = _curves(curves)
    fig = _new_figure()
    ax = fig.add_subplot()
    for name, eq in data.items():
        x, xlabel = _x_axis(eq.size, timestamps_ms)
        dd = metrics.drawdown_series(eq)
        ax.plot(x, -100.0 * dd, label=f"{name} (max {100 * dd.max():.1f}%)", linewidth=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("drawdown (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_exposure(
    exposure: npt.ArrayLike,
    prices: npt.ArrayLike,
    path: str | Path,
    timestamps_ms: npt.ArrayLike | None = None,
    title: str = "Exposure and price",
) -> Path:
    """Signed exposure (position value / equity) on the left axis, price on the right axis.

    Args:
        exposure: signed exposure per bar as a fraction of equity (1.0 = fully long, -1.0 = fully short).
        prices: price per bar in quote currency, same length as ``exposure``.
        path: output PNG path.
        timestamps_ms: optional bar timestamps, int64 ms UTC.
        title: figure title.

    Returns:
        The path written.
    """
    ex = np.asarray(exposure, dtype=np.float64)
    px = np.asarray(prices, dtype=np.float64)
    if ex.ndim != 1 or ex.shape != px.shape or ex.size < 1:
        raise ValueError(
            f"exposure and prices must be 1-D of the same non-zero length, got {ex.shape} and {px.shape}"
        )
    x, xlabel = _x_axis(ex.size, timestamps_ms)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.fill_between(x, 0.0, ex, step="post", color="tab:blue", alpha=0.35, label="exposure")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_ylabel("exposure (fraction of equity)", color="tab:blue")
    ax.set_xlabel(xlabel)
    ax2 = ax.twinx()
    ax2.plot(x, px, color="black", linewidth=0.9, label="price")
    ax2.set_ylabel("price (quote)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_trade_returns(
    trade_returns: npt.ArrayLike,
    path: str | Path,
    bins: int = 50,
    title: str = "Per-trade returns",
) -> Path:
    """Histogram of per-trade returns (from `envs.metrics.trades_from_positions`), in percent.

    Args:
        trade_returns: per-trade simple returns (fractions). An empty array gives a figure saying
            "no trades".
        path: output PNG path.
        bins: number of histogram bins, >= 1.
        title: figure title.

    Returns:
        The path written.
    """
    tr = np.asarray(trade_returns, dtype=np.float64).ravel()
    if bins < 1:
        raise ValueError(f"bins={bins} is invalid: must be >= 1")
    fig = _new_figure()
    ax = fig.add_subplot()
    if tr.size == 0:
        ax.text(0.5, 0.5, "no trades", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.hist(100.0 * tr, bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.axvline(100.0 * float(np.mean(tr)), color="tab:red", linestyle="--",
                   label=f"mean {100 * np.mean(tr):.2f}% ({tr.size} round trips)")
        ax.legend(loc="best")
    ax.set_xlabel("trade return (%)")
    ax.set_ylabel("round trips")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)
