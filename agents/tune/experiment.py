"""Experiments: validate a composed conf/tune.yaml into an `Experiment`, run or resume it on Ray Tune.

Experiment folder ``<tune.storage_path>/<tune.experiment_name>`` (storage defaults to Hydra's run dir)::

    experiment.yaml                 base config + tune settings (authoritative when resuming)
    tuner.pkl, experiment_state-*   Ray Tune's state for Tuner.restore
    trial_<id>/                     Ray's params.json, progress.csv, result.json, checkpoint_*/
    trial_<id>/attempts.jsonl       one line per start of the trial (retries and resumes show here)
    trial_<id>/run/                 the trial's training run: tb/, checkpoints/, best_model.zip, eval_history.json
    results.csv, results.md, best_config.yaml, best_test/, summary.md/.json, plots (`agents.tune.results`)

Workers receive the base config and the space as plain containers through `tune.with_parameters`
(Ray's object store); data paths are made absolute on the driver, so on a multi-machine cluster the
data file and ``tune.storage_path`` must exist at the same path on every node (shared filesystem).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agents.config import to_run_config
from agents.paths import PathsConfig
from agents.tune.results import TuneSummary, summarize_experiment
from agents.tune.settings import TuneSettings, fail
from agents.tune.space import ParamSpec, parse_space, to_tune_space
from agents.tune.trainable import TIME_ATTR, quantgym_trial
from agents.tune.trials import check_space_keys, validate_candidates

logger = logging.getLogger(__name__)

#: a Ray Tune function trainable: ``(sampled config, setup) -> None``
Trainable = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Experiment:
    """A prepared experiment: settings, plain base config (absolute paths) and parsed space."""

    settings: TuneSettings
    base: dict[str, Any]
    specs: tuple[ParamSpec, ...]

    @property
    def setup(self) -> dict[str, Any]:
        """What every trial receives (plain containers only)."""
        s = self.settings
        return {"base": self.base, "space": s.space, "experiment_dir": str(s.experiment_dir), "metric": s.metric,
                "mode": s.mode, "torch_threads": s.torch_threads}


def _resumed(tune_raw: dict[str, Any], base: dict[str, Any], exp_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings and base config of an experiment being resumed, or a fresh one's unchanged."""
    saved = exp_dir / "experiment.yaml"
    if not tune_raw.get("resume"):
        if (exp_dir / "tuner.pkl").exists():
            raise ValueError(f"{exp_dir} already holds an experiment; resume it with tune.resume=true or choose "
                             "another tune.experiment_name / tune.storage_path")
        return tune_raw, base
    if not saved.exists():
        raise ValueError(
            f"tune.resume=true but {saved} does not exist; point tune.storage_path (and tune.experiment_name) "
            "at the folder of the interrupted experiment, e.g. tune.storage_path=outputs/tune/<run>"
        )
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    assert isinstance(old, dict)
    keep = {k: tune_raw[k] for k in ("resume", "ray_address", "num_cpus", "verbose", "storage_path")}
    return {**old["tune"], **keep}, old["base"]


def _absolute_paths(base: dict[str, Any], base_dir: Path) -> None:
    """Resolve data and cache paths on the driver: trials run in other folders (Ray changes a trial's
    working directory) and maybe on other machines, and they should share one feature cache."""
    for key in ("path", "funding_path", "store_root"):
        p = base["data"].get(key)
        if p is not None and not Path(p).is_absolute():
            base["data"][key] = str((base_dir / p).resolve())
    paths = PathsConfig(**(base.get("paths") or {}))
    cache = paths.feature_cache_dir
    base["paths"] = {**asdict(paths), "feature_cache": str(cache if cache.is_absolute() else (base_dir / cache).resolve())}


