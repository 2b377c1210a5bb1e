"""Retrying ccxt calls: exponential backoff with jitter, Retry-After, clear failure messages.

Transient errors (retried): ``ccxt.NetworkError`` and its subclasses: ``RequestTimeout`` (stall past
``exchange.timeout``), ``DDoSProtection`` / ``RateLimitExceeded`` (HTTP 429/418; the server's
``Retry-After`` header is honoured when ccxt exposes it in ``exchange.last_response_headers``),
``ExchangeNotAvailable`` / ``OnMaintenance`` (HTTP 5xx) and plain ``NetworkError`` (dropped
connection), except a DNS failure (the host name does not resolve: a wrong ``api_url`` or no
network), which retrying within seconds cannot fix. Everything else that ccxt raises (``BadSymbol``, ``BadRequest``,
``AuthenticationError``, ``NotSupported``, other ``ExchangeError``) is not transient and is raised at
once as ``FatalFetchError``.

Backoff before retry ``k`` (1-based) is ``min(max_delay_s, base_delay_s * 2**(k-1))`` scaled by a
random factor in ``[1 - jitter_frac, 1]`` (drawn from an injectable ``random.Random``), and never
less than the server's ``Retry-After``. The sleep function is injectable too, so tests run fast.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import ccxt

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry transient exchange errors.

    Attributes:
        max_retries: retries after the first attempt (>= 0); the call is tried ``max_retries + 1`` times.
        base_delay_s: delay before the first retry, seconds (> 0).
        max_delay_s: cap of the exponential delay, seconds (>= base_delay_s).
        jitter_frac: random reduction of each delay, fraction in [0, 1] (0 = no jitter).
        max_retry_after_s: cap on a server's Retry-After, seconds (protects against absurd values).
    """

    max_retries: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter_frac: float = 0.5
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        """Validate ranges."""
        if self.max_retries < 0:
            raise ValueError(f"retry.max_retries={self.max_retries} is invalid: must be >= 0")
        if self.base_delay_s <= 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError(
                f"retry.base_delay_s={self.base_delay_s}, retry.max_delay_s={self.max_delay_s} are invalid: "
                "need 0 < base_delay_s <= max_delay_s (seconds)"
            )
        if not 0.0 <= self.jitter_frac <= 1.0:
            raise ValueError(f"retry.jitter_frac={self.jitter_frac} is invalid: must be in [0, 1]")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based), seconds, jitter applied."""
        raw = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return raw * (1.0 - self.jitter_frac * rng.random())


class RetryError(RuntimeError):
    """A transient error persisted through all retries. ``__cause__`` is the last ccxt error."""


class FatalFetchError(RuntimeError):
    """A non-transient exchange error (bad symbol, bad request, authentication...). Not retried."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ccxt.NetworkError,)


def retry_after_s(exchange: Any, error: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` header of a 429/418), if ccxt exposes it."""
    if not isinstance(error, ccxt.DDoSProtection) or exchange is None:
        return None
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = None
    for k, v in dict(headers).items():
        if str(k).lower() == "retry-after":
            value = v
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None  # HTTP-date form: fall back to exponential backoff


def unresolvable_host(error: BaseException) -> bool:
    """True when a network error comes from a failed DNS lookup (``socket.gaierror`` in its chain)."""
    seen: set[int] = set()
    todo: list[object] = [error]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return False


def _fatal_hint(error: BaseException) -> str:
    if isinstance(error, ccxt.BadSymbol):
        return "check the symbol (unified form, e.g. BTC/USDT for spot, BTC/USDT:USDT for perpetuals)"
    if isinstance(error, ccxt.AuthenticationError):
        return "check QUANTGYM_<EXCHANGE>_API_KEY / _SECRET in the environment or .env"
    if isinstance(error, ccxt.BadRequest):
        return "check the request arguments (timeframe, start/end, limit)"
    if unresolvable_host(error):
        return ("the exchange's host name does not resolve (DNS): check the network connection and feed.api_url, "
                "then rerun the same command (it resumes)")
    if isinstance(error, ccxt.NotSupported):
        return "this exchange/market does not support the call"
    return "not a transient error, so it is not retried"


class Retrier:
    """Calls a function, retrying transient ccxt errors with backoff (see module docstring).

    Args:
        policy: retry limits and delays.
        sleep: function that waits the given seconds (``time.sleep``; inject a fake or a simulated
            clock's ``sleep`` in tests).
        rng: random source for jitter; seed it for reproducible delays.
        exchange: ccxt exchange whose ``last_response_headers`` carry ``Retry-After``.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        exchange: Any = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random(0)
        self.exchange = exchange
        self.retries = 0  # total retries done (for summaries)

    def call(self, fn: Callable[..., T], *args: Any, what: str = "request", **kwargs: Any) -> T:
        """Return ``fn(*args, **kwargs)``, retrying transient errors.

        Args:
            fn: the call, e.g. ``exchange.fetch_ohlcv``.
            *args: positional arguments of ``fn``.
            what: human description used in log and error messages, e.g. ``"binance fetch_ohlcv BTC/USDT 1m since ..."``.
            **kwargs: keyword arguments of ``fn``.

        Raises:
            RetryError: a transient error persisted after ``policy.max_retries`` retries.
            FatalFetchError: a non-transient ccxt error (raised at once).
        """
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except TRANSIENT_ERRORS as e:
                if unresolvable_host(e):
                    raise FatalFetchError(
                        f"{what} failed with {type(e).__name__}: {str(e)[:300]}; {_fatal_hint(e)}") from e
                attempt += 1
                name = type(e).__name__
                if attempt > self.policy.max_retries:
                    raise RetryError(
                        f"{what} failed {attempt} times in a row; last error {name}: {str(e)[:300]}. "
                        "Giving up; data fetched so far is kept in the store, so rerunning the same "
                        "command resumes where it stopped."
                    ) from e
                delay = self.policy.backoff_s(attempt, self.rng)
                server_wait = retry_after_s(self.exchange, e)
                if server_wait is not None:
                    delay = max(delay, min(server_wait, self.policy.max_retry_after_s))
                logger.warning(
                    "%s: %s (%s); retry %d/%d in %.2f s%s",
                    what, name, str(e)[:200], attempt, self.policy.max_retries, delay,
                    f" (server Retry-After {server_wait:g} s)" if server_wait is not None else "",
                )
                self.retries += 1
                self.sleep(delay)
            except ccxt.BaseError as e:
                raise FatalFetchError(
                    f"{what} failed with {type(e).__name__}: {str(e)[:300]}; {_fatal_hint(e)}"
                ) from e
