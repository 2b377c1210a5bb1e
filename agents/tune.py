"""Hyperparameter search with Ray Tune: search spaces as data, ASHA + Optuna, resumable experiments.

`scripts/tune.py` composes ``conf/tune.yaml`` (the training config plus a ``tune`` preset from
``conf/tune/``) and calls `run_experiment`. Every trial rebuilds its typed `RunConfig` from the base
config plus its sampled values and trains through `agents.train.run` (no second training loop),
reporting each validation pass to Tune so ASHA can stop poor trials early.

Search space syntax (``tune.space``), one entry per dotted config key::

    agent.algo_kwargs.learning_rate: {dist: loguniform, low: 1.0e-5, high: 1.0e-3}
    agent.algo_kwargs.n_steps: {dist: choice, values: [128, 256, 512]}
    agent.policy_kwargs.net_arch: {dist: choice, values: {small: [64, 64], medium: [256, 256]}}
    env.reward: {dist: choice, values: [log_return, differential_sharpe]}
    agent.algo_kwargs.batch_size: {dist: grid, values: [64, 128]}      # searcher=random only

``dist`` is one of uniform / loguniform (``low``, ``high``), quniform / qloguniform (plus ``q``),
randint / lograndint (``low`` inclusive, ``high`` exclusive), qrandint (``q``), choice and grid
(``values``; a mapping of names to values samples the names, so lists such as ``net_arch`` stay
Optuna-friendly and show as names in the results). Keys must exist in the base config; keys under
``agent.algo_kwargs`` / ``agent.policy_kwargs`` must be constructor arguments of the algorithm /
its policy. Both are checked at start-up, and every candidate value is validated by the typed config.

Seeds: each trial trains with ``train.seed + k`` (unless ``train.seed`` is itself searched), where ``k``
is the counter at the end of its Tune trial id with random search (0, 1, 2, ...) and
``crc32(trial_id) % 1_000_000`` with Optuna's hexadecimal ids: stable across retries and resumes. The
searcher is seeded with ``tune.seed`` (default ``train.seed``).

Experiment folder ``<tune.storage_path>/<tune.experiment_name>`` (storage defaults to Hydra's run dir)::

    experiment.yaml                 base config + tune settings (authoritative when resuming)
    tuner.pkl, experiment_state-*   Ray Tune's state for Tuner.restore
    trial_<id>/                     Ray's params.json, progress.csv, result.json, checkpoint_*/
    trial_<id>/attempts.jsonl       one line per start of the trial (retries and resumes show here)
    trial_<id>/run/                 the trial's training run: tb/, checkpoints/, best_model.zip, eval_history.json
    results.csv, results.md         one row per trial, sorted by the metric
    best_config.yaml                the best trial's full config: scripts/train.py --config-path <dir> --config-name best_config
    best_test/                      the best trial's model on the test split (report.md, metrics.json, plots)
    summary.md, summary.json        validation vs test of the winner, deflated Sharpe over the trials
    metric_by_trial.png, hyperparameter_influence.png

Workers receive the base config and the space as plain containers through `tune.with_parameters`
(Ray's object store); data paths are made absolute on the driver, so on a multi-machine cluster the
data file and ``tune.storage_path`` must exist at the same path on every node (shared filesystem).
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import logging
import math
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional  # noqa: UP035 - OmegaConf schemas

import pandas as pd
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from agents.config import RunConfig, RunSchema, to_run_config

logger = logging.getLogger(__name__)

SCHEDULERS = ("asha", "fifo", "median")
SEARCHERS = ("optuna", "random")
RANGE_DISTS = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "lograndint", "qrandint")
VALUE_DISTS = ("choice", "grid")
#: the Tune time axis: environment steps of the trial (ASHA rungs and grace_period are in steps)
TIME_ATTR = "timesteps"
TRIAL_RUN = "run"
#: fault injection for tests and drills: each trial raises once, after its first report at >= this many steps
FAIL_ONCE_ENV = "QUANTGYM_TUNE_FAIL_ONCE_AT_STEP"
#: one JSON line per start of a trial (first run, retries after a crash, resumes of the experiment)
ATTEMPTS_LOG = "attempts.jsonl"


# ---------------------------------------------------------------------------------------------
# Hydra schema and typed settings


@dataclass
class TuneSchema:
    """``tune:`` node of conf/tune.yaml (see `TuneSettings` for meanings)."""

    experiment_name: str = "experiment"
    scheduler: str = "asha"
    searcher: str = "optuna"
    num_samples: int = 8
    max_concurrent_trials: int = 2
    cpus_per_trial: float = 1.0
    num_cpus: Optional[int] = None  # noqa: UP045
    metric: str = "sharpe"
    mode: str = "max"
    max_failures: int = 1
    grace_period: int = 10_000
    reduction_factor: int = 2
    resume: bool = False
    ray_address: Optional[str] = None  # noqa: UP045
    storage_path: Optional[str] = None  # noqa: UP045
    seed: Optional[int] = None  # noqa: UP045
    verbose: int = 1
    space: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006


@dataclass
class TuneRunSchema(RunSchema):
    """The training run schema plus the ``tune`` node (primary schema of conf/tune.yaml)."""

    task_name: str = "tune"
    tune: TuneSchema = field(default_factory=TuneSchema)


def register_tune_configs() -> None:
    """Register ``tune_run_schema`` in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="tune_run_schema", node=TuneRunSchema)


