"""Downloads with real ccxt against the fake Binance server: resume after SIGKILL, faults, gaps, config."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from envs.data.download import (
    DownloadConfig,
    DownloadError,
    FeedConfig,
    download_funding,
    download_ohlcv,
)
from envs.data.exchange import api_credentials, make_exchange, repoint_urls
from envs.data.retry import FatalFetchError, Retrier, RetryPolicy
from envs.data.store import ParquetStore
from envs.market.times import to_ms
from tests.data.conftest import SAMPLE_END_MS

REPO = Path(__file__).resolve().parents[2]
START, END = "2024-06-01", "2024-06-08"
START_MS = to_ms(START)
MIN = 60_000
FAST = DownloadConfig(
    progress=False, empty_page_retries=2, retry=RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)
)


def spot(fx, **kw):
    return make_exchange("binance", "spot", api_url=fx.url, timeout_ms=kw.pop("timeout_ms", 2000), rate_limit_ms=5, **kw)


def run(fx, store, sleeps=None, config=FAST, start=START, end=END, **kw):
    ex = kw.pop("exchange", None) or spot(fx)
    sleeps = [] if sleeps is None else sleeps
    retrier = Retrier(config.retry, sleep=sleeps.append, exchange=ex)
    return download_ohlcv(ex, store, "BTC/USDT", "1m", start, end, config=config, retrier=retrier, **kw)


def stored(store):
    return store.read("binance", "BTC/USDT", "1m")


def test_full_download_equals_served_bars_and_resume_is_a_no_op(fake_exchange, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    s = run(fake_exchange, store)
    assert (s.rows_added, s.duplicates, s.conflicts, s.gaps, s.pages) == (10080, 0, 0, (), 11)
    assert (s.first_ms, s.last_ms) == (START_MS, SAMPLE_END_MS - MIN)
    pd.testing.assert_frame_equal(stored(store), bars_1m)
    paths = {r.path for r in fake_exchange.requests}
    assert paths == {"/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/time"}  # nothing else is called
    n_before = len(fake_exchange.requests_to("/api/v3/klines"))
    again = run(fake_exchange, store)
    assert again.rows_added == 0 and again.resumed_from_ms == SAMPLE_END_MS
    assert len(fake_exchange.requests_to("/api/v3/klines")) == n_before  # nothing left to fetch


def test_requests_are_rate_limited(fake_exchange, tmp_path):
    ex = make_exchange("binance", api_url=fake_exchange.url, timeout_ms=2000, rate_limit_ms=100)
    config = DownloadConfig(page_limit=10, persist_every_pages=10, progress=False, retry=FAST.retry)
    download_ohlcv(ex, ParquetStore(tmp_path), "BTC/USDT", "1m", START, START_MS + 100 * MIN, config=config)
    arrivals = [r.arrived_s for r in fake_exchange.requests_to("/api/v3/klines")]
    assert len(arrivals) == 10
    cost = ex.api["public"]["get"]["klines"]["cost"]  # ccxt's weight of a spot klines call (0.4)
    gaps_ms = [1000 * (b - a) for a, b in zip(arrivals, arrivals[1:], strict=False)]
    spacing_ms = 100 * cost  # unthrottled, these requests come ~3 ms apart
    assert sum(gaps_ms) / len(gaps_ms) >= 0.9 * spacing_ms and min(gaps_ms) >= 0.5 * spacing_ms, gaps_ms


def test_later_stored_data_does_not_hide_an_earlier_missing_span(fake_exchange, bars_1m, tmp_path):
    store = ParquetStore(tmp_path)
    store.append("binance", "BTC/USDT", "1m", bars_1m.iloc[5760:])  # June 5-7 already stored
    s = run(fake_exchange, store)
    assert s.resumed_from_ms == START_MS  # stored rows do not start near feed.start: fetch from start
    assert (s.rows_added, s.duplicates, s.conflicts) == (5760, 4320, 0)
    pd.testing.assert_frame_equal(stored(store), bars_1m)


def test_sigkilled_download_resumes_to_exactly_the_served_bars(fake_exchange, bars_1m, tmp_path):
    store_root = tmp_path / "store"
    fake_exchange.add_fault("delay", path="/api/v3/klines", count=None, delay_s=0.3)  # slow pages
    cmd = [
        sys.executable, "scripts/download.py", f"feed.start={START}", f"feed.end={END}", "feed.page_limit=500",
        f"feed.api_url={fake_exchange.url}", "feed.timeout_ms=5000", "feed.progress=false",
        f"store.root={store_root}", f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = ParquetStore(store_root)
    try:
        deadline = time.monotonic() + 60
        while True:
            info = store.info("binance", "BTC/USDT", "1m") if (store_root / "binance").exists() else None
            if info is not None and info.rows >= 1500:
                break
            assert proc.poll() is None, f"downloader exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "downloader stored nothing in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed_rows = len(stored(store))
    assert 1500 <= killed_rows < 10080, killed_rows
    pd.testing.assert_frame_equal(stored(store), bars_1m.iloc[:killed_rows].reset_index(drop=True))

    fake_exchange.clear_faults()
    n_seen = len(fake_exchange.requests)
    s = run(fake_exchange, store)
    final = stored(store)
    pd.testing.assert_frame_equal(final, bars_1m)  # none missing, none duplicated, values exact
    assert s.resumed_from_ms == START_MS + killed_rows * MIN
    assert s.rows_added == 10080 - killed_rows and s.duplicates == 0
    first_kline = next(r for r in fake_exchange.requests[n_seen:] if r.path == "/api/v3/klines")
    assert int(first_kline.params["startTime"]) == s.resumed_from_ms  # resumed, did not restart


@pytest.mark.parametrize("kind", ["429", "500", "delay", "drop", "truncate", "duplicate", "shuffle"])
def test_transient_fault_is_survived_without_loss(fake_exchange, bars_1m, tmp_path, kind):
    fake_exchange.add_fault(kind, path="/api/v3/klines", skip=2, count=1, delay_s=2.5, retry_after_s=3)
    sleeps: list[float] = []
    s = run(fake_exchange, ParquetStore(tmp_path), sleeps)
    pd.testing.assert_frame_equal(stored(ParquetStore(tmp_path)), bars_1m)
    assert s.gaps == () and s.rows_added == 10080
    faulted = [r for r in fake_exchange.requests if r.fault == kind]
    if kind != "delay":  # a stalled request is logged only after the client has given up
        assert len(faulted) == 1
    if kind in ("429", "500", "delay", "drop"):
        assert s.retries == 1 and s.empty_pages == 0
    if kind == "429":
        assert 3.0 in sleeps  # the server's Retry-After was honoured
    if kind == "truncate":  # ccxt turned the truncated body into [], which was asked again, not taken as the end
        assert s.empty_pages == 1 and s.retries == 0
    if kind == "duplicate":
        assert s.page_duplicates > 0
    if kind == "shuffle":
        assert faulted[0].rows == 1000


def test_persistently_empty_page_is_skipped_and_reported_as_gap(fake_exchange, bars_1m, tmp_path):
    fake_exchange.add_fault("truncate", path="/api/v3/klines", skip=3, count=2)  # 1 try + 1 re-ask
    store = ParquetStore(tmp_path)
    s = run(fake_exchange, store, config=DownloadConfig(progress=False, empty_page_retries=1, retry=FAST.retry))
    lost = (START_MS + 3000 * MIN, START_MS + 4000 * MIN)
    assert s.gaps == (lost,) and s.empty_pages == 2
    expect = bars_1m[(bars_1m.timestamp < lost[0]) | (bars_1m.timestamp >= lost[1])].reset_index(drop=True)
    pd.testing.assert_frame_equal(stored(store), expect)  # went on after the empty page
    refill = run(fake_exchange, store, start=lost[0], end=lost[1])  # documented way to refill a gap
    assert refill.rows_added == 1000
    pd.testing.assert_frame_equal(stored(store), bars_1m)


def test_missing_bars_are_reported_as_gaps_not_invented(fake_exchange, tmp_path):
    a, b = START_MS + 2500 * MIN, START_MS + 2620 * MIN  # inside a page
    c = START_MS + 6000 * MIN  # exactly on a page boundary
    fake_exchange.omit(a, b)
    fake_exchange.omit(c, c + 5 * MIN)
    store = ParquetStore(tmp_path)
    s = run(fake_exchange, store)
    assert s.gaps == ((a, b), (c, c + 5 * MIN))
    pd.testing.assert_frame_equal(stored(store), fake_exchange.served_bars())
    assert "gaps: 2" in s.describe()


def test_persistent_failure_raises_clear_error_and_keeps_fetched_pages(fake_exchange, bars_1m, tmp_path):
    fake_exchange.add_fault("500", path="/api/v3/klines", skip=3, count=None)
    store = ParquetStore(tmp_path)
    with pytest.raises(DownloadError) as info:
        run(fake_exchange, store)
    msg = str(info.value)
    assert "failed 4 times" in msg and "ExchangeNotAvailable" in msg
    assert "data fetched so far is kept" in msg and "stored 3000 new rows" in msg
    assert info.value.summary.rows_added == 3000
    pd.testing.assert_frame_equal(stored(store), bars_1m.iloc[:3000])
    fake_exchange.clear_faults()
    assert run(fake_exchange, store).rows_added == 7080
    pd.testing.assert_frame_equal(stored(store), bars_1m)


def test_only_closed_bars_are_stored(fake_exchange, bars_1m, tmp_path):
    fake_exchange.now_ms = START_MS + 720 * MIN + 30_000  # 12:00:30: the 12:00 bar is still forming
    store = ParquetStore(tmp_path)
    s = run(fake_exchange, store, end=None)
    assert s.last_ms == START_MS + 719 * MIN
    pd.testing.assert_frame_equal(stored(store), bars_1m.iloc[:720])
    served = fake_exchange.requests_to("/api/v3/klines")
    assert all(int(r.params["endTime"]) < START_MS + 720 * MIN for r in served)


def test_bad_symbol_fails_at_once(fake_exchange, tmp_path):
    ex = spot(fake_exchange)
    with pytest.raises(FatalFetchError, match="ETH/USDT.*check the symbol"):
        download_ohlcv(ex, ParquetStore(tmp_path), "ETH/USDT", "1m", START, END, config=FAST)
    assert not (tmp_path / "binance").exists()


def test_perpetual_bars_and_funding(fake_exchange, bars_1m, funding_8h, tmp_path):
    ex = make_exchange("binance", "swap", api_url=fake_exchange.url, timeout_ms=2000, rate_limit_ms=5)
    assert ex.id == "binanceusdm"
    store = ParquetStore(tmp_path)
    s = download_ohlcv(ex, store, "BTC/USDT:USDT", "1m", "2024-06-07", END, config=FAST)
    assert s.rows_added == 1440
    pd.testing.assert_frame_equal(store.read("binanceusdm", "BTC/USDT:USDT", "1m"),
                                  bars_1m.iloc[-1440:].reset_index(drop=True))
    f = download_funding(ex, store, "BTC/USDT:USDT", "2022-01-01", END, config=FAST)
    assert f.rows_added == len(funding_8h) and f.pages == 3 and f.gaps == ()
    pd.testing.assert_frame_equal(store.read("binanceusdm", "BTC/USDT:USDT", "funding"), funding_8h)
    assert download_funding(ex, store, "BTC/USDT:USDT", "2022-01-01", END, config=FAST).rows_added == 0
    assert {r.path for r in fake_exchange.requests} <= {
        "/fapi/v1/exchangeInfo", "/fapi/v1/klines", "/fapi/v1/fundingRate", "/fapi/v1/time"}


def test_keys_come_from_env_or_dotenv_and_are_never_logged(fake_exchange, tmp_path, caplog):
    key, secret = "k3y-visible-nowhere", "s3cret-visible-nowhere"
    env = {"QUANTGYM_BINANCE_API_KEY": key, "QUANTGYM_BINANCE_SECRET": secret}
    assert api_credentials("binance", env, tmp_path / "missing.env") == {"apiKey": key, "secret": secret}
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# keys\nQUANTGYM_BINANCE_API_KEY='{key}'\nexport QUANTGYM_BINANCE_SECRET={secret}\n")
    assert api_credentials("binance", {}, dotenv) == {"apiKey": key, "secret": secret}
    with pytest.raises(ValueError, match="set both"):
        api_credentials("binance", {"QUANTGYM_BINANCE_API_KEY": key}, dotenv.with_name("none"))
    with caplog.at_level(logging.DEBUG):
        ex = make_exchange("binance", api_url=fake_exchange.url, timeout_ms=2000, env=env, dotenv_path=dotenv)
        assert ex.apiKey == key
        run(fake_exchange, ParquetStore(tmp_path), exchange=ex, start="2024-06-07T23:00", end=END)
    assert key not in caplog.text and secret not in caplog.text
    assert {r.path for r in fake_exchange.requests} == {"/api/v3/exchangeInfo", "/api/v3/klines", "/api/v3/time"}


def test_repoint_urls_keeps_paths():
    urls = {"public": "https://api.binance.com/api/v3", "nested": {"fapi": "https://fapi.binance.com/fapi/v1"}}
    assert repoint_urls(urls, "http://127.0.0.1:9") == {
        "public": "http://127.0.0.1:9/api/v3", "nested": {"fapi": "http://127.0.0.1:9/fapi/v1"}}
    with pytest.raises(ValueError, match="api_url='localhost'"):
        repoint_urls(urls, "localhost")
    with pytest.raises(ValueError, match="feed.exchange='nope'"):
        make_exchange("nope")


def _load_script():
    if "download_script" in sys.modules:
        return sys.modules["download_script"]
    spec = importlib.util.spec_from_file_location("download_script", REPO / "scripts" / "download.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["download_script"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)  # registers the structured schema in Hydra's ConfigStore
    return module


def _compose(overrides: list[str]):
    _load_script()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose("download", overrides=overrides))


def test_config_groups_compose_and_bad_keys_or_values_fail_naming_the_key():
    usdm = _compose(["feed=binance_usdm", "store.root=/tmp/x"])
    assert usdm.feed == FeedConfig(market="swap", symbol="BTC/USDT:USDT", funding=True)
    assert usdm.store.root == "/tmp/x"
    assert _compose([]).feed == FeedConfig()
    with pytest.raises(Exception, match="feed.limti"):
        _compose(["feed.limti=3"])
    with pytest.raises(Exception, match="feed.page_limit=0"):
        _compose(["feed.page_limit=0"])
    with pytest.raises(Exception, match="feed.market='margin'"):
        _compose(["feed.market=margin"])
    with pytest.raises(Exception, match="feed.start='June'"):
        _compose(["feed.start=June"])


def test_script_exits_non_zero_with_clear_message(fake_exchange, tmp_path, monkeypatch, capsys):
    module = _load_script()  # in-process: a subprocess already covers the script in the SIGKILL test
    argv = ["download.py", "feed.symbol=ETH/USDT", f"feed.api_url={fake_exchange.url}", "feed.progress=false",
            f"store.root={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}", "hydra.output_subdir=null",
            "hydra/job_logging=none", "hydra/hydra_logging=none"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")  # resolve ../conf from the script file, as when run
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "download failed" in err and "ETH/USDT" in err and "check the symbol" in err
    monkeypatch.setattr(sys, "argv", [*argv[:1], "feed.market=margin", *argv[2:]])
    with pytest.raises(SystemExit) as info:
        module.main()
    assert info.value.code == 2 and "feed.market='margin' is invalid" in capsys.readouterr().err


def _download_cli(fx_url: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "scripts/download.py", f"feed.start={START}", "feed.end=2024-06-01T02:00",
           f"feed.api_url={fx_url}", "feed.progress=false", "feed.timeout_ms=2000", f"store.root={tmp_path / 'store'}",
           f"hydra.run.dir={tmp_path / 'hydra'}", *extra]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    return out, time.monotonic() - t0


@pytest.mark.parametrize("case", ["dns", "auth", "symbol"])
def test_script_fails_fast_on_errors_that_retrying_cannot_fix(fake_exchange, tmp_path, case):
    url = "http://no-such-host.invalid" if case == "dns" else fake_exchange.url
    if case == "auth":
        fake_exchange.add_fault("401", path="/api/v3/klines", count=None)
    extra = ["feed.symbol=NOPE/USDT"] if case == "symbol" else []
    out, _ = _download_cli(url, tmp_path, *extra)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "retry 1/" not in out.stderr, out.stderr  # not retried
    hint = {"dns": "does not resolve (DNS)", "auth": "QUANTGYM_<EXCHANGE>_API_KEY", "symbol": "check the symbol"}[case]
    assert "download failed: " in out.stderr and hint in out.stderr, out.stderr
    if case == "auth":
        assert len(fake_exchange.requests_to("/api/v3/klines")) == 1


def test_script_retries_transient_errors_then_gives_up_with_one_message(fake_exchange, tmp_path):
    fake_exchange.add_fault("500", path="/api/v3/time", count=None)  # the first call of a download
    out, _ = _download_cli(fake_exchange.url, tmp_path, "feed.max_retries=2", "feed.retry_base_delay_s=0.01")
    assert out.returncode == 1, out.stderr
    assert len(fake_exchange.requests_to("/api/v3/time")) == 3  # the first try and two retries
    assert "Traceback" not in out.stderr and "The above exception" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("download failed: ") and "Giving up; " in last and "resumes" in last
