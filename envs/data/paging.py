"""The page loop behind `envs.data.download`: resume point, empty-page retries, per-page checks, gaps, flushes.

`paginate` walks one series (bars or funding rates) from its resume point to its stop, one page at a
time (`_next_page`), buffering rows and appending them to the store every ``persist_every_pages``
pages; the rules are listed in `envs.data.download`'s docstring. `DownloadConfig` (paging and
persistence settings), `DownloadSummary` and `DownloadError` are its inputs and outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from envs.data.retry import Retrier, RetryError, RetryPolicy
from envs.data.store import AppendResult, ParquetStore
from envs.market.times import iso_utc

logger = logging.getLogger(__name__)


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


def _merge_gaps(gaps: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(gaps):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


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
class PagedSeries:
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


def _fetch_nonempty(fetch: Callable[[int], pd.DataFrame], since: int, near_end: bool, series: PagedSeries,
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


def _next_page(fetch: Callable[[int], pd.DataFrame], since: int, series: PagedSeries, config: DownloadConfig,
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


def paginate(series: PagedSeries, fetch: Callable[[int], pd.DataFrame], store: ParquetStore, config: DownloadConfig,
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
