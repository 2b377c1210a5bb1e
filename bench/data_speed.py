"""Data-side speed: store loads, default features and 1h resampling on 1M one-minute bars, and peak memory.

Usage: python bench/data_speed.py [--rows 1000000] [--repeat 3] [--parts store,resample,features]
Needs ../shared/data/binance_BTCUSDT_1m.parquet (exits with a message when absent).
Targets: store load <= 0.5 s, default features <= 20 s, resample to 1h <= 1 s, peak memory <= 3x the raw data.

The store part writes the bars into a temporary ``ParquetStore`` (month partitions) and times
``store.read`` of the whole span and of one calendar month (best of ``--repeat``, at least 5 runs).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd
from omegaconf import OmegaConf

from envs.data.resample import resample
from envs.data.store import ParquetStore, month_key
from envs.features.pipeline import FeatureConfig, build_features

T = TypeVar("T")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_BTCUSDT_1m.parquet"


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls (seconds) and the last result."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_mb(fn) -> float:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bench_store(df: pd.DataFrame, repeat: int) -> None:
    """Write ``df`` into a temporary store, then time full-span and one-month reads."""
    with tempfile.TemporaryDirectory(prefix="qg-store-bench-") as root:
        store = ParquetStore(root)
        t = time.perf_counter()
        res = store.append("binance", "BTC/USDT", "1m", df)
        t_write = time.perf_counter() - t
        ts = df["timestamp"].to_numpy()
        month = month_key(int(ts[len(ts) // 2]))
        m_start = pd.Timestamp(month + "-01", tz="UTC")
        m_end = m_start + pd.offsets.MonthBegin(1)
        n = max(repeat, 5)
        t_full, full = timed(lambda: store.read("binance", "BTC/USDT", "1m"), n)
        t_month, one = timed(lambda: store.read("binance", "BTC/USDT", "1m", m_start, m_end), n)
        assert len(full) == len(df) and (full["timestamp"].to_numpy() == ts).all()
        print(f"store: wrote {res.rows_added:,} bars into {len(res.partitions_written)} month partitions in {t_write:.2f} s")
        print(f"store load, full span: {t_full:.3f} s (best of {n}), {len(full):,} bars; target <= 0.5 s")
        print(f"store load, one month ({month}): {t_month:.3f} s (best of {n}), {len(one):,} bars")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parts", default="store,resample,features", help="comma list of store, resample, features")
    ap.add_argument("--features", default="default", help="preset of conf/features/ to measure (default, full, ...)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared data folder (../shared/data)")
    df = pd.read_parquet(DATA).iloc[: args.rows].reset_index(drop=True)
    raw_mb = df.memory_usage(deep=True).sum() / 2**20
    print(f"bars: {len(df):,} one-minute rows, raw data {raw_mb:.1f} MiB")
    if "store" in parts:
        bench_store(df, args.repeat)
    if "resample" in parts:
        t_res, hourly = timed(lambda: resample(df, "1h"), args.repeat)
        peak_res = peak_mb(lambda: resample(df, "1h"))
        print(f"resample 1m -> 1h: {t_res:.3f} s (best of {args.repeat}), {len(hourly):,} bars; target <= 1 s")
        print(f"peak traced memory, resample: {peak_res:.1f} MiB ({peak_res / raw_mb:.2f}x raw); target <= 3x raw")
    if "features" in parts:
        preset = Path(__file__).resolve().parents[1] / "conf" / "features" / f"{args.features}.yaml"
        cfg = FeatureConfig.from_mapping(OmegaConf.to_container(OmegaConf.load(preset)))  # type: ignore[arg-type]
        build_features(df.iloc[:5000], cfg)  # compile numba kernels outside the timing
        t_feat, feats = timed(lambda: build_features(df, cfg), args.repeat)
        out_mb = feats.memory_usage(deep=True).sum() / 2**20
        n_feat = len(feats.attrs["feature_columns"])
        feat_mb = feats[feats.attrs["feature_columns"]].memory_usage().sum() / 2**20
        warm = feats.attrs["warmup_bars"]
        del feats
        peak_feat = peak_mb(lambda: build_features(df, cfg))
        print(f"features={args.features}: {t_feat:.2f} s, {n_feat} feature columns (float32), warm-up {warm:,} rows; "
              "target <= 20 s")
        print(f"output frame: {out_mb:.1f} MiB ({out_mb / raw_mb:.2f}x raw), of which the float32 feature matrix "
              f"{feat_mb:.1f} MiB ({feat_mb / raw_mb:.2f}x raw)")
        print(f"peak traced memory, features: {peak_feat:.1f} MiB ({peak_feat / raw_mb:.2f}x raw incl. the result; "
              f"{(peak_feat - feat_mb) / raw_mb:.2f}x raw above the feature matrix); target <= 3x raw")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