def _fail(key: str, value: object, allowed: str) -> None:
    raise ValueError(f"{key}={value!r} is invalid: {allowed}")


@dataclass(frozen=True, slots=True)
class TuneSettings:
    """Validated ``tune`` settings.

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
        storage_path: absolute folder holding the experiment (default: Hydra's run dir).
        seed: searcher seed (None: train.seed).
        verbose: Tune console verbosity 0..3.
        space: the search space (see the module docstring).
    """

    experiment_name: str
    storage_path: str
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
    seed: int | None = None
    verbose: int = 1
    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            _fail("tune.scheduler", self.scheduler, f"choose one of {SCHEDULERS}")
        if self.searcher not in SEARCHERS:
            _fail("tune.searcher", self.searcher, f"choose one of {SEARCHERS}")
        if self.mode not in ("max", "min"):
            _fail("tune.mode", self.mode, "choose 'max' or 'min'")
        for key in ("num_samples", "max_concurrent_trials", "grace_period"):
            if getattr(self, key) < 1:
                _fail(f"tune.{key}", getattr(self, key), "must be >= 1")
        if self.max_failures < 0:
            _fail("tune.max_failures", self.max_failures, "must be >= 0 (0 = no retries)")
        if self.reduction_factor < 2:
            _fail("tune.reduction_factor", self.reduction_factor, "must be >= 2")
        if not self.cpus_per_trial > 0:
            _fail("tune.cpus_per_trial", self.cpus_per_trial, "must be > 0")
        if self.num_cpus is not None and self.num_cpus < 1:
            _fail("tune.num_cpus", self.num_cpus, "must be >= 1 or null (all cores)")
        if not Path(self.storage_path).is_absolute():
            _fail("tune.storage_path", self.storage_path, "must be absolute (resolved by scripts/tune.py)")
        if not self.experiment_name or "/" in self.experiment_name:
            _fail("tune.experiment_name", self.experiment_name, "must be a non-empty folder name without '/'")
        if not self.space:
            _fail("tune.space", self.space, "is empty; give at least one key to search (see conf/tune/ppo.yaml)")

    @property
    def experiment_dir(self) -> Path:
        """``storage_path / experiment_name``."""
        return Path(self.storage_path) / self.experiment_name

    @property
    def torch_threads(self) -> int:
        """Torch threads per trial: the trial's CPUs, at least 1."""
        return max(1, int(self.cpus_per_trial))


