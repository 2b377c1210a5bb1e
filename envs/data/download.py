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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from envs.data.exchange import MARKET_TYPES, exchange_now_ms, make_exchange
from envs.data.retry import Retrier, RetryError, RetryPolicy
from envs.data.store import FUNDING_TIMEFRAME, AppendResult, ParquetStore
from envs.market.times import iso_utc, to_ms

logger = logging.getLogger(__name__)

FUNDING_INTERVAL_MS = 8 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """Paging and persistence of a download.

    Attributes:
        page_limit: rows per request (> 0); binance serves at most 1000 klines / 1000 funding rows.
        persist_every_pages: append to the store after this many pages (>= 1).
        empty_page_retries: extra requests for an empty page before it is skipped as a gap (>= 0).
        progress: show a tqdm progress bar (with ETA) on stderr.
        retry: transient-error policy.
    """

    page_limit: int = 1000
    persist_every_pages: int = 1
    empty_page_retries: int = 3
    progress: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        """Validate ranges."""
        if self.page_limit <= 0:
            raise ValueError(f"feed.page_limit={self.page_limit} is invalid: must be > 0 (rows per request)")
        if self.persist_every_pages < 1:
            raise ValueError(f"feed.persist_every_pages={self.persist_every_pages} is invalid: must be >= 1")
        if self.empty_page_retries < 0:
            raise ValueError(f"feed.empty_page_retries={self.empty_page_retries} is invalid: must be >= 0")


@dataclass(frozen=True, slots=True)
class DownloadSummary:
    """What a download did.

    Attributes:
        exchange: store exchange name (ccxt id, e.g. ``binance`` or ``binanceusdm``).
        symbol: unified symbol.
        timeframe: bar timeframe or ``funding``.
        start_ms: requested start, ms UTC.
        stop_ms: exclusive upper bound actually used: min(end, first unclosed bar open), ms UTC.
        resumed_from_ms: where this run started fetching, ms UTC.
        rows_added: rows newly written to the store.
        duplicates: fetched rows identical to stored rows (skipped).
        conflicts: fetched rows differing from stored rows with the same timestamp (stored kept).
        page_duplicates: repeated rows inside pages (dropped before storing).
        out_of_order_pages: pages whose rows were not in increasing order.
        pages: non-empty pages fetched.
        empty_pages: empty responses (each retry counts).
        retries: transient-error retries.
        first_ms: first timestamp fetched this run (None if nothing), ms UTC.
        last_ms: last timestamp fetched this run (None if nothing), ms UTC.
        gaps: missing spans ``(start_ms, end_ms)``, end exclusive.
        elapsed_s: wall time, seconds.
    """

    exchange: str
    symbol: str
    timeframe: str
    start_ms: int
    stop_ms: int
    resumed_from_ms: int
    rows_added: int = 0
    duplicates: int = 0
    conflicts: int = 0
    page_duplicates: int = 0
    out_of_order_pages: int = 0
    pages: int = 0
    empty_pages: int = 0
    retries: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: tuple[tuple[int, int], ...] = ()
    elapsed_s: float = 0.0

    def describe(self) -> str:
        """One human-readable paragraph."""

        def iso(ms: int | None) -> str:
            return iso_utc(ms, "%Y-%m-%d %H:%M:%S")

        gaps = ", ".join(f"[{iso(a)}, {iso(b)})" for a, b in self.gaps[:5])
        more = f" (+{len(self.gaps) - 5} more)" if len(self.gaps) > 5 else ""
        return (
            f"{self.exchange} {self.symbol} {self.timeframe}: {self.rows_added} rows added, "
            f"{self.duplicates} duplicates, {self.conflicts} conflicts, {self.page_duplicates} repeated in pages, "
            f"{self.pages} pages ({self.empty_pages} empty, {self.retries} retries) in {self.elapsed_s:.1f} s; "
            f"fetched {iso(self.first_ms)} .. {iso(self.last_ms)} (resumed from {iso(self.resumed_from_ms)}, "
            f"stop {iso(self.stop_ms)}); gaps: {len(self.gaps)}{': ' + gaps + more if self.gaps else ''}"
        )


class DownloadError(RuntimeError):
    """A download stopped early; rows fetched before the failure are in the store.

    Attributes:
        summary: what was done before the failure.
    """

    def __init__(self, message: str, summary: DownloadSummary) -> None:
        super().__init__(message)
        self.summary = summary


