"""Data-side speed: default features and 1h resampling on 1M one-minute bars, and peak memory.

Usage: python bench/data_speed.py [--rows 1000000] [--repeat 3]
Needs ../shared/data/binance_BTCUSDT_1m.parquet (exits with a message when absent).
Targets: default features <= 20 s, resample to 1h <= 1 s, peak memory <= 3x the raw data.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd

from envs.data.resample import resample
from envs.features.pipeline import FeatureConfig, build_features

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_BTCUSDT_1m.parquet"


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs the shared data folder (../shared/data)")
    df = pd.read_parquet(DATA).iloc[: args.rows].reset_index(drop=True)
    raw_mb = df.memory_usage(deep=True).sum() / 2**20
    cfg = FeatureConfig()
    build_features(df.iloc[:5000], cfg)  # compile numba kernels outside the timing

    t_res, hourly = timed(lambda: resample(df, "1h"), args.repeat)
    t_feat, feats = timed(lambda: build_features(df, cfg), args.repeat)
    out_mb = feats.memory_usage(deep=True).sum() / 2**20  # type: ignore[union-attr]
    n_feat = len(feats.attrs["feature_columns"])  # type: ignore[union-attr]
    feat_mb = feats[feats.attrs["feature_columns"]].memory_usage().sum() / 2**20  # type: ignore[union-attr,index]
    warm = feats.attrs["warmup_bars"]  # type: ignore[union-attr]
    del feats
    peak_res = peak_mb(lambda: resample(df, "1h"))
    peak_feat = peak_mb(lambda: build_features(df, cfg))

    print(f"bars: {len(df):,} one-minute rows, raw data {raw_mb:.1f} MiB")
    print(f"resample 1m -> 1h: {t_res:.3f} s (best of {args.repeat}), {len(hourly):,} bars; target <= 1 s")  # type: ignore[arg-type]
    print(f"default features: {t_feat:.2f} s, {n_feat} feature columns (float32), warm-up {warm:,} rows; target <= 20 s")
    print(f"output frame: {out_mb:.1f} MiB ({out_mb / raw_mb:.2f}x raw), of which the float32 feature matrix "
          f"{feat_mb:.1f} MiB ({feat_mb / raw_mb:.2f}x raw)")
    print(f"peak traced memory: resample {peak_res:.1f} MiB ({peak_res / raw_mb:.2f}x raw); "
          f"features {peak_feat:.1f} MiB ({peak_feat / raw_mb:.2f}x raw incl. the result; "
          f"{(peak_feat - feat_mb) / raw_mb:.2f}x raw above the feature matrix); target <= 3x raw")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
