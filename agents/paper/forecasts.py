"""The forecast columns of a paper session: the run's walk-forward schedule continued bar by bar.

A run trained with ``forecaster=<model>`` saved its state in ``<run>/forecaster_state`` (the latest
model of each target and the schedule's last event). A paper session continues that schedule on
the bars after the run's data, exactly as ``scripts/evaluate.py data_path=...`` does
(`agents.forecasts.continue_on_new_bars`): the same grid of fits/updates
(`envs.forecasting.walk_forward.grid_events`), run by the same code
(`envs.forecasting.walk_forward.continue_span`, which `continue_walk_forward` also uses), each on
labels known by the close of its bar.

Per closed bar t (run-span index b):
- a bar with no scheduled event costs one prediction: the model inputs of t (features + return
  lags) come from the features the session already recomputed on its tail (`agents.paper.market`);
- a fit/update bar recomputes the features on the last ``train_window + horizon + embargo +
  tail_bars`` bars it keeps (the training window plus a full feature tail before it, so every
  window row is within the tail bound of the batch features; ``window=expanding`` keeps every bar)
  and runs the event on them.

Resume: the state is reconstructed, not stored. Fits start from scratch, so the models at bar t
follow from the last fit before t and the updates since: `PaperForecasts.catch_up` reruns them
(and the forecasts of the tail's bars) from the bars before the resume point. The result is the
same computation as the uninterrupted session's (bit for bit while the history fits in the tail).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from agents.forecasts import run_history
from envs.features.pipeline import FeatureConfig, build_features
from envs.forecasting.config import ForecastConfig
from envs.forecasting.models import FORECASTERS, Forecaster, load_forecaster
from envs.forecasting.targets import build_inputs, make_target
from envs.forecasting.walk_forward import (
    ENSEMBLE,
    FORECAST_PREFIX,
    Event,
    check_provenance,
    continue_span,
    event_provenance,
    grid_events,
    read_state,
)
from envs.validation import OHLCV_COLUMNS

logger = logging.getLogger(__name__)


def context_rows(config: ForecastConfig) -> int:
    """Rows of inputs one prediction reads: ``seq_len`` for sequence models, else 1."""
    cls = FORECASTERS.get(config.model)
    if cls is None or not cls.sequence:
        return 1
    return int({**cls.defaults, **config.params}["seq_len"])


def _shift(ev: Event, s0: int) -> Event:
    """``ev`` with its bar and window end in row numbers of a span starting at run-span bar ``s0``."""
    return replace(ev, bar=ev.bar - s0, window_end=ev.window_end - s0)


class PaperForecasts:
    """The forecasts of a session's bars from the run's saved forecaster state.

    Bars are numbered by session index k (0 = the replay's or feed's first bar; the run's bars are
    negative); the schedule's run-span index of bar k is ``len(history) + k``.

    Args:
        config: the run's forecaster (must equal the saved state's).
        features: the run's feature config.
        state_dir: ``<run>/forecaster_state``.
        history: the run's bars (``load_frame`` of its data config).
        first_ms: open time of the session's first bar (must be after the run's last bar).
        tail_bars: the session's feature tail (``paper.tail_bars``).

    Raises:
        ValueError: when the state does not belong to this config or data, or cannot be continued.
    """

    def __init__(self, config: ForecastConfig, features: FeatureConfig, state_dir: str | Path,
                 history: pd.DataFrame, first_ms: int, tail_bars: int) -> None:
        state = read_state(state_dir)
        saved = ForecastConfig.from_mapping(state["config"])
        if saved != config:
            raise ValueError(f"the forecaster state in {state_dir} was saved for {saved}, not the run's {config}")
        if config.model == ENSEMBLE:
            raise ValueError("paper mode cannot continue forecaster=ensemble yet (its weights need the members' "
                             "trailing predictions; see docs/forecasting.md): paper-trade a run with another forecaster")
        if state["last_event"] is None:
            raise ValueError(f"the forecaster state in {state_dir} holds no model; nothing to continue")
        self.history = run_history(history, first_ms, state_dir)[list(OHLCV_COLUMNS)]
        self.config, self.features, self.tail_bars = config, features, tail_bars
        self.names = [str(n) for n in state["input_names"]]
        self.interval = int(state["interval_ms"])
        self.n_hist = len(self.history)
        self.models: dict[str, Forecaster] = {t: load_forecaster(Path(state_dir) / t) for t in config.targets}
        self.last = Event(**state["last_event"])  # run-span bar numbers
        ts = self.history["timestamp"].to_numpy(np.int64)
        self.model_id, self.label_end = event_provenance(config, self.last, ts, self.interval)
        self.ctx = context_rows(config)
        lag = config.horizon + config.embargo
        self.keep = None if config.window == "expanding" else config.train_window + lag + tail_bars + self.ctx
        self.bars: deque[tuple[float, ...]] = deque(self.history.itertuples(index=False, name=None), maxlen=self.keep)
        #: session bar -> (forecast per target, model_id, train_label_end) for the last tail_bars bars
        self.values: dict[int, tuple[tuple[float, ...], str, int]] = {}

    @property
    def columns(self) -> list[str]:
        """The ``fc_*`` observation columns."""
        return [FORECAST_PREFIX + t for t in self.config.targets]

    def catch_up(self, before: pd.DataFrame) -> None:
        """Reconstruct the state at session bar ``len(before)`` from the session's earlier bars ``before``.

        Reruns the last fit before the tail's first bar and every event since, and the forecasts of
        the bars the tail holds (what an uninterrupted session computed on them).
        """
        start = len(before)
        bars = before[list(OHLCV_COLUMNS)]
        if start:
            first = self.n_hist + max(0, start - self.tail_bars)  # the tail's first session bar (run-span)
            fits = [ev for ev in grid_events(self.last, self.n_hist, first, self.config) if ev.kind == "fit"]
            lo = fits[-1].bar if fits else self.n_hist
            allbars = pd.concat([self.history, bars], ignore_index=True)
            s0 = 0 if self.keep is None else max(0, lo - self.keep + 1)
            self._advance(allbars.iloc[s0:].reset_index(drop=True), s0, lo, None)
        self.bars.extend(bars.itertuples(index=False, name=None))

    def forecast(self, k: int, tail: pd.DataFrame) -> None:
        """Forecast session bar ``k``, the last row of ``tail`` (the session's tail with its features).

        The bars before ``k`` must be forecast already (bar by bar, or by `catch_up`).
        """
        done = max(self.values) if self.values else -1
        if k != done + 1:
            raise RuntimeError(f"session bar {k} after bar {done}: forecasts advance one bar at a time")
        self.bars.append(next(tail[list(OHLCV_COLUMNS)].iloc[-1:].itertuples(index=False, name=None)))
        b = self.n_hist + k
        if grid_events(self.last, b, b, self.config):  # a fit/update: its window's features, recomputed
            s0 = b - len(self.bars) + 1
            self._advance(pd.DataFrame(list(self.bars), columns=list(OHLCV_COLUMNS)), s0, b, None)
        else:  # a prediction from the tail's features
            self._advance(tail.iloc[-self.ctx:].reset_index(drop=True), b - self.ctx + 1, b,
                          tail.iloc[-(self.ctx + self.config.n_lags + 1):].reset_index(drop=True))

    def _advance(self, span: pd.DataFrame, s0: int, lo: int, built: pd.DataFrame | None) -> None:
        """Run the events of run-span bars ``lo ..`` end of ``span`` (bars ``s0 ..``) and record the forecasts.

        ``built``: rows ending with the span's that already hold the features (else they are computed).
        """
        if built is None:
            built = build_features(span, self.features) if self.features != FeatureConfig.none() else span
        cols = list(built.attrs.get("feature_columns", []))
        X, names = build_inputs(built, cols, self.config.n_lags)
        X = X[len(X) - len(span):]
        if names != self.names:
            raise ValueError(f"the model inputs {names} differ from the saved state's {self.names}; use the run's features")
        hi = s0 + len(span) - 1
        close = span["close"].to_numpy(np.float64)
        ys = {t: make_target(close, t, self.config.horizon) for t in self.config.targets}
        ts = span["timestamp"].to_numpy(np.int64)
        events = grid_events(self.last, max(lo, self.last.bar + 1), hi, self.config)
        local = [_shift(ev, s0) for ev in [self.last, *events]]
        preds, self.models = continue_span(X, ys, np.isfinite(X).all(axis=1), local, self.config, self.names,
                                           self.models, lo - s0)
        at = {ev.bar: ev for ev in local[1:]}
        for row in range(lo - s0, len(span)):
            if row in at:
                self.model_id, self.label_end = event_provenance(self.config, at[row], ts, self.interval)
            k = s0 + row - self.n_hist
            if k >= 0:
                self._record(k, tuple(float(preds[t][row]) for t in self.config.targets), int(ts[row]))
        if events:
            self.last = events[-1]

    def _record(self, k: int, values: tuple[float, ...], bar_ms: int) -> None:
        check_provenance(pd.DataFrame({"timestamp": [bar_ms], "train_label_end": [self.label_end],
                                       "model_id": [self.model_id]}), self.interval)
        self.values[k] = (values, self.model_id, self.label_end)
        self.values.pop(k - self.tail_bars, None)

    def join(self, frame: pd.DataFrame, first: int) -> pd.DataFrame:
        """``frame`` (session bars ``first ..``, features built) with the ``fc_*`` columns of its bars >= 0.

        Forecasts the newest bar first if not done. Rows of the run's bars (k < 0) get NaN: they are
        history for the features and are dropped before the kernel's arrays.
        """
        newest = first + len(frame) - 1
        done = max(self.values) if self.values else -1
        for k in range(max(done + 1, 0), newest + 1):  # the bars not seen yet (the engine's warm-up)
            self.forecast(k, frame.iloc[: k - first + 1])
        out = frame.copy()
        for j, col in enumerate(self.columns):
            out[col] = [self.values[k][0][j] if k >= 0 else np.nan for k in range(first, newest + 1)]
        return out

    def provenance(self, k: int) -> tuple[str, int]:
        """``(model_id, train_label_end)`` of the model that forecast session bar ``k``."""
        _, model_id, label_end = self.values[k]
        return model_id, label_end
