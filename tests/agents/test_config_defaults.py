"""One source of defaults: the config dataclasses hold them, YAML presets hold only what they change.

A YAML value equal to the dataclass default is a second home for that default (the two drift apart:
``TrainConfig`` once said 50k steps while conf/train/default.yaml said 300k), and a ``default.yaml``
preset that sets anything contradicts the dataclass it is meant to mirror.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from agents.config import AgentConfig, DataConfig, EvaluationConfig, RunConfig, TrainConfig
from agents.tune import TuneSettings
from envs.config import EnvConfig
from envs.data.download import FeedConfig
from envs.data.store import StoreConfig
from envs.features.pipeline import FeatureConfig

CONF = Path(__file__).resolve().parents[2] / "conf"

#: the dataclass behind each config group's node
GROUPS: dict[str, type] = {
    "agent": AgentConfig, "data": DataConfig, "env": EnvConfig, "evaluation": EvaluationConfig,
    "features": FeatureConfig, "train": TrainConfig, "store": StoreConfig, "feed": FeedConfig,
}
#: a preset's identity may repeat the default: conf/agent/ppo.yaml says `name: ppo`
IDENTITY = {("agent", "name")}


def _schema(name: str) -> type:
    """The dataclass of a primary config (conf/<name>.yaml) or of a `# @package _global_` preset ("")."""
    if name == "validate":
        from scripts.validate import ValidateAppConfig

        return ValidateAppConfig
    if name == "download":
        from scripts.download import DownloadAppConfig

        return DownloadAppConfig
    if name == "tune":
        from agents.tune.settings import TuneRunSchema

        return TuneRunSchema
    return RunConfig


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _same(yaml_value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    return type(yaml_value) is not dict and yaml_value == default and not (
        isinstance(yaml_value, bool) != isinstance(default, bool))


def restated(node: dict[str, Any], cls: type, where: str = "") -> Iterator[str]:
    """``where.key = value`` for every value of ``node`` equal to ``cls``'s default (nested dataclasses too)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in node.items():
        if key not in fields:
            continue  # unknown keys fail at composition, against the schema
        typ = hints[key]
        sub = next((a for a in (typ, *typing.get_args(typ)) if dataclasses.is_dataclass(a)), None)
        if sub is not None and isinstance(value, dict):
            yield from restated(value, sub, f"{where}{key}.")
        elif (cls, key) not in {(GROUPS[g], k) for g, k in IDENTITY} and _same(value, _default(fields[key])):
            yield f"{where}{key} = {value!r}"


def yaml_files() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml"))


def _load(path: Path) -> tuple[dict[str, Any], bool]:
    text = path.read_text()
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert isinstance(raw, dict)
    raw = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    return raw, "# @package _global_" in text


def findings(path: Path) -> list[str]:
    """Every value of the YAML file ``path`` that equals its dataclass default."""
    raw, is_global = _load(path)
    rel = path.relative_to(CONF)
    group = rel.parts[0] if len(rel.parts) > 1 else None
    if group is not None and not is_global:  # a group option: its node is the group's dataclass
        return list(restated(raw, GROUPS[group], f"{group}."))
    if group is None:  # a primary config
        return list(restated(raw, _schema(rel.stem)))
    out: list[str] = []  # a `# @package _global_` preset: the run's nodes plus `tune`
    for key, value in raw.items():
        if isinstance(value, dict) and (key in GROUPS or key == "tune"):
            out += restated(value, TuneSettings if key == "tune" else GROUPS[key], f"{key}.")
    return out


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_no_yaml_restates_a_dataclass_default(path: Path) -> None:
    found = findings(path)
    assert not found, (f"{path.relative_to(CONF)} restates dataclass defaults (delete these lines; the dataclass is "
                       f"the one source of a default): {found}")


@pytest.mark.parametrize("path", sorted(CONF.rglob("default.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_default_presets_set_nothing(path: Path) -> None:
    raw, _ = _load(path)
    assert raw == {}, (f"{path.relative_to(CONF)} is the group's default but sets {sorted(raw)}: change the "
                       "dataclass default instead (or name the preset after what it changes)")


def test_the_checker_finds_a_restated_default() -> None:
    assert list(restated({"total_timesteps": TrainConfig().total_timesteps, "n_envs": 3}, TrainConfig)) == [
        f"total_timesteps = {TrainConfig().total_timesteps}"]
    assert list(restated({"split": {"embargo_bars": 24, "train_frac": 0.6}, "symbol": "BTC/USDT"}, DataConfig,
                         "data.")) == ["data.split.embargo_bars = 24", "data.symbol = 'BTC/USDT'"]