def prepare_experiment(raw: Mapping[str, Any], base_dir: str, output_dir: str) -> Experiment:
    """Validate a composed conf/tune.yaml (plain dict) into an `Experiment`; nothing is started.

    Args:
        raw: the resolved config with a ``tune`` node.
        base_dir: directory relative paths are resolved against (the launch dir).
        output_dir: Hydra's run dir (the default ``tune.storage_path``).

    When ``tune.resume`` is true, the experiment's saved ``experiment.yaml`` provides the base config and
    the space (the command line may only change resume, ray_address, num_cpus and verbose).
    """
    base: dict[str, Any] = copy.deepcopy(dict(raw))
    tune_raw = dict(base.pop("tune"))
    storage = tune_raw.get("storage_path") or output_dir
    tune_raw["storage_path"] = str(Path(storage) if Path(storage).is_absolute() else (Path(base_dir) / storage).resolve())
    tune_raw, base = _resumed(tune_raw, base, Path(tune_raw["storage_path"]) / str(tune_raw.get("experiment_name")))
    _absolute_paths(base, Path(base_dir))
    settings = TuneSettings(**tune_raw)
    names = validation_metric_names()
    if settings.metric not in names:
        fail("tune.metric", settings.metric, f"is not a validation metric; choose one of {names}")
    specs = parse_space(settings.space)
    check_space_keys(base, specs)
    if settings.searcher == "optuna" and any(s.dist == "grid" for s in specs):
        fail("tune.searcher", "optuna", "cannot run grid entries (dist: grid); use tune.searcher=random or dist: choice")
    to_run_config(base)  # the base itself must be valid
    validate_candidates(base, specs)
    return Experiment(settings, base, tuple(specs))


def validation_metric_names() -> list[str]:
    """Metrics a trial reports after each validation: the keys of `envs.metrics.summarize` (+ episode counts)."""
    from envs import metrics

    hour_ms = 3_600_000
    summary = metrics.summarize(equity=[1.0, 1.01, 1.0, 1.02], positions=[0.0, 1.0, 1.0],
                                traded_notional=[0.0, 1.0, 0.0], fees=0.0, slippage=0.0, funding=0.0,
                                timestamps_ms=[0, hour_ms, 2 * hour_ms])
    return sorted({*summary, "n_fills", "n_liquidations"})


def _scheduler(s: TuneSettings, max_t: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    if s.scheduler == "asha":
        # Rungs sit at grace_period * reduction_factor**k <= max_t. With max_t just below the budget and
        # stop_last_trials=False, no rung falls on a trial's final report: a trial that reaches its budget
        # ends by itself (run() writes its final files) instead of being stopped when nothing is left to save.
        top = max(max_t - 1, 1)
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=top, grace_period=min(s.grace_period, top),
                             reduction_factor=s.reduction_factor, stop_last_trials=False)
    if s.scheduler == "median":
        return MedianStoppingRule(time_attr=TIME_ATTR, grace_period=s.grace_period, min_samples_required=2)
    return FIFOScheduler()


def _searcher(s: TuneSettings, seed: int) -> Any:
    if s.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


