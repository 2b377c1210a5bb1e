"""The forecast columns of a paper session: the run's walk-forward schedule continued bar by bar.

A run trained with ``forecaster=<model>`` saved its state in ``<run>/forecaster_state`` (the latest
model of each target and the schedule's last event). A paper session continues that schedule on
the bars after the run's data, exactly as ``scripts/evaluate.py data_path=...`` does
(`agents.forecasts.continue_on_new_bars`): the same grid of fits/updates
(`envs.forecasting.walk_forward.grid_events`), run by the same code
(`envs.forecasting.state.continue_span`, which `continue_walk_forward` also uses), each on
labels known by the close of its bar.

Per closed bar t (run-span index b):
- a bar with no scheduled event costs one prediction: the model inputs of t (features + return
  lags) come from the features the session already recomputed on its tail (`agents.paper.market`);
- a fit/update bar recomputes the features on the last ``train_window + horizon + embargo +
  tail_bars`` bars it keeps (the training window plus a full feature tail before it, so every
  window row is within the tail bound of the batch features; ``window=expanding`` keeps every bar)
  and runs the event on them.

An ensemble (``forecaster=ensemble``) runs each member so, and combines their forecasts of bar t
with weights from their forecasts of the trailing bars (`envs.forecasting.ensemble.Trail`, seeded with
the rows the run's state saved), the same arithmetic as evaluation's `combine`.

Resume: the state is reconstructed, not stored. Fits start from scratch, so the models at bar t
follow from the last fit before t and the updates since: `PaperForecasts.catch_up` reruns them
(and the forecasts of the tail's bars; for an ensemble also its members' forecasts of the trailing
bars its weights read) from the bars before the resume point. The result is the
same computation as the uninterrupted session's (bit for bit while the history fits in the tail).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from agents.forecasts import run_history
from envs.features.pipeline import FeatureConfig, build_features
from envs.forecasting.config import ForecastConfig
from envs.forecasting.ensemble import Trail, ensemble_model_id, history_rows, member_configs
from envs.forecasting.models import FORECASTERS, Forecaster
from envs.forecasting.state import continuable_state, continue_span, load_models
from envs.forecasting.targets import build_inputs, make_target
from envs.forecasting.walk_forward import (
    ENSEMBLE,
    FORECAST_PREFIX,
    Event,
    check_provenance,
    event_provenance,
    grid_events,
)
from envs.market.bars import OHLCV_COLUMNS

logger = logging.getLogger(__name__)


def context_rows(config: ForecastConfig) -> int:
    """Rows of inputs one prediction reads: ``seq_len`` for sequence models (an ensemble's longest), else 1."""
    rows = 1
    for cfg in member_configs(config).values():
        cls = FORECASTERS.get(cfg.model)
        if cls is not None and cls.sequence:
            rows = max(rows, int({**cls.defaults, **cfg.params}["seq_len"]))
    return rows


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
        state = continuable_state(state_dir, config)
        self.history = run_history(history, first_ms, state_dir)[list(OHLCV_COLUMNS)]
        self.config, self.features, self.tail_bars = config, features, tail_bars
        self.names = [str(n) for n in state["input_names"]]
        self.interval = int(state["interval_ms"])
        self.n_hist = len(self.history)
        self.members = member_configs(config)  # an ensemble's members, or the model itself
        self.models: dict[str, dict[str, Forecaster]] = load_models(state_dir, config)
        #: an ensemble's members' predictions of the last bars, which its weights read (None for one model)
        self.trail = Trail.from_state(config, state_dir, state, self.history) if config.model == ENSEMBLE else None
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

    def catch_up(self, before: pd.DataFrame, window: int) -> None:
        """Reconstruct the state at session bar ``len(before)`` from the session's earlier bars ``before``.

        Reruns, each exactly as the uninterrupted session did, the last fit before the observation
        window of the resume bar, every event since, and the forecasts of the window's earlier bars
        (``window - 1``: the only ones an observation reads; older tail rows stay NaN, a leading
        warm-up the kernel never reads).
        """
        start = len(before)
        exact = max(0, start - window + 1)  # first session bar whose forecast an observation will read
        # an ensemble's weights there read its members' forecasts of the trailing bars too
        first = max(0, exact - (history_rows(self.config) if self.trail is not None else 0))
        fits = [ev for ev in grid_events(self.last, self.n_hist, self.n_hist + first, self.config) if ev.kind == "fit"]
        lo = fits[-1].bar - self.n_hist if fits else 0
        for k, bar in enumerate(before[list(OHLCV_COLUMNS)].itertuples(index=False, name=None)):
            self.bars.append(bar)
            b = self.n_hist + k
            if k >= first or (k >= lo and grid_events(self.last, b, b, self.config)):
                self._step(k, None, record=k >= exact)

    def forecast(self, k: int, tail: pd.DataFrame, cols: list[str]) -> None:
        """Forecast session bar ``k``, the last row of ``tail`` (the session's tail with its features).

        ``tail`` may be a longer tail's prefix (the engine's warm-up): then the features of ``k`` are
        recomputed on its own tail, the last ``tail_bars`` bars up to ``k``. ``cols``: its feature
        columns. The bars before ``k`` must be forecast already (bar by bar, or by `catch_up`).
        """
        done = max(self.values) if self.values else -1
        if k != done + 1:
            raise RuntimeError(f"session bar {k} after bar {done}: forecasts advance one bar at a time")
        self.bars.append(next(tail[list(OHLCV_COLUMNS)].iloc[-1:].itertuples(index=False, name=None)))
        own = len(tail) == self.tail_bars or len(tail) == len(self.bars)  # the tail at k itself
        self._step(k, (tail, cols) if own else None)

    def _step(self, k: int, tail: tuple[pd.DataFrame, list[str]] | None, record: bool = True) -> None:
        """Forecast session bar ``k`` (the newest in ``self.bars``), running the event scheduled at it.

        The inputs of ``k``: at an event, the features of the last ``keep`` bars (the window's
        samples and their tail); otherwise those of its tail (``tail``, or recomputed on the last
        ``tail_bars`` bars). ``record=False`` runs the event without keeping the forecast.
        """
        b = self.n_hist + k
        event = bool(grid_events(self.last, b, b, self.config))
        use_tail = tail is not None and not event
        n = len(self.bars) if event else self.ctx if use_tail else min(len(self.bars), self.tail_bars)
        span = pd.DataFrame(list(itertools.islice(self.bars, len(self.bars) - n, None)), columns=list(OHLCV_COLUMNS))
        if use_tail:
            assert tail is not None
            built, cols = tail[0].iloc[-(self.ctx + self.config.n_lags + 1):], tail[1]
        else:
            built = build_features(span, self.features) if self.features != FeatureConfig.none() else span
            cols = list(built.attrs.get("feature_columns", []))
            built.attrs = {}
        X, names = build_inputs(built, cols, self.config.n_lags)
        if names != self.names:
            raise ValueError(f"the model inputs {names} differ from the saved state's {self.names}; use the run's features")
        X = X[len(X) - n:] if len(X) >= n else np.vstack([np.full((n - len(X), X.shape[1]), np.nan), X])
        s0 = b - n + 1
        close = span["close"].to_numpy(np.float64)
        ys = {t: make_target(close, t, self.config.horizon) for t in self.config.targets}
        ts = span["timestamp"].to_numpy(np.int64)
        events = grid_events(self.last, b, b, self.config)
        local = [_shift(ev, s0) for ev in [self.last, *events]]
        valid = np.asarray(np.isfinite(X).all(axis=1), dtype=np.bool_)
        values = np.empty((len(self.config.targets), len(self.members)))  # (target, member)
        for j, (m, cfg) in enumerate(self.members.items()):
            preds, self.models[m] = continue_span(X, ys, valid, local, cfg, self.names, self.models[m], n - 1)
            values[:, j] = [preds[t][n - 1] for t in self.config.targets]
        if events:
            self.model_id, self.label_end = event_provenance(self.config, local[-1], ts, self.interval)
            self.last = events[-1]
        if self.trail is not None:
            self.trail.put(k, float(span["close"].iloc[-1]), values)
        if record:
            combined = self.trail.combine(k) if self.trail is not None else tuple(float(v) for v in values[:, 0])
            self._record(k, combined, int(ts[n - 1]))

    def _record(self, k: int, values: tuple[float, ...], bar_ms: int) -> None:
        model_id, label_end = self.model_id, self.label_end
        if self.trail is not None:  # the ensemble's id; its weights use the label known at this bar's close
            model_id = ensemble_model_id(list(self.members), model_id)
            label_end = self.trail.label_end(k, bar_ms + self.interval, label_end)
        check_provenance(pd.DataFrame({"timestamp": [bar_ms], "train_label_end": [label_end],
                                       "model_id": [model_id]}), self.interval)
        self.values[k] = (values, model_id, label_end)
        self.values.pop(k - self.tail_bars, None)

    def join(self, frame: pd.DataFrame, first: int) -> pd.DataFrame:
        """``frame`` (session bars ``first ..``, features built) with the ``fc_*`` columns of its bars >= 0.

        Forecasts the newest bar first if not done. Rows of the run's bars (k < 0) get NaN: they are
        history for the features and are dropped before the kernel's arrays.
        """
        cols = list(frame.attrs.get("feature_columns", []))
        out = frame.copy()
        out.attrs = {}  # (pandas deep-copies attrs on every column access)
        newest = first + len(frame) - 1
        done = max(self.values) if self.values else -1
        for k in range(max(done + 1, 0), newest + 1):  # the bars not seen yet (the engine's warm-up)
            self.forecast(k, out.iloc[: k - first + 1], cols)
        for j, col in enumerate(self.columns):
            out[col] = [self.values[k][0][j] if k in self.values else np.nan for k in range(first, newest + 1)]
        return out

    def provenance(self, k: int) -> tuple[str, int]:
        """``(model_id, train_label_end)`` of the model that forecast session bar ``k``."""
        _, model_id, label_end = self.values[k]
        return model_id, label_end
