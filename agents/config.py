"""Typed run configuration: Hydra schemas (ConfigStore) and their conversion to frozen dataclasses.

The Hydra tree (conf/config.yaml) is validated twice: by OmegaConf against the schemas below
(unknown keys and wrong types fail at composition, naming the key) and by the frozen dataclasses'
own checks when `to_run_config` converts it (impossible values fail at start-up, naming the key).
Below ``scripts/`` no function takes a DictConfig.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 - OmegaConf schemas

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from agents.paths import PathsConfig
from envs.data.cleaning import CleaningConfig
from envs.features.pipeline import FeatureConfig
from envs.forecasting.config import ForecastConfig
from envs.sim.config import EnvConfig

logger = logging.getLogger(__name__)

CONTINUOUS_ONLY = ("sac", "td3", "ddpg")
DISCRETE_ONLY = ("dqn",)


def schema_of(cls: type, name: str | None = None) -> type:
    """An OmegaConf-friendly mirror of a frozen config dataclass, built from its fields.

    ``X | None`` becomes ``Optional[X]``, ``tuple[T, ...]`` ``List[T]``, ``dict[K, V]`` ``Dict[K, V]``,
    and nested config dataclasses are mirrored too; defaults are kept, so the Hydra schema and the
    validated dataclass cannot drift apart. (Frozen dataclasses would give read-only nodes that Hydra
    cannot merge overrides into.)
    """
    hints = typing.get_type_hints(cls)
    specs: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        typ: Any = hints[f.name]
        args = typing.get_args(typ)
        if type(None) in args:  # `X | None` -> Optional[X] (OmegaConf spells unions this way)
            typ = Optional[next(a for a in args if a is not type(None))]  # noqa: UP045
        origin = typing.get_origin(typ)
        if dataclasses.is_dataclass(typ):
            sub = schema_of(typing.cast(type, typ))
            specs.append((f.name, sub, field(default_factory=sub)))
        elif origin is tuple:
            specs.append((f.name, List[args[0]], field(default_factory=lambda d=f.default: list(d))))  # type: ignore[valid-type,misc]  # noqa: UP006
        elif origin is dict:
            specs.append((f.name, Dict[args[0], args[1]], field(default_factory=dict)))  # type: ignore[valid-type]  # noqa: UP006
        elif f.default is dataclasses.MISSING:
            specs.append((f.name, typ, field(default=MISSING)))
        else:
            specs.append((f.name, typ, field(default=f.default)))
    return dataclasses.make_dataclass(name or f"{cls.__name__.removesuffix('Config')}Schema", specs)


# ---------------------------------------------------------------------------------------------
# frozen, validated run config


def _fail(key: str, value: object, allowed: str) -> None:
    raise ValueError(f"{key}={value!r} is invalid: {allowed}")


@dataclass(frozen=True, slots=True)
class SplitConfig:
    """Chronological split: fractions of bars, or ISO dates (UTC) where validation/test start.

    Attributes:
        train_frac: fraction of bars in the training split, in (0, 1).
        val_frac: fraction in the validation split, in (0, 1); test gets the rest.
        val_start, test_start: ISO dates overriding the fractions (both or neither).
        embargo_bars: bars dropped between consecutive splits, >= 0 (24 = one day of hourly bars).
    """

    train_frac: float = 0.7
    val_frac: float = 0.15
    val_start: str | None = None
    test_start: str | None = None
    embargo_bars: int = 24

    def __post_init__(self) -> None:
        if not 0 < self.train_frac < 1:
            _fail("data.split.train_frac", self.train_frac, "must be a fraction in (0, 1)")
        if not 0 < self.val_frac < 1 or self.train_frac + self.val_frac >= 1:
            _fail("data.split.val_frac", self.val_frac, "must be in (0, 1) with train_frac + val_frac < 1")
        if (self.val_start is None) != (self.test_start is None):
            _fail("data.split.val_start/test_start", (self.val_start, self.test_start), "give both dates or neither")
        if self.embargo_bars < 0:
            _fail("data.split.embargo_bars", self.embargo_bars, "must be >= 0")


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Market data of a run. Paths are absolute after `to_run_config`.

    Attributes:
        path: Parquet file of bars (used when ``store_root`` is None).
        store_root: a quantgym Parquet store (scripts/download.py); bars are then read from
            ``exchange`` / ``symbol`` / ``timeframe`` between ``start`` and ``end``.
        exchange: ccxt exchange id of the store series.
        symbol, timeframe: the market (store keys; also used in report titles).
        funding_path: Parquet of funding events to join (timestamp, funding_rate), or None.
        calendar: annualisation calendar, "24/7" or "sessions".
        start, end: ISO dates (UTC) bounding the bars, end exclusive; None = all.
    """

    path: str = "data/sample/btcusdt_1h.parquet"
    store_root: str | None = None
    exchange: str = "binance"
    symbol: str = "BTC/USDT"
    timeframe: str = "1h"
    funding_path: str | None = None
    calendar: str = "24/7"
    start: str | None = None
    end: str | None = None
    split: SplitConfig = SplitConfig()
    cleaning: CleaningConfig = CleaningConfig()

    def __post_init__(self) -> None:
        if self.calendar not in ("24/7", "sessions"):
            _fail("data.calendar", self.calendar, "must be '24/7' (crypto) or 'sessions' (equities/futures)")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """SB3 algorithm name, policy and constructor kwargs (passed unchanged)."""

    name: str = "ppo"
    policy: str = "MlpPolicy"
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Run-level training settings; these defaults are the main job's (``make train``).

    Attributes:
        total_timesteps: environment steps to train, >= 1.
        n_envs: envs stepped together, >= 1.
        seed: seed of the envs, SB3 and torch.
        device: "cpu", "cuda", "cuda:N" or "auto".
        normalize_reward: scale rewards with VecNormalize (observations are normalised by the env).
        eval_freq: env steps between validation passes, >= 1.
        checkpoint_freq: env steps between checkpoints, >= 1.
        resume_from: run folder to resume (None: start fresh).
        torch_threads: torch CPU threads, >= 1.
        progress_bar: show a progress bar.
    """

    total_timesteps: int = 300_000
    n_envs: int = 8
    seed: int = 0
    device: str = "cpu"
    normalize_reward: bool = True
    eval_freq: int = 20_000
    checkpoint_freq: int = 50_000
    resume_from: str | None = None
    torch_threads: int = 1
    progress_bar: bool = True
    #: checkpoints kept in <run>/checkpoints (the newest ones)
    keep_checkpoints: int = 2
    #: off-policy agents (SAC, TD3, DQN): save the replay buffer with the newest checkpoint, so a resumed run
    #: keeps its experience; about buffer_size x observation floats x 8 bytes (1.2 GB for SAC's 100k
    #: transitions of a 1,476-float observation)
    save_replay_buffer: bool = True
    #: environment steps between writes of the trading/* TensorBoard scalars (every agent)
    log_every_steps: int = 1000

    def __post_init__(self) -> None:
        for key in ("total_timesteps", "n_envs", "eval_freq", "checkpoint_freq", "torch_threads",
                    "keep_checkpoints", "log_every_steps"):
            if getattr(self, key) < 1:
                _fail(f"train.{key}", getattr(self, key), "must be >= 1")
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            _fail("train.device", self.device, "must be 'cpu', 'cuda', 'cuda:N' or 'auto'")


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    """Baselines, bootstrap and walk-forward settings."""

    n_random_seeds: int = 10
    ma_fast: int = 24
    ma_slow: int = 96
    n_boot: int = 1000
    block_len: int | None = None
    alpha: float = 0.05
    n_trials: int = 1
    walk_forward_folds: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.ma_fast < self.ma_slow:
            _fail("evaluation.ma_fast", self.ma_fast, f"must be >= 1 and < evaluation.ma_slow={self.ma_slow}")
        if not 0 < self.alpha < 0.5:
            _fail("evaluation.alpha", self.alpha, "must be in (0, 0.5)")
        for key in ("n_random_seeds", "n_boot", "n_trials"):
            if getattr(self, key) < 1:
                _fail(f"evaluation.{key}", getattr(self, key), "must be >= 1")
        if self.walk_forward_folds < 0 or self.walk_forward_folds == 1:
            _fail("evaluation.walk_forward_folds", self.walk_forward_folds, "must be 0 (off) or >= 2")


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a training run needs, validated."""

    data: DataConfig
    env: EnvConfig
    agent: AgentConfig
    train: TrainConfig
    evaluation: EvaluationConfig
    features: FeatureConfig = FeatureConfig.none()
    task_name: str = "train"
    paths: PathsConfig = PathsConfig()
    #: walk-forward forecaster whose out-of-sample forecasts join the observations (``model: none``: off)
    forecaster: ForecastConfig = ForecastConfig(model="none")

    def __post_init__(self) -> None:
        name = self.agent.name
        mode = self.env.action_mode
        if name in CONTINUOUS_ONLY and mode != "continuous":
            _fail("agent", name, f"{name.upper()} needs a continuous action space; set env.action_mode=continuous "
                                 "or use agent=ppo/a2c/dqn")
        if name in DISCRETE_ONLY and mode != "discrete":
            _fail("agent", name, f"{name.upper()} needs a discrete action space; set env.action_mode=discrete")


