"""Retry policy: backoff maths, which errors are retried, Retry-After against real ccxt + fake Binance."""

from __future__ import annotations

import random

import ccxt
import pytest

from envs.data.exchange import make_exchange
from envs.data.retry import FatalFetchError, Retrier, RetryError, RetryPolicy


class Flaky:
    """Raises the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_backoff_is_exponential_capped_and_seeded():
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter_frac=0.0)
    rng = random.Random(0)
    assert [policy.backoff_s(k, rng) for k in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0, jitter_frac=0.5)
    a = [jittered.backoff_s(k, random.Random(42)) for k in range(1, 5)]
    b = [jittered.backoff_s(k, random.Random(42)) for k in range(1, 5)]
    assert a == b
    assert all(0.5 * 2 ** (k - 1) <= d <= 2 ** (k - 1) for k, d in zip(range(1, 5), a, strict=True))


@pytest.mark.parametrize(
    "error",
    [ccxt.RequestTimeout("t"), ccxt.DDoSProtection("429"), ccxt.ExchangeNotAvailable("503"), ccxt.NetworkError("x")],
)
def test_transient_errors_are_retried(error):
    sleeps: list[float] = []
    fn = Flaky(error, error)
    r = Retrier(RetryPolicy(max_retries=3, base_delay_s=0.5, jitter_frac=0.0), sleep=sleeps.append)
    assert r.call(fn, what="test call") == "ok"
    assert fn.calls == 3 and sleeps == [0.5, 1.0] and r.retries == 2


def test_gives_up_after_max_retries_with_clear_message():
    sleeps: list[float] = []
    fn = Flaky(*[ccxt.ExchangeNotAvailable("HTTP 503")] * 10)
    r = Retrier(RetryPolicy(max_retries=2, base_delay_s=0.1), sleep=sleeps.append)
    with pytest.raises(RetryError) as info:
        r.call(fn, what="binance fetch_ohlcv BTC/USDT 1m")
    msg = str(info.value)
    assert "binance fetch_ohlcv BTC/USDT 1m failed 3 times" in msg
    assert "ExchangeNotAvailable" in msg and "data fetched so far is kept" in msg
    assert isinstance(info.value.__cause__, ccxt.ExchangeNotAvailable)
    assert fn.calls == 3 and len(sleeps) == 2


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (ccxt.BadSymbol("no ETH/XYZ"), "check the symbol"),
        (ccxt.AuthenticationError("bad key"), "QUANTGYM_<EXCHANGE>_API_KEY"),
        (ccxt.BadRequest("bad limit"), "check the request arguments"),
    ],
)
def test_non_transient_errors_raise_at_once(error, hint):
    sleeps: list[float] = []
    fn = Flaky(error)
    with pytest.raises(FatalFetchError, match=hint) as info:
        Retrier(RetryPolicy(), sleep=sleeps.append).call(fn, what="x")
    assert fn.calls == 1 and sleeps == [] and info.value.__cause__ is error


def test_policy_rejects_bad_values():
    with pytest.raises(ValueError, match="max_retries=-1"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="jitter_frac=2"):
        RetryPolicy(jitter_frac=2)
    with pytest.raises(ValueError, match="base_delay_s"):
        RetryPolicy(base_delay_s=5, max_delay_s=1)


def test_retry_after_of_a_real_429_is_honoured(fake_exchange):
    ex = make_exchange("binance", api_url=fake_exchange.url, timeout_ms=2000)
    fake_exchange.add_fault("429", path="/api/v3/klines", count=2, retry_after_s=7)
    sleeps: list[float] = []
    r = Retrier(RetryPolicy(max_retries=3, base_delay_s=0.01, jitter_frac=0.0), sleep=sleeps.append, exchange=ex)
    rows = r.call(ex.fetch_ohlcv, "BTC/USDT", "1m", since=1717200000000, limit=5, what="klines")
    assert len(rows) == 5 and sleeps == [7.0, 7.0]
    assert [q.status for q in fake_exchange.requests_to("/api/v3/klines")] == [429, 429, 200]


def test_real_bad_symbol_is_not_retried(fake_exchange):
    ex = make_exchange("binance", api_url=fake_exchange.url, timeout_ms=2000)
    sleeps: list[float] = []
    with pytest.raises(FatalFetchError, match="BadSymbol"):
        Retrier(sleep=sleeps.append, exchange=ex).call(ex.fetch_ohlcv, "ETH/USDT", "1m", what="klines")
    assert sleeps == []
