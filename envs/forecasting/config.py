"""`ForecastConfig`: what to forecast, with which model, on which walk-forward schedule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.forecasting.targets import check_target
from envs.typed_config import from_mapping as typed_from_mapping

WINDOWS: tuple[str, ...] = ("rolling", "expanding")


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Forecaster and walk-forward schedule (all lengths in bars of the run's timeframe).

    Attributes:
        model: registered model name (``envs.forecasting.models.FORECASTERS``), or ``"none"``
            for no forecasts.
        targets: one or more of ``fwd_log_return``, ``direction``, ``realized_vol``; the first is
            the primary target (``y_true``, top-level metrics).
        horizon: label horizon k in bars, >= 1 (a label of bar s is known at the close of s + k).
        n_lags: one-bar log-return lags added to the features, >= 0 (default 8).
        window: ``"rolling"`` (the last ``train_window`` bars of labels) or ``"expanding"``.
        train_window: bars of labels in a rolling window, >= ``min_train``.
        min_train: usable labelled samples needed before the first fit, >= 2.
        refit_every: bars between full refits, >= 1.
        update_every: bars between online updates inside a refit period; 0 = no updates, else
            < ``refit_every``.
        embargo: extra bars between the last label a model may use and its fit bar, >= 0.
        seed: seed of the models' randomness.
        params: model hyperparameters (see the model's docstring); unknown keys fail.
    """

    model: str = "gbm"
    targets: tuple[str, ...] = ("fwd_log_return",)
    horizon: int = 1
    n_lags: int = 8
    window: str = "rolling"
    train_window: int = 5000
    min_train: int = 1000
    refit_every: int = 1000
    update_every: int = 0
    embargo: int = 0
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "params", dict(self.params))
        if not self.targets:
            raise ValueError("forecaster.targets is empty: give at least one of fwd_log_return, direction, realized_vol")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"forecaster.targets={list(self.targets)} repeats a target")
        for t in self.targets:
            check_target(t)
        if self.window not in WINDOWS:
            raise ValueError(f"forecaster.window={self.window!r} is invalid: use one of {list(WINDOWS)}")
        for key, low in (("horizon", 1), ("n_lags", 0), ("min_train", 2), ("refit_every", 1), ("embargo", 0),
                         ("update_every", 0)):
            if getattr(self, key) < low:
                raise ValueError(f"forecaster.{key}={getattr(self, key)} is invalid: must be >= {low}")
        if self.window == "rolling" and self.train_window < self.min_train:
            raise ValueError(
                f"forecaster.train_window={self.train_window} is smaller than forecaster.min_train={self.min_train}; "
                "a rolling window must hold the samples of the first fit"
            )
        if self.update_every and self.update_every >= self.refit_every:
            raise ValueError(
                f"forecaster.update_every={self.update_every} must be 0 (off) or < forecaster.refit_every="
                f"{self.refit_every}"
            )

    @property
    def enabled(self) -> bool:
        """False for ``model: none``."""
        return self.model != "none"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ForecastConfig:
        """Build from a plain mapping (a Hydra ``forecaster`` node); unknown keys raise ``ValueError``."""
        return typed_from_mapping(cls, mapping, "forecaster")
