"""Typed configuration of a paper session's broker (Hydra group ``broker``, ``conf/broker/*.yaml``).

Secrets are never configuration: the testnet broker reads ``QUANTGYM_API_KEY`` and
``QUANTGYM_API_SECRET`` from the environment only (`agents.paper.brokers.testnet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: brokers a session can use: ``paper`` (the env's kernel) and ``testnet`` (an exchange's sandbox)
BROKER_KINDS = ("paper", "testnet")
#: the only hosts ``broker.api_url`` may name: a local test server, never a real exchange
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(url: str) -> bool:
    """True when ``url`` is an absolute http(s) URL on this machine's loopback interface."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in LOOPBACK_HOSTS


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where a session's orders go.

    Attributes:
        kind: ``paper`` (default: the env's kernel fills every order; nothing leaves the machine) or
            ``testnet`` (the same, plus a market order per decision to the feed's exchange in
            SANDBOX mode, ccxt ``set_sandbox_mode(True)``; there is no real-money mode).
        api_url: testnet only: a local test server replacing the sandbox's hosts (paths kept). Only
            loopback URLs (127.0.0.1, localhost) are accepted, so it cannot point at a real exchange.
        timeout_ms: testnet only: HTTP timeout, ms (> 0).
        rate_limit_ms: testnet only: minimum spacing between requests, ms (> 0); None = ccxt's value.
    """

    kind: str = "paper"
    api_url: str | None = None
    timeout_ms: int = 10_000
    rate_limit_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in BROKER_KINDS:
            raise ValueError(f"broker.kind={self.kind!r} is invalid: choose one of {list(BROKER_KINDS)} "
                             "(broker=paper or broker=testnet); there is no real-money broker")
        if self.api_url is not None and not is_loopback(self.api_url):
            raise ValueError(f"broker.api_url={self.api_url!r} is refused: it may only name a local test server "
                             "(http://127.0.0.1:<port>); the testnet broker otherwise uses ccxt's sandbox URLs")
        if self.rate_limit_ms is not None and self.rate_limit_ms <= 0:
            raise ValueError(f"broker.rate_limit_ms={self.rate_limit_ms} is invalid: must be > 0 (ms), or null for ccxt's")
        if self.timeout_ms <= 0:
            raise ValueError(f"broker.timeout_ms={self.timeout_ms} is invalid: must be > 0 (milliseconds)")
