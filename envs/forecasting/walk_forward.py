"""Walk-forward forecast generation with provenance, and the join of forecasts into observations.

The schedule and the rule a model obeys are in the package docstring (``envs.forecasting``).
`walk_forward_predictions(bars, features, config)` returns one row per predicted bar:
``timestamp`` (decision bar open time, ms UTC), ``fc_<target>`` per target, ``y_true`` (the primary
target's realised label, NaN where not known within the span; ``y_<target>`` for the others),
``model_id`` and ``train_label_end`` (ms UTC). `join_predictions` appends the ``fc_*`` columns to an
observation frame and raises if any row's model used a label known after that row's decision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.forecasting.columns import ENSEMBLE, FORECAST_PREFIX, check_provenance
from envs.forecasting.config import ForecastConfig
from envs.forecasting.ensemble import combine, member_configs, trailing_of
from envs.forecasting.models import Forecaster, ModelContext, make_forecaster
from envs.forecasting.targets import build_inputs, make_target

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Event:
    """One fit or online update of the schedule.

    Attributes:
        bar: index of the bar at whose close the model is fitted/updated.
        kind: ``"fit"`` or ``"update"``.
        refit_no: count of fits before this refit period (0 for the first).
        update_no: updates since the period's fit (0 for the fit itself).
        window_end: last sample index the model may use: ``bar - horizon - embargo``.
    """

    bar: int
    kind: str
    refit_no: int
    update_no: int
    window_end: int


def bar_interval_ms(timestamps: npt.ArrayLike) -> int:
    """The bar interval: the smallest step between consecutive open times (ms, > 0)."""
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.size < 2:
        raise ValueError("forecasting needs at least 2 bars to know the bar interval")
    step = np.diff(ts)
    if np.any(step <= 0):
        raise ValueError("bar timestamps must be strictly increasing; clean the bars first")
    return int(step.min())


def schedule(valid_sample: npt.NDArray[np.bool_], config: ForecastConfig) -> list[Event]:
    """Fit/update events for a span whose usable samples are ``valid_sample`` (inputs and label known).

    The first fit is at the first bar ``f`` with ``min_train`` usable samples ``s <= f - horizon -
    embargo``; refits follow every ``refit_every`` bars, updates every ``update_every`` bars between
    them. Everything is decided from bars <= the event bar, so a prefix of the data has a prefix of
    these events.
    """
    n = valid_sample.size
    lag = config.horizon + config.embargo
    count = np.cumsum(valid_sample)
    reached = np.flatnonzero(count >= config.min_train)
    if reached.size == 0 or int(reached[0]) + lag >= n:
        return []
    first = int(reached[0]) + lag
    events: list[Event] = []
    for refit_no, fit_bar in enumerate(range(first, n, config.refit_every)):
        events.append(Event(fit_bar, "fit", refit_no, 0, fit_bar - lag))
        if config.update_every:
            stop = min(fit_bar + config.refit_every, n)
            for u, bar in enumerate(range(fit_bar + config.update_every, stop, config.update_every), start=1):
                events.append(Event(bar, "update", refit_no, u, bar - lag))
    return events


def grid_events(last: Event, lo: int, hi: int, config: ForecastConfig) -> list[Event]:
    """The events of `schedule` at bars ``lo .. hi`` (inclusive) of a schedule whose event ``last`` ran.

    After its first fit the schedule is a fixed grid (fits every ``refit_every`` bars from the first
    fit, updates every ``update_every`` bars after each fit), so the events of bars after a saved
    state follow from its last event alone: no history is needed to continue it (paper mode).
    """
    first = last.bar - last.update_no * config.update_every - last.refit_no * config.refit_every
    lag = config.horizon + config.embargo
    out: list[Event] = []
    for bar in range(max(lo, first), hi + 1):
        refit_no, d = divmod(bar - first, config.refit_every)
        if d == 0:
            out.append(Event(bar, "fit", refit_no, 0, bar - lag))
        elif config.update_every and d % config.update_every == 0:
            out.append(Event(bar, "update", refit_no, d // config.update_every, bar - lag))
    return out


def _window(valid_sample: npt.NDArray[np.bool_], end: int, config: ForecastConfig) -> npt.NDArray[np.int64]:
    """Usable sample indices of the training window ending at sample ``end`` (inclusive)."""
    lo = 0 if config.window == "expanding" else max(0, end - config.train_window + 1)
    return np.flatnonzero(valid_sample[lo : end + 1]).astype(np.int64) + lo


@dataclass(slots=True)
class WalkForwardResult:
    """Output of `run_walk_forward`.

    Attributes:
        predictions: the prediction frame (see the module docstring).
        models: target -> the latest model (for saving the state and continuing).
        events: the schedule that ran.
        windows: model_id -> sample indices (into the span) of every fit/update behind that model,
            in order (an audit trail: tests check each label was known by the decision).
        input_names: names of the model inputs.
        interval_ms: bar interval.
        members: an ensemble's member name -> that member's prediction frame (empty for one model).
    """

    predictions: pd.DataFrame
    models: dict[str, Forecaster]
    events: list[Event]
    windows: dict[str, list[npt.NDArray[np.int64]]] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)
    interval_ms: int = 0
    members: dict[str, pd.DataFrame] = field(default_factory=dict)


def _model_id(config: ForecastConfig, ev: Event, ts: npt.NDArray[np.int64]) -> str:
    return f"{config.model}:fit{ev.refit_no}.u{ev.update_no}@{int(ts[ev.bar])}"


def _model_inputs(X: FloatArray, config: ForecastConfig) -> FloatArray:
    """``X`` itself, or for sequence models a ``(n, seq_len, inputs)`` view of the last ``seq_len`` rows.

    Row t of the view holds rows ``t - seq_len + 1 .. t`` (causal); rows before the span's first valid
    input (feature warm-up, before the data) are zeros. It is a strided view: indexing copies only
    the rows asked for.
    """
    from envs.forecasting.models import FORECASTERS

    cls = FORECASTERS.get(config.model)
    if cls is None or not cls.sequence:
        return X
    seq_len = int({**cls.defaults, **config.params}["seq_len"])
    filled = np.where(np.isfinite(X), X, 0.0)
    padded = np.vstack([np.zeros((seq_len - 1, X.shape[1])), filled])
    view = np.lib.stride_tricks.sliding_window_view(padded, seq_len, axis=0)  # (n, inputs, seq_len)
    return view.transpose(0, 2, 1)


def _run_target(
    X: FloatArray, y: FloatArray, valid_input: npt.NDArray[np.bool_], events: list[Event],
    config: ForecastConfig, context: ModelContext, resume: tuple[Forecaster, int] | None = None,
) -> tuple[FloatArray, Forecaster | None, list[npt.NDArray[np.int64]]]:
    """Predictions of one target over the span (NaN before the first fit) and the last model.

    ``resume=(model, from_bar)`` continues a schedule whose events before ``from_bar`` already ran
    (``model`` is their result, e.g. loaded from `save_state`): only bars >= ``from_bar`` are
    predicted and only the later events run.
    """
    n = X.shape[0]
    valid_sample = valid_input & np.isfinite(y)
    data = _model_inputs(X, config)
    pred = np.full(n, np.nan)
    model: Forecaster | None = None
    windows: list[npt.NDArray[np.int64]] = []
    prev_end = -1
    first_i = 0
    if resume is not None:
        model, from_bar = resume
        first_i = sum(1 for ev in events if ev.bar < from_bar)
        prev_end = events[first_i - 1].window_end
        stop = events[first_i].bar if first_i < len(events) else n
        rows = np.flatnonzero(valid_input[from_bar:stop]) + from_bar
        if rows.size:
            pred[rows] = model.predict(data[rows])
    for i in range(first_i, len(events)):
        ev = events[i]
        idx = _window(valid_sample, ev.window_end, config)
        if idx.size == 0:
            raise ValueError(
                f"no usable samples in the training window ending at bar {ev.window_end}; the inputs are NaN "
                "there (gap in the features?) - clean the bars or widen forecaster.train_window"
            )
        if ev.kind == "fit":
            model = make_forecaster(config.model, context, config.params)
            model.fit(data[idx], y[idx])
        else:
            assert model is not None
            model.update(data[idx], y[idx], int(np.count_nonzero(idx > prev_end)))
        windows.append(idx)
        prev_end = ev.window_end
        stop = events[i + 1].bar if i + 1 < len(events) else n
        rows = np.flatnonzero(valid_input[ev.bar : stop]) + ev.bar
        if rows.size:
            pred[rows] = model.predict(data[rows])
    return pred, model, windows


@dataclass(frozen=True, slots=True)
class _Span:
    """Inputs, labels and schedule of a span (shared by `run_walk_forward` and `continue_walk_forward`)."""

    X: FloatArray
    names: list[str]
    ts: npt.NDArray[np.int64]
    interval: int
    valid_input: npt.NDArray[np.bool_]
    ys: dict[str, FloatArray]
    events: list[Event]


def _prepare(bars: pd.DataFrame, features: pd.DataFrame | None, config: ForecastConfig) -> _Span:
    if features is not None and len(features) != len(bars):
        raise ValueError(f"features has {len(features)} rows but bars has {len(bars)}; they must align row by row")
    frame = bars.reset_index(drop=True)
    cols: list[str] = []
    if features is not None:
        feats = features.reset_index(drop=True)
        cols = [str(c) for c in feats.columns]
        frame = pd.concat([frame[["timestamp", "close"]], feats], axis=1)
    X, names = build_inputs(frame, cols, config.n_lags)
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    interval = bar_interval_ms(ts)
    close = frame["close"].to_numpy(dtype=np.float64)
    valid_input = np.asarray(np.isfinite(X).all(axis=1), dtype=np.bool_)
    ys = {t: make_target(close, t, config.horizon) for t in config.targets}
    events = schedule(valid_input & np.isfinite(ys[config.targets[0]]), config)
    return _Span(X, names, ts, interval, valid_input, ys, events)


def _frame(span: _Span, preds: dict[str, FloatArray], first: int, config: ForecastConfig) -> pd.DataFrame:
    """The prediction frame of bars ``first ..`` of the span (layout in the module docstring)."""
    out: dict[str, object] = {"timestamp": span.ts[first:]}
    for target in config.targets:
        out[FORECAST_PREFIX + target] = preds[target][first:]
    for i, target in enumerate(config.targets):
        out["y_true" if i == 0 else f"y_{target}"] = span.ys[target][first:]
    ids, label_end = _provenance(span.events, len(span.ts), span.ts, span.interval, config)
    out["model_id"] = ids[first:]
    out["train_label_end"] = label_end[first:]
    return pd.DataFrame(out)


def run_walk_forward(
    bars: pd.DataFrame, features: pd.DataFrame | None, config: ForecastConfig
) -> WalkForwardResult:
    """Walk-forward predictions of every target of ``config`` over the span of ``bars``.

    Args:
        bars: clean bars (``timestamp`` int64 ms open times, strictly increasing; ``close`` > 0).
        features: the run's causal feature columns, one row per bar (e.g. the feature columns of
            ``build_features``), or None for lags only. NaN rows (warm-up) get no prediction and
            are no training samples.
        config: model, targets and schedule.

    Returns:
        `WalkForwardResult`; its ``predictions`` hold one row per bar from the first fit on.
    """
    if not config.enabled:
        raise ValueError("forecaster.model=none makes no forecasts; choose a model (e.g. forecaster=gbm)")
    if config.model == ENSEMBLE:
        return _run_ensemble(bars, features, config)
    span = _prepare(bars, features, config)
    events, n = span.events, len(span.ts)
    first = events[0].bar if events else n
    if not events:
        logger.warning("forecast: %d bars are too few for min_train=%d samples; no predictions", n, config.min_train)
    preds: dict[str, FloatArray] = {}
    models: dict[str, Forecaster] = {}
    audit: dict[str, list[npt.NDArray[np.int64]]] = {}
    for target in config.targets:
        ctx = ModelContext(target=target, horizon=config.horizon, input_names=tuple(span.names), seed=config.seed)
        preds[target], model, windows = _run_target(span.X, span.ys[target], span.valid_input, events, config, ctx)
        if model is not None:
            models[target] = model
        if target == config.targets[0]:
            audit = _audit(events, windows, span.ts, config)
    frame = _frame(span, preds, first, config)
    logger.info("forecast %s: %d fits/updates, %d predicted bars of %d", config.model, len(events), len(frame), n)
    return WalkForwardResult(frame, models, events, audit, span.names, span.interval)


def _audit(events: list[Event], windows: list[npt.NDArray[np.int64]], ts: npt.NDArray[np.int64],
           config: ForecastConfig) -> dict[str, list[npt.NDArray[np.int64]]]:
    """model_id -> every window behind it (a fit plus the updates since; only the fit for refit-only models)."""
    out: dict[str, list[npt.NDArray[np.int64]]] = {}
    chain: list[npt.NDArray[np.int64]] = []
    for ev, idx in zip(events, windows, strict=True):
        chain = [idx] if ev.kind == "fit" else [*chain, idx]
        out[_model_id(config, ev, ts)] = list(chain)
    return out


def _provenance(events: list[Event], n: int, ts: npt.NDArray[np.int64], interval: int,
                config: ForecastConfig) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.int64]]:
    """Per bar: the id of the model that predicts it and the close time of its latest label."""
    ids = np.full(n, "", dtype=object)
    label_end = np.full(n, -1, dtype=np.int64)
    for i, ev in enumerate(events):
        stop = events[i + 1].bar if i + 1 < len(events) else n
        ids[ev.bar : stop], label_end[ev.bar : stop] = event_provenance(config, ev, ts, interval)
    return ids, label_end


def event_provenance(config: ForecastConfig, ev: Event, ts: npt.NDArray[np.int64], interval: int) -> tuple[str, int]:
    """``(model_id, train_label_end)`` of the model an event produced (``ts``: open times by row, ms UTC).

    The latest label any fit/update of the chain used is that of sample ``window_end``, known at the
    close of bar ``window_end + horizon``.
    """
    return _model_id(config, ev, ts), int(ts[ev.window_end + config.horizon]) + int(interval)


def walk_forward_predictions(
    bars: pd.DataFrame, features: pd.DataFrame | None, config: ForecastConfig
) -> pd.DataFrame:
    """The prediction frame of `run_walk_forward` (the ``fc_*`` columns can be joined as features)."""
    return run_walk_forward(bars, features, config).predictions


def forecast_columns(predictions: pd.DataFrame) -> list[str]:
    """The ``fc_*`` columns of a prediction frame."""
    return [c for c in predictions.columns if str(c).startswith(FORECAST_PREFIX)]


def join_predictions(observations: pd.DataFrame, predictions: pd.DataFrame,
                     interval_ms: int | None = None) -> pd.DataFrame:
    """``observations`` with the ``fc_*`` columns of ``predictions`` appended (matched on ``timestamp``).

    Only forecasts join (never ``y_true``); bars without a prediction (warm-up) get NaN, like feature
    warm-up. Raises ``ValueError`` when a prediction's ``train_label_end`` is after its decision time
    or a ``fc_*`` column already exists.

    Args:
        observations: frame with an int64 ms ``timestamp`` column (bar open times).
        predictions: a prediction frame (`walk_forward_predictions` or the cached Parquet).
        interval_ms: bar interval; None infers it from ``observations["timestamp"]``.
    """
    interval = bar_interval_ms(observations["timestamp"]) if interval_ms is None else int(interval_ms)
    check_provenance(predictions, interval)
    cols = forecast_columns(predictions)
    clash = [c for c in cols if c in observations.columns]
    if clash:
        raise ValueError(f"observations already hold forecast columns {clash}; join predictions once")
    right = predictions[["timestamp", *cols]]
    if right["timestamp"].duplicated().any():
        raise ValueError("predictions have duplicated timestamps; one row per decision bar is required")
    return observations.merge(right, on="timestamp", how="left", validate="one_to_one")


def fold_ids(model_ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """Refit-period number of each prediction row, parsed from its ``model_id`` (``...:fit<N>.u<M>@...``)."""
    return np.array([int(str(m).split(":fit", 1)[1].split(".", 1)[0]) for m in model_ids], dtype=np.int64)


def baseline_configs(config: ForecastConfig) -> dict[str, ForecastConfig]:
    """The naive baselines to score ``config``'s model against: same schedule, the targets each supports."""
    from envs.forecasting.models import FORECASTERS

    out: dict[str, ForecastConfig] = {}
    for name, cls in FORECASTERS.items():
        sub = tuple(t for t in config.targets if t in cls.targets)
        if cls.baseline and sub and name != config.model:
            out[name] = replace(config, model=name, targets=sub, params={})
    return out


def _run_ensemble(bars: pd.DataFrame, features: pd.DataFrame | None, config: ForecastConfig) -> WalkForwardResult:
    """Members on ``config``'s schedule, combined by `envs.forecasting.ensemble.combine`.

    Params: ``members`` (registered model names), ``trailing`` (bars of known errors behind the
    weights), ``member_params`` (member name -> its params).
    """

    configs = member_configs(config)
    trailing = trailing_of(config)
    results = {m: run_walk_forward(bars, features, cfg) for m, cfg in configs.items()}
    first = next(iter(results.values()))
    preds = combine({m: r.predictions for m, r in results.items()}, config.targets, config.horizon, trailing,
                    first.interval_ms)
    models = {f"{t}/{m}": r.models[t] for m, r in results.items() for t in r.models}
    return WalkForwardResult(preds, models, first.events, {}, first.input_names, first.interval_ms,
                             {m: r.predictions for m, r in results.items()})
