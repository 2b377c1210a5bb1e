"""The verified Parquet cache of feature frames, keyed by the bars' bytes, the feature config and `FEATURE_VERSION`.

`envs.features.pipeline.build_features` reads and writes it; every read checks the stored row count,
columns and checksum, so a damaged or stale file is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from envs.data.store_files import atomic_write
from envs.market.bars import OHLCV_COLUMNS

if TYPE_CHECKING:
    from envs.features.pipeline import FeatureConfig

logger = logging.getLogger(__name__)

#: Bump when a feature definition changes, so cached Parquet files are not reused.
FEATURE_VERSION = "2"  # 2: indicators run by envs.features.kernels; indicator_columns
#: Parquet footer key of the row count, columns and checksum stored with every cache file.
CACHE_META_KEY = "quantgym.feature_cache"
#: FeatureConfig fields that select columns after computation (not part of the feature cache key).
PRUNING_FIELDS: tuple[str, ...] = ("prune_vif", "prune_corr")


def data_hash(df: pd.DataFrame) -> str:
    """blake2b hex digest of the timestamp/OHLCV (and ``filled``) arrays' bytes."""
    h = hashlib.blake2b(digest_size=16)
    for col in (*OHLCV_COLUMNS, "filled"):
        if col in df.columns:
            arr = np.ascontiguousarray(df[col].to_numpy(dtype=np.int64 if col in ("timestamp", "filled") else np.float64))
            h.update(col.encode())
            h.update(arr.tobytes())
    return h.hexdigest()


class FeatureCache:
    """Parquet cache of feature frames keyed by data content + ``FeatureConfig`` + version.

    Attributes:
        directory: folder holding ``features_<key>.parquet`` files (created on first save).
        hits: lookups served from disk.
        misses: lookups that had to compute (no file, or a file that failed verification).
        rejected: files that failed verification on read (rebuilt, never used).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self.rejected = 0

    @staticmethod
    def key(df: pd.DataFrame, config: FeatureConfig) -> str:
        """Cache key of ``(df, config)``: hash of data bytes, config fields and FEATURE_VERSION."""
        fields_ = {k: v for k, v in asdict(config).items() if k not in PRUNING_FIELDS}  # pruning is decided later
        cfg = json.dumps(fields_, sort_keys=True, default=list)
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{FEATURE_VERSION}|{data_hash(df)}|{cfg}".encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        """File of ``key``."""
        return self.directory / f"features_{key}.parquet"

    def load(self, key: str, n_rows: int | None = None) -> pd.DataFrame | None:
        """Cached frame of ``key``, or None when there is none or it fails verification.

        Verified on every read: the file parses, and its row count, column names and a checksum of
        every column's values equal what was stored with it (``CACHE_META_KEY`` in the Parquet
        footer) and ``n_rows`` (the bars it was built for). A file that fails (truncated, empty,
        flipped bits, missing rows, written without a checksum) is never used: a warning names the
        reason and the caller rebuilds it.
        """
        p = self.path(key)
        if not p.exists():
            return None
        try:
            table = pq.read_table(p)
            raw = (table.schema.metadata or {}).get(CACHE_META_KEY.encode())
            if raw is None:
                raise ValueError("no checksum stored with it")
            meta = json.loads(raw)
            frame = table.to_pandas()
            if list(frame.columns) != meta["columns"]:
                raise ValueError(f"columns {list(frame.columns)[:5]}... differ from the stored {meta['columns'][:5]}...")
            expected_rows = meta["rows"] if n_rows is None else n_rows
            if len(frame) != meta["rows"] or len(frame) != expected_rows:
                raise ValueError(f"{len(frame)} rows, expected {expected_rows}")
            if frame_checksum(frame) != meta["checksum"]:
                raise ValueError("checksum mismatch (the file changed after it was written)")
        except Exception as e:  # noqa: BLE001 - any failure means: do not use it, rebuild
            logger.warning("features: cache file %s is unusable (%s: %s); rebuilding it", p, type(e).__name__, e)
            self.rejected += 1
            return None
        return frame

    def save(self, key: str, frame: pd.DataFrame) -> Path:
        """Write ``frame`` with its row count, columns and checksum, atomically; return its path.

        The file goes to a temp file unique to this writer and is renamed into place: concurrent
        writers of the same key (e.g. parallel tuning trials) each rename their own complete file,
        the last rename wins and readers never see a partial file.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        meta = {"rows": len(frame), "columns": [str(c) for c in frame.columns], "checksum": frame_checksum(frame)}
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), CACHE_META_KEY: json.dumps(meta)})
        atomic_write(p, lambda tmp: pq.write_table(table, tmp))
        return p


def frame_checksum(frame: pd.DataFrame) -> str:
    """blake2b hex digest of a frame's column names, dtypes and values (row order included)."""
    h = hashlib.blake2b(digest_size=16)
    for name in frame.columns:
        values = np.ascontiguousarray(frame[name].to_numpy())
        h.update(f"{name}|{values.dtype.str}|{len(values)}|".encode())
        h.update(values.tobytes())
    return h.hexdigest()
