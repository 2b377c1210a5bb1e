"""The ``risk`` config group: composed at ``env.risk`` for training, evaluation and paper mode, saved with the run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from agents.config import to_run_config
from agents.model_age import check_forecaster_age
from agents.paper.config import register_paper_configs, to_paper_config
from agents.train import run as train
from envs.sim.config import RiskConfig
from tests.agents.conftest import CONF

PRESET = OmegaConf.to_container(OmegaConf.load(CONF / "risk" / "conservative.yaml"))
assert isinstance(PRESET, dict)
CONSERVATIVE = RiskConfig(**PRESET)  # type: ignore[arg-type]


def test_training_composes_risk_presets_and_single_limits(compose_cfg: Callable[..., DictConfig]) -> None:
    assert to_run_config(compose_cfg([])).env.risk == RiskConfig()  # off by default
    assert to_run_config(compose_cfg(["risk=conservative"])).env.risk == CONSERVATIVE
    assert CONSERVATIVE.max_drawdown is not None and CONSERVATIVE != RiskConfig()
    cfg = compose_cfg(["risk=conservative", "env.risk.max_exposure=0.5", "env=perp"])  # env presets keep the risk node
    assert to_run_config(cfg).env.risk == RiskConfig(**{**PRESET, "max_exposure": 0.5})  # type: ignore[arg-type]
    # the saved config (what load_run reads) carries the limits
    saved = OmegaConf.create(OmegaConf.to_yaml(cfg))
    assert to_run_config(saved).env.risk.max_exposure == 0.5
    with pytest.raises(ValueError, match=r"env.risk.daily_loss_limit=2.0 is invalid"):
        to_run_config(compose_cfg(["env.risk.daily_loss_limit=2.0"]))
    with pytest.raises(Exception, match="max_exposur"):
        compose_cfg(["env.risk.max_exposur=0.5"])  # a typo fails at composition


def test_evaluation_and_paper_use_the_runs_limits_unless_a_preset_replaces_them(
        compose_cfg: Callable[..., DictConfig]) -> None:
    assert compose_cfg(["run_dir=x"], "evaluate").get("env") is None  # the run's env.risk
    none = compose_cfg(["run_dir=x", "risk=none"], "evaluate").env.risk
    assert RiskConfig.from_dict(OmegaConf.to_container(none)) == RiskConfig()  # type: ignore[arg-type]
    register_paper_configs()

    def paper(overrides: list[str]) -> RiskConfig | None:
        raw = OmegaConf.to_container(compose_cfg(["run_dir=x", "feed.path=b.parquet", *overrides], "paper"), resolve=True)
        assert isinstance(raw, dict)
        return to_paper_config({"run_dir": "x", **raw["paper"], "dir": "d", "feed": raw["feed"],
                                "risk": raw["env"]["risk"]}).risk

    assert paper([]) is None
    assert paper(["risk=conservative"]) == CONSERVATIVE
    assert paper(["risk=none"]) == RiskConfig()
    assert paper(["risk=conservative", "env.risk.stale_after=5"]) == RiskConfig(**{**PRESET, "stale_after": 5})  # type: ignore[arg-type]
    assert paper(["risk=none", "env.risk.max_model_age=30d"]) == RiskConfig(max_model_age="30d")


def test_model_age_composes_and_a_forecaster_older_between_fits_is_refused_before_training(
        compose_cfg: Callable[..., DictConfig]) -> None:
    assert to_run_config(compose_cfg(["env.risk.max_model_age=30d"])).env.risk == RiskConfig(max_model_age="30d")
    with pytest.raises(ValueError, match=r"env.risk.max_model_age='30' is invalid"):
        to_run_config(compose_cfg(["env.risk.max_model_age='30'"]))
    # gbm is updated every 250 hourly bars (+ horizon 1: 10.5 days): a 7-day limit would expire it between fits
    cfg = to_run_config(compose_cfg(["forecaster=gbm", "env.risk.max_model_age=7d"]))
    with pytest.raises(ValueError, match=r"max_model_age='7d' is shorter than the forecaster's age between fits"):
        check_forecaster_age(cfg)
    with pytest.raises(ValueError, match=r"shorter than the forecaster's age between fits"):
        train(cfg, "/nonexistent/never-created")  # refused before any data is loaded or folder written
    check_forecaster_age(to_run_config(compose_cfg(["forecaster=gbm", "env.risk.max_model_age=11d"])))
    check_forecaster_age(to_run_config(compose_cfg(["forecaster=gbm", "forecaster.update_every=100",
                                                    "env.risk.max_model_age=7d"])))  # more frequent updates
