"""Every live feed preset and broker composes from conf/paper.yaml into typed configs; bad values name the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from agents.paper.config import PaperConfig, register_paper_configs, to_paper_config
from tests.agents.paper.conftest import CONF, REPO


def _convert(overrides: list[str]) -> PaperConfig:
    register_paper_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        raw = OmegaConf.to_container(compose("paper", overrides=["run_dir=x", *overrides]), resolve=True)
    assert isinstance(raw, dict)
    return to_paper_config({"run_dir": raw["run_dir"], **raw["paper"], "feed": raw["feed"], "broker": raw["broker"]},
                           base_dir=REPO)


@pytest.mark.parametrize(("preset", "market", "symbol", "mode"), [
    ("binance_spot", "spot", "BTC/USDT", "poll"), ("binance_usdm", "swap", "BTC/USDT:USDT", "poll"),
    ("binance_spot_ws", "spot", "BTC/USDT", "websocket"), ("binance_usdm_ws", "swap", "BTC/USDT:USDT", "websocket"),
])
def test_live_presets_compose(preset: str, market: str, symbol: str, mode: str) -> None:
    cfg = _convert([f"paper_feed={preset}", "feed.api_url=http://127.0.0.1:9", "broker=testnet"])
    assert (cfg.feed.kind, cfg.feed.market, cfg.feed.symbol, cfg.feed.mode) == ("live", market, symbol, mode)
    assert cfg.feed.timeframe is None and cfg.feed.clock == "exchange" and cfg.broker.kind == "testnet"


def test_default_broker_is_paper() -> None:
    assert _convert(["feed.path=bars.parquet"]).broker.kind == "paper"


@pytest.mark.parametrize(("overrides", "message"), [
    (["paper_feed=binance_spot", "feed.path=bars.parquet"], "feed.path is for replays"),
    (["paper_feed=binance_spot", "feed.start=2024-01-01"], "feed.start is for replays"),
    (["paper_feed=binance_spot", "feed.mode=stream"], "feed.mode='stream' is invalid"),
    (["paper_feed=binance_usdm", "feed.symbol=BTC/USDT"], "is not a perpetual symbol"),
    (["paper_feed=binance_spot", "broker=testnet", "broker.api_url=https://testnet.binance.vision"],
     "may only name a local test server"),
])
def test_bad_live_values_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _convert(overrides)
