"""The `Forecaster` interface, its `ModelContext` and the registry `FORECASTERS` that models join with `register`.

Models live in `envs.forecasting.models` (baselines, ridge, LightGBM) and `envs.forecasting.neural`
(LSTM, TCN); both import this module and nothing imports them back, so the registry has no import cycle.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from envs.forecasting.targets import CLASSIFICATION_TARGETS, TARGETS

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What a model needs to know about its task.

    Attributes:
        target: one of ``envs.forecasting.targets.TARGETS``.
        horizon: label horizon in bars, >= 1.
        input_names: names of the input columns, in order.
        seed: seed of any randomness inside the model.
    """

    target: str
    horizon: int
    input_names: tuple[str, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", tuple(self.input_names))
        if self.target not in TARGETS:
            raise ValueError(f"target {self.target!r} is not one of {list(TARGETS)}")

    @property
    def is_classifier(self) -> bool:
        """True when the target is a probability of "up"."""
        return self.target in CLASSIFICATION_TARGETS


class Forecaster(ABC):
    """One forecasting model. Subclasses set ``name``, ``defaults`` and the abstract methods.

    Args:
        context: the task (target, horizon, input names, seed).
        params: hyperparameters; unknown keys raise ``ValueError`` naming the allowed ones.
    """

    name: ClassVar[str]
    #: default hyperparameters (every allowed key)
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: targets the model can forecast
    targets: ClassVar[tuple[str, ...]] = TARGETS
    #: a naive baseline (scored against, never tested for skill)
    baseline: ClassVar[bool] = False
    #: reads the last ``params["seq_len"]`` input rows per sample: X is ``(rows, seq_len, inputs)``
    sequence: ClassVar[bool] = False

    def __init__(self, context: ModelContext, params: Mapping[str, Any] | None = None) -> None:
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"forecaster.params has {unknown} for model {self.name!r}: allowed {sorted(self.defaults)}"
            )
        if context.target not in self.targets:
            raise ValueError(f"model {self.name!r} cannot forecast {context.target!r}; it supports {list(self.targets)}")
        self.context = context
        self.params: dict[str, Any] = {**self.defaults, **params}

    @abstractmethod
    def fit(self, X: FloatArray, y: FloatArray) -> None:
        """Fit from scratch on a training window (rows in time order, every label known)."""

    def update(self, X: FloatArray, y: FloatArray, n_new: int) -> None:
        """Online update: ``X, y`` is the current training window, its last ``n_new`` rows are new.

        The default refits on the window (ridge, rolling mean); LightGBM boosts on the new rows.
        """
        self.fit(X, y)

    @abstractmethod
    def predict(self, X: FloatArray) -> FloatArray:
        """One prediction per row of ``X`` (rows are independent of each other)."""

    @abstractmethod
    def _save(self, directory: Path) -> None:
        """Write the fitted state (model, scaler) into ``directory``."""

    @abstractmethod
    def _load(self, directory: Path) -> None:
        """Read the state written by `_save`."""

    def save(self, directory: str | Path) -> Path:
        """Save the model (name, context, params, fitted state incl. scalers) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.name, "context": asdict(self.context), "params": self.params}
        (d / "forecaster.json").write_text(json.dumps(meta, indent=2, default=list) + "\n", encoding="utf-8")
        self._save(d)
        return d

    def importance(self) -> dict[str, float] | None:
        """Importance per input name (model-specific), or None when the model has none."""
        return None


F = TypeVar("F", bound=type[Forecaster])

#: the one registry: model name -> class
FORECASTERS: dict[str, type[Forecaster]] = {}


def register(cls: F) -> F:
    """Class decorator adding a `Forecaster` subclass to `FORECASTERS` under its ``name``."""
    if cls.name in FORECASTERS:
        raise ValueError(f"forecaster {cls.name!r} registered twice")
    FORECASTERS[cls.name] = cls
    return cls
