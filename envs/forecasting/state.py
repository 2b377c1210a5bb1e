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
from envs.forecasting.models import Forecaster, ModelContext
from envs.forecasting.walk_forward import (  # the schedule's own steps, shared with the batch walk-forward
    ENSEMBLE,
    Event,
    FloatArray,
    WalkForwardResult,
    _frame,
    _prepare,
    _run_target,
)


def save_state(result: WalkForwardResult, config: ForecastConfig, directory: str | Path,
               extra: dict[str, object] | None = None) -> Path:
    """Save what continuing the schedule needs: the latest model of each target and the schedule position.

    Layout: ``<directory>/<target>/`` (`Forecaster.save`) and ``schedule.json`` (config, bar
    interval, input names, the last event, the open times of its bar, of the first fit and of the
    span's last bar ``last_bar_ms``, plus ``extra``). `continue_walk_forward` reads it.
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
        **(extra or {}),
    }
    (d / "schedule.json").write_text(json.dumps(state, indent=2, default=list) + "\n", encoding="utf-8")
    return d


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
            than ``min_train``), or is an ensemble's (its weights need the members' trailing predictions).
    """
    state = read_state(state_dir)
    saved_cfg = ForecastConfig.from_mapping(state["config"])
    if saved_cfg != config:
        raise ValueError(f"the forecaster state in {state_dir} was saved for {saved_cfg}, not {config}")
    if config.model == ENSEMBLE:
        raise ValueError("continuing forecaster=ensemble from a saved state is not supported yet (its weights need "
                         "the members' trailing predictions); evaluate or paper-trade a run with another forecaster")
    if state["last_event"] is None:
        raise ValueError(f"the forecaster state in {state_dir} holds no model (its span was shorter than "
                         f"forecaster.min_train={config.min_train}); nothing to continue")
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
    from envs.forecasting.models import load_forecaster

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
    models = {target: load_forecaster(Path(state_dir) / target) for target in config.targets}
    preds, _ = continue_span(span.X, span.ys, span.valid_input, span.events, config, span.names, models, start)
    return _frame(span, preds, start, config)


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
