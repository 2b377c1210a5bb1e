"""One source of defaults: the config dataclasses hold them, YAML presets hold only what they change.

A YAML value equal to the dataclass default is a second home for that default (the two drift apart:
``TrainConfig`` once said 50k steps while conf/train/default.yaml said 300k), and a ``default.yaml``
preset that sets anything contradicts the dataclass it is meant to mirror.

Each file is checked against the schema Hydra validates it with, found rather than listed: a primary
config (``conf/<name>.yaml``) names its schema first in its defaults list (``run_schema``,
``validate_schema``, ...), registered in Hydra's ConfigStore by its script; a group option
(``conf/<group>/<option>.yaml``) is the node of that name in a primary schema, and a
``# @package _global_`` preset sets nodes of a primary schema.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
#: a preset's identity may repeat the default: `agent.name`, a forecaster's `model`, a paper feed's `kind`
IDENTITY = {("agent", "name"), ("forecaster", "model"), ("feed", "kind")}


def _load(path: Path) -> tuple[dict[str, Any], list[Any], bool]:
    """(values without ``defaults``/``hydra``, the defaults list, whether it is a `_global_` preset)."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    assert isinstance(raw, dict)
    defaults = list(raw.get("defaults") or [])
    values = {k: v for k, v in raw.items() if k not in ("defaults", "hydra")}
    return values, defaults, "# @package _global_" in path.read_text()


def primary_schemas() -> dict[str, type]:
    """conf/<name>.yaml -> the dataclass of the schema it names first in its defaults list."""
    for script in sorted((REPO / "scripts").glob("*.py")):  # each script registers its schemas on import
        importlib.import_module(f"scripts.{script.stem}")
    from agents.tune import register_tune_configs

    register_tune_configs()
    out = {}
    for path in sorted(CONF.glob("*.yaml")):
        _, defaults, _ = _load(path)
        if defaults and isinstance(defaults[0], str) and defaults[0].endswith("_schema"):
            node = ConfigStore.instance().load(f"{defaults[0]}.yaml").node
            schema = OmegaConf.get_type(node)
            assert schema is not None and dataclasses.is_dataclass(schema), defaults[0]
            out[path.stem] = schema
    return out


def _dataclass_of(typ: Any) -> type | None:
    return next((a for a in (typ, *typing.get_args(typ)) if dataclasses.is_dataclass(a)), None)


def node_schema(name: str, group: str | None = None) -> type:
    """The dataclass of the node ``name`` (a config group, or ``tune``) in a primary schema.

    With ``group`` (an option placed elsewhere by ``# @package name``), only the primary configs whose
    defaults list selects that group are searched.
    """
    for stem, schema in PRIMARY.items():
        if group is not None and not any(isinstance(d, dict) and group in d for d in _load(CONF / f"{stem}.yaml")[1]):
            continue
        hints = typing.get_type_hints(schema)
        if name not in hints:
            continue
        if (cls := _dataclass_of(hints[name])) is not None:
            return cls
        default = _default({f.name: f for f in dataclasses.fields(schema)}[name])  # `Any` typed by its default
        if dataclasses.is_dataclass(default):
            return type(default)
    raise AssertionError(f"no primary schema has a typed `{name}` node: give conf/{name}/ a dataclass")


def package_schema(package: str) -> type:
    """The dataclass at the dotted node ``package`` (a ``# @package env.risk`` header) of a primary schema."""
    for schema in PRIMARY.values():
        cls: type | None = schema
        for part in package.split("."):
            hints = typing.get_type_hints(cls) if cls is not None else {}
            cls = _dataclass_of(hints[part]) if part in hints else None
        if cls is not None:
            return cls
    raise AssertionError(f"no primary schema has a typed `{package}` node")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _same(yaml_value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    return (not isinstance(yaml_value, dict) and yaml_value == default
            and isinstance(yaml_value, bool) == isinstance(default, bool))


def restated(node: dict[str, Any], cls: type, where: str = "") -> Iterator[str]:
    """``where.key = value`` for every value of ``node`` equal to ``cls``'s default (nested dataclasses too)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in node.items():
        if key not in fields:
            continue  # unknown keys fail at composition, against the schema
        sub = _dataclass_of(hints[key])
        if sub is not None and isinstance(value, dict):
            yield from restated(value, sub, f"{where}{key}.")
        elif (where.rstrip("."), key) not in IDENTITY and _same(value, _default(fields[key])):
            yield f"{where}{key} = {value!r}"


def package_of(path: Path) -> str | None:
    """The node a ``# @package <node>`` header places a group option at (None without one, or `_global_`)."""
    for line in path.read_text().splitlines():
        if line.startswith("# @package ") and (node := line.split()[-1]) != "_global_":
            return node
    return None


def findings(path: Path) -> list[str]:
    """Every value of the YAML file ``path`` that equals its dataclass default."""
    values, _, is_global = _load(path)
    rel = path.relative_to(CONF)
    if len(rel.parts) == 1:  # a primary config
        return list(restated(values, PRIMARY[rel.stem])) if rel.stem in PRIMARY else []
    if rel.parts[0] == "hydra":  # Hydra's own settings (job_logging, ...): Hydra's schema, not ours
        return []
    group, node = rel.parts[0], package_of(path)
    if node is not None and "." in node:  # a group option placed at a nested node (conf/risk/ -> env.risk)
        return list(restated(values, package_schema(node), f"{node}."))
    if not is_global:  # a group option: its node is the group's dataclass
        return list(restated(values, node_schema(node or group, group if node else None), f"{node or group}."))
    out: list[str] = []  # a `# @package _global_` preset: top-level nodes of a primary schema
    for key, value in values.items():
        if isinstance(value, dict):
            out += restated(value, node_schema(key), f"{key}.")
    return out


PRIMARY = primary_schemas()


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_no_yaml_restates_a_dataclass_default(path: Path) -> None:
    found = findings(path)
    assert not found, (f"{path.relative_to(CONF)} restates dataclass defaults (delete these lines; the dataclass is "
                       f"the one source of a default): {found}")


@pytest.mark.parametrize("path", sorted(CONF.rglob("default.yaml")), ids=lambda p: str(p.relative_to(CONF)))
def test_default_presets_set_nothing(path: Path) -> None:
    values, _, _ = _load(path)
    assert values == {}, (f"{path.relative_to(CONF)} is the group's default but sets {sorted(values)}: change the "
                          "dataclass default instead (or name the preset after what it changes)")


def test_the_checker_finds_restated_defaults_and_knows_every_schema() -> None:
    from agents.config import DataConfig, TrainConfig

    assert {"config", "tune", "validate", "download"} <= set(PRIMARY)
    assert list(restated({"total_timesteps": TrainConfig().total_timesteps, "n_envs": 3}, TrainConfig)) == [
        f"total_timesteps = {TrainConfig().total_timesteps}"]
    assert list(restated({"split": {"embargo_bars": 24, "train_frac": 0.6}, "symbol": "BTC/USDT"}, DataConfig,
                         "data.")) == ["data.split.embargo_bars = 24", "data.symbol = 'BTC/USDT'"]
    assert list(restated({"name": "ppo", "policy": "MlpPolicy"}, node_schema("agent"), "agent.")) == [
        "agent.policy = 'MlpPolicy'"]
