"""ParquetStore: layout, duplicate rule, atomic appends, partition pruning, property test."""

from __future__ import annotations

import json
import logging
import os
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.data.store import AppendResult, ParquetStore, StoreConfig, month_key
from envs.market.times import to_ms

EX, SYM, TF = "binance", "BTC/USDT", "1h"


def test_layout_manifest_and_roundtrip(tmp_path, bars_1h):
    store = ParquetStore(tmp_path)
    res = store.append(EX, SYM, TF, bars_1h)
    assert res == AppendResult(rows_added=len(bars_1h), partitions_written=res.partitions_written)
    sdir = tmp_path / "binance" / "BTC-USDT" / "1h"
    months = sorted(p.name for p in sdir.glob("*.parquet"))
    assert months[0] == "2022-01.parquet" and months[-1] == "2024-04.parquet" and len(months) == 28
    man = json.loads((sdir / "manifest.json").read_text())
    assert man["rows"] == len(bars_1h) and man["dirty"] is False
    assert man["first_timestamp"] == int(bars_1h.timestamp.iloc[0])
    assert man["last_timestamp"] == int(bars_1h.timestamp.iloc[-1])
    assert man["partitions"]["2022-01"]["rows"] == 31 * 24
    pd.testing.assert_frame_equal(store.read(EX, SYM, TF), bars_1h)
    info = store.series()
    assert [(s.exchange, s.symbol, s.timeframe, s.rows) for s in info] == [(EX, SYM, TF, len(bars_1h))]
    assert store.last_timestamp(EX, SYM, TF) == int(bars_1h.timestamp.iloc[-1])
    assert store.last_timestamp(EX, SYM, TF, before="2023-01-01") == to_ms("2022-12-31T23:00")
    assert store.last_timestamp(EX, SYM, TF, before="2021-01-01") is None
    assert StoreConfig().root == "data/store"


def test_each_row_lands_in_the_month_of_its_open_time(tmp_path, bars_1h):
    store = ParquetStore(tmp_path)
    store.append(EX, SYM, TF, bars_1h)
    for path in (tmp_path / "binance" / "BTC-USDT" / "1h").glob("*.parquet"):
        ts = pd.read_parquet(path).timestamp.to_numpy()
        assert {month_key(t) for t in ts} == {path.stem}


def test_read_span_bounds_and_time_formats(tmp_path, bars_1h):
    store = ParquetStore(tmp_path)
    store.append(EX, SYM, TF, bars_1h)
    a = store.read(EX, SYM, TF, start="2023-03-31T22:00:00Z", end=pd.Timestamp("2023-04-01 02:00", tz="UTC"))
    assert a.timestamp.tolist() == [to_ms("2023-03-31T22:00") + i * 3_600_000 for i in range(4)]
    b = store.read(EX, SYM, TF, start=int(a.timestamp.iloc[1]), end=int(a.timestamp.iloc[3]))
    pd.testing.assert_frame_equal(b, a.iloc[1:3].reset_index(drop=True))
    empty = store.read(EX, SYM, TF, start="2030-01-01")
    assert empty.empty and list(empty.columns) == list(bars_1h.columns) and empty.timestamp.dtype == np.int64
    with pytest.raises(ValueError, match="start='yesterday-ish'"):
        store.read(EX, SYM, TF, start="yesterday-ish")


def test_read_opens_only_needed_partitions(tmp_path, bars_1h):
    store = ParquetStore(tmp_path)
    store.append(EX, SYM, TF, bars_1h)
    sdir = tmp_path / "binance" / "BTC-USDT" / "1h"
    for name in ("2023-02.parquet", "2023-04.parquet"):  # neighbours of March become unreadable
        (sdir / name).write_bytes(b"not parquet at all")
    march = store.read(EX, SYM, TF, start="2023-03-01", end="2023-04-01")
    assert len(march) == 31 * 24 - 1  # DST does not exist in UTC; one real missing hour in March 2023
    assert [p.name for p in store.partitions_for(EX, SYM, TF, "2023-03-01", "2023-04-01")] == ["2023-03.parquet"]
    with pytest.raises(pa.ArrowInvalid):  # proves the corrupted file would have been noticed if opened
        store.read(EX, SYM, TF, start="2023-03-01", end="2023-04-01T00:00:01")


def test_duplicate_rule_counts_and_keeps_stored_rows(tmp_path, bars_1m, caplog):
    store = ParquetStore(tmp_path)
    first = bars_1m.iloc[:600]
    assert store.append(EX, SYM, "1m", first).rows_added == 600
    incoming = bars_1m.iloc[500:700].copy()
    incoming.loc[incoming.index[:3], "close"] += 1.0  # 3 rows disagree with the stored ones
    repeated = incoming.iloc[[150, 150]].copy()  # same timestamp twice inside the incoming frame
    repeated.iloc[0, repeated.columns.get_loc("volume")] = 123.0  # first occurrence loses
    incoming = pd.concat([incoming.iloc[::-1], repeated])  # out of order too
    with caplog.at_level(logging.WARNING, logger="envs.data.store"):
        res = store.append(EX, SYM, "1m", incoming)
    assert res.rows_added == 100 and res.duplicates == 97 and res.conflicts == 3
    assert res.incoming_duplicates == 2
    assert "differ from stored rows" in caplog.text
    pd.testing.assert_frame_equal(store.read(EX, SYM, "1m"), bars_1m.iloc[:700].reset_index(drop=True))
    again = store.append(EX, SYM, "1m", bars_1m.iloc[:700])
    assert again == AppendResult(duplicates=700)