@contextlib.contextmanager
def _ray_session(s: TuneSettings) -> Iterator[None]:
    """Start a local Ray (or attach to ``tune.ray_address``) unless this process already runs one.

    A local Ray keeps its temporary files (session logs, sockets, lock files) in a fresh folder of its
    own, removed at the end, so nothing is left in the system temp dir's ``ray/session_*``. (Unix
    socket paths are limited to about 107 characters, which rules out the run folder itself.)
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if s.ray_address:
        ray.init(address=s.ray_address, log_to_driver=s.verbose > 1, logging_level=logging.WARNING)
        logger.info("attached to the Ray cluster at %s: %s", s.ray_address, ray.cluster_resources())
        try:
            yield
        finally:
            ray.shutdown()
        return
    import numba

    temp_dir = tempfile.mkdtemp(prefix="quantgym-ray-")
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "NUMBA_CACHE_DIR")}
    os.environ["RAY_TMPDIR"] = temp_dir  # Ray's lock files and the workers' temp files follow it
    # the workers compile into the driver's numba cache (Ray runs each trial in a folder of its own)
    os.environ["NUMBA_CACHE_DIR"] = saved["NUMBA_CACHE_DIR"] or str(numba.config.CACHE_DIR)  # type: ignore[attr-defined]
    try:
        ray.init(num_cpus=s.num_cpus, include_dashboard=False, log_to_driver=s.verbose > 1,
                 logging_level=logging.WARNING, _temp_dir=temp_dir)
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)


def _loggers() -> list[Any]:
    """Tune's CSV and JSON loggers (results.csv and the ResultGrid read them).

    Tune's TensorBoard logger is left out: every trial writes its own TensorBoard run under
    ``trial_<id>/run/tb`` (shown by ``tensorboard --logdir <experiment>``), and Tune's would add a
    second copy and print a hint pointing into Ray's temporary folder.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _tuner(exp: Experiment, trainable: Any) -> Any:
    """A new `ray.tune.Tuner`, or the restored one when ``tune.resume`` is set."""
    from ray import tune

    s = exp.settings
    exp_dir = s.experiment_dir
    if s.resume:
        if not tune.Tuner.can_restore(str(exp_dir)):
            raise ValueError(f"{exp_dir} has no Tune state (tuner.pkl) to restore; start it again without "
                             "tune.resume")
        logger.info("resuming %s (finished trials are kept)", exp_dir)
        return tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    seed = s.seed if s.seed is not None else int(exp.base["train"]["seed"])
    return tune.Tuner(
        trainable,
        param_space=to_tune_space(exp.specs),
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, num_samples=s.num_samples, max_concurrent_trials=s.max_concurrent_trials,
            scheduler=_scheduler(s, int(exp.base["train"]["total_timesteps"])),
            search_alg=_searcher(s, seed), trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=s.experiment_name, storage_path=s.storage_path, verbose=s.verbose,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), callbacks=_loggers(),
        ),
    )


def run_experiment(exp: Experiment, trainable: Trainable = quantgym_trial) -> TuneSummary:
    """Run (or resume) the experiment, then write the results table, best config, test re-evaluation, plots.

    Args:
        exp: the prepared experiment.
        trainable: the function each trial runs (`quantgym_trial`; tests pass a wrapper around it).

    Returns:
        The summary (also ``summary.json``); ``interrupted`` when some trials did not finish.
    """
    from ray import tune

    s = exp.settings
    exp_dir = s.experiment_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    if not s.resume:
        OmegaConf.save(OmegaConf.create({"base": exp.base, "tune": asdict(s)}), exp_dir / "experiment.yaml")
    # small experiments checkpoint often; Tune's "snapshotting may become a bottleneck" warning is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # only the loggers of `_loggers`
    with _ray_session(s):
        wrapped = tune.with_resources(tune.with_parameters(trainable, setup=exp.setup), {"cpu": s.cpus_per_trial})
        grid = _tuner(exp, wrapped).fit()
    finished = grid.num_terminated + grid.num_errors
    if finished < len(grid) or len(grid) < s.num_samples * _grid_points(exp.specs):
        logger.warning("experiment interrupted: %d of %d trials finished; resume it with tune.resume=true "
                       "tune.storage_path=%s tune.experiment_name=%s", finished, len(grid), s.storage_path,
                       s.experiment_name)
        return TuneSummary(
            experiment_dir=str(exp_dir), metric=s.metric, mode=s.mode, n_trials=len(grid), interrupted=True,
            finished_trials=finished,
            resume=f"tune.resume=true tune.storage_path={s.storage_path} tune.experiment_name={s.experiment_name}")
    return summarize_experiment(exp.settings, exp.specs, exp.base, grid)


def _grid_points(specs: Sequence[ParamSpec]) -> int:
    n = 1
    for sp in specs:
        if sp.dist == "grid":
            n *= len(sp.values)
    return n
