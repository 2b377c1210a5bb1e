"""Fixtures for agent tests: Hydra composition of the real conf/ tree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from agents.config import register_configs

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg(overrides, config_name="config") -> the composed DictConfig."""
    register_configs()

    def _compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name, overrides=overrides or [], return_hydra_config=False)

    return _compose
