"""Resumable, crash-safe downloads of bars and funding rates from ccxt exchanges into a ParquetStore.

``download_ohlcv`` and ``download_funding`` page through an exchange's history from ``start`` (or
from the last stored row, see "Resume") up to ``end`` or the exchange's current time, and append to
the store every ``persist_every_pages`` pages, so a SIGKILL loses at most the pages in flight.

Rules, in the order they are applied to each page:

- Only CLOSED bars are stored: a bar with open time ``t`` is closed once ``t + timeframe <= now``,
  with ``now`` taken from the exchange (``fetch_time``) when the download starts.
- Repeated candles inside a page are dropped (the last one wins) and counted in
  ``page_duplicates``; ccxt already sorts each page, an out-of-order page is counted too.
- An EMPTY page is not proof of the end: ccxt returns ``[]`` for a truncated JSON body. It is
  retried ``empty_page_retries`` times with backoff; if still empty, the downloader skips forward by
  one page span, records that span in ``gaps`` and goes on. It stops only at ``end`` or ``now``.
  (Funding only: an empty page less than one funding interval before the stop is the normal end.)
- Missing bars between pages or inside a page (open times more than one timeframe apart) are
  recorded in ``gaps`` as ``(first missing open ms, next present open ms)``; nothing is filled in.
- Transient errors (timeouts, 429 with Retry-After, 5xx, dropped connections) are retried with
  backoff (``envs.data.retry``); when retries run out, the rows fetched so far are flushed to the
  store and ``DownloadError`` says so. Non-transient errors (bad symbol...) stop at once.

Resume: when the store already holds rows of the series starting within one page span of
``start``, the download continues after the last stored row before ``end``; otherwise it starts at
``start`` and already-stored rows are counted as duplicates, never written twice.

Exchanges are built by ``envs.data.exchange.make_exchange`` (keys from the environment only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ccxt
import numpy as np
import pandas as pd

from envs.data.exchange import MARKET_TYPES, exchange_now_ms, make_exchange
from envs.data.paging import DownloadConfig, DownloadError, DownloadSummary, PagedSeries, paginate
from envs.data.retry import Retrier, RetryPolicy
from envs.data.store import FUNDING_TIMEFRAME, ParquetStore
from envs.market.times import to_ms

logger = logging.getLogger(__name__)

__all__ = ["FUNDING_INTERVAL_MS", "DownloadConfig", "DownloadError", "DownloadSummary", "FeedConfig", "download_funding",
           "download_ohlcv", "funding_to_frame", "ohlcv_to_frame", "run_download"]

FUNDING_INTERVAL_MS = 8 * 3600 * 1000


def ohlcv_to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Convert ccxt OHLCV rows ``[ms, o, h, l, c, v]`` to a bar-format DataFrame (order kept, None -> NaN)."""
    arr = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)
    return pd.DataFrame(
        {
            "timestamp": np.array([int(r[0]) for r in rows], dtype=np.int64),
            "open": arr[:, 1],
            "high": arr[:, 2],
            "low": arr[:, 3],
            "close": arr[:, 4],
            "volume": arr[:, 5],
        }
    )