# ---------------------------------------------------------------------------------------------
# search space


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One searched config key.

    Attributes:
        key: dotted config key, e.g. ``agent.algo_kwargs.learning_rate``.
        dist: distribution name (see `RANGE_DISTS`, `VALUE_DISTS`).
        low, high: range bounds (range distributions; ``high`` exclusive for the integer ones).
        q: quantisation step (q* distributions), or None.
        values: candidate values (choice/grid).
        names: names of the values when they were given as a mapping (sampled instead of the values).
    """

    key: str
    dist: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: tuple[Any, ...] = ()
    names: tuple[str, ...] | None = None

    def resolve(self, sampled: Any) -> Any:
        """Config value for a sampled value (named choices map back to their value)."""
        if self.names is not None:
            if sampled not in self.names:
                raise ValueError(f"{self.key}: sampled name {sampled!r} not among {list(self.names)}")
            return copy.deepcopy(self.values[self.names.index(sampled)])
        return sampled

    def candidates(self) -> list[Any]:
        """Representative config values to validate at start-up (bounds or every choice)."""
        if self.dist in VALUE_DISTS:
            return [copy.deepcopy(v) for v in self.values]
        assert self.low is not None and self.high is not None
        if self.dist in ("randint", "lograndint", "qrandint"):
            return [int(self.low), int(self.high) - 1 if self.dist != "qrandint" else int(self.high)]
        return [float(self.low), float(self.high)]


_SHORTHAND = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.DOTALL)


def _expand_shorthand(where: str, text: str) -> dict[str, Any]:
    """``"loguniform(1e-5, 1e-3)"`` -> ``{dist: loguniform, low: 1e-5, high: 1e-3}``;
    ``"choice([16, 32])"`` -> ``{dist: choice, values: [16, 32]}``."""
    m = _SHORTHAND.match(text)
    if m is None:
        _fail(where, text, "write a distribution as a mapping {dist: ..., ...} or as 'name(args)', "
                           "e.g. 'loguniform(1e-5, 1e-3)' or 'choice([16, 32, 64])'")
    assert m is not None
    dist, args_text = m.group(1), m.group(2)
    try:
        args = ast.literal_eval(f"({args_text},)") if args_text.strip() else ()
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{where}={text!r} is invalid: arguments must be Python literals ({e})") from e
    if dist in VALUE_DISTS:
        if len(args) != 1:
            _fail(where, text, f"{dist}(...) takes one list (or dict) of values, e.g. {dist}([16, 32])")
        return {"dist": dist, "values": args[0]}
    if dist in RANGE_DISTS:
        names = ("low", "high", "q") if dist.startswith("q") else ("low", "high")
        if len(args) != len(names):
            _fail(where, text, f"{dist}(...) takes {', '.join(names)}")
        return {"dist": dist, **dict(zip(names, args, strict=True))}
    _fail(where, dist, f"unknown dist; choose one of {RANGE_DISTS + VALUE_DISTS}")
    raise AssertionError  # unreachable: _fail raises


def parse_space(space: Mapping[str, Any]) -> list[ParamSpec]:
    """Parse ``tune.space`` into `ParamSpec` s.

    Each entry maps a dotted key to ``{dist: ..., ...}`` or to the shorthand string ``"dist(args)"``
    (``"loguniform(1e-5, 1e-3)"``, ``"choice([16, 32])"``, ``"quniform(0.9, 0.99, 0.01)"``).

    Raises:
        ValueError: naming the key for an unknown distribution or missing/invalid arguments.
    """
    specs = []
    for key, entry in space.items():
        where = f"tune.space.{key}"
        if isinstance(entry, str):
            entry = _expand_shorthand(where, entry)
        if not isinstance(entry, Mapping) or "dist" not in entry:
            _fail(where, entry, "must be a mapping with 'dist' (e.g. {dist: loguniform, low: 1e-5, high: 1e-3})")
        dist = entry["dist"]
        extra = set(entry) - {"dist", "low", "high", "q", "values"}
        if extra:
            _fail(where, dict(entry), f"unknown field(s) {sorted(extra)}; allowed: dist, low, high, q, values")
        if dist in RANGE_DISTS:
            if "low" not in entry or "high" not in entry:
                _fail(where, dict(entry), f"dist={dist} needs low and high")
            low, high = float(entry["low"]), float(entry["high"])
            if not low < high:
                _fail(where, dict(entry), "needs low < high")
            if "log" in dist and low <= 0:
                _fail(where, dict(entry), f"dist={dist} needs low > 0")
            q = entry.get("q")
            if dist.startswith("q") and (q is None or float(q) <= 0):
                _fail(where, dict(entry), f"dist={dist} needs a step q > 0")
            specs.append(ParamSpec(key, dist, low, high, None if q is None else float(q)))
        elif dist in VALUE_DISTS:
            values = entry.get("values")
            if isinstance(values, Mapping):
                if not values:
                    _fail(where, dict(entry), "values is empty")
                names = tuple(str(n) for n in values)
                specs.append(ParamSpec(key, dist, values=tuple(values.values()), names=names))
            elif isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0:
                for v in values:
                    if not (v is None or isinstance(v, (bool, int, float, str))):
                        _fail(where, v, "choice/grid values must be scalars; give lists or mappings as named "
                                        "values, e.g. {small: [64, 64], large: [256, 256]}")
                specs.append(ParamSpec(key, dist, values=tuple(values)))
            else:
                _fail(where, dict(entry), f"dist={dist} needs a non-empty list (or mapping) of values")
        else:
            _fail(where, dist, f"unknown dist; choose one of {RANGE_DISTS + VALUE_DISTS}")
    return specs


def to_tune_space(specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Ray Tune's ``param_space`` (flat, keyed by the dotted config keys) for ``specs``."""
    from ray import tune

    out: dict[str, Any] = {}
    for s in specs:
        lo, hi, q = float(s.low or 0.0), float(s.high or 0.0), float(s.q or 0.0)  # set for range dists
        if s.dist == "uniform":
            out[s.key] = tune.uniform(lo, hi)
        elif s.dist == "loguniform":
            out[s.key] = tune.loguniform(lo, hi)
        elif s.dist == "quniform":
            out[s.key] = tune.quniform(lo, hi, q)
        elif s.dist == "qloguniform":
            out[s.key] = tune.qloguniform(lo, hi, q)
        elif s.dist == "randint":
            out[s.key] = tune.randint(int(lo), int(hi))
        elif s.dist == "lograndint":
            out[s.key] = tune.lograndint(int(lo), int(hi))
        elif s.dist == "qrandint":
            out[s.key] = tune.qrandint(int(lo), int(hi), int(q))
        elif s.dist == "choice":
            out[s.key] = tune.choice(list(s.names if s.names is not None else s.values))
        elif s.dist == "grid":
            out[s.key] = tune.grid_search(list(s.names if s.names is not None else s.values))
        else:  # parse_space only produces the above
            raise AssertionError(s.dist)
    return out


