"""The Parquet store's config and result shapes: `StoreConfig`, `AppendResult` (what an append did), `SeriesInfo`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the store lives.

    Attributes:
        root: directory of the store (created on first append); relative paths are taken from the
            current working directory.
    """

    root: str = "data/store"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one ``ParquetStore.append`` did (see the module docstring for the duplicate rule).

    Attributes:
        rows_added: new rows written.
        duplicates: incoming rows identical to a stored row (skipped).
        conflicts: incoming rows whose timestamp is stored with different values (stored kept).
        incoming_duplicates: rows dropped because a later incoming row had the same timestamp.
        partitions_written: month keys (``YYYY-MM``) rewritten.
    """

    rows_added: int = 0
    duplicates: int = 0
    conflicts: int = 0
    incoming_duplicates: int = 0
    partitions_written: tuple[str, ...] = ()

    def __add__(self, other: AppendResult) -> AppendResult:
        """Sum two results (partitions are merged, sorted)."""
        return AppendResult(
            self.rows_added + other.rows_added,
            self.duplicates + other.duplicates,
            self.conflicts + other.conflicts,
            self.incoming_duplicates + other.incoming_duplicates,
            tuple(sorted(set(self.partitions_written) | set(other.partitions_written))),
        )


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """Summary of one stored series, read from its manifest.

    Attributes:
        exchange: exchange id, e.g. ``binance``.
        symbol: unified symbol, e.g. ``BTC/USDT`` or ``BTC/USDT:USDT``.
        timeframe: e.g. ``1m``, ``1h`` or ``funding``.
        first_timestamp: first stored timestamp (ms UTC), None when empty.
        last_timestamp: last stored timestamp (ms UTC), None when empty.
        rows: number of stored rows.
        partitions: rows per month partition (``YYYY-MM`` -> count).
        updated_at: ISO time (UTC) of the last manifest write.
    """

    exchange: str
    symbol: str
    timeframe: str
    first_timestamp: int | None
    last_timestamp: int | None
    rows: int
    partitions: dict[str, int]
    updated_at: str
