"""``HistoricalFeed``: replay bars from a DataFrame, a Parquet file or a store span.

Without a clock, ``poll()`` returns all remaining bars and iteration yields them all at once. With a
clock (e.g. ``SimulatedClock``), a bar is released once it has closed on that clock
(open + timeframe <= now), so a historical replay behaves exactly like ``LiveFeed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from envs.data.store import ParquetStore
from envs.feeds.base import Bar, frame_to_bars, timeframe_ms
from envs.feeds.clock import Clock
from envs.market.bars import OHLCV_COLUMNS, check_bars


class HistoricalFeed:
    """Bars from memory or disk, delivered in order, each exactly once.

    Args:
        bars: bar-format frame (validated with ``envs.market.bars.check_bars``).
        symbol: unified symbol (informational).
        timeframe: bar length, e.g. ``1m``; needed to decide when a bar has closed on ``clock``.
        clock: optional clock; None releases every bar at once.
    """

    def __init__(self, bars: pd.DataFrame, symbol: str = "", timeframe: str = "1m", clock: Clock | None = None) -> None:
        check_bars(bars)
        self._bars = bars[list(OHLCV_COLUMNS)].reset_index(drop=True)
        self._ts = self._bars["timestamp"].to_numpy(dtype=np.int64)
        self.symbol = symbol
        self.timeframe = timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.clock = clock
        self._pos = 0

    @classmethod
    def from_parquet(
        cls, path: str | os.PathLike[str], symbol: str = "", timeframe: str = "1m", clock: Clock | None = None
    ) -> HistoricalFeed:
        """Read a bar-format Parquet file."""
        return cls(pd.read_parquet(path), symbol, timeframe, clock)

    @classmethod
    def from_store(
        cls,
        store: ParquetStore,
        exchange: str,
        symbol: str,
        timeframe: str,
        start: int | str | pd.Timestamp | None = None,
        end: int | str | pd.Timestamp | None = None,
        clock: Clock | None = None,
    ) -> HistoricalFeed:
        """Replay the stored span [start, end) of a series.

        Raises:
            ValueError: when the span holds no bars (names the series and how to download it).
        """
        df = store.read(exchange, symbol, timeframe, start, end)
        if df.empty:
            raise ValueError(
                f"no {exchange} {symbol} {timeframe} bars in {store.root} for [{start}, {end}); "
                f"download them: python scripts/download.py feed.symbol={symbol} feed.timeframe={timeframe}"
            )
        return cls(df, symbol, timeframe, clock)

    def frame(self) -> pd.DataFrame:
        """All bars of the feed (delivered or not), bar format."""
        return self._bars.copy()

    def __len__(self) -> int:
        """Number of bars in the feed."""
        return len(self._ts)

    @property
    def remaining(self) -> int:
        """Bars not delivered yet."""
        return len(self._ts) - self._pos

    def poll(self) -> pd.DataFrame:
        """Bars closed on the clock (all remaining without a clock) and not delivered yet."""
        if self.clock is None:
            stop = len(self._ts)
        else:
            stop = int(np.searchsorted(self._ts, self.clock.now_ms() - self.tf_ms, side="right"))
        stop = max(stop, self._pos)
        out = self._bars.iloc[self._pos : stop].reset_index(drop=True)
        self._pos = stop
        return out

    def __iter__(self) -> Iterator[Bar]:
        """Yield the remaining bars; with a clock, sleep on it until each has closed."""
        while self._pos < len(self._ts):
            if self.clock is not None:
                wait_ms = int(self._ts[self._pos]) + self.tf_ms - self.clock.now_ms()
                if wait_ms > 0:
                    self.clock.sleep(wait_ms / 1000)
            yield from frame_to_bars(self.poll())
