"""The ``MarketFeed`` protocol shared by historical and live feeds, and the ``Bar`` record.

Every feed delivers bars in the quantgym bar format: ``timestamp`` (int64 bar OPEN time, ms UTC),
``open``, ``high``, ``low``, ``close`` (float64, quote currency per base unit), ``volume`` (float64,
base units), strictly increasing, each bar exactly once, and only CLOSED bars (open + timeframe <= now).
A backtest and a live run can therefore consume the same object.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from envs.market.bars import OHLCV_COLUMNS
from envs.market.times import parse_timeframe


class Bar(NamedTuple):
    """One closed bar.

    Attributes:
        timestamp: bar open time, int ms UTC.
        open: first price, quote currency per base unit.
        high: highest price, quote currency.
        low: lowest price, quote currency.
        close: last price, quote currency.
        volume: traded quantity, base units.
    """

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@runtime_checkable
class MarketFeed(Protocol):
    """A source of closed bars, in order, each exactly once.

    Attributes:
        symbol: unified symbol, e.g. ``BTC/USDT``.
        timeframe: bar length, e.g. ``1m``.
    """

    symbol: str
    timeframe: str

    def poll(self) -> pd.DataFrame:
        """Bars that closed since the previous call and were not delivered yet (bar format; may be empty)."""
        ...

    def __iter__(self) -> Iterator[Bar]:
        """Yield bars one at a time, waiting (on the feed's clock) for the next one to close."""
        ...


def timeframe_ms(timeframe: str) -> int:
    """Length of a timeframe such as ``1m``, ``15m``, ``4h``, ``1d`` in ms (`envs.market.times.parse_timeframe`)."""
    return parse_timeframe(timeframe)


def empty_bars() -> pd.DataFrame:
    """An empty frame with the bar columns and dtypes."""
    return pd.DataFrame({c: np.array([], dtype=np.int64 if c == "timestamp" else np.float64) for c in OHLCV_COLUMNS})


def frame_to_bars(df: pd.DataFrame) -> list[Bar]:
    """Rows of a bar-format frame as ``Bar`` records (in frame order)."""
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    vals = df[list(OHLCV_COLUMNS[1:])].to_numpy(dtype=np.float64)
    return [Bar(int(t), *map(float, row)) for t, row in zip(ts, vals, strict=True)]
