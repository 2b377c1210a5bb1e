"""Forecasting speed: walk-forward LightGBM / LSTM / TCN over real minute bars, per-bar latency, peak memory.

Usage: python bench/forecast_speed.py [--model gbm|lstm|tcn] [--rows N] [--refit-every B] [--train-window B]
       [--update-every B] [--threads T]
Needs ../shared/data/binance_BTCUSDT_1m.parquet (exits with a message when absent).
Targets (issue 11): LightGBM over 1M bars (default features, refit every 10k, 100k-bar window, updates
every 1k) <= 5 min on 2 cores; LSTM/TCN over 100k bars (refit every 20k) <= 5 min; one new bar
(features -> forecast, as paper mode) <= 5 ms LightGBM, <= 20 ms LSTM/TCN.

Per-bar latency = one new bar's default features from `envs.features.stream.FeatureStream` (as paper mode:
equal to the batch features, bounded work per bar) + its model inputs + one ``predict`` of the last model,
median over the last 200 bars appended one at a time; CPU = the process's CPU time per bar over them. Peak memory is the
process's maximum resident set size (LightGBM and torch allocate outside Python's tracemalloc).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from envs.features.pipeline import FeatureConfig, build_features, nominal_warmup_bars
from envs.features.stream import FeatureStream
from envs.forecasting.config import ForecastConfig
from envs.forecasting.targets import lag_matrix
from envs.forecasting.walk_forward import _model_inputs, run_walk_forward

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance_BTCUSDT_1m.parquet"
DEFAULTS = {"gbm": (1_000_000, 10_000, 100_000, 1_000), "lstm": (100_000, 20_000, 20_000, 0),
            "tcn": (100_000, 20_000, 20_000, 0)}


def peak_rss_mb() -> float:
    """Maximum resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_bar_latency_ms(bars: pd.DataFrame, feats: FeatureConfig, cfg: ForecastConfig, model: object,
                       calls: int = 200) -> tuple[float, float, float]:
    """Median ms of (one bar's features + model inputs, one predict) and process CPU ms per bar.

    As paper mode: a `FeatureStream` fed from ``nominal_warmup_bars + 2000`` bars before the last ``calls``
    bars, then each of the last ``calls`` bars appended and predicted, one at a time.
    """
    from envs.forecasting.models import FORECASTERS

    kind = FORECASTERS[cfg.model]
    seq = int({**kind.defaults, **cfg.params}["seq_len"]) if kind.sequence else 1
    stream = FeatureStream(feats, rows=seq)
    seed_from = len(bars) - calls - nominal_warmup_bars(feats) - 2000
    arr = bars[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy()
    for row in arr[seed_from : len(bars) - calls]:
        stream.append(int(row[0]), *row[1:])
    f_times, p_times = [], []
    cpu0 = time.process_time()
    for i in range(len(bars) - calls, len(bars)):
        t0 = time.perf_counter()
        stream.append(int(arr[i, 0]), *arr[i, 1:])
        lags = lag_matrix(arr[i - seq - cfg.n_lags + 1 : i + 1, 4], cfg.n_lags)[-seq:]
        X = np.hstack([stream.latest(seq).astype(np.float64), lags])
        row = np.ascontiguousarray(_model_inputs(X, cfg)[-1:])
        t1 = time.perf_counter()
        model.predict(row)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        f_times.append(t1 - t0)
        p_times.append(t2 - t1)
    cpu_ms = 1000 * (time.process_time() - cpu0) / calls
    batch = build_features(bars.iloc[seed_from:].reset_index(drop=True), feats)
    diff = np.abs(stream.latest(1)[-1].astype(np.float64) - batch[list(stream.columns)].iloc[-1].to_numpy(np.float64))
    print(f"streamed features of the last bar vs build_features on the same bars: max |diff| {np.nanmax(diff):.2g}")
    return 1000 * float(np.median(f_times)), 1000 * float(np.median(p_times)), cpu_ms


def main() -> None:
    """Run the benchmark and print a markdown table row."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gbm", choices=sorted(DEFAULTS))
    ap.add_argument("--rows", type=int)
    ap.add_argument("--refit-every", type=int)
    ap.add_argument("--train-window", type=int)
    ap.add_argument("--update-every", type=int)
    ap.add_argument("--threads", type=int, default=2, help="LightGBM / torch threads")
    ap.add_argument("--data", type=Path, default=DATA, help="Parquet of 1m bars")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} not found: the benchmark needs the shared data set (see ../shared/data/README.md)")
    rows, refit, window, update = DEFAULTS[args.model]
    rows = args.rows or rows
    refit = args.refit_every or refit
    window = args.train_window or window
    update = update if args.update_every is None else args.update_every
    bars = pd.read_parquet(args.data).iloc[:rows].reset_index(drop=True)
    feats = FeatureConfig()
    t0 = time.perf_counter()
    built = build_features(bars, feats)
    t_feat = time.perf_counter() - t0
    params = {"num_threads": args.threads}
    cfg = ForecastConfig(model=args.model, train_window=window, min_train=min(window, 10_000), refit_every=refit,
                         update_every=update, params=params)
    t0 = time.perf_counter()
    res = run_walk_forward(bars, built[built.attrs["feature_columns"]], cfg)
    t_wf = time.perf_counter() - t0
    model = res.models["fwd_log_return"]
    f_ms, p_ms, cpu_ms = per_bar_latency_ms(bars, feats, cfg, model)
    n_fit = sum(e.kind == "fit" for e in res.events)
    print(f"| {args.model} | {rows:,} bars, window {window:,}, refit {refit:,}, update {update:,}, {args.threads} threads "
          f"| {n_fit} fits + {len(res.events) - n_fit} updates | walk-forward {t_wf:.1f} s (features {t_feat:.1f} s) "
          f"| one bar: features {f_ms:.2f} ms + predict {p_ms:.2f} ms (CPU {cpu_ms:.2f} ms) | peak RSS {peak_rss_mb():,.0f} MiB |")


if __name__ == "__main__":
    main()