# --------------------------------------------------------------------------- helpers
def _merge_gaps(gaps: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(gaps):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


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


@dataclass
class _Run:
    """Mutable counters of one download (turned into a DownloadSummary)."""

    stored: AppendResult = field(default_factory=AppendResult)
    page_duplicates: int = 0
    out_of_order_pages: int = 0
    pages: int = 0
    empty_pages: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    buffer: list[pd.DataFrame] = field(default_factory=list)


def _resume_point(
    store: ParquetStore, exchange: str, symbol: str, timeframe: str, start_ms: int, stop_ms: int, span_ms: int,
    step_ms: int,
) -> int:
    """Where to continue: after the last stored row before stop, if stored rows begin near start."""
    head = store.read(exchange, symbol, timeframe, start_ms, min(stop_ms, start_ms + span_ms))
    if head.empty:
        return start_ms
    last = store.last_timestamp(exchange, symbol, timeframe, before=stop_ms)
    if last is None or last < start_ms:
        return start_ms
    return int(last) + step_ms


@dataclass(frozen=True, slots=True)
class _Series:
    """What one download pages through: the series, its span and its paging geometry (all ms)."""

    what: str
    store_exchange: str
    symbol: str
    timeframe: str
    start_ms: int
    stop_ms: int
    step_ms: int  # one row's spacing (the next page starts one step after the last row)
    gap_ms: int  # spacing above which rows are missing
    page_span_ms: int  # time one full page covers (an empty page is skipped by this much)
    end_slack_ms: int  # funding: an empty page this close to stop is the normal end


def _fetch_nonempty(fetch: Callable[[int], pd.DataFrame], since: int, near_end: bool, series: _Series,
                    config: DownloadConfig, retrier: Retrier, run: _Run) -> pd.DataFrame:
    """One page from ``since``; an empty page is asked again ``config.empty_page_retries`` times with backoff."""
    page = fetch(since)
    tries = 0
    while page.empty and not near_end and tries < config.empty_page_retries:
        run.empty_pages += 1
        tries += 1
        delay = config.retry.backoff_s(tries, retrier.rng)
        logger.warning("%s: empty page at %d; asking again (%d/%d) in %.2f s", series.what, since, tries,
                       config.empty_page_retries, delay)
        retrier.sleep(delay)
        page = fetch(since)
    return page


def _next_page(fetch: Callable[[int], pd.DataFrame], since: int, series: _Series, config: DownloadConfig,
               retrier: Retrier, run: _Run) -> int | None:
    """Fetch the page at ``since``, buffer its rows in ``run``; the next ``since``, or None at the end."""
    near_end = since + series.end_slack_ms >= series.stop_ms  # funding: the next entry may lie past stop
    page = _fetch_nonempty(fetch, since, near_end, series, config, retrier, run)
    if page.empty:
        run.empty_pages += 1
        if near_end:
            return None  # nothing more can exist before stop (e.g. next funding time not reached)
        skip_to = min(since + series.page_span_ms, series.stop_ms)
        logger.warning("%s: still empty after %d retries; skipping [%d, %d) and recording it as a gap",
                       series.what, config.empty_page_retries, since, skip_to)
        run.gaps.append((since, skip_to))
        return skip_to
    page = _sort_dedupe(page, run)
    ts = page["timestamp"].to_numpy()
    page = page[(ts >= since) & (ts < series.stop_ms)]
    if page.empty:  # rows exist, but none in [since, stop): no data up to stop
        if ts.max() >= series.stop_ms and not near_end:
            run.gaps.append((since, series.stop_ms))
        return None
    ts = page["timestamp"].to_numpy()
    _record_gaps(run, ts, since, series.gap_ms, series.step_ms)
    run.buffer.append(page.reset_index(drop=True))
    run.pages += 1
    run.first_ms = int(ts[0]) if run.first_ms is None else run.first_ms
    run.last_ms = int(ts[-1])
    return int(ts[-1]) + series.step_ms


def _paginate(series: _Series, fetch: Callable[[int], pd.DataFrame], store: ParquetStore, config: DownloadConfig,
              retrier: Retrier) -> DownloadSummary:
    """Shared page loop of ``download_ohlcv`` / ``download_funding`` (see the module docstring)."""
    t0 = time.monotonic()
    since = _resume_point(store, series.store_exchange, series.symbol, series.timeframe, series.start_ms,
                          series.stop_ms, series.page_span_ms, series.step_ms)
    resumed_from, retries_before, run = since, retrier.retries, _Run()
    if since > series.start_ms:
        logger.info("%s: resuming after the last stored row, from %s", series.what, iso_utc(since))

    def summary() -> DownloadSummary:
        return DownloadSummary(
            exchange=series.store_exchange, symbol=series.symbol, timeframe=series.timeframe,
            start_ms=series.start_ms, stop_ms=series.stop_ms, resumed_from_ms=resumed_from,
            rows_added=run.stored.rows_added, duplicates=run.stored.duplicates, conflicts=run.stored.conflicts,
            page_duplicates=run.page_duplicates + run.stored.incoming_duplicates,
            out_of_order_pages=run.out_of_order_pages, pages=run.pages, empty_pages=run.empty_pages,
            retries=retrier.retries - retries_before, first_ms=run.first_ms, last_ms=run.last_ms,
            gaps=_merge_gaps(run.gaps), elapsed_s=time.monotonic() - t0,
        )

    def flush() -> None:
        if run.buffer:
            chunk = pd.concat(run.buffer, ignore_index=True)
            run.buffer.clear()
            run.stored = run.stored + store.append(series.store_exchange, series.symbol, series.timeframe, chunk)

    bar = tqdm(total=max(0, (series.stop_ms - since) // series.gap_ms), unit=" rows", desc=series.what,
               disable=not config.progress, mininterval=0.5, leave=False)
    try:
        while since < series.stop_ms:
            pages_before = run.pages
            nxt = _next_page(fetch, since, series, config, retrier, run)
            if nxt is None:
                break
            bar.update(max(0, (nxt - since) // series.gap_ms))
            since = nxt
            if run.pages != pages_before and run.pages % config.persist_every_pages == 0:
                flush()
        flush()
    except RetryError as e:
        _flush_after_failure(flush, series.what)
        s = summary()
        raise DownloadError(f"{series.what} stopped at {iso_utc(since)}: {e} "
                            f"This run stored {s.rows_added} new rows before the failure.", s) from e
    except BaseException:
        _flush_after_failure(flush, series.what)
        raise
    finally:
        bar.close()
    result = summary()
    logger.info("%s", result.describe())
    return result


def _sort_dedupe(page: pd.DataFrame, run: _Run) -> pd.DataFrame:
    """Sort a page by timestamp and drop repeated timestamps (last wins), counting both."""
    raw_ts = page["timestamp"].to_numpy()
    if np.any(np.diff(raw_ts) < 0):
        run.out_of_order_pages += 1
    page = page.iloc[np.argsort(raw_ts, kind="stable")]
    n_raw = len(page)
    page = page.drop_duplicates("timestamp", keep="last")
    run.page_duplicates += n_raw - len(page)
    return page


def _record_gaps(run: _Run, ts: np.ndarray, since: int, gap_ms: int, step_ms: int) -> None:
    """Record missing spans before the page's first row and between its rows (spacing >= gap_ms)."""
    if ts[0] - since >= gap_ms:
        run.gaps.append((since, int(ts[0])))
    holes = np.flatnonzero(np.diff(ts) > gap_ms)
    run.gaps.extend((int(ts[i]) + step_ms, int(ts[i + 1])) for i in holes)


def _flush_after_failure(flush: Callable[[], None], what: str) -> None:
    try:
        flush()
    except Exception:  # keep the original error; this one is secondary
        logger.exception("%s: could not store the rows fetched before the failure", what)


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

    series = _Series(what=what, store_exchange=exchange.id, symbol=symbol, timeframe=timeframe, start_ms=start_ms,
                     stop_ms=stop_ms, step_ms=tf_ms, gap_ms=tf_ms, page_span_ms=config.page_limit * tf_ms,
                     end_slack_ms=0)
    return _paginate(series, fetch, store, config, retrier)


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

    series = _Series(what=what, store_exchange=exchange.id, symbol=symbol, timeframe=FUNDING_TIMEFRAME,
                     start_ms=start_ms, stop_ms=stop_ms, step_ms=1, gap_ms=int(interval_ms * 1.5),
                     page_span_ms=config.page_limit * interval_ms, end_slack_ms=interval_ms)
    return _paginate(series, fetch, store, config, retrier)


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
