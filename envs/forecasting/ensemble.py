"""Inverse-error ensemble of walk-forward forecasters, weighted only by labels already known.

At bar t each member's weight is ``1 / MSE`` of its own out-of-sample predictions over the trailing
``trailing`` bars whose labels are known by t's close (bars ``s <= t - horizon``; squared error, i.e.
the Brier score for ``direction``); weights sum to 1. Until a member has one known error all members
weigh the same. Members run on the same schedule, so the ensemble inherits their prefix invariance;
its ``train_label_end`` is the latest of the members' and of the labels behind the weights (at most
t's close).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.forecasting.walk_forward import FORECAST_PREFIX

FloatArray = npt.NDArray[np.float64]


def _trailing_mse(err: FloatArray, horizon: int, trailing: int) -> FloatArray:
    """Row i: mean of ``err[j]`` over finite rows j in ``[i - horizon - trailing + 1, i - horizon]`` (NaN if none)."""
    n = err.shape[0]
    ok = np.isfinite(err)
    cs = np.vstack([np.zeros((1,) + err.shape[1:]), np.cumsum(np.where(ok, err, 0.0), axis=0)])
    cn = np.vstack([np.zeros((1,) + err.shape[1:]), np.cumsum(ok, axis=0)])
    i = np.arange(n)
    hi = np.clip(i - horizon + 1, 0, n)  # exclusive end: rows <= i - horizon
    lo = np.clip(i - horizon - trailing + 1, 0, n)
    s, c = cs[hi] - cs[lo], cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def combine(frames: Mapping[str, pd.DataFrame], targets: tuple[str, ...], horizon: int, trailing: int,
            interval_ms: int, name: str = "ensemble") -> pd.DataFrame:
    """The ensemble's prediction frame from its members' frames (same rows, same schedule).

    Args:
        frames: member name -> walk-forward prediction frame.
        targets: the targets (the first is ``y_true``).
        horizon: label horizon in bars.
        trailing: bars of known errors behind each weight, >= 1.
        interval_ms: bar interval (the close time of a row is ``timestamp + interval_ms``).
        name: the ``model_id`` prefix.
    """
    if trailing < 1:
        raise ValueError(f"forecaster.params.trailing={trailing} is invalid: must be >= 1 bar")
    members = list(frames)
    first = frames[members[0]]
    ts = first["timestamp"].to_numpy(dtype=np.int64)
    for m in members[1:]:
        if not np.array_equal(frames[m]["timestamp"].to_numpy(), ts):
            raise ValueError(f"ensemble member {m} predicts other bars than {members[0]}")
    out = first[["timestamp"]].copy()
    for j, target in enumerate(targets):
        ycol = "y_true" if j == 0 else f"y_{target}"
        y = first[ycol].to_numpy(dtype=np.float64)
        P = np.column_stack([frames[m][FORECAST_PREFIX + target].to_numpy(dtype=np.float64) for m in members])
        mse = _trailing_mse((P - y[:, None]) ** 2, horizon, trailing)
        known = np.asarray(np.isfinite(mse).all(axis=1), dtype=np.bool_)
        w = np.where(known[:, None], 1.0 / np.maximum(mse, 1e-300), 1.0)
        w /= w.sum(axis=1, keepdims=True)
        out[FORECAST_PREFIX + target] = np.sum(w * P, axis=1)
    for j, target in enumerate(targets):
        ycol = "y_true" if j == 0 else f"y_{target}"
        out[ycol] = first[ycol].to_numpy()
    suffix = first["model_id"].astype(str).str.split(":", n=1).str[1]
    out["model_id"] = f"{name}({'+'.join(members)}):" + suffix
    ends = np.column_stack([frames[m]["train_label_end"].to_numpy(dtype=np.int64) for m in members]).max(axis=1)
    rows = np.arange(len(ts))
    weight_end = np.where(rows >= horizon, ts + interval_ms, -1)  # label of row i - horizon: known at i's close
    out["train_label_end"] = np.maximum(ends, weight_end)
    return out
