"""conf/paper.yaml composes into a typed `PaperConfig`; bad values stop at start-up with the key to change."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from agents.paper.config import PaperConfig, register_paper_configs, to_paper_config
from tests.agents.paper.conftest import CONF, REPO


def _compose(overrides: list[str]) -> dict:
    register_paper_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("paper", overrides=overrides)
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    return raw


def _convert(raw: dict) -> PaperConfig:
    return to_paper_config({"run_dir": raw["run_dir"], **raw["paper"], "feed": raw["feed"]}, base_dir=REPO)


def test_paper_config_composes_with_the_replay_feed() -> None:
    raw = _compose(["run_dir=outputs/train/x", "feed.path=data/sample/btcusdt_1h.parquet", "paper.dir=p",
                    "feed.speed=20"])
    cfg = _convert(raw)
    assert cfg.feed.kind == "replay" and cfg.feed.speed == 20.0 and cfg.tail_bars == 4096
    assert cfg.feed.path == str(REPO / "data/sample/btcusdt_1h.parquet") and cfg.dir == str(REPO / "p")


def test_unknown_key_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["run_dir=x", "feed.speeed=2"])
    assert "speeed" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(("override", "message"), [
    ("feed.speed=0", "feed.speed=0.0 is invalid"),
    ("feed.kind=binance_spot", "feed.kind='binance_spot' is invalid"),
    ("paper.model=latest", "model='latest' is invalid"),
])
def test_bad_values_name_the_key(override: str, message: str) -> None:
    raw = _compose(["run_dir=x", "feed.path=bars.parquet", override])
    with pytest.raises(ValueError, match=message):
        _convert(raw)


def test_a_replay_needs_one_source() -> None:
    with pytest.raises(ValueError, match="a replay needs one source"):
        _convert(_compose(["run_dir=x"]))
    with pytest.raises(ValueError, match="not both"):
        _convert(_compose(["run_dir=x", "feed.path=a.parquet", "feed.store_root=data/store"]))
    cfg = _convert(_compose(["run_dir=x", "feed.store_root=data/store", "feed.start=2023-01-01"]))
    assert cfg.feed.store_root == str(REPO / "data/store") and cfg.feed.start == "2023-01-01"