#: Hydra schema of the whole run (every group typed; unknown keys / wrong types fail at composition)
RunSchema = schema_of(RunConfig, "RunSchema")


def writable_structured(cls: type) -> DictConfig:
    """``OmegaConf.structured(cls)`` with the read-only flag lifted, for frozen dataclass schemas.

    Frozen dataclasses give read-only nodes, which Hydra cannot merge overrides into; the node keeps
    its types, and ``OmegaConf.to_object`` still builds (and so validates) the frozen dataclass.
    """
    def lift(node: DictConfig) -> DictConfig:
        node._set_flag("readonly", None)
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                lift(child)
            elif child is not None:
                child._set_flag("readonly", None)
        return node

    return lift(OmegaConf.structured(cls))


def register_configs() -> None:
    """Register the run schema in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(name="run_schema", node=RunSchema)


def continuous_form(agent: str, env: EnvConfig) -> EnvConfig:
    """The env a continuous-only agent (SAC, TD3) trains on: a long/flat discrete preset becomes continuous.

    A discrete preset whose levels are all >= 0 with ``long_only`` (the default ``spot_inout``: levels
    [0, 1]) is turned into its continuous form: exposure ``max(a, 0) x max(levels)``, i.e. in [0, 1] for
    the default, every other field unchanged. The rule is logged; other discrete presets (with short
    levels) still fail in `RunConfig`, naming the fix.
    """
    if agent not in CONTINUOUS_ONLY or env.action_mode != "discrete":
        return env
    if not env.long_only or min(env.exposure_levels) < 0:
        return env
    top = max(env.exposure_levels)
    logger.info("agent=%s needs continuous actions: the long/flat preset (exposure levels %s) runs in its "
                "continuous form, target exposure in [0, %g]", agent, list(env.exposure_levels), top)
    return dataclasses.replace(env, action_mode="continuous", max_leverage=top)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= _leaves(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: node}


def check_resume_overrides(composed: DictConfig, defaults: DictConfig, saved: DictConfig) -> None:
    """Refuse command-line overrides that would change a run being resumed.

    A resumed run continues with its saved ``.hydra/config.yaml``. Every value the command line
    changes (``composed`` against ``defaults``, the config composed without the overrides) must equal
    the saved one; otherwise it would be ignored, so it is refused. ``train.resume_from`` is exempt.

    Raises:
        ValueError: listing each changing key with its new and saved values.
    """
    def plain(c: DictConfig) -> dict[str, Any]:
        return _leaves(OmegaConf.to_container(c, resolve=True))

    new, base, old = plain(composed), plain(defaults), plain(saved)
    changed = [f"{k}={new.get(k)!r} (the run has {old.get(k)!r})" for k in sorted(set(new) | set(base))
               if k != "train.resume_from" and new.get(k) != base.get(k) and new.get(k) != old.get(k)]
    if changed:
        raise ValueError(
            "train.resume_from continues a run with its saved config, so these overrides would be ignored: "
            f"{'; '.join(changed)}. Drop them, or start a new run with them"
        )


def _refuse_unknown(prefix: str, values: typing.Mapping[Any, Any], cls: type, ignore: tuple[str, ...] = ()) -> None:
    """Raise naming the first key of ``values`` that ``cls`` has no field for (e.g. ``+tarin.seed=3``)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in values if k not in known and k not in ignore)
    if unknown:
        raise ValueError(f"unknown config key {prefix}{unknown[0]} (a typo?); valid keys here: {sorted(known)}")


