"""Funding events of a paper session (runs trained with ``data.funding_path``), joined to its bars.

The events are the run's funding file (a replay) or the exchange's funding-rate history (a live
perpetual feed: ccxt ``fetch_funding_rate_history`` through `envs.data.download.download_funding`,
paginated and retried, into the feed's store under timeframe ``funding``). At every bar they are
joined to the session's tail by the training loader's join, `envs.market.market_data.attach_funding` (one
implementation): a bar carries the rate of the latest event before its close, so the kernel charges
funding at its times (`MarketData.funding_per_bar`) exactly as evaluation does on gap-free bars.

No lookahead: a live session asks for events only after a bar has closed, and the join never gives a
bar an event from after its close. A bar whose span holds a funding time of the kernel's grid
(multiples of ``env.funding_interval_h``, UTC) is not decided before the exchange has published that
event: the session asks again ``max_retries`` times, ``reconnect_delay_s`` apart on the feed's clock,
then stops with an error naming the funding time. It never uses an older rate in its place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from envs.data.download import DownloadConfig, download_funding
from envs.data.retry import Retrier, RetryPolicy
from envs.data.store import FUNDING_TIMEFRAME, ParquetStore
from envs.feeds.clock import Clock
from envs.market.market_data import attach_funding

logger = logging.getLogger(__name__)

#: exchanges stamp funding events a few ms after the funding time (`attach_funding` rounds to 1 s)
JITTER_MS = 1000

#: ``fetch(since_ms)``: the events with time >= since_ms published so far (``timestamp`` ms UTC, ``funding_rate``)
FetchEvents = Callable[[int], pd.DataFrame]


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


class SessionFunding:
    """The funding events a session knows, joined to its tail's bars (`join`).

    Args:
        events: events known at start (``timestamp`` ms UTC, ``funding_rate`` fraction per interval).
        bar_ms: the bars' interval, ms (the last bar of a tail ends ``bar_ms`` after its open).
        interval_h: the kernel's funding interval (``env.funding_interval_h``), hours.
        fetch: live: asks the exchange for the events since a time; None = ``events`` are all there is.
        known_until_ms: live: every grid funding time before this was checked (the first bar's open).
        clock: live: sleeps between re-asks.
        retries: live: re-asks of an unpublished event before the session stops.
        delay_s: live: seconds between re-asks.
    """

    def __init__(self, events: pd.DataFrame, bar_ms: int, interval_h: float, fetch: FetchEvents | None = None,
                 known_until_ms: int = 0, clock: Clock | None = None, retries: int = 0, delay_s: float = 0.0) -> None:
        self.events = _sorted(events)
        self.bar_ms = int(bar_ms)
        self.interval_ms = int(round(interval_h * 3_600_000))
        self.fetch = fetch
        self.known_until = int(known_until_ms)
        self.clock, self.retries, self.delay_s = clock, retries, delay_s

    def join(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (bars, oldest first) with the ``funding_rate`` column of `attach_funding`.

        Live: first makes sure every funding time inside the bars (up to the last bar's close) has
        its published event.

        Raises:
            ValueError: the exchange has not published a due funding event after the re-asks.
        """
        end = int(frame["timestamp"].iloc[-1]) + self.bar_ms
        if self.fetch is not None and end > self.known_until:
            self._refresh(end)
        return attach_funding(frame, self.events)

    def _refresh(self, end: int) -> None:
        """Fetch the events up to now when a grid funding time lies in ``[known_until, end)``; require its event."""
        assert self.fetch is not None
        due = -(-end // self.interval_ms) * self.interval_ms - self.interval_ms  # the last grid time < end
        if due < self.known_until:  # no funding time inside the new bars: nothing to ask for
            self.known_until = end
            return
        last = None
        for attempt in range(self.retries + 1):
            since = int(self.events["timestamp"].iloc[-1]) + 1 if len(self.events) else self.known_until
            self.events = _sorted(pd.concat([self.events, self.fetch(since)], ignore_index=True))
            last = int(self.events["timestamp"].iloc[-1]) if len(self.events) else None
            if last is not None and last >= due - JITTER_MS:
                self.known_until = end
                return
            if attempt < self.retries:
                logger.warning("the funding event of %s is not published yet; asking again in %.1f s", _iso(due),
                               self.delay_s)
                if self.clock is not None:
                    self.clock.sleep(self.delay_s)
        raise ValueError(f"the exchange has not published the funding event of {_iso(due)} (the funding time inside "
                         f"the bar ending {_iso(end)}; latest event {'none' if last is None else _iso(last)}) after "
                         f"{self.retries} re-asks: the kernel charges funding at that time and the session does not "
                         "use an older rate in its place. Check that env.funding_interval_h matches the exchange's "
                         "funding times, raise feed.max_retries / feed.reconnect_delay_s, then rerun to resume")


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    out = events[["timestamp", "funding_rate"]].astype({"timestamp": np.int64, "funding_rate": np.float64})
    return out.sort_values("timestamp").drop_duplicates("timestamp", keep="last").reset_index(drop=True)


def file_funding(path: str | Path, bar_ms: int, interval_h: float) -> SessionFunding:
    """A replay's funding: the run's ``data.funding_path`` (every event known; the join alone decides what a bar sees)."""
    return SessionFunding(pd.read_parquet(path), bar_ms, interval_h)


def exchange_funding(exchange: Any, store: ParquetStore, symbol: str, clock: Clock, start_ms: int, bar_ms: int,
                     interval_h: float, retry: RetryPolicy, retries: int, delay_s: float) -> SessionFunding:
    """A live perpetual feed's funding: the exchange's history from ``start_ms`` (ms UTC), kept in ``store``.

    ``start_ms`` should be the tail's first bar: events from two funding intervals before it are
    fetched, so its first bars carry the rate in force, as in evaluation.
    """
    if not exchange.has.get("fetchFundingRateHistory"):
        raise ValueError(f"the run uses data.funding_path (funding events) but {exchange.id} has no funding-rate "
                         "history: paper-trade it on a perpetual feed (paper_feed=binance_usdm, feed.market=swap)")
    retrier = Retrier(retry, sleep=clock.sleep, exchange=exchange)
    config = DownloadConfig(progress=False, retry=retry)
    interval_ms = int(round(interval_h * 3_600_000))

    def fetch(since_ms: int) -> pd.DataFrame:
        now = clock.now_ms()
        if now > since_ms:
            download_funding(exchange, store, symbol, since_ms, config=config, retrier=retrier, now_ms=now,
                             interval_ms=interval_ms)
        return store.read(exchange.id, symbol, FUNDING_TIMEFRAME, start=since_ms)

    first = start_ms - 2 * interval_ms
    funding = SessionFunding(fetch(first), bar_ms, interval_h, fetch, known_until_ms=start_ms, clock=clock,
                             retries=retries, delay_s=delay_s)
    logger.info("%s %s: %d funding events since %s", exchange.id, symbol, len(funding.events), _iso(first))
    return funding
