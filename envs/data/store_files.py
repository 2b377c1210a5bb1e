"""Where a store series lives on disk and how its files are written: folder names, month partitions,
manifest shape, atomic writes (`envs.data.store.ParquetStore` is the only user).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: a month partition file: ``YYYY-MM.parquet``
_PARTITION_RE = re.compile(r"^(\d{4})-(\d{2})\.parquet$")

_NAME_PART = r"[A-Za-z0-9._]+"
#: A plain exchange id (``BTCUSDT``), or ccxt's unified ``BASE/QUOTE`` (spot) and
#: ``BASE/QUOTE:SETTLE[-EXPIRY...]`` (derivatives). Parts hold no ``-``, ``/`` or ``:``, so the
#: directory name (``/`` and ``:`` -> ``-``) has 0, 1 or >= 2 dashes for the three kinds and the
#: mapping is injective: two markets never share a series.
_SYMBOL_RE = re.compile(rf"^(?:{_NAME_PART}|{_NAME_PART}/{_NAME_PART}(?::{_NAME_PART}(?:-[A-Za-z0-9._-]+)?)?)$")


def symbol_dirname(symbol: str) -> str:
    """Directory name of a unified symbol: ``BTC/USDT`` -> ``BTC-USDT``, ``BTC/USDT:USDT`` -> ``BTC-USDT-USDT``.

    Raises:
        ValueError: for a symbol that is not a plain name or ccxt's unified form (``BTC-USDT``,
            ``BTC:USDT``, path separators, ``..``): such names could share a directory with another
            market (spot and perpetual rows mixed in one series).
    """
    if (not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol)
            or any(set(part) == {"."} for part in re.split("[/:-]", symbol))):
        raise ValueError(
            f"symbol {symbol!r} is not accepted by the store: use ccxt's unified form BASE/QUOTE for spot or "
            "BASE/QUOTE:SETTLE for perpetuals (e.g. 'BTC/USDT', 'BTC/USDT:USDT'), or a plain exchange id such as "
            "'BTCUSDT'; names may use letters, digits, '.' and '_', not dots only (each market must map to its own "
            "series)"
        )
    return symbol.replace("/", "-").replace(":", "-")


def dirname_symbol(name: str) -> str:
    """Inverse of `symbol_dirname`: ``BTC-USDT`` -> ``BTC/USDT``, ``BTC-USDT-USDT`` -> ``BTC/USDT:USDT``."""
    parts = name.split("-", 3)
    if len(parts) == 1:
        return name
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    return f"{parts[0]}/{parts[1]}:{'-'.join(parts[2:])}"



def month_key(ts_ms: int) -> str:
    """``YYYY-MM`` (UTC) of a ms timestamp."""
    return str(np.datetime64(int(ts_ms), "ms").astype("datetime64[M]"))


def _month_keys(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[ms]").astype("datetime64[M]").astype(str)


def _month_start_ms(key: str) -> int:
    return int(np.datetime64(key, "M").astype("datetime64[ms]").astype(np.int64))


def _next_month_start_ms(key: str) -> int:
    return int((np.datetime64(key, "M") + 1).astype("datetime64[ms]").astype(np.int64))


def _manifest_shape_ok(man: object) -> bool:
    """True when ``man`` has the manifest's keys and types (a JSON file can be valid but wrong)."""
    if not isinstance(man, dict):
        return False
    if not all(isinstance(man.get(k), str) for k in ("exchange", "symbol", "timeframe", "updated_at")):
        return False
    if not isinstance(man.get("rows"), int) or not isinstance(man.get("partitions"), dict):
        return False
    if not all(man.get(k) is None or isinstance(man.get(k), int) for k in ("first_timestamp", "last_timestamp")):
        return False
    return all(
        isinstance(k, str) and _PARTITION_RE.match(f"{k}.parquet") and isinstance(v, dict)
        and all(isinstance(v.get(f), int) for f in ("rows", "first", "last"))
        for k, v in man["partitions"].items()
    )


def _utc_now_iso() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()


def _read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a partition through ONE open file handle: readers take no lock, and a path opened twice
    could mix the footer of one version with the pages of the next if a writer replaces it between."""
    with open(path, "rb") as fh:
        return pq.read_table(fh, columns=columns)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Replace ``path`` atomically: ``write`` fills a temp file unique to this writer beside it, which is
    fsynced and renamed into place (readers see the old or the new file, never a partial one; a failure
    leaves ``path`` untouched and no temp file behind)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


