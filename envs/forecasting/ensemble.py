"""Inverse-error ensemble of walk-forward forecasters, weighted only by labels already known.

At bar t each member's weight is ``1 / MSE`` of its own out-of-sample predictions over the trailing
``trailing`` bars whose labels are known by t's close (bars ``s <= t - horizon``; squared error, i.e.
the Brier score for ``direction``); weights sum to 1. Until a member has one known error all members
weigh the same. Members run on the same schedule, so the ensemble inherits their prefix invariance;
its ``train_label_end`` is the latest of the members' and of the labels behind the weights (at most
t's close).

Each row's combination reads only the rows ``t - horizon - trailing + 1 .. t`` and adds them in a
fixed order, so a row computed from those rows alone (a continuation's saved trailing predictions,
paper mode's bar-by-bar `Trail`) is bit-identical to the same row of a run over the whole span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.forecasting.columns import ENSEMBLE, ENSEMBLE_DEFAULTS, FORECAST_PREFIX, check_provenance
from envs.forecasting.config import ForecastConfig
from envs.forecasting.targets import make_target

FloatArray = npt.NDArray[np.float64]


def member_configs(config: ForecastConfig) -> dict[str, ForecastConfig]:
    """Member name -> its config (``config``'s schedule and targets, its ``member_params``).

    A single model is its own one member: ``{config.model: config}``.

    Raises:
        ValueError: unknown ensemble params, or fewer than 2 members.
    """
    if config.model != ENSEMBLE:
        return {config.model: config}
    unknown = sorted(set(config.params) - set(ENSEMBLE_DEFAULTS))
    if unknown:
        raise ValueError(f"forecaster.params has {unknown} for the ensemble: allowed {sorted(ENSEMBLE_DEFAULTS)}")
    p = {**ENSEMBLE_DEFAULTS, **config.params}
    members = [str(m) for m in p["members"]]  # type: ignore[attr-defined]
    if len(members) < 2 or ENSEMBLE in members or len(set(members)) != len(members):
        raise ValueError(f"forecaster.params.members={members} is invalid: give >= 2 distinct registered models")
    member_params = dict(p["member_params"])  # type: ignore[call-overload]
    return {m: replace(config, model=m, params=member_params.get(m, {})) for m in members}


def trailing_of(config: ForecastConfig) -> int:
    """``params.trailing`` of an ensemble config (bars of known errors behind each weight), checked >= 1."""
    trailing = int({**ENSEMBLE_DEFAULTS, **config.params}["trailing"])  # type: ignore[call-overload]
    if trailing < 1:
        raise ValueError(f"forecaster.params.trailing={trailing} is invalid: must be >= 1 bar")
    return trailing


def history_rows(config: ForecastConfig) -> int:
    """Rows before bar t whose member predictions the weights at t read: ``trailing + horizon - 1``."""
    return trailing_of(config) + config.horizon - 1


def _trailing_mse(err: FloatArray, horizon: int, trailing: int) -> FloatArray:
    """Row i: mean of ``err[j]`` over finite rows j in ``[i - horizon - trailing + 1, i - horizon]`` (NaN if none).

    The rows are added nearest first, one shifted slice at a time: row i's sum depends only on its
    own window, whatever rows the array holds before it.
    """
    n = err.shape[0]
    ok = np.isfinite(err)
    e = np.where(ok, err, 0.0)
    s = np.zeros(err.shape)
    c = np.zeros(err.shape, dtype=np.int64)
    for lag in range(horizon, min(horizon + trailing, n)):
        s[lag:] += e[: n - lag]
        c[lag:] += ok[: n - lag]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def weighted(P: FloatArray, y: FloatArray, horizon: int, trailing: int) -> FloatArray:
    """The ensemble's prediction of every row of member predictions ``P`` (rows, members) with labels ``y``.

    Row i uses ``P[i]`` and the errors of rows ``i - horizon - trailing + 1 .. i - horizon``; the
    members are summed in their order (no reduction whose order depends on the array's shape).
    """
    mse = _trailing_mse((P - y[:, None]) ** 2, horizon, trailing)
    known = np.asarray(np.isfinite(mse).all(axis=1), dtype=np.bool_)
    w = np.where(known[:, None], 1.0 / np.maximum(mse, 1e-300), 1.0)
    total = w[:, 0].copy()
    for j in range(1, w.shape[1]):
        total += w[:, j]
    out = w[:, 0] / total * P[:, 0]
    for j in range(1, w.shape[1]):
        out += w[:, j] / total * P[:, j]
    return out


def ensemble_model_id(members: Sequence[str], member_model_id: str, name: str = ENSEMBLE) -> str:
    """``ensemble(<m1>+<m2>):fit<N>.u<M>@<ms>`` from a member's model id (the members share the schedule)."""
    return f"{name}({'+'.join(members)}):" + str(member_model_id).split(":", 1)[1]


def combine(frames: Mapping[str, pd.DataFrame], targets: tuple[str, ...], horizon: int, trailing: int,
            interval_ms: int, name: str = "ensemble", first_row: int = 0) -> pd.DataFrame:
    """The ensemble's prediction frame from its members' frames (same rows, same schedule).

    Args:
        frames: member name -> walk-forward prediction frame.
        targets: the targets (the first is ``y_true``).
        horizon: label horizon in bars.
        trailing: bars of known errors behind each weight, >= 1.
        interval_ms: bar interval (the close time of a row is ``timestamp + interval_ms``).
        name: the ``model_id`` prefix.
        first_row: predicted rows before the frames' first row (a continuation's frames start with
            saved trailing rows; it decides from which row the weights use labels).
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
        P = np.column_stack([frames[m][FORECAST_PREFIX + target].to_numpy(dtype=np.float64) for m in members])
        out[FORECAST_PREFIX + target] = weighted(P, first[ycol].to_numpy(dtype=np.float64), horizon, trailing)
    for j, target in enumerate(targets):
        ycol = "y_true" if j == 0 else f"y_{target}"
        out[ycol] = first[ycol].to_numpy()
    out["model_id"] = [ensemble_model_id(members, m, name) for m in first["model_id"]]
    ends = np.column_stack([frames[m]["train_label_end"].to_numpy(dtype=np.int64) for m in members]).max(axis=1)
    rows = np.arange(len(ts)) + first_row
    weight_end = np.where(rows >= horizon, ts + interval_ms, -1)  # label of row i - horizon: known at i's close
    out["train_label_end"] = np.maximum(ends, weight_end)
    return out


class Trail:
    """The ensemble combined bar by bar (paper mode): the members' predictions of the last bars, bounded.

    Bars are keyed by an integer position (paper mode's session index); the weights at bar k read
    the rows ``k - horizon - trailing + 1 .. k``, which must all have been `put` unless they precede
    the run's first prediction (``row0``: the position of that first predicted bar).

    Args:
        config: the ensemble's config.
        row0: position of the run's first predicted bar.
    """

    def __init__(self, config: ForecastConfig, row0: int) -> None:
        self.config, self.row0 = config, row0
        self.members = list(member_configs(config))
        self.trailing = trailing_of(config)
        self.size = self.trailing + config.horizon  # rows one combination reads, bar k included
        self.rows: dict[int, tuple[float, FloatArray]] = {}

    @classmethod
    def from_state(cls, config: ForecastConfig, state_dir: str | Path, state: dict[str, Any],
                   history: pd.DataFrame) -> Trail:
        """The trail at the end of a saved run: its saved trailing rows as bars ``-rows .. -1``.

        ``history``: the run's bars the state was saved on (their closes give the rows' labels).
        """
        saved = read_trail(state_dir, config, state)
        trail = cls(config, row0=-int(state["n_predicted"]))
        members = list(saved)
        rows = len(saved[members[0]])
        ts = history["timestamp"].to_numpy(np.int64)[len(history) - rows:]
        if not np.array_equal(saved[members[0]]["timestamp"].to_numpy(np.int64), ts):
            raise ValueError("the saved trailing predictions are not of the run's last bars: the history bars differ "
                             "from those the state was saved on")
        close = history["close"].to_numpy(np.float64)[len(history) - rows:]
        P = np.stack([np.column_stack([saved[m][FORECAST_PREFIX + t].to_numpy(np.float64) for m in members])
                      for t in config.targets], axis=1)  # (rows, targets, members)
        for i in range(rows):
            trail.put(i - rows, close[i], P[i])
        return trail

    def put(self, k: int, close: float, values: FloatArray) -> None:
        """Bar ``k``'s close and member predictions (``values[target_index, member_index]``)."""
        self.rows[k] = (float(close), np.asarray(values, dtype=np.float64))
        for old in [j for j in self.rows if j <= k - self.size]:
            del self.rows[old]

    def combine(self, k: int) -> tuple[float, ...]:
        """The ensemble's forecast per target at bar ``k`` (its own and the trailing rows `put` already)."""
        keys = range(max(k - self.size + 1, self.row0), k + 1)
        missing = [j for j in keys if j not in self.rows]
        if missing:
            raise RuntimeError(f"ensemble weights at bar {k} need the members' predictions of bars {missing}")
        close = np.array([self.rows[j][0] for j in keys])
        P = np.stack([self.rows[j][1] for j in keys])  # (rows, targets, members)
        h = self.config.horizon
        return tuple(float(weighted(P[:, i, :], make_target(close, t, h), h, self.trailing)[-1])
                     for i, t in enumerate(self.config.targets))

    def label_end(self, k: int, bar_close_ms: int, member_label_end: int) -> int:
        """``train_label_end`` of bar ``k``: the members' or, once weights use labels, bar k's close."""
        return max(member_label_end, bar_close_ms if k - self.row0 >= self.config.horizon else -1)


#: the ensemble state's file of each member's trailing predictions (`envs.forecasting.state.save_state`)
TRAIL_FILE = "trailing_predictions.parquet"


def read_trail(directory: str | Path, config: ForecastConfig, state: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """An ensemble state's member -> its saved trailing prediction rows (checked: every member, no look-ahead)."""
    path = Path(directory) / TRAIL_FILE
    if not path.is_file():
        raise ValueError(f"{path} not found: the ensemble state lacks its members' trailing predictions (saved by "
                         "save_state since FORECAST_VERSION 2); retrain the run to continue it")
    frame = pd.read_parquet(path)
    rows = min(history_rows(config), int(state["n_predicted"]))
    out: dict[str, pd.DataFrame] = {}
    for m in member_configs(config):
        part = frame[frame["member"] == m].drop(columns="member").reset_index(drop=True)
        if len(part) != rows:
            raise ValueError(f"{path} holds {len(part)} rows of member {m}, not {rows}: the file is damaged")
        check_provenance(part, int(state["interval_ms"]))
        out[m] = part
    return out
