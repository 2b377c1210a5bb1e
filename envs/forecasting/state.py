"""A forecaster's saved state (latest models, schedule position) and the continuation of its schedule.

Evaluation on new bars (`agents.forecasts`) and paper mode (`agents.paper.forecasts`) continue a training
run's walk-forward schedule from the state it saved, with the same rules as `walk_forward` (no model
uses a label before it is known).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs.forecasting.config import ForecastConfig
from envs.forecasting.ensemble import (
    TRAIL_FILE,
    combine,
    history_rows,
    member_configs,
    read_trail,
    trailing_of,
)
from envs.forecasting.models import Forecaster, ModelContext, load_forecaster
from envs.forecasting.walk_forward import (  # the schedule's own steps, shared with the batch walk-forward
    ENSEMBLE,
    FORECAST_PREFIX,
    Event,
    FloatArray,
    WalkForwardResult,
    _frame,
    _prepare,
    _run_target,
    _Span,
)

#: an ensemble state's file of the members' trailing predictions (the rows its next weights read)


def save_state(result: WalkForwardResult, config: ForecastConfig, directory: str | Path,
               extra: dict[str, object] | None = None) -> Path:
    """Save what continuing the schedule needs: the latest model of each target and the schedule position.

    Layout: ``<directory>/<target>/`` (`Forecaster.save`; an ensemble's members in
    ``<target>/<member>/``) and ``schedule.json`` (config, bar interval, input names, the last event,
    the open times of its bar, of the first fit and of the span's last bar ``last_bar_ms``, the count
    of predicted bars ``n_predicted``, plus ``extra``). An ensemble adds ``TRAIL_FILE``: each member's
    prediction rows (``member``, ``timestamp``, ``fc_*``, ``model_id``, ``train_label_end``) of the last
    ``trailing + horizon - 1`` predicted bars, the errors its next weights read (their labels are
    recomputed from the bars). `continue_walk_forward` reads it.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for target, model in result.models.items():
        model.save(d / target)
    ts = result.predictions["timestamp"].to_numpy(dtype=np.int64)
    last = result.events[-1] if result.events else None
    state = {
        "config": asdict(config),
        "interval_ms": result.interval_ms,
        "input_names": result.input_names,
        "first_fit_ms": int(ts[0]) if ts.size else None,
        "last_event": asdict(last) if last else None,
        "last_event_ms": int(ts[last.bar - result.events[0].bar]) if last else None,
        "last_bar_ms": int(ts[-1]) if ts.size else None,
        "n_predicted": int(ts.size),
        **(extra or {}),
    }
    if config.model == ENSEMBLE:
        _save_trail(result, config, d)
    (d / "schedule.json").write_text(json.dumps(state, indent=2, default=list) + "\n", encoding="utf-8")
    return d


def _save_trail(result: WalkForwardResult, config: ForecastConfig, directory: Path) -> None:

    keep = ["timestamp", *(FORECAST_PREFIX + t for t in config.targets), "model_id", "train_label_end"]
    rows = min(history_rows(config), len(result.predictions))
    frames = [f.iloc[len(f) - rows:][keep].assign(member=m) for m, f in result.members.items()]
    pd.concat(frames, ignore_index=True)[["member", *keep]].to_parquet(directory / TRAIL_FILE, index=False)


def read_state(directory: str | Path) -> dict[str, Any]:
    """``schedule.json`` of a state saved by `save_state` (raises naming the folder when missing)."""
    path = Path(directory) / "schedule.json"
    if not path.is_file():
        raise ValueError(f"{path} not found: no saved forecaster state (save_state writes it; a training run "
                         "with a forecaster saves it in <run>/forecaster_state)")
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def continuable_state(state_dir: str | Path, config: ForecastConfig) -> dict[str, Any]:
    """The saved state in ``state_dir`` when ``config`` can continue it (evaluation and paper mode).

    Raises:
        ValueError: the state was saved for another config, holds no model yet (its span was shorter
            than ``min_train``), or an ensemble's lacks its members' trailing predictions.
    """
    state = read_state(state_dir)
    saved_cfg = ForecastConfig.from_mapping(state["config"])
    if saved_cfg != config:
        raise ValueError(f"the forecaster state in {state_dir} was saved for {saved_cfg}, not {config}")
    if state["last_event"] is None:
        raise ValueError(f"the forecaster state in {state_dir} holds no model (its span was shorter than "
                         f"forecaster.min_train={config.min_train}); nothing to continue")
    if config.model == ENSEMBLE:
        read_trail(state_dir, config, state)
    return state


