"""The validated ``tune:`` settings and their Hydra schema (derived from the dataclass, never repeated)."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from agents.config import RunSchema, schema_of

SCHEDULERS = ("asha", "fifo", "median")
SEARCHERS = ("optuna", "random")


def fail(key: str, value: object, allowed: str) -> None:
    """Raise the project's ``key=value is invalid: allowed`` error."""
    raise ValueError(f"{key}={value!r} is invalid: {allowed}")


@dataclass(frozen=True, slots=True)
class TuneSettings:
    """Validated ``tune`` settings (the ``tune:`` node of conf/tune.yaml and its presets).

    Attributes:
        experiment_name: folder name of the experiment under ``storage_path``.
        scheduler: "asha" (default, stops poor trials at rungs), "median" (median stopping rule) or "fifo".
        searcher: "optuna" (TPE, default) or "random" (Tune's random/grid search).
        num_samples: trials to run, >= 1 (with grid entries: samples per grid point).
        max_concurrent_trials: trials running at once, >= 1.
        cpus_per_trial: CPUs reserved per trial, > 0; also the trial's torch threads (at least 1).
        num_cpus: CPUs of the local Ray started by the script (None: all); ignored with ray_address.
        metric: validation metric to optimise, a key of `envs.metrics.summarize` (e.g. sharpe, total_return).
        mode: "max" or "min".
        max_failures: retries of a crashing trial (from its last Tune checkpoint), >= 0.
        grace_period: env steps a trial runs before ASHA / median stopping may stop it, >= 1.
        reduction_factor: ASHA's halving rate, >= 2.
        resume: continue the experiment in ``storage_path/experiment_name`` (Tuner.restore).
        ray_address: attach to a running Ray cluster ("auto" or "host:port"); None starts a local Ray.
        storage_path: absolute folder holding the experiment; None in the YAML means Hydra's run dir
            (`agents.tune.experiment.prepare_experiment` fills it in before validation).
        seed: searcher seed (None: train.seed).
        verbose: Tune console verbosity 0..3.
        space: the search space (see `agents.tune.space`).
    """

    experiment_name: str = "experiment"
    scheduler: str = "asha"
    searcher: str = "optuna"
    num_samples: int = 8
    max_concurrent_trials: int = 2
    cpus_per_trial: float = 1.0
    num_cpus: int | None = None
    metric: str = "sharpe"
    mode: str = "max"
    max_failures: int = 1
    grace_period: int = 10_000
    reduction_factor: int = 2
    resume: bool = False
    ray_address: str | None = None
    storage_path: str | None = None
    seed: int | None = None
    verbose: int = 1
    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_counts()
        if self.storage_path is None or not Path(self.storage_path).is_absolute():
            fail("tune.storage_path", self.storage_path, "must be absolute (resolved by scripts/tune.py)")
        if not self.experiment_name or "/" in self.experiment_name:
            fail("tune.experiment_name", self.experiment_name, "must be a non-empty folder name without '/'")
        if not self.space:
            fail("tune.space", self.space, "is empty; give at least one key to search (see conf/tune/ppo.yaml)")

    def _check_choices(self) -> None:
        if self.scheduler not in SCHEDULERS:
            fail("tune.scheduler", self.scheduler, f"choose one of {SCHEDULERS}")
        if self.searcher not in SEARCHERS:
            fail("tune.searcher", self.searcher, f"choose one of {SEARCHERS}")
        if self.mode not in ("max", "min"):
            fail("tune.mode", self.mode, "choose 'max' or 'min'")

    def _check_counts(self) -> None:
        for key in ("num_samples", "max_concurrent_trials", "grace_period"):
            if getattr(self, key) < 1:
                fail(f"tune.{key}", getattr(self, key), "must be >= 1")
        if self.max_failures < 0:
            fail("tune.max_failures", self.max_failures, "must be >= 0 (0 = no retries)")
        if self.reduction_factor < 2:
            fail("tune.reduction_factor", self.reduction_factor, "must be >= 2")
        if not self.cpus_per_trial > 0:
            fail("tune.cpus_per_trial", self.cpus_per_trial, "must be > 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            fail("tune.num_cpus", self.num_cpus, "must be >= 1 or null (all cores)")

    @property
    def experiment_dir(self) -> Path:
        """``storage_path / experiment_name``."""
        return Path(str(self.storage_path)) / self.experiment_name

    @property
    def torch_threads(self) -> int:
        """Torch threads per trial: the trial's CPUs, at least 1."""
        return max(1, int(self.cpus_per_trial))


#: Hydra schema of the ``tune:`` node, mirrored from `TuneSettings` (same fields, types and defaults)
TuneSchema = schema_of(TuneSettings, "TuneSchema")


#: primary schema of conf/tune.yaml: the training run schema plus the ``tune`` node
TuneRunSchema = make_dataclass(
    "TuneRunSchema",
    [("task_name", str, field(default="tune")), ("tune", TuneSchema, field(default_factory=TuneSchema))],
    bases=(RunSchema,),
)


def register_tune_configs() -> None:
    """Register ``tune_run_schema`` in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="tune_run_schema", node=TuneRunSchema)