def _get(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _constructor_args(obj: Any) -> set[str]:
    return set(inspect.signature(obj.__init__).parameters) - {"self", "args", "kwargs"}


def check_space_keys(base: Mapping[str, Any], specs: Sequence[ParamSpec]) -> None:
    """Fail naming every searched key that the base config (or the algorithm) does not have.

    Keys under ``agent.algo_kwargs.`` are checked against the algorithm's constructor and keys
    under ``agent.policy_kwargs.`` against its policy's (both are free-form in the config).
    """
    from agents.sb3 import algorithm_class

    bad: list[str] = []
    hints: list[str] = []
    algo = algorithm_class(str(_get(base, "agent.name")))
    algo_args = _constructor_args(algo) - {"policy", "env"}
    for s in specs:
        try:
            _get(base, s.key)
            continue
        except KeyError:
            pass
        parts = s.key.split(".")
        if parts[:2] == ["agent", "algo_kwargs"] and len(parts) == 3:
            if parts[2] in algo_args:
                continue
            hints.append(f"{algo.__name__} accepts {sorted(algo_args)}")
        elif parts[0] == "agent" and len(parts) == 2 and parts[1] in algo_args:
            hints.append(f"did you mean agent.algo_kwargs.{parts[1]}? (SB3 constructor keywords live there)")
        elif parts[:2] == ["agent", "policy_kwargs"] and len(parts) == 3:
            policy = algo.policy_aliases.get(str(_get(base, "agent.policy")))
            if policy is not None and parts[2] in _constructor_args(policy):
                continue
        bad.append(s.key)
    if bad:
        raise ValueError(
            f"tune.space key(s) {bad} do not exist in the base config; search only keys of conf/config.yaml's "
            f"groups (e.g. agent.algo_kwargs.learning_rate, env.window_size)" + (f"; {hints[0]}" if hints else "")
        )


def trial_config(base: Mapping[str, Any], specs: Sequence[ParamSpec], sample: Mapping[str, Any],
                 trial_index: int, torch_threads: int = 1) -> dict[str, Any]:
    """The plain config of one trial: base + resolved samples, derived seed, trial-friendly run settings.

    Args:
        base: the resolved base config (plain containers, absolute data paths).
        specs: the parsed search space.
        sample: Tune's sampled values, keyed by the dotted keys.
        trial_index: the trial's seed offset (`trial_index_of`); the seed becomes
            ``train.seed + trial_index`` unless ``train.seed`` is searched.
        torch_threads: torch threads of the trial (its CPUs).
    """
    raw = copy.deepcopy(dict(base))
    raw.pop("tune", None)
    searched = {s.key for s in specs}
    for s in specs:
        _set(raw, s.key, s.resolve(sample[s.key]))
    if "train.seed" not in searched:
        raw["train"]["seed"] = int(raw["train"]["seed"]) + int(trial_index)
    raw["train"]["torch_threads"] = int(torch_threads)
    raw["train"]["progress_bar"] = False
    raw["train"]["resume_from"] = None
    raw["task_name"] = "train"
    return raw


def validate_candidates(base: Mapping[str, Any], specs: Sequence[ParamSpec]) -> None:
    """Build a typed config for every candidate value (bounds / choices) so bad values fail at start-up."""
    for s in specs:
        for value in s.candidates():
            raw = copy.deepcopy(dict(base))
            raw.pop("tune", None)
            _set(raw, s.key, value)
            try:
                to_run_config(raw)
            except (ValueError, TypeError) as e:
                raise ValueError(f"tune.space.{s.key}: candidate value {value!r} is invalid: {e}") from e


# ---------------------------------------------------------------------------------------------
# the trainable


def trial_index_of(trial_id: str) -> int:
    """A stable per-trial seed offset: the counter at the end of a random-search trial id
    (``"83f63_00004"`` -> 4), else (Optuna's ids such as ``"a750d092"``) ``crc32(trial_id) % 1_000_000``."""
    tail = trial_id.rsplit("_", 1)[-1]
    if "_" in trial_id and tail.isdigit():
        return int(tail)
    return zlib.crc32(trial_id.encode()) % 1_000_000


def _checkpoint_files(run_dir: Path) -> list[Path]:
    """Files that let a retried trial continue: newest SB3 checkpoint, validation history, best model.

    The replay buffer of off-policy agents is left out (it can be gigabytes); it stays in the run
    folder on the shared storage, where a resumed run finds it.
    """
    from agents.train import latest_checkpoint

    files = [run_dir / n for n in ("eval_history.json", "best_model.zip", "best_vecnormalize.pkl")]
    found = latest_checkpoint(run_dir)
    if found is not None:
        path, steps = found
        files += [path, run_dir / "checkpoints" / f"model_vecnormalize_{steps}_steps.pkl"]
    return [f for f in files if f.exists()]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _restore_run_dir(checkpoint_dir: Path | None, run_dir: Path) -> bool:
    """Prepare ``run_dir`` for a (re)started trial; returns whether `agents.train.run` should resume."""
    if checkpoint_dir is None or not any(checkpoint_dir.glob("checkpoints/model_*_steps.zip")):
        if run_dir.exists():  # an earlier attempt crashed before its first SB3 checkpoint: start clean
            shutil.rmtree(run_dir)
        return False
    for src in checkpoint_dir.rglob("*"):
        if src.is_file():
            dst = run_dir / src.relative_to(checkpoint_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return True


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def quantgym_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """Ray Tune trainable: one training run through `agents.train.run`, reporting every validation.

    ``config`` holds the sampled values; ``setup`` (via `tune.with_parameters`) the plain base config,
    the raw space, the experiment folder, metric/mode and torch threads. The trial's run folder is
    ``<experiment>/<trial dir>/run``. After every validation pass the validation metrics and
    ``timesteps`` are reported with a Tune checkpoint (newest SB3 checkpoint, history, best model);
    a retried trial restores it from `tune.get_checkpoint` and resumes training. With the environment
    variable ``QUANTGYM_TUNE_FAIL_ONCE_AT_STEP=N`` set on the driver, every trial's first attempt raises
    after its first report at >= N steps (to test or rehearse retries).
    """
    import torch
    from ray import tune

    from agents.train import run

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    specs = parse_space(setup["space"])
    raw = trial_config(setup["base"], specs, config, trial_index_of(trial_id), setup["torch_threads"])
    cfg: RunConfig = to_run_config(raw)
    torch.set_num_threads(cfg.train.torch_threads)
    trial_dir = Path(setup["experiment_dir"]) / Path(ctx.get_trial_dir()).name
    run_dir = trial_dir / TRIAL_RUN

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = _restore_run_dir(Path(d), run_dir)
    else:
        resume = _restore_run_dir(None, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    first_attempt = not (trial_dir / ATTEMPTS_LOG).exists()
    with open(trial_dir / ATTEMPTS_LOG, "a", encoding="utf-8") as f:  # one line per start: retries are visible
        f.write(json.dumps({"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "resume": resume,
                            "checkpoint": None if checkpoint is None else Path(checkpoint.path).name}) + "\n")
    OmegaConf.save(OmegaConf.create(raw), run_dir / "trial_config.yaml")
    logger.info("trial %s: %s (resume=%s)", trial_id, run_dir, resume)
    metric, worst = setup["metric"], (-1e9 if setup["mode"] == "max" else 1e9)

    def report(summary: dict[str, float], steps: int) -> None:
        metrics: dict[str, Any] = {k: _finite(v) for k, v in summary.items()}
        metrics[TIME_ATTR] = int(steps)
        if metrics.get(metric) is None:  # a non-finite or missing metric counts as the worst result
            metrics[metric] = worst
        # staged beside the run (hard links, same filesystem); Tune copies it into trial_<id>/checkpoint_*
        with tempfile.TemporaryDirectory(dir=trial_dir, prefix=".staging_") as tmp:
            for f in _checkpoint_files(run_dir):
                _link_or_copy(f, Path(tmp) / f.relative_to(run_dir))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        fail_at = setup.get("fail_once_at_step")
        if fail_at is not None and first_attempt and steps >= fail_at:
            raise RuntimeError(f"injected failure at {steps} steps ({FAIL_ONCE_ENV}={fail_at})")

    run(cfg, run_dir, resume=resume, on_validation=report, test_report=False)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# ---------------------------------------------------------------------------------------------
# experiment


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
        fail_at = os.environ.get(FAIL_ONCE_ENV)
        return {"base": self.base, "space": s.space, "experiment_dir": str(s.experiment_dir), "metric": s.metric,
                "mode": s.mode, "torch_threads": s.torch_threads,
                "fail_once_at_step": int(fail_at) if fail_at else None}


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
    storage = str(Path(storage) if Path(storage).is_absolute() else (Path(base_dir) / storage).resolve())
    tune_raw["storage_path"] = storage
    exp_dir = Path(storage) / str(tune_raw.get("experiment_name"))
    saved = exp_dir / "experiment.yaml"
    if tune_raw.get("resume"):
        if not saved.exists():
            raise ValueError(
                f"tune.resume=true but {saved} does not exist; point tune.storage_path (and tune.experiment_name) "
                "at the folder of the interrupted experiment, e.g. tune.storage_path=outputs/tune/<run>"
            )
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        assert isinstance(old, dict)
        keep = {k: tune_raw[k] for k in ("resume", "ray_address", "num_cpus", "verbose", "storage_path")}
        tune_raw = {**old["tune"], **keep}
        base = old["base"]
    elif (exp_dir / "tuner.pkl").exists():
        raise ValueError(
            f"{exp_dir} already holds an experiment; resume it with tune.resume=true or choose another "
            "tune.experiment_name / tune.storage_path"
        )
    # absolute data paths, resolved here on the driver (workers may run anywhere)
    for key in ("path", "funding_path"):
        p = base["data"].get(key)
        if p is not None and not Path(p).is_absolute():
            base["data"][key] = str((Path(base_dir) / p).resolve())
    settings = TuneSettings(**tune_raw)
    names = validation_metric_names()
    if settings.metric not in names:
        _fail("tune.metric", settings.metric, f"is not a validation metric; choose one of {names}")
    specs = parse_space(settings.space)
    check_space_keys(base, specs)
    if settings.searcher == "optuna" and any(s.dist == "grid" for s in specs):
        _fail("tune.searcher", "optuna", "cannot run grid entries (dist: grid); use tune.searcher=random or dist: choice")
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
    return sorted({*summary, "n_trades", "n_liquidations"})


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


def _trainable(exp: Experiment) -> Any:
    from ray import tune

    return tune.with_resources(tune.with_parameters(quantgym_trial, setup=exp.setup),
                               {"cpu": exp.settings.cpus_per_trial})


def _init_ray(s: TuneSettings) -> bool:
    """Start (or attach to) Ray unless this process already did; returns whether we must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    if s.ray_address:
        ray.init(address=s.ray_address, log_to_driver=s.verbose > 1, logging_level=logging.WARNING)
        logger.info("attached to the Ray cluster at %s: %s", s.ray_address, ray.cluster_resources())
    else:
        ray.init(num_cpus=s.num_cpus, include_dashboard=False, log_to_driver=s.verbose > 1,
                 logging_level=logging.WARNING)
    return True


def run_experiment(exp: Experiment) -> dict[str, Any]:
    """Run (or resume) the experiment, then write the results table, best config, test re-evaluation, plots.

    Returns:
        The summary (also ``summary.json``): experiment dir, number of trials, the best trial, its
        validation and test metrics and the deflated Sharpe ratio.
    """
    from ray import tune

    s = exp.settings
    exp_dir = s.experiment_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    if not s.resume:
        OmegaConf.save(OmegaConf.create({"base": exp.base, "tune": asdict(s)}), exp_dir / "experiment.yaml")
    # small experiments checkpoint often; Tune's "snapshotting may become a bottleneck" warning is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    owns_ray = _init_ray(s)
    try:
        trainable = _trainable(exp)
        if s.resume:
            if not tune.Tuner.can_restore(str(exp_dir)):
                raise ValueError(f"{exp_dir} has no Tune state (tuner.pkl) to restore; start it again without "
                                 "tune.resume")
            logger.info("resuming %s (finished trials are kept)", exp_dir)
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
        else:
            seed = s.seed if s.seed is not None else int(exp.base["train"]["seed"])
            tuner = tune.Tuner(
                trainable,
                param_space=to_tune_space(exp.specs),
                tune_config=tune.TuneConfig(
                    metric=s.metric, mode=s.mode, num_samples=s.num_samples,
                    max_concurrent_trials=s.max_concurrent_trials,
                    scheduler=_scheduler(s, int(exp.base["train"]["total_timesteps"])),
                    search_alg=_searcher(s, seed), trial_dirname_creator=_trial_dirname,
                ),
                run_config=tune.RunConfig(
                    name=s.experiment_name, storage_path=s.storage_path, verbose=s.verbose,
                    failure_config=tune.FailureConfig(max_failures=s.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                ),
            )
        grid = tuner.fit()
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
    finished = grid.num_terminated + grid.num_errors
    if finished < len(grid) or len(grid) < s.num_samples * _grid_points(exp.specs):
        logger.warning("experiment interrupted: %d of %d trials finished; resume it with tune.resume=true "
                       "tune.storage_path=%s tune.experiment_name=%s", finished, len(grid), s.storage_path,
                       s.experiment_name)
        return {"experiment_dir": str(exp_dir), "interrupted": True, "finished_trials": finished,
                "n_trials": len(grid), "metric": s.metric, "mode": s.mode,
                "resume": f"tune.resume=true tune.storage_path={s.storage_path} tune.experiment_name={s.experiment_name}"}
    return summarize_experiment(exp, grid)


def _grid_points(specs: Sequence[ParamSpec]) -> int:
    n = 1
    for sp in specs:
        if sp.dist == "grid":
            n *= len(sp.values)
    return n


# ---------------------------------------------------------------------------------------------
# results, best config, test re-evaluation, plots


def results_table(exp: Experiment, grid: Any) -> pd.DataFrame:
    """One row per trial, sorted by its best reported ``metric`` (mode-aware), errors last."""
    s = exp.settings
    rows = []
    for r in grid:
        trial_id = (r.metrics or {}).get("trial_id") or Path(r.path).name.removeprefix("trial_")
        row: dict[str, Any] = {"trial_id": trial_id}
        for spec in exp.specs:
            row[spec.key] = r.config.get(spec.key) if r.config else None
        df = r.metrics_dataframe
        best: dict[str, Any] = {}
        if df is not None and len(df) and s.metric in df:
            col = df[s.metric].astype(float)
            best = df.loc[col.idxmax() if s.mode == "max" else col.idxmin()].to_dict()
            row["timesteps"] = int(df[TIME_ATTR].max()) if TIME_ATTR in df else None
            row["reports"] = len(df)
        row[s.metric] = _finite(best.get(s.metric))
        for key in ("sharpe", "total_return", "max_drawdown", "sortino", "n_trades"):
            if key != s.metric:
                row[key] = _finite(best.get(key))
        row["best_at_step"] = best.get(TIME_ATTR)
        total = int(exp.base["train"]["total_timesteps"])
        if r.error is not None:
            row["status"] = "error"
        elif row.get("timesteps") is not None and row["timesteps"] < total:
            row["status"] = "stopped early"
        else:
            row["status"] = "completed"
        row["error"] = None if r.error is None else f"{type(r.error).__name__}: {str(r.error).strip()[-300:]}"
        row["run_dir"] = str(Path(r.path) / TRIAL_RUN)
        row["_started"] = (float(df["timestamp"].min()) if df is not None and len(df) and "timestamp" in df
                           else float("inf"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["_started", "trial_id"], kind="stable")
    table.insert(0, "trial", range(1, len(table) + 1))  # in order of their first report
    table = table.drop(columns="_started").sort_values([s.metric, "trial"], ascending=[s.mode == "min", True],
                                                       na_position="last", kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def _markdown(table: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [c for c in table.columns if c != "run_dir"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_best_config(exp: Experiment, sample: Mapping[str, Any], trial_id: str, path: Path) -> Path:
    """The best trial's complete config as a Hydra primary config that scripts/train.py accepts as is."""
    raw = trial_config(exp.base, exp.specs, sample, trial_index_of(trial_id), exp.settings.torch_threads)
    raw["train"]["progress_bar"] = True
    doc = {"defaults": ["run_schema", "_self_"], **raw,
           "hydra": {"run": {"dir": "outputs/train/${now:%Y-%m-%d_%H-%M-%S}"}}}
    header = (f"# Best trial {trial_id} of tune experiment {exp.settings.experiment_dir}\n"
              f"# Retrain: python scripts/train.py --config-path {path.parent} --config-name {path.stem}\n")
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create(doc)))
    return path


def evaluate_best_on_test(run_dir: Path, trial_sharpes: Sequence[float], out_dir: Path) -> dict[str, Any]:
    """The best trial's best model, once, on the test split; deflated Sharpe over all trials' Sharpes.

    Args:
        run_dir: the best trial's run folder.
        trial_sharpes: every scored trial's annualised validation Sharpe (the selection pool).
        out_dir: where report.md, metrics.json and the plots go.
    """
    from agents.data import load_splits
    from agents.evaluate_run import load_run, run_features
    from agents.evaluation.suite import evaluate_policy
    from agents.sb3 import load_model
    from agents.train import FEATURE_CACHE, sb3_policy

    cfg, normalizer = load_run(run_dir)
    test_md = run_features(load_splits(cfg.data, cfg.env.window_size, cfg.features, FEATURE_CACHE).get("test"),
                           normalizer)
    model_path = run_dir / "best_model.zip"
    if not model_path.exists():
        model_path = run_dir / "final_model.zip"
    model = load_model(cfg.agent.name, model_path, device=cfg.train.device)
    finite = [float(x) for x in trial_sharpes if x is not None and math.isfinite(x)]
    result = evaluate_policy(
        sb3_policy(model), test_md, cfg.env, normalizer, cfg.evaluation, out_dir, cfg.data.calendar,
        title=f"Best tuning trial ({cfg.agent.name.upper()}) on the test split", seed=cfg.train.seed,
        extra_sections={"Selection": f"selected by validation among {len(trial_sharpes)} trials; the test split "
                                     "was used once, after selection."},
        trial_sharpes=finite if len(finite) >= 2 else None,
    )
    result.pop("records", None)
    result.pop("agent_record", None)
    result["model"] = str(model_path)
    return result


def _numeric(values: pd.Series) -> pd.Series | None:
    try:
        out = pd.to_numeric(values)
    except (TypeError, ValueError):
        return None
    return out.astype(float) if out.dtype != bool else out.astype(float)


def hyperparameter_influence(table: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """Per searched key: Spearman rank correlation with the metric (numeric keys) or the correlation
    ratio eta (categorical keys, in [0, 1]); rows sorted by absolute strength."""
    scored = table[table[metric].notna()]
    y = scored[metric].astype(float)
    rows = []
    for key in keys:
        x = scored[key]
        if x.nunique(dropna=True) < 2 or len(scored) < 3:
            rows.append({"key": key, "kind": "n/a", "value": float("nan")})
            continue
        num = _numeric(x)
        if num is not None:
            rho = num.rank().corr(y.rank())
            rows.append({"key": key, "kind": "spearman", "value": float(rho)})
        else:
            groups = y.groupby(x.astype(str))
            total = float(((y - y.mean()) ** 2).sum())
            between = float((groups.count() * (groups.mean() - y.mean()) ** 2).sum())
            eta = math.sqrt(between / total) if total > 0 else float("nan")
            rows.append({"key": key, "kind": "eta", "value": eta})
    out = pd.DataFrame(rows, columns=["key", "kind", "value"])
    return out.reindex(out["value"].abs().sort_values(ascending=False, na_position="last").index)


def plot_metric_by_trial(table: pd.DataFrame, curves: dict[str, pd.DataFrame], metric: str, mode: str,
                         path: Path) -> Path:
    """Left: each trial's best metric in trial order with the running best. Right: metric vs steps per trial."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax, ax2 = fig.subplots(1, 2)
    t = table.assign(idx=table["trial"]).sort_values("idx")
    colors = {"completed": "tab:blue", "stopped early": "tab:orange", "error": "tab:red"}
    for status, part in t.groupby("status"):
        ax.scatter(part["idx"], part[metric], label=str(status), color=colors.get(str(status), "grey"), zorder=3)
    vals = t[metric].astype(float)
    running = vals.cummax() if mode == "max" else vals.cummin()
    ax.step(t["idx"], running, where="post", color="black", lw=1, label=f"best so far ({mode})")
    ax.set_xlabel("trial (in order of start)")
    ax.set_xticks(list(t["idx"]))
    ax.set_ylabel(f"validation {metric} (best report)")
    ax.set_title(f"validation {metric} across trials")
    ax.legend(fontsize=8)
    for trial_id, df in curves.items():
        if metric in df and TIME_ATTR in df:
            ax2.plot(df[TIME_ATTR], df[metric], marker=".", lw=1, label=trial_id)
    ax2.set_xlabel("environment steps")
    ax2.set_ylabel(f"validation {metric}")
    ax2.set_title("every validation report (early-stopped trials end early)")
    if len(curves) <= 12:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_influence(influence: pd.DataFrame, metric: str, path: Path) -> Path:
    """Horizontal bars of `hyperparameter_influence`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.5 * max(len(influence), 2) + 1.5), dpi=110)
    ax = fig.subplots()
    inf = influence.iloc[::-1]
    labels = [f"{k} ({kind})" for k, kind in zip(inf["key"], inf["kind"], strict=True)]
    vals = inf["value"].fillna(0.0)
    ax.barh(labels, vals, color=["tab:green" if v >= 0 else "tab:red" for v in vals])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"vs. validation {metric}: Spearman rank corr. / correlation ratio eta")
    ax.set_title("most influential hyperparameters (few trials: indicative only)")
    fig.tight_layout()
    fig.savefig(path)
    return path


