"""A Parquet store of bars and funding rates, partitioned by month, with atomic appends.

Layout (one *series* per exchange, symbol and timeframe)::

    <root>/<exchange>/<symbol with '/' and ':' replaced by '-'>/<timeframe>/YYYY-MM.parquet

Symbols are ccxt's unified ``BASE/QUOTE`` (spot) or ``BASE/QUOTE:SETTLE`` (perpetuals) or a plain id;
their parts may not contain ``-``, ``/`` or ``:``, so the folder name is injective (``BTC-USDT`` and
``BTC:USDT`` are refused rather than mixed into ``BTC/USDT``'s series). Every append checks the
timestamps (int64 ms in [1970, 2100)) before writing, so an acknowledged row can always be read back.
    <root>/<exchange>/<symbol ...>/<timeframe>/manifest.json

e.g. ``data/store/binance/BTC-USDT/1m/2024-06.parquet`` and
``data/store/binanceusdm/BTC-USDT-USDT/funding/2024-06.parquet``. A partition holds the rows whose
``timestamp`` (bar OPEN time, int64 ms UTC) falls in that calendar month (UTC). Bars use the quantgym
bar format (``timestamp``, ``open``, ``high``, ``low``, ``close`` in quote currency, ``volume`` in base
units); funding series use timeframe name ``funding`` and columns ``timestamp``, ``funding_rate``
(fraction per funding interval).

Duplicate rule (applied by ``ParquetStore.append`` and reported in ``AppendResult``):

1. Within the incoming frame, rows are sorted by timestamp and for a repeated timestamp the LAST
   occurrence wins; the dropped ones are counted in ``incoming_duplicates``.
2. An incoming row whose timestamp is already stored and whose values are identical is skipped and
   counted in ``duplicates``.
3. An incoming row whose timestamp is already stored but whose values differ is NOT written: the
   stored row is kept, the row is counted in ``conflicts`` and a warning names the first ones.
   Stored data is never overwritten or lost by ``append``; to replace data, delete the partition.

Crash safety: each partition is written to a temp file in the same directory and moved into place
with ``os.replace`` (atomic on POSIX), so a crash mid-write leaves the previous partition intact. The
manifest is written the same way. Before partitions change, the manifest is marked ``dirty``; a
manifest found dirty (a crash between the partition and manifest writes) is rebuilt from the
partitions' Parquet footers. One writer per series at a time is enforced with an ``fcntl`` lock file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd

from envs.data.store_files import (  # noqa: F401 - symbol_dirname / dirname_symbol / month_key are public here too
    _PARTITION_RE,
    _atomic_write_bytes,
    _atomic_write_parquet,
    _manifest_shape_ok,
    _month_keys,
    _month_start_ms,
    _next_month_start_ms,
    _read_table,
    _utc_now_iso,
    dirname_symbol,
    month_key,
    symbol_dirname,
)
from envs.data.store_types import AppendResult, SeriesInfo, StoreConfig
from envs.market.bars import OHLCV_COLUMNS, check_timestamp_unit, find_violations
from envs.market.times import to_ms

try:  # POSIX only; on other platforms appends are not guarded against concurrent writers
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FUNDING_TIMEFRAME = "funding"
FUNDING_COLUMNS: tuple[str, ...] = ("timestamp", "funding_rate")
MANIFEST_NAME = "manifest.json"

TimeLike: TypeAlias = int | str | pd.Timestamp | None  # ms UTC int, ISO string or Timestamp


class ParquetStore:
    """Month-partitioned Parquet store of bar and funding series (see module docstring).

    Args:
        root: store directory (created on first append).

    Example:
        >>> store = ParquetStore("data/store")  # doctest: +SKIP
        >>> store.append("binance", "BTC/USDT", "1m", bars).rows_added  # doctest: +SKIP
        >>> store.read("binance", "BTC/USDT", "1m", start="2024-06-01", end="2024-06-02")  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def from_config(cls, cfg: StoreConfig) -> ParquetStore:
        """Build from a ``StoreConfig``."""
        return cls(cfg.root)

    # ------------------------------------------------------------------ paths
    def series_dir(self, exchange: str, symbol: str, timeframe: str) -> Path:
        """Directory holding the partitions of one series."""
        for name, value in (("exchange", exchange), ("timeframe", timeframe)):
            if not value or "/" in value or value in (".", ".."):
                raise ValueError(f"{name}={value!r} cannot be used as a directory name")
        return self.root / exchange / symbol_dirname(symbol) / timeframe

    def partition_path(self, exchange: str, symbol: str, timeframe: str, key: str) -> Path:
        """Path of the ``YYYY-MM`` partition of a series."""
        return self.series_dir(exchange, symbol, timeframe) / f"{key}.parquet"

    # ------------------------------------------------------------------ manifest
    def _partition_keys_on_disk(self, sdir: Path) -> list[str]:
        if not sdir.is_dir():
            return []
        keys = []
        for p in sdir.iterdir():
            m = _PARTITION_RE.match(p.name)
            if m:
                keys.append(f"{m.group(1)}-{m.group(2)}")
        return sorted(keys)

    def _rebuild_manifest(self, exchange: str, symbol: str, timeframe: str) -> dict:
        sdir = self.series_dir(exchange, symbol, timeframe)
        parts: dict[str, dict[str, int]] = {}
        for key in self._partition_keys_on_disk(sdir):
            ts = _read_table(sdir / f"{key}.parquet", columns=["timestamp"])["timestamp"].to_numpy()
            if len(ts):
                parts[key] = {"rows": int(len(ts)), "first": int(ts[0]), "last": int(ts[-1])}
        return self._manifest_from_parts(exchange, symbol, timeframe, parts)

    @staticmethod
    def _manifest_from_parts(exchange: str, symbol: str, timeframe: str, parts: dict) -> dict:
        keys = sorted(parts)
        return {
            "exchange": exchange,
            "symbol": symbol,
            "timeframe": timeframe,
            "first_timestamp": parts[keys[0]]["first"] if keys else None,
            "last_timestamp": parts[keys[-1]]["last"] if keys else None,
            "rows": int(sum(p["rows"] for p in parts.values())),
            "partitions": {k: parts[k] for k in keys},
            "updated_at": _utc_now_iso(),
            "dirty": False,
        }

    def _load_manifest(self, exchange: str, symbol: str, timeframe: str) -> dict | None:
        sdir = self.series_dir(exchange, symbol, timeframe)
        path = sdir / MANIFEST_NAME
        if path.is_file():
            man: dict | None = None
            try:
                content = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                logger.warning("manifest %s is unreadable; rebuilding it from the partitions", path)
            else:
                if _manifest_shape_ok(content):
                    man = content
                else:
                    logger.warning("manifest %s is JSON of the wrong shape; rebuilding it from the partitions", path)
            if man is not None and (man["exchange"], man["symbol"], man["timeframe"]) != (exchange, symbol, timeframe):
                raise ValueError(
                    f"{sdir} holds {man['exchange']} {man['symbol']} {man['timeframe']} (its manifest), not "
                    f"{exchange} {symbol} {timeframe}: names that differ only in case share a folder on "
                    "case-insensitive file systems; use the symbol exactly as stored"
                )
            if man is not None and not man.get("dirty") and sorted(man["partitions"]) == self._partition_keys_on_disk(
                sdir
            ):
                return man
            if man is not None:  # a write in progress elsewhere, or one interrupted by a crash
                logger.info("manifest %s is stale; rebuilding it from the partitions", path)
        if not self._partition_keys_on_disk(sdir):
            return None
        return {**self._rebuild_manifest(exchange, symbol, timeframe), "rebuilt": True}

    def _write_manifest(self, sdir: Path, manifest: dict) -> None:
        _atomic_write_bytes(sdir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())

    def info(self, exchange: str, symbol: str, timeframe: str) -> SeriesInfo | None:
        """Manifest summary of one series, or None when nothing is stored."""
        man = self._load_manifest(exchange, symbol, timeframe)
        if man is None:
            return None
        return SeriesInfo(
            exchange=man["exchange"],
            symbol=man["symbol"],
            timeframe=man["timeframe"],
            first_timestamp=man["first_timestamp"],
            last_timestamp=man["last_timestamp"],
            rows=int(man["rows"]),
            partitions={k: int(v["rows"]) for k, v in man["partitions"].items()},
            updated_at=man["updated_at"],
        )

    def series(self) -> list[SeriesInfo]:
        """All series in the store, sorted by (exchange, symbol, timeframe)."""
        out: list[SeriesInfo] = []
        if not self.root.is_dir():
            return out
        for man_path in sorted(self.root.glob(f"*/*/*/{MANIFEST_NAME}")):
            exchange, sym_dir, timeframe = man_path.parts[-4:-1]
            symbol = dirname_symbol(sym_dir)
            try:
                valid = symbol_dirname(symbol) == sym_dir
            except ValueError:
                valid = False
            if not valid:
                logger.warning("skipping %s: %r is not a series folder of this store", man_path, sym_dir)
                continue
            info = self.info(exchange, symbol, timeframe)  # rebuilds an unreadable or wrong-shaped manifest
            if info is not None:
                out.append(info)
        return sorted(out, key=lambda s: (s.exchange, s.symbol, s.timeframe))

    def last_timestamp(
        self, exchange: str, symbol: str, timeframe: str, before: TimeLike = None
    ) -> int | None:
        """Last stored timestamp (ms UTC) of a series, or None when nothing is stored.

        Args:
            exchange: exchange id.
            symbol: unified symbol.
            timeframe: timeframe or ``funding``.
            before: if given, the last stored timestamp strictly before this time (opens at most
                the partitions at or before its month; the manifest answers the common case).
        """
        man = self._load_manifest(exchange, symbol, timeframe)
        if man is None:
            return None
        if before is None:
            return man["last_timestamp"]
        before_ms = to_ms(before, "before")
        sdir = self.series_dir(exchange, symbol, timeframe)
        for key in sorted(man["partitions"], reverse=True):
            part = man["partitions"][key]
            if part["first"] >= before_ms:
                continue
            if part["last"] < before_ms:
                return int(part["last"])
            ts = _read_table(sdir / f"{key}.parquet", columns=["timestamp"])["timestamp"].to_numpy()
            return int(ts[ts < before_ms].max())
        return None

    # ------------------------------------------------------------------ write
    @contextlib.contextmanager
    def _lock(self, sdir: Path) -> Iterator[None]:
        sdir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(sdir / ".lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _remove_stale_temp_files(sdir: Path) -> None:
        """Delete temp files left by a writer killed mid-write (safe: we hold the series lock)."""
        for tmp in sdir.glob(".*.tmp"):
            logger.info("removing %s left by an interrupted write", tmp)
            with contextlib.suppress(OSError):
                tmp.unlink()

    @staticmethod
    def _columns(timeframe: str) -> tuple[str, ...]:
        return FUNDING_COLUMNS if timeframe == FUNDING_TIMEFRAME else OHLCV_COLUMNS

    def _normalise(self, timeframe: str, df: pd.DataFrame) -> pd.DataFrame:
        cols = self._columns(timeframe)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(
                f"cannot append to timeframe {timeframe!r}: missing column(s) {missing}; expected {list(cols)} "
                "(timestamp = int64 ms UTC)"
            )
        if not pd.api.types.is_integer_dtype(df["timestamp"]):
            raise ValueError(
                f"column 'timestamp' has dtype {df['timestamp'].dtype}; expected int64 ms since the Unix epoch (UTC)"
            )
        out = pd.DataFrame({c: df[c].to_numpy(dtype=np.int64 if c == "timestamp" else np.float64) for c in cols})
        return out

    def _merge_partitions(self, exchange: str, symbol: str, timeframe: str, new: pd.DataFrame,
                          result: AppendResult) -> tuple[AppendResult, dict[str, dict[str, int]]]:
        """Under the series lock: merge ``new`` (sorted, unique) into each month file it touches, write the
        changed files atomically (manifest marked dirty first), then the manifest; counts and written parts."""
        sdir = self.series_dir(exchange, symbol, timeframe)
        written: dict[str, dict[str, int]] = {}
        with self._lock(sdir):
            self._remove_stale_temp_files(sdir)
            manifest = self._load_manifest(exchange, symbol, timeframe) or self._manifest_from_parts(
                exchange, symbol, timeframe, {}
            )
            keys = _month_keys(new["timestamp"].to_numpy())
            marked_dirty = False
            for key in np.unique(keys):
                path = sdir / f"{key}.parquet"
                old = pd.read_parquet(path) if path.is_file() else None
                merged, res = self._merge(old, new[keys == key], exchange, symbol, timeframe)
                result = result + res
                if res.rows_added == 0:
                    continue
                if not marked_dirty:  # a crash from here on makes the next reader rebuild the manifest
                    self._write_manifest(sdir, {**manifest, "dirty": True})
                    marked_dirty = True
                _atomic_write_parquet(path, merged)
                ts = merged["timestamp"].to_numpy()
                written[str(key)] = {"rows": int(len(ts)), "first": int(ts[0]), "last": int(ts[-1])}
            if written or manifest.pop("rebuilt", False):  # also persist a manifest rebuilt after a crash
                parts = {**manifest["partitions"], **written}
                self._write_manifest(sdir, self._manifest_from_parts(exchange, symbol, timeframe, parts))
        return result, written

    def append(self, exchange: str, symbol: str, timeframe: str, df: pd.DataFrame) -> AppendResult:
        """Merge ``df`` into the series, month partition by month partition, atomically.

        Args:
            exchange: exchange id (directory name), e.g. ``binance``.
            symbol: unified symbol, e.g. ``BTC/USDT``; ``/`` and ``:`` become ``-`` on disk.
            timeframe: bar timeframe such as ``1m``, or ``funding`` for funding rates.
            df: bars in the bar format (``timestamp`` int64 ms UTC bar open time; prices in quote
                currency; volume in base units) or, for ``funding``, ``timestamp`` + ``funding_rate``.
                Extra columns are ignored; order does not matter.

        Returns:
            Counts of added rows, duplicates and conflicts (see the module docstring for the rule).

        Raises:
            ValueError: when required columns are missing, ``timestamp`` is not integer or not in ms
                UTC within [1970, 2100) (seconds, microseconds and nanoseconds are named); nothing is
                written then.
        """
        new = self._normalise(timeframe, df)
        if new.empty:
            return AppendResult()
        # refuse before writing: a row the store could not read back must never be acknowledged
        check_timestamp_unit(new["timestamp"].to_numpy(), f"cannot append to {exchange} {symbol} {timeframe}")
        # rule 1: within incoming, last occurrence wins
        new = new.iloc[np.argsort(new["timestamp"].to_numpy(), kind="stable")]
        n_before = len(new)
        new = new.drop_duplicates("timestamp", keep="last").reset_index(drop=True)
        incoming_dups = n_before - len(new)
        if timeframe != FUNDING_TIMEFRAME:
            for v in find_violations(new):
                logger.warning("%s %s %s: appending bars that break a rule: %s", exchange, symbol, timeframe, v.message())

        result, written = self._merge_partitions(exchange, symbol, timeframe, new,
                                                 AppendResult(incoming_duplicates=incoming_dups))
        result = AppendResult(
            result.rows_added, result.duplicates, result.conflicts, result.incoming_duplicates, tuple(sorted(written))
        )
        logger.debug("%s %s %s append: %s", exchange, symbol, timeframe, result)
        return result

    @staticmethod
    def _merge(
        old: pd.DataFrame | None, new: pd.DataFrame, exchange: str, symbol: str, timeframe: str
    ) -> tuple[pd.DataFrame, AppendResult]:
        if old is None or old.empty:
            return new.reset_index(drop=True), AppendResult(rows_added=len(new))
        old_ts = old["timestamp"].to_numpy()
        new_ts = new["timestamp"].to_numpy()
        is_known = np.isin(new_ts, old_ts)
        known = new[is_known]
        n_dup = n_conf = 0
        if len(known):
            pos = np.searchsorted(old_ts, known["timestamp"].to_numpy())
            a = old.iloc[pos].to_numpy(dtype=np.float64)
            b = known.to_numpy(dtype=np.float64)
            same = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
            n_dup = int(same.sum())
            n_conf = int((~same).sum())
            if n_conf:
                first = known["timestamp"].to_numpy()[~same][:3].tolist()
                logger.warning(
                    "%s %s %s: %d incoming row(s) differ from stored rows with the same timestamp "
                    "(first at %s); kept the stored rows. Delete the partition to replace them.",
                    exchange, symbol, timeframe, n_conf, first,
                )
        added = new[~is_known]
        if added.empty:
            return old, AppendResult(duplicates=n_dup, conflicts=n_conf)
        merged = pd.concat([old, added], ignore_index=True)
        merged = merged.iloc[np.argsort(merged["timestamp"].to_numpy(), kind="stable")].reset_index(drop=True)
        return merged, AppendResult(rows_added=len(added), duplicates=n_dup, conflicts=n_conf)

    # ------------------------------------------------------------------ read
    def partitions_for(
        self, exchange: str, symbol: str, timeframe: str, start: TimeLike = None, end: TimeLike = None
    ) -> list[Path]:
        """Partition files overlapping [start, end), oldest first."""
        sdir = self.series_dir(exchange, symbol, timeframe)
        start_ms = None if start is None else to_ms(start, "start")
        end_ms = None if end is None else to_ms(end, "end")
        out = []
        for key in self._partition_keys_on_disk(sdir):
            if start_ms is not None and _next_month_start_ms(key) <= start_ms:
                continue
            if end_ms is not None and _month_start_ms(key) >= end_ms:
                continue
            out.append(sdir / f"{key}.parquet")
        return out

    def read(
        self, exchange: str, symbol: str, timeframe: str, start: TimeLike = None, end: TimeLike = None
    ) -> pd.DataFrame:
        """Read a span of a series, opening only the month partitions it overlaps.

        Args:
            exchange: exchange id.
            symbol: unified symbol.
            timeframe: timeframe or ``funding``.
            start: first timestamp to include (ms UTC int, ISO string or Timestamp); None = from the start.
            end: first timestamp to exclude; None = to the end.

        Returns:
            Rows in the bar format (or funding format), strictly increasing ``timestamp``, fresh
            RangeIndex; empty with the right columns and dtypes when nothing matches.
        """
        start_ms = None if start is None else to_ms(start, "start")
        end_ms = None if end is None else to_ms(end, "end")
        cols = self._columns(timeframe)
        frames = []
        for path in self.partitions_for(exchange, symbol, timeframe, start_ms, end_ms):
            df = _read_table(path).to_pandas()
            ts = df["timestamp"].to_numpy()
            mask = np.ones(len(df), dtype=bool)
            if start_ms is not None:
                mask &= ts >= start_ms
            if end_ms is not None:
                mask &= ts < end_ms
            frames.append(df[mask])
        if not frames:
            return pd.DataFrame({c: np.array([], dtype=np.int64 if c == "timestamp" else np.float64) for c in cols})
        out = pd.concat(frames, ignore_index=True)[list(cols)]
        return out.astype({"timestamp": np.int64})

