"""Constructing ccxt exchanges: API keys from the environment only, test servers, server time.

``make_exchange`` is the one way the project builds a ccxt exchange (downloads, live feeds, the
testnet broker). API keys are read only from the environment (``QUANTGYM_<EXCHANGE>_API_KEY`` /
``QUANTGYM_<EXCHANGE>_SECRET``) or a git-ignored ``.env`` file, never from configs and never logged.
Market data needs no keys. ``repoint_urls`` sends an exchange's REST hosts to a local or test
server (paths kept); ``exchange_now_ms`` is the exchange's clock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt

from envs.data.retry import Retrier

logger = logging.getLogger(__name__)

MARKET_TYPES = ("spot", "swap")


def read_dotenv(path: str | os.PathLike[str] = ".env") -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines of a ``.env`` file (``#`` comments, optional quotes); {} if absent."""
    p = Path(path)
    if not p.is_file():
        return {}
    out: dict[str, str] = {}
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        out[key] = value.strip().strip("'\"")
    return out


def api_credentials(
    exchange_id: str, env: Mapping[str, str] | None = None, dotenv_path: str | os.PathLike[str] = ".env"
) -> dict[str, str]:
    """``{'apiKey': ..., 'secret': ...}`` from ``QUANTGYM_<EXCHANGE>_API_KEY`` / ``_SECRET``; {} when unset.

    The environment wins over the ``.env`` file. Values are never logged.
    """
    env = os.environ if env is None else env
    prefix = f"QUANTGYM_{exchange_id.upper()}_"
    dotenv = read_dotenv(dotenv_path)
    key = env.get(prefix + "API_KEY") or dotenv.get(prefix + "API_KEY")
    secret = env.get(prefix + "SECRET") or dotenv.get(prefix + "SECRET")
    if bool(key) != bool(secret):
        raise ValueError(f"set both {prefix}API_KEY and {prefix}SECRET (environment or .env), or neither")
    return {"apiKey": key, "secret": secret} if key and secret else {}


def repoint_urls(urls: Any, base_url: str) -> Any:
    """Return ``urls`` (str or nested dict) with scheme and host of every URL replaced by ``base_url``'s.

    Paths are kept and appended to ``base_url``'s own path, e.g.
    ``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:8080/api/v3``.
    """
    base = urlsplit(base_url)
    if not base.scheme or not base.netloc:
        raise ValueError(f"api_url={base_url!r} is not an absolute URL like http://127.0.0.1:8080")
    if isinstance(urls, str):
        return f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}{urlsplit(urls).path}"
    if isinstance(urls, dict):
        return {k: repoint_urls(v, base_url) for k, v in urls.items()}
    return urls


def make_exchange(
    exchange_id: str,
    market_type: str = "spot",
    api_url: str | None = None,
    timeout_ms: int = 10_000,
    rate_limit_ms: int | None = None,
    env: Mapping[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] = ".env",
) -> ccxt.Exchange:
    """Build a synchronous ccxt exchange with rate limiting on.

    Args:
        exchange_id: ccxt id, e.g. ``binance``.
        market_type: ``spot`` or ``swap`` (perpetuals; for binance this builds ``binanceusdm``,
            symbols like ``BTC/USDT:USDT``).
        api_url: if given, every URL in ``exchange.urls['api']`` is re-pointed to this base, keeping
            paths (tests, proxies, mirrors).
        timeout_ms: HTTP timeout in ms (> 0).
        rate_limit_ms: override of ccxt's minimum spacing between requests, ms (None = ccxt's value).
        env: environment to read keys from (default ``os.environ``).
        dotenv_path: optional ``.env`` file with the same variables.

    Raises:
        ValueError: unknown exchange id or market type.
    """
    if market_type not in MARKET_TYPES:
        raise ValueError(f"feed.market={market_type!r} is invalid: use one of {MARKET_TYPES}")
    if timeout_ms <= 0:
        raise ValueError(f"timeout_ms={timeout_ms} is invalid: must be > 0 (milliseconds)")
    class_id = exchange_id
    options: dict[str, Any] = {}
    if exchange_id == "binance":
        if market_type == "swap":
            class_id = "binanceusdm"
        else:
            options = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}
    else:
        options = {"defaultType": market_type}
    if class_id not in ccxt.exchanges:
        raise ValueError(f"feed.exchange={exchange_id!r} is not a ccxt exchange id (e.g. binance, bybit, okx)")
    params: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_ms), "options": options}
    params.update(api_credentials(exchange_id, env, dotenv_path))
    exchange = getattr(ccxt, class_id)(params)
    if rate_limit_ms is not None:
        exchange.rateLimit = rate_limit_ms
    if api_url:
        exchange.urls["api"] = repoint_urls(exchange.urls["api"], api_url)
    logger.info(
        "exchange %s (%s) ready%s%s", class_id, market_type, f", api at {api_url}" if api_url else "",
        ", with API key" if params.get("apiKey") else ", no API key",
    )
    return exchange


# --------------------------------------------------------------------------- config and results


def exchange_now_ms(exchange: ccxt.Exchange, retrier: Retrier) -> int:
    """Exchange server time (ms UTC) via ``fetch_time``; local clock if the exchange lacks it."""
    if exchange.has.get("fetchTime"):
        now = retrier.call(exchange.fetch_time, what=f"{exchange.id} fetch_time")
        if now is not None:
            return int(now)
    return int(exchange.milliseconds())