def summarize_experiment(exp: Experiment, grid: Any) -> dict[str, Any]:
    """Write results.csv/.md, best_config.yaml, best_test/, plots and summary.md/.json."""
    s = exp.settings
    exp_dir = s.experiment_dir
    table = results_table(exp, grid)
    table.to_csv(exp_dir / "results.csv", index=False)
    header = (f"# Tuning results: {s.experiment_name}\n\n{len(table)} trials, sorted by validation {s.metric} "
              f"({s.mode}); hyperparameters and the validation metrics of each trial's best report.\n\n")
    (exp_dir / "results.md").write_text(header + _markdown(table))
    summary: dict[str, Any] = {"experiment_dir": str(exp_dir), "interrupted": False, "n_trials": len(table),
                               "metric": s.metric,
                               "mode": s.mode, "results_csv": str(exp_dir / "results.csv"),
                               "results_md": str(exp_dir / "results.md")}
    curves = {}
    for r in grid:
        df = r.metrics_dataframe
        if df is not None and len(df):
            curves[str(df["trial_id"].iloc[0]) if "trial_id" in df else Path(r.path).name] = df
    if not table.empty:
        plot_metric_by_trial(table, curves, s.metric, s.mode, exp_dir / "metric_by_trial.png")
        influence = hyperparameter_influence(table, [sp.key for sp in exp.specs], s.metric)
        plot_influence(influence, s.metric, exp_dir / "hyperparameter_influence.png")
        summary["influence"] = {k: _finite(v) for k, v in zip(influence["key"], influence["value"], strict=True)}
    scored = table[table[s.metric].notna() & (table["status"] != "error")] if not table.empty else table
    if scored.empty:
        logger.error("no trial reported %s; see the error column of %s", s.metric, exp_dir / "results.md")
        summary["best"] = None
        (exp_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    best = scored.iloc[0]
    best_result = next(r for r in grid if Path(r.path).name == f"trial_{best['trial_id']}")
    best_cfg = write_best_config(exp, best_result.config, str(best["trial_id"]), exp_dir / "best_config.yaml")
    run_dir = Path(str(best["run_dir"]))
    sharpes = [float(x) for x in scored["sharpe" if "sharpe" in scored else s.metric].dropna()]
    test = evaluate_best_on_test(run_dir, sharpes, exp_dir / "best_test")
    val_row = {k: _finite(best.get(k)) for k in ("sharpe", "total_return", "max_drawdown", "sortino")}
    test_agent = test["results"]["agent"]
    test_row = {k: _finite(test_agent.get(k)) for k in val_row}
    j = test["judgement"]
    summary["best"] = {
        "trial_id": str(best["trial_id"]), "run_dir": str(run_dir), "best_config": str(best_cfg),
        "hyperparameters": {sp.key: best[sp.key] for sp in exp.specs},
        "validation": val_row, "test": test_row, "n_trials_for_dsr": j["n_trials"],
        "deflated_sharpe": _finite(j["deflated_sharpe"]), "probabilistic_sharpe": _finite(j["probabilistic_sharpe"]),
        "verdict": j["verdict"], "test_report": test["report"],
    }
    summary["plots"] = [str(exp_dir / "metric_by_trial.png"), str(exp_dir / "hyperparameter_influence.png")]
    (exp_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (exp_dir / "summary.md").write_text(_summary_markdown(summary))
    return summary


def _summary_markdown(summary: dict[str, Any]) -> str:
    b = summary["best"]

    def f(v: Any) -> str:
        return "" if v is None else f"{v:.4g}"

    lines = [
        f"# Tuning summary: {Path(summary['experiment_dir']).name}", "",
        f"Best of {summary['n_trials']} trials by validation {summary['metric']} ({summary['mode']}): "
        f"trial `{b['trial_id']}`.", "",
        "| hyperparameter | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in b["hyperparameters"].items()], "",
        "| metric | validation (used for selection) | test (used once, after selection) |", "|---|---|---|",
        *[f"| {k} | {f(b['validation'][k])} | {f(b['test'][k])} |" for k in b["validation"]], "",
        f"- Deflated Sharpe ratio over {b['n_trials_for_dsr']} trials: **{f(b['deflated_sharpe'])}** "
        f"(probabilistic Sharpe without the selection penalty: {f(b['probabilistic_sharpe'])}). The gap is how "
        "much of the winner's score could be luck from picking the best of many trials.",
        f"- Verdict on the test split: {b['verdict']}",
        f"- Test report: `{b['test_report']}`",
        f"- Retrain it: `python scripts/train.py --config-path {Path(b['best_config']).parent} "
        "--config-name best_config`",
        f"- All trials: `results.md` / `results.csv`; TensorBoard: `tensorboard --logdir {summary['experiment_dir']}`",
        "", "![metric by trial](metric_by_trial.png)", "", "![hyperparameter influence](hyperparameter_influence.png)",
    ]
    return "\n".join(lines) + "\n"


def tensorboard_hint(exp_dir: Path) -> str:
    """The command that shows every trial's TensorBoard run side by side."""
    return f"tensorboard --logdir {exp_dir}"


__all__ = [
    "Experiment", "ParamSpec", "TuneSchema", "TuneSettings", "check_space_keys", "parse_space",
    "prepare_experiment", "quantgym_trial", "register_tune_configs", "run_experiment", "to_tune_space",
    "trial_config",
]