def data_config(raw: Mapping[str, Any], base_dir: str | None = None) -> DataConfig:
    """Validated `DataConfig` from a plain ``data`` mapping; relative paths resolved against ``base_dir``."""
    from pathlib import Path

    data = dict(raw)
    split = SplitConfig(**data.pop("split", {}))
    cleaning = CleaningConfig.from_mapping(data.pop("cleaning", None) or {})
    for key in ("path", "funding_path", "store_root"):
        if data.get(key) is not None and base_dir is not None and not Path(data[key]).is_absolute():
            data[key] = str(Path(base_dir) / data[key])
    return DataConfig(split=split, cleaning=cleaning, **data)


def to_run_config(cfg: DictConfig | dict[str, Any], base_dir: str | None = None) -> RunConfig:
    """Convert a composed Hydra config (or plain dict) into a validated `RunConfig`.

    Args:
        cfg: the composed config.
        base_dir: directory relative data paths are resolved against (the repo / launch dir).
    """

    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(raw, dict)
    _refuse_unknown("", raw, RunConfig, ignore=("hydra",))
    for section, cls in (("data", DataConfig), ("train", TrainConfig), ("evaluation", EvaluationConfig),
                         ("agent", AgentConfig)):
        _refuse_unknown(f"{section}.", raw.get(section) or {}, cls)
    env_values = dict(raw["env"])
    env = continuous_form(raw["agent"]["name"], EnvConfig.from_dict(env_values))
    return RunConfig(
        data=data_config(raw["data"], base_dir),
        env=env,
        agent=AgentConfig(**raw["agent"]),
        train=TrainConfig(**raw["train"]),
        evaluation=EvaluationConfig(**raw.get("evaluation", {})),
        features=FeatureConfig.from_mapping(raw["features"]) if raw.get("features") else FeatureConfig.none(),
        task_name=raw.get("task_name", "train"),
        paths=PathsConfig(**(raw.get("paths") or {})),
        forecaster=ForecastConfig.from_mapping(raw["forecaster"]) if raw.get("forecaster") else ForecastConfig(model="none"),
    )