def test_failed_write_leaves_previous_partition_intact(tmp_path, bars_1m, monkeypatch):
    store = ParquetStore(tmp_path)
    store.append(EX, SYM, "1m", bars_1m.iloc[:1000])
    sdir = tmp_path / "binance" / "BTC-USDT" / "1m"
    before = (sdir / "2024-06.parquet").read_bytes()
    real_replace = os.replace

    def crash_on_partition(src, dst):
        if str(dst).endswith(".parquet"):
            raise OSError("simulated crash while moving the new partition into place")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_partition)
    with pytest.raises(OSError, match="simulated crash"):
        store.append(EX, SYM, "1m", bars_1m.iloc[900:2000])
    monkeypatch.setattr(os, "replace", real_replace)
    assert (sdir / "2024-06.parquet").read_bytes() == before
    assert not list(sdir.glob(".*.tmp")), "temp file must be cleaned up"
    assert json.loads((sdir / "manifest.json").read_text())["dirty"] is True  # crash happened mid-append
    fresh = ParquetStore(tmp_path)  # a new process sees the old, consistent state
    assert fresh.last_timestamp(EX, SYM, "1m") == int(bars_1m.timestamp.iloc[999])
    pd.testing.assert_frame_equal(fresh.read(EX, SYM, "1m"), bars_1m.iloc[:1000].reset_index(drop=True))
    assert fresh.append(EX, SYM, "1m", bars_1m.iloc[:10]) == AppendResult(duplicates=10)
    assert json.loads((sdir / "manifest.json").read_text())["dirty"] is False  # repaired even without new rows
    res = fresh.append(EX, SYM, "1m", bars_1m.iloc[900:2000])
    assert (res.rows_added, res.duplicates) == (1000, 100)
    assert json.loads((sdir / "manifest.json").read_text())["dirty"] is False


def test_stale_temp_file_from_killed_writer_is_removed(tmp_path, bars_1m):
    store = ParquetStore(tmp_path)
    store.append(EX, SYM, "1m", bars_1m.iloc[:10])
    sdir = tmp_path / "binance" / "BTC-USDT" / "1m"
    (sdir / ".2024-06.parquet.abc.tmp").write_bytes(b"half a file")
    store.append(EX, SYM, "1m", bars_1m.iloc[10:20])
    assert not list(sdir.glob(".*.tmp"))
    assert len(store.read(EX, SYM, "1m")) == 20


def test_funding_series_and_input_errors(tmp_path, funding_8h, bars_1m):
    store = ParquetStore(tmp_path)
    res = store.append("binanceusdm", "BTC/USDT:USDT", "funding", funding_8h)
    assert res.rows_added == len(funding_8h)
    assert (tmp_path / "binanceusdm" / "BTC-USDT-USDT" / "funding" / "2024-06.parquet").is_file()
    pd.testing.assert_frame_equal(store.read("binanceusdm", "BTC/USDT:USDT", "funding"), funding_8h)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['funding_rate'\]"):
        store.append("binanceusdm", "BTC/USDT:USDT", "funding", bars_1m)
    bad = bars_1m.iloc[:5].assign(timestamp=lambda d: d.timestamp.astype(float))
    with pytest.raises(ValueError, match="expected int64 ms"):
        store.append(EX, SYM, "1m", bad)
    with pytest.raises(ValueError, match="timeframe"):
        store.append(EX, SYM, "../1m", bars_1m.iloc[:5])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.tuples(st.integers(0, 2999), st.integers(1, 1500)), min_size=1, max_size=6))
def test_overlapping_appends_read_back_as_sorted_union(bars_1h, chunks):
    base = bars_1h.iloc[:3000]  # spans ~4 months: chunks cross partition boundaries
    with tempfile.TemporaryDirectory() as tmp:
        store = ParquetStore(tmp)
        seen: set[int] = set()
        added = 0
        for lo, n in chunks:
            chunk = base.iloc[lo : lo + n].sample(frac=1.0, random_state=lo)  # shuffled order
            res = store.append(EX, SYM, TF, chunk)
            new = set(chunk.timestamp) - seen
            assert res.rows_added == len(new)
            assert res.duplicates == len(chunk) - len(new) and res.conflicts == 0
            seen |= new
            added += res.rows_added
        expect = base[base.timestamp.isin(seen)].reset_index(drop=True)
        got = store.read(EX, SYM, TF)
        pd.testing.assert_frame_equal(got, expect)
        assert store.info(EX, SYM, TF).rows == added == len(expect)