def continue_walk_forward(
    bars: pd.DataFrame, features: pd.DataFrame | None, config: ForecastConfig, state_dir: str | Path,
) -> pd.DataFrame:
    """Predictions for the bars after a saved state, continuing its schedule from the saved models.

    ``bars`` (and ``features``, row-aligned) hold the span the state was saved on followed by new
    bars. The saved models predict the new bars until the schedule's next fit/update; the later
    fits/updates run on labels known by their bar, exactly as `run_walk_forward` over the whole of
    ``bars`` would (the schedule is anchored at the span's first bar; tests check the equality).

    Returns:
        The prediction frame of the new bars (those after the state's ``last_bar_ms``).

    Raises:
        ValueError: when the state does not belong to ``config`` or to these bars, or there are no
            new bars.
    """
    state = continuable_state(state_dir, config)
    span = _prepare(bars, features, config)
    start = int(np.searchsorted(span.ts, int(state["last_bar_ms"]), side="right"))
    if start == 0 or span.ts[start - 1] != int(state["last_bar_ms"]):
        raise ValueError(f"the bars do not contain the state's last bar (timestamp {state['last_bar_ms']}); pass the "
                         "span the state was saved on followed by the new bars")
    if start == len(span.ts):
        raise ValueError("no bars after the saved forecaster state's last bar; nothing to predict")
    if list(span.names) != list(state["input_names"]):
        raise ValueError(f"the model inputs {span.names} differ from the saved state's {state['input_names']}; use "
                         "the run's feature config")
    old = [ev for ev in span.events if ev.bar < start]
    if not old or asdict(old[-1]) != state["last_event"]:
        raise ValueError(f"the schedule over these bars does not reach the saved state's last event "
                         f"{state['last_event']} (got {asdict(old[-1]) if old else None}): the history bars differ "
                         "from those the state was saved on")
    if config.model == ENSEMBLE:
        return _continue_ensemble(span, config, state_dir, state, start)
    models = load_models(state_dir, config)[config.model]
    preds, _ = continue_span(span.X, span.ys, span.valid_input, span.events, config, span.names, models, start)
    return _frame(span, preds, start, config)


def load_models(state_dir: str | Path, config: ForecastConfig) -> dict[str, dict[str, Forecaster]]:
    """Member -> target -> the saved latest model (a single model is its own one member)."""

    sub = config.model == ENSEMBLE
    return {m: {t: load_forecaster(Path(state_dir) / t / m if sub else Path(state_dir) / t) for t in config.targets}
            for m in member_configs(config)}


def _continue_ensemble(span: _Span, config: ForecastConfig, state_dir: str | Path, state: dict[str, Any],
                       start: int) -> pd.DataFrame:
    """Each member continued from its saved models, then combined over the saved trailing rows + the new rows."""

    trail = read_trail(state_dir, config, state)
    models = load_models(state_dir, config)
    frames: dict[str, pd.DataFrame] = {}
    for m, cfg in member_configs(config).items():
        preds, _ = continue_span(span.X, span.ys, span.valid_input, span.events, cfg, span.names, models[m], start)
        new = _frame(span, preds, start, cfg)
        old = trail[m]
        rows = slice(start - len(old), start)
        if not np.array_equal(old["timestamp"].to_numpy(dtype=np.int64), span.ts[rows]):
            raise ValueError(f"the saved trailing predictions of member {m} are not of the bars before the state's "
                             "last bar: the history bars differ from those the state was saved on")
        for i, t in enumerate(config.targets):  # labels known now that the new bars are in
            old["y_true" if i == 0 else f"y_{t}"] = span.ys[t][rows]
        frames[m] = pd.concat([old[list(new.columns)], new], ignore_index=True)
    out = combine(frames, config.targets, config.horizon, trailing_of(config), span.interval,
                  first_row=int(state["n_predicted"]) - len(trail[next(iter(trail))]))
    return out.iloc[len(out) - (len(span.ts) - start):].reset_index(drop=True)


def continue_span(
    X: FloatArray, ys: dict[str, FloatArray], valid_input: npt.NDArray[np.bool_], events: list[Event],
    config: ForecastConfig, names: Sequence[str], models: dict[str, Forecaster], start: int,
) -> tuple[dict[str, FloatArray], dict[str, Forecaster]]:
    """Continue a schedule on rows ``start ..`` of a span: the one continuation of evaluation and paper mode.

    Args:
        X: model inputs of the span's rows (row i = bar i of the span; it may be a suffix of the
            schedule's bars: events are then given in the span's row numbers).
        ys: target -> labels of the rows (NaN where not known by the span's last bar).
        valid_input: rows whose inputs are all finite.
        events: the schedule's events in row numbers: at least the last event before ``start`` (its
            ``window_end`` bounds the next update's new samples) and every event from ``start`` on.
        config: the forecaster.
        names: input names (the models' context).
        models: target -> the model after the events before ``start`` (mutated by updates).
        start: first row to predict.

    Returns:
        ``(target -> predictions of every row (NaN before start), target -> the latest model)``.
    """
    preds: dict[str, FloatArray] = {}
    latest: dict[str, Forecaster] = {}
    for target in config.targets:
        ctx = ModelContext(target=target, horizon=config.horizon, input_names=tuple(names), seed=config.seed)
        preds[target], model, _ = _run_target(X, ys[target], valid_input, events, config, ctx,
                                              resume=(models[target], start))
        assert model is not None
        latest[target] = model
    return preds, latest