def funding_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Convert ccxt funding-rate-history dicts to a ``timestamp`` (ms UTC), ``funding_rate`` (fraction) frame."""
    return pd.DataFrame(
        {
            "timestamp": np.array([int(r["timestamp"]) for r in rows], dtype=np.int64),
            "funding_rate": np.array(
                [np.nan if r.get("fundingRate") is None else float(r["fundingRate"]) for r in rows], dtype=np.float64
            ),
        }
    )


# --------------------------------------------------------------------------- public entry points
def download_ohlcv(
    exchange: ccxt.Exchange,
    store: ParquetStore,
    symbol: str,
    timeframe: str,
    start: int | str | pd.Timestamp,
    end: int | str | pd.Timestamp | None = None,
    *,
    config: DownloadConfig | None = None,
    retrier: Retrier | None = None,
    now_ms: int | None = None,
) -> DownloadSummary:
    """Download closed bars ``[start, end)`` of ``symbol`` into ``store`` (resumable).

    Args:
        exchange: ccxt exchange (see ``make_exchange``); its id is the store's exchange name.
        store: destination store.
        symbol: unified symbol, e.g. ``BTC/USDT`` or ``BTC/USDT:USDT``.
        timeframe: ccxt timeframe, e.g. ``1m``, ``1h``.
        start: first bar open time to fetch (ms UTC int, ISO string or Timestamp).
        end: first bar open time NOT to fetch; None = up to the exchange's current time.
        config: paging and persistence settings.
        retrier: transient-error retrier (default: ``config.retry`` with real sleeps).
        now_ms: override of the exchange time (ms UTC) deciding which bars are closed.

    Returns:
        The run's summary (also logged at INFO).

    Raises:
        DownloadError: transient errors persisted; rows fetched before are in the store.
        FatalFetchError: non-transient exchange error (e.g. unknown symbol).
        ValueError: invalid arguments.
    """
    config = config or DownloadConfig()
    retrier = retrier or Retrier(config.retry, exchange=exchange)
    retrier.exchange = retrier.exchange or exchange
    if timeframe not in (exchange.timeframes or {}):
        raise ValueError(
            f"feed.timeframe={timeframe!r} is not offered by {exchange.id}; choose one of {sorted(exchange.timeframes or {})}"
        )
    tf_ms = int(exchange.parse_timeframe(timeframe) * 1000)
    start_ms = to_ms(start, "feed.start")
    now = exchange_now_ms(exchange, retrier) if now_ms is None else int(now_ms)
    stop_ms = now - tf_ms + 1  # bars with open <= now - tf are closed
    if end is not None:
        stop_ms = min(stop_ms, to_ms(end, "feed.end"))
    if stop_ms <= start_ms:
        raise ValueError(f"nothing to download: feed.start ({start}) is not before feed.end / the last closed bar")
    retrier.call(exchange.load_markets, what=f"{exchange.id} load_markets")
    what = f"{exchange.id} {symbol} {timeframe}"

    def fetch(since: int) -> pd.DataFrame:
        rows = retrier.call(
            exchange.fetch_ohlcv, symbol, timeframe, since=since, limit=config.page_limit,
            params={"until": stop_ms - 1}, what=f"{what} fetch_ohlcv since {since}",
        )
        return ohlcv_to_frame(rows)

    series = PagedSeries(what=what, store_exchange=exchange.id, symbol=symbol, timeframe=timeframe, start_ms=start_ms,
                     stop_ms=stop_ms, step_ms=tf_ms, gap_ms=tf_ms, page_span_ms=config.page_limit * tf_ms,
                     end_slack_ms=0)
    return paginate(series, fetch, store, config, retrier)


def download_funding(
    exchange: ccxt.Exchange,
    store: ParquetStore,
    symbol: str,
    start: int | str | pd.Timestamp,
    end: int | str | pd.Timestamp | None = None,
    *,
    config: DownloadConfig | None = None,
    retrier: Retrier | None = None,
    now_ms: int | None = None,
    interval_ms: int = FUNDING_INTERVAL_MS,
) -> DownloadSummary:
    """Download funding rates (``timestamp`` ms UTC, ``funding_rate`` fraction per interval) of a perpetual.

    Stored under timeframe ``funding``. Funding times carry a few ms of jitter, so a gap is a spacing
    above 1.5 x ``interval_ms``. Other rules as ``download_ohlcv``.

    Args:
        exchange: ccxt exchange for perpetuals (e.g. ``make_exchange('binance', 'swap')``).
        store: destination store.
        symbol: unified perpetual symbol, e.g. ``BTC/USDT:USDT``.
        start: first funding time to fetch (ms UTC int, ISO string or Timestamp).
        end: first funding time NOT to fetch; None = up to now.
        config: paging and persistence settings.
        retrier: transient-error retrier.
        now_ms: override of the exchange time (ms UTC).
        interval_ms: nominal funding interval, ms (8 h on binance).

    Returns:
        The run's summary (also logged at INFO).

    Raises:
        DownloadError: transient errors persisted; rows fetched before are in the store.
        FatalFetchError: non-transient exchange error.
    """
    config = config or DownloadConfig()
    retrier = retrier or Retrier(config.retry, exchange=exchange)
    retrier.exchange = retrier.exchange or exchange
    if not exchange.has.get("fetchFundingRateHistory"):
        raise ValueError(f"{exchange.id} has no funding-rate history; use market=swap (e.g. binanceusdm)")
    start_ms = to_ms(start, "feed.start")
    now = exchange_now_ms(exchange, retrier) if now_ms is None else int(now_ms)
    stop_ms = now + 1
    if end is not None:
        stop_ms = min(stop_ms, to_ms(end, "feed.end"))
    if stop_ms <= start_ms:
        raise ValueError(f"nothing to download: feed.start ({start}) is not before feed.end / now")
    retrier.call(exchange.load_markets, what=f"{exchange.id} load_markets")
    what = f"{exchange.id} {symbol} funding"

    def fetch(since: int) -> pd.DataFrame:
        rows = retrier.call(
            exchange.fetch_funding_rate_history, symbol, since=since, limit=config.page_limit,
            params={"until": stop_ms - 1}, what=f"{what} fetch_funding_rate_history since {since}",
        )
        return funding_to_frame(rows)

    series = PagedSeries(what=what, store_exchange=exchange.id, symbol=symbol, timeframe=FUNDING_TIMEFRAME,
                     start_ms=start_ms, stop_ms=stop_ms, step_ms=1, gap_ms=int(interval_ms * 1.5),
                     page_span_ms=config.page_limit * interval_ms, end_slack_ms=interval_ms)
    return paginate(series, fetch, store, config, retrier)


# --------------------------------------------------------------------------- config-driven run
@dataclass(frozen=True, slots=True)
class FeedConfig:
    """What to download (Hydra group ``feed``; see ``conf/feed/*.yaml``). Secrets never go here.

    Attributes:
        exchange: ccxt exchange id, e.g. ``binance``.
        market: ``spot`` or ``swap`` (perpetuals; binance -> ``binanceusdm``).
        symbol: unified symbol, ``BTC/USDT`` (spot) or ``BTC/USDT:USDT`` (USDⓈ-M perpetual).
        timeframe: bar timeframe, e.g. ``1m``, ``1h``.
        start: first bar open time, ISO date/time (UTC) or ms since epoch as a string.
        end: first bar open time not fetched (exclusive); None = up to the last closed bar.
        funding: also download the funding-rate history (needs ``market: swap``).
        api_url: base URL replacing the exchange's hosts (tests, mirrors); None = the real API.
        page_limit: rows per request (> 0).
        persist_every_pages: store after this many pages (>= 1).
        empty_page_retries: re-asks of an empty page before skipping it as a gap (>= 0).
        timeout_ms: HTTP timeout, ms (> 0).
        max_retries: retries of a transient error before giving up (>= 0).
        retry_base_delay_s: first backoff delay, seconds (> 0); doubles per retry.
        progress: show a progress bar with ETA.
    """

    exchange: str = "binance"
    market: str = "spot"
    symbol: str = "BTC/USDT"
    timeframe: str = "1m"
    start: str = "2024-01-01"
    end: str | None = None
    funding: bool = False
    api_url: str | None = None
    page_limit: int = 1000
    persist_every_pages: int = 1
    empty_page_retries: int = 3
    timeout_ms: int = 10_000
    max_retries: int = 5
    retry_base_delay_s: float = 1.0
    progress: bool = True

    def __post_init__(self) -> None:
        """Validate values so a bad config fails at start-up, naming the key."""
        if self.market not in MARKET_TYPES:
            raise ValueError(f"feed.market={self.market!r} is invalid: use one of {MARKET_TYPES}")
        if self.funding and self.market != "swap":
            raise ValueError("feed.funding=true needs feed.market=swap (funding exists only for perpetuals)")
        if self.market == "swap" and ":" not in self.symbol:
            raise ValueError(f"feed.symbol={self.symbol!r} is not a perpetual symbol; use e.g. BTC/USDT:USDT")
        if self.timeout_ms <= 0:
            raise ValueError(f"feed.timeout_ms={self.timeout_ms} is invalid: must be > 0 (milliseconds)")
        to_ms(_time_arg(self.start), "feed.start")
        if self.end is not None:
            to_ms(_time_arg(self.end), "feed.end")
        self.download_config()  # validates paging and retry values

    def download_config(self) -> DownloadConfig:
        """The paging/retry part as a ``DownloadConfig``."""
        return DownloadConfig(
            page_limit=self.page_limit,
            persist_every_pages=self.persist_every_pages,
            empty_page_retries=self.empty_page_retries,
            progress=self.progress,
            retry=RetryPolicy(max_retries=self.max_retries, base_delay_s=self.retry_base_delay_s,
                              max_delay_s=max(60.0, self.retry_base_delay_s)),
        )


def _time_arg(value: str | int) -> int | str:
    """``"1717200000000"`` -> int ms; ISO strings unchanged."""
    s = str(value).strip()
    return int(s) if s.lstrip("-").isdigit() and len(s) > 8 else s


def run_download(feed: FeedConfig, store: ParquetStore) -> list[DownloadSummary]:
    """Build the exchange from ``feed`` and download its bars (and funding if ``feed.funding``).

    Returns:
        One summary per downloaded series (bars first).
    """
    exchange = make_exchange(feed.exchange, feed.market, api_url=feed.api_url, timeout_ms=feed.timeout_ms)
    cfg = feed.download_config()
    start, end = _time_arg(feed.start), None if feed.end is None else _time_arg(feed.end)
    out = [download_ohlcv(exchange, store, feed.symbol, feed.timeframe, start, end, config=cfg)]
    if feed.funding:
        out.append(download_funding(exchange, store, feed.symbol, start, end, config=cfg))
    return out
