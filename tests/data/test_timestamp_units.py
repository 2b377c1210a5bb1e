"""Bars whose timestamps are seconds, microseconds or nanoseconds are refused wherever bars enter:
the env (both envs), the run loader, scripts/validate.py, the store, the historical and live feeds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.config import DataConfig
from agents.data import load_frame
from envs import EnvConfig, TradingEnv, VecTradingEnv
from envs.data.quality import validate
from envs.data.store import ParquetStore
from envs.feeds.historical import HistoricalFeed
from envs.market.bars import timestamp_unit_error
from envs.market.market_data import attach_funding
from tests.conftest import REPO, SAMPLE_1H

#: unit -> (multiplier applied to ms, floor divisor applied to ms, word in the message)
UNITS = {"seconds": (1, 1000), "microseconds": (1000, 1), "nanoseconds": (1_000_000, 1)}


def in_unit(df: pd.DataFrame, unit: str) -> pd.DataFrame:
    mul, div = UNITS[unit]
    return df.assign(timestamp=df["timestamp"].to_numpy(np.int64) * mul // div)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE_1H).iloc[:300].reset_index(drop=True)


@pytest.mark.parametrize("unit", list(UNITS))
def test_both_envs_refuse_bars_in_another_unit(bars: pd.DataFrame, unit: str) -> None:
    cfg = EnvConfig(window_size=4)
    for build in (lambda d: TradingEnv(d, cfg), lambda d: VecTradingEnv(d, cfg, n_envs=2)):
        with pytest.raises(ValueError, match=f"looks like {unit}.*int64 milliseconds"):
            build(in_unit(bars, unit))
    TradingEnv(bars, cfg)  # the ms original loads


@pytest.mark.parametrize("unit", list(UNITS))
def test_the_run_loader_and_the_report_refuse_another_unit(bars: pd.DataFrame, unit: str, tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    in_unit(bars, unit).to_parquet(path)
    with pytest.raises(ValueError, match=f"looks like {unit}"):
        load_frame(DataConfig(path=str(path)))
    with pytest.raises(ValueError, match=f"looks like {unit}"):
        validate(in_unit(bars, unit))


@pytest.fixture(scope="module")
def validate_script():
    spec = importlib.util.spec_from_file_location("validate_script", REPO / "scripts" / "validate.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["validate_script"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_validate_script_refuses_seconds_with_could_not_run(validate_script, bars: pd.DataFrame, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bars_s.parquet"
    in_unit(bars, "seconds").to_parquet(path)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("validate", overrides=[f"data.path={path}"])
    assert validate_script.run(cfg) == 2
    err = capsys.readouterr()
    assert "looks like seconds" in err.err and "*= 1_000" in err.err
    assert "verdict" not in err.out


@pytest.mark.parametrize("unit", list(UNITS))
def test_the_store_refuses_another_unit_and_writes_nothing(bars: pd.DataFrame, unit: str, tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    with pytest.raises(ValueError, match=f"cannot append to binance BTC/USDT 1h: .*looks like {unit}"):
        store.append("binance", "BTC/USDT", "1h", in_unit(bars, unit))
    assert store.info("binance", "BTC/USDT", "1h") is None
    assert not list(tmp_path.rglob("*.parquet"))


def test_the_store_never_acknowledges_rows_it_could_not_read_back(bars: pd.DataFrame, tmp_path: Path) -> None:
    """Rows past year 9999 were counted as added and written to a partition no reader saw."""
    store = ParquetStore(tmp_path)
    for first_ms in (253_402_300_800_000, 32_503_680_000_000):  # 10000-01-01 (as us: 1978), 3000-01-01
        late = bars.iloc[:5].assign(timestamp=first_ms + np.arange(5) * 3_600_000)
        with pytest.raises(ValueError, match="cannot append .*(microseconds|outside the supported range)"):
            store.append("binance", "BTC/USDT", "1h", late)
    assert store.info("binance", "BTC/USDT", "1h") is None and not list(tmp_path.rglob("*.parquet"))
    ok = store.append("binance", "BTC/USDT", "1h", bars.iloc[:5])
    assert ok.rows_added == len(store.read("binance", "BTC/USDT", "1h")) == 5


@pytest.mark.parametrize("unit", list(UNITS))
def test_feeds_and_funding_refuse_another_unit(bars: pd.DataFrame, unit: str) -> None:
    with pytest.raises(ValueError, match=f"looks like {unit}"):
        HistoricalFeed(in_unit(bars, unit))
    funding = pd.DataFrame({"timestamp": bars["timestamp"].iloc[::8], "funding_rate": 1e-4})
    with pytest.raises(ValueError, match=f"funding events: .*looks like {unit}"):
        attach_funding(bars, in_unit(funding, unit))


def test_the_live_feed_refuses_an_exchange_serving_seconds(bars: pd.DataFrame, tmp_path: Path) -> None:
    from envs.data.exchange import make_exchange
    from envs.feeds.ccxt_live import LiveFeed
    from envs.feeds.clock import SimulatedClock
    from tests.fake_exchange import FakeExchange

    minute = pd.read_parquet(REPO / "data" / "sample" / "btcusdt_1m_2024-06-01_07.parquet").iloc[:50]
    seconds = in_unit(minute, "seconds")
    clock = SimulatedClock(int(seconds["timestamp"].iloc[-1]) + 60_001)  # every bar "closed" as ms
    fx = FakeExchange(seconds, now_ms=clock.now_ms).start()
    try:
        store = ParquetStore(tmp_path)
        feed = LiveFeed(make_exchange("binance", api_url=fx.url, timeout_ms=2000, rate_limit_ms=2), "BTC/USDT", "1m",
                        store=store, clock=clock)
        with pytest.raises(ValueError, match="BTC/USDT 1m feed: .*looks like seconds"):
            feed.poll()
        assert store.info("binance", "BTC/USDT", "1m") is None
    finally:
        fx.stop()


@given(start=st.integers(0, 4_000_000_000_000), step=st.sampled_from([60_000, 3_600_000, 86_400_000]),
       n=st.integers(1, 50))
@settings(max_examples=60, deadline=None)
def test_real_ms_bars_after_1970_02_pass_and_their_other_units_are_named(start: int, step: int, n: int) -> None:
    """Property: ms bars from 1970-02-17 to 2100 pass the unit rule; the same bars in s/us/ns are named."""
    ts = start + np.arange(n, dtype=np.int64) * step
    if ts[-1] >= 4_102_444_800_000:
        return
    if start >= 4_102_444_800:  # below that, ms bars in Jan/Feb 1970 and seconds bars of 2000..2100 overlap
        assert timestamp_unit_error(ts) is None
        assert "seconds" in (timestamp_unit_error(ts // 1000) or "") or start // 1000 < 946_684_800
    if start >= 100_000_000_000:  # 1973-03: below that the us / ns values are not beyond 2100 as ms
        assert "looks like microseconds" in timestamp_unit_error(ts * 1000)  # type: ignore[operator]
        assert "looks like nanoseconds" in timestamp_unit_error(ts * 1_000_000)  # type: ignore[operator]
