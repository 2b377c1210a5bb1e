"""The `Forecaster` interface and the one registry of models (naive baselines, ridge, LightGBM).

A model implements ``fit`` / ``update`` / ``predict`` / ``_save`` / ``_load`` and registers itself
with `register`; `make_forecaster` builds one by name and `load_forecaster` reads any saved one.
The walk-forward engine (`envs.forecasting.walk_forward`) decides *which* samples a model may see;
models never see a label that was not known at their fit/update bar.

Predictions: a value of the target for ``fwd_log_return`` / ``realized_vol``, P(up) in [0, 1] for
``direction``.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from envs.forecasting.base import FORECASTERS, FloatArray, Forecaster, ModelContext, register
from envs.forecasting.targets import past_label

logger = logging.getLogger(__name__)

__all__ = ["FORECASTERS", "FloatArray", "Forecaster", "ModelContext", "baselines_for", "load_forecaster",
           "make_forecaster", "register"]


def make_forecaster(name: str, context: ModelContext, params: Mapping[str, Any] | None = None) -> Forecaster:
    """Build the registered model ``name``; unknown names raise ``ValueError`` listing the options."""
    if name not in FORECASTERS:
        raise ValueError(f"forecaster.model={name!r} is unknown: allowed {sorted(FORECASTERS)} (conf/forecaster/*.yaml)")
    return FORECASTERS[name](context, params)


def load_forecaster(directory: str | Path) -> Forecaster:
    """Read a model written by `Forecaster.save`."""
    d = Path(directory)
    meta_path = d / "forecaster.json"
    if not meta_path.exists():
        raise ValueError(f"{meta_path} not found: {d} is not a saved forecaster")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model = make_forecaster(meta["name"], ModelContext(**meta["context"]), meta["params"])
    model._load(d)
    return model


def baselines_for(target: str) -> list[str]:
    """Names of the naive baselines that apply to ``target``, in registry order."""
    return [n for n, c in FORECASTERS.items() if c.baseline and target in c.targets]


# ---------------------------------------------------------------------------------------------
# naive baselines


class _ConstantState(Forecaster):
    """Shared state of the constant baselines: one float saved as JSON."""

    value: float = float("nan")

    def _save(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps({"value": self.value}), encoding="utf-8")

    def _load(self, directory: Path) -> None:
        self.value = float(json.loads((directory / "state.json").read_text(encoding="utf-8"))["value"])

    def predict(self, X: FloatArray) -> FloatArray:
        return np.full(X.shape[0], self.value)


@register
class ZeroForecaster(_ConstantState):
    """Predicts a zero log return (the random-walk forecast)."""

    name = "zero"
    targets: ClassVar[tuple[str, ...]] = ("fwd_log_return",)
    baseline = True

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        self.value = 0.0


@register
class RollingMeanForecaster(_ConstantState):
    """Predicts the mean label of its training window (rolling or expanding, as the schedule says)."""

    name = "rolling_mean"
    targets: ClassVar[tuple[str, ...]] = ("fwd_log_return", "realized_vol")
    baseline = True

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        self.value = float(np.mean(y))


@register
class ClassPriorForecaster(RollingMeanForecaster):
    """Predicts P(up) = the fraction of "up" labels in its training window (the class prior).

    Its hit rate is the majority-class accuracy of the window: a classifier must beat it, not 50 %.
    """

    name = "class_prior"
    targets: ClassVar[tuple[str, ...]] = ("direction",)


@register
class LastForecaster(Forecaster):
    """Predicts the latest known label (the label of bar ``t - horizon``), from the lag inputs."""

    name = "last"
    baseline = True

    def __init__(self, context: ModelContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(context, params)
        names = list(context.input_names)
        need = [f"lag_{j}" for j in range(context.horizon)]
        if not all(n in names for n in need):
            raise ValueError(
                f"the naive 'last' forecaster needs inputs {need}; set forecaster.n_lags >= "
                f"forecaster.horizon={context.horizon}"
            )
        self._cols = [names.index(n) for n in need]

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        return None

    def predict(self, X: FloatArray) -> FloatArray:
        return past_label(X[:, self._cols], self.context.target, self.context.horizon)

    def _save(self, directory: Path) -> None:
        return None

    def _load(self, directory: Path) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# ridge (scikit-learn)


@register
class RidgeForecaster(Forecaster):
    """Standardised inputs (scaler fitted on the training window) + ridge regression.

    For ``direction`` the same penalty drives an L2 logistic regression (``C = 1 / alpha``). An
    online update refits on the current window. Params: ``alpha`` (L2 strength, > 0). A row's
    prediction does not depend on the rows predicted with it (bit for bit).
    """

    name = "ridge"
    defaults: ClassVar[Mapping[str, Any]] = {"alpha": 1.0}

    def __init__(self, context: ModelContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(context, params)
        if not float(self.params["alpha"]) > 0:
            raise ValueError(f"forecaster.params.alpha={self.params['alpha']} is invalid: must be > 0")
        self.pipeline: Any = None
        self.constant: float | None = None

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        alpha = float(self.params["alpha"])
        self.constant = None
        if self.context.is_classifier and np.unique(y).size < 2:
            # one class only in the window: the only estimate is its frequency (0 or 1)
            logger.info("ridge: training window holds one class only; predicting its frequency %.1f", y[0])
            self.constant, self.pipeline = float(y[0]), None
            return
        est = LogisticRegression(C=1.0 / alpha) if self.context.is_classifier else Ridge(alpha=alpha)
        self.pipeline = make_pipeline(StandardScaler(), est).fit(X, y)

    def predict(self, X: FloatArray) -> FloatArray:
        if self.constant is not None:
            return np.full(X.shape[0], self.constant)
        if self.pipeline is None:
            raise RuntimeError("ridge forecaster used before fit")
        # X @ coef summed one input at a time: a BLAS product's last bits depend on how many rows it gets,
        # and a continuation (evaluation on new bars, paper mode bar by bar) predicts other batches
        z = np.asarray(self.pipeline[0].transform(X), dtype=np.float64)
        est = self.pipeline[-1]
        coef = np.ravel(est.coef_).astype(np.float64)
        out = z[:, 0] * coef[0]
        for j in range(1, coef.size):
            out += z[:, j] * coef[j]
        out += float(np.ravel(est.intercept_)[0])
        if self.context.is_classifier:
            from scipy.special import expit

            return np.asarray(expit(out), dtype=np.float64)  # P(class 1), as predict_proba of a binary model
        return out

    def _save(self, directory: Path) -> None:
        with open(directory / "ridge.pkl", "wb") as fh:
            pickle.dump({"pipeline": self.pipeline, "constant": self.constant}, fh)

    def _load(self, directory: Path) -> None:
        with open(directory / "ridge.pkl", "rb") as fh:
            state = pickle.load(fh)  # noqa: S301 - our own artifact, written by _save
        self.pipeline, self.constant = state["pipeline"], state["constant"]

    def importance(self) -> dict[str, float] | None:
        if self.pipeline is None:
            return None
        coef = np.ravel(self.pipeline[-1].coef_)
        return {n: float(abs(c)) for n, c in zip(self.context.input_names, coef, strict=True)}


# ---------------------------------------------------------------------------------------------
# LightGBM


#: batches below this many rows are predicted on one thread (`LightGBMForecaster.predict`)
SMALL_PREDICT_ROWS = 1024


@register
class LightGBMForecaster(Forecaster):
    """Gradient-boosted trees (LightGBM), deterministic on CPU; online updates boost on new labels.

    ``deterministic=True``, ``force_row_wise=True``, a fixed ``num_threads`` and the context seed make
    a fit bit-identical across runs. Prediction goes through ``Booster.predict``; each row is
    independent, so predicting a block of bars equals predicting them one by one. An update continues
    boosting from the current model (``init_model``) for ``update_rounds`` trees on the rows whose
    labels became known since the last fit/update. Trees need no scaler.

    Params: ``n_estimators`` (trees per fit), ``learning_rate``, ``num_leaves``, ``min_data_in_leaf``,
    ``feature_fraction``, ``lambda_l2``, ``update_rounds`` (trees per update), ``num_threads``.
    """

    name = "gbm"
    defaults: ClassVar[Mapping[str, Any]] = {
        "n_estimators": 200,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 50,
        "feature_fraction": 1.0,
        "lambda_l2": 1.0,
        "update_rounds": 10,
        "num_threads": 1,
    }

    def __init__(self, context: ModelContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(context, params)
        for key in ("n_estimators", "num_leaves", "min_data_in_leaf", "num_threads"):
            if int(self.params[key]) < 1:
                raise ValueError(f"forecaster.params.{key}={self.params[key]} is invalid: must be >= 1")
        if int(self.params["update_rounds"]) < 0:
            raise ValueError(f"forecaster.params.update_rounds={self.params['update_rounds']} must be >= 0")
        self.booster: Any = None

    def _lgb_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "objective": "binary" if self.context.is_classifier else "regression",
            "learning_rate": float(p["learning_rate"]),
            "num_leaves": int(p["num_leaves"]),
            "min_data_in_leaf": int(p["min_data_in_leaf"]),
            "feature_fraction": float(p["feature_fraction"]),
            "lambda_l2": float(p["lambda_l2"]),
            "num_threads": int(p["num_threads"]),
            "deterministic": True,
            "force_row_wise": True,
            "seed": int(self.context.seed),
            "verbosity": -1,
        }

    def _train(self, X: FloatArray, y: FloatArray, rounds: int, init: Any) -> Any:
        import lightgbm as lgb

        data = lgb.Dataset(X, y, feature_name=[f"f{i}" for i in range(X.shape[1])], free_raw_data=True)
        return lgb.train(self._lgb_params(), data, num_boost_round=rounds, init_model=init)

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        self.booster = self._train(X, y, int(self.params["n_estimators"]), None)

    def update(self, X: FloatArray, y: FloatArray, n_new: int) -> None:
        if self.booster is None:
            raise RuntimeError("gbm forecaster updated before fit")
        rounds = int(self.params["update_rounds"])
        if n_new < 1 or rounds == 0:
            return
        self.booster = self._train(X[-n_new:], y[-n_new:], rounds, self.booster)

    def predict(self, X: FloatArray) -> FloatArray:
        if self.booster is None:
            raise RuntimeError("gbm forecaster used before fit")
        # rows are independent, so the thread count never changes a value; a few rows (paper mode's one new
        # bar) run on one thread, which avoids waiting for a second, busy core
        threads = 1 if len(X) < SMALL_PREDICT_ROWS else int(self.params["num_threads"])
        return np.asarray(self.booster.predict(X, num_threads=threads), dtype=np.float64)

    def _save(self, directory: Path) -> None:
        (directory / "gbm.txt").write_text(self.booster.model_to_string(), encoding="utf-8")

    def _load(self, directory: Path) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_str=(directory / "gbm.txt").read_text(encoding="utf-8"))

    def importance(self) -> dict[str, float] | None:
        if self.booster is None:
            return None
        gain = self.booster.feature_importance(importance_type="gain")
        return {n: float(g) for n, g in zip(self.context.input_names, gain, strict=True)}



# the torch sequence models register themselves in the same registry (torch is imported lazily)
from envs.forecasting import neural  # noqa: E402, F401
