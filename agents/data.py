"""Loading a run's bars and cutting chronological train / validation / test splits.

Features are computed causally on the whole series once (a value at bar t uses bars <= t), so a
split can take its observation warm-up (``window_size - 1`` bars) from the span before it: the
first *decision* of each split is at its own first bar, and no split ever sees a later bar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agents.config import DataConfig, SplitConfig
from envs.data.cleaning import clean
from envs.data.resample import parse_timeframe
from envs.data.store import ParquetStore
from envs.features.collinearity import PruneResult, prune_collinear_report
from envs.features.pipeline import FeatureCache, FeatureConfig, build_features
from envs.forecasting.config import ForecastConfig
from envs.market.market_data import DERIVED_FEATURES, MarketData, attach_funding
from envs.market.times import iso_utc, to_ms
from envs.sim.config import EnvConfig

if TYPE_CHECKING:
    from agents.forecasts import RunForecasts

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")



def read_bars(path: str | None, store_root: str | None = None, exchange: str = "binance", symbol: str | None = None,
              timeframe: str | None = None, start: str | None = None, end: str | None = None,
              prefix: str = "data") -> pd.DataFrame:
    """The raw bars of a Parquet file or a store span, restricted to [start, end): nothing checked or repaired.

    The one reader behind `load_frame` (training, evaluation, paper mode) and ``scripts/validate.py``.
    Refuses, naming the ``prefix.key`` to change: a missing file, a folder, an incomplete store selection,
    and a selection without rows.
    """
    if store_root is not None:
        if not Path(store_root).is_dir():
            raise ValueError(f"{prefix}.store_root={store_root!r} is not a folder; fill a store with scripts/download.py")
        if symbol is None or timeframe is None:
            raise ValueError(f"a store span needs {prefix}.symbol and {prefix}.timeframe (e.g. BTC/USDT and 1h)")
        df = ParquetStore(store_root).read(exchange, symbol, timeframe, start, end)
        where = (f"the store {store_root!r} has no {exchange} {symbol} {timeframe} bars between "
                 f"{prefix}.start={start} and {prefix}.end={end}; download them with scripts/download.py")
    elif path is not None:
        file = Path(path)
        if not file.is_file():
            what = "is a folder" if file.is_dir() else "not found"
            raise ValueError(
                f"{prefix}.path={path!r} {what}; point it at one Parquet file of bars (the repo ships "
                f"data/sample/btcusdt_1h.parquet; a store is read with {prefix}.store_root=...) or download one "
                "with scripts/download.py"
            )
        df = pd.read_parquet(file)
        if start is not None:
            df = df[df["timestamp"] >= to_ms(start)]
        if end is not None:
            df = df[df["timestamp"] < to_ms(end)]
        span = "" if start is None and end is None else f" between {prefix}.start={start} and {prefix}.end={end}"
        where = f"{prefix}.path={path!r} has no rows{span}"
    else:
        raise ValueError(f"set {prefix}.path=<parquet file>, or {prefix}.store_root with {prefix}.symbol and "
                         f"{prefix}.timeframe")
    if df.empty:
        raise ValueError(f"{where}: nothing to use (no verdict)")
    return df.reset_index(drop=True)


def load_frame(cfg: DataConfig) -> pd.DataFrame:
    """Read the run's bars (a Parquet file or a store span), restrict to [start, end), run the data
    checks, attach funding if configured."""
    df = read_bars(cfg.path, cfg.store_root, cfg.exchange, cfg.symbol, cfg.timeframe, cfg.start, cfg.end)
    # every load runs the data checks: a `raise` rule stops here (data.cleaning.*), kept problems and
    # repairs are logged by `clean`; nothing is changed silently
    df, _ = clean(df, cfg.cleaning)
    if df.empty:
        raise ValueError(f"no bars left in data.path={cfg.path!r} after the cleaning policies (data.cleaning.*)")
    source = f"data.store_root={cfg.store_root!r}" if cfg.store_root is not None else f"data.path={cfg.path!r}"
    check_timeframe(df["timestamp"].to_numpy(), cfg.timeframe, source)
    if cfg.funding_path is not None:
        fpath = Path(cfg.funding_path)
        if not fpath.exists():
            raise ValueError(f"data.funding_path={cfg.funding_path!r} not found (a Parquet of timestamp, funding_rate)")
        df = attach_funding(df, pd.read_parquet(fpath))
    return df


def check_timeframe(timestamps: np.ndarray, timeframe: str, what: str) -> None:
    """Refuse bars whose spacing (the median step) is not ``timeframe``.

    Raises:
        ValueError: naming both intervals and what to change.
    """
    if len(timestamps) < 2:
        return
    step = int(np.median(np.diff(np.asarray(timestamps, dtype=np.int64))))
    want = parse_timeframe(timeframe)
    if step != want:
        raise ValueError(
            f"{what} has bars every {_interval(step)} but the run is configured for {timeframe} bars "
            f"(data.timeframe={timeframe}): features, look-backs and annualisation would all be off. Use "
            f"{timeframe} bars (resample with envs.data.resample), or train a run on {_interval(step)} bars "
            f"with data.timeframe={_interval(step)}"
        )


def _interval(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"


def warmup_bars(data: MarketData) -> int:
    """Bars before every feature column has its first finite value (the features' warm-up)."""
    finite = np.isfinite(data.raw_features)
    if finite.size == 0:
        return 0
    has = finite.any(axis=0)
    if not has.all():
        return len(data.close)
    return int(finite.argmax(axis=0).max())


def require_usable(data: MarketData, window_size: int, what: str, start: int = 0, end: int | None = None) -> None:
    """Refuse a span whose decisions past the features' warm-up do not fill one observation window.

    Bars ``[start, end)`` of ``data`` are the span's own bars (earlier ones are its warm-up). A decision
    needs ``window_size`` bars of valid features and one next bar to fill at.

    Raises:
        ValueError: naming the counts and what to change.
    """
    end = len(data.close) if end is None else end
    warm = warmup_bars(data)
    first = max(start, warm + window_size - 1)
    usable = end - first
    if usable < window_size:
        seen = [bool(x) for x in np.atleast_1d(np.isfinite(data.raw_features).any(axis=0))]
        bad = [n for n, ok in zip(data.feature_names, seen, strict=True) if not ok]
        why = (f"feature column(s) {bad[:5]} are NaN on every bar" if bad else
               f"the first {warm} bars are the features' warm-up (NaN features, shown to a policy as 0)")
        raise ValueError(
            f"{what} has {max(usable, 0)} bars with a full observation window of valid features, fewer than one "
            f"window (env.window_size={window_size}): {why}. Give a longer span (data.start/end, data.split.*), "
            "a smaller window, or a feature set with shorter look-backs"
        )


def check_tradable(env: EnvConfig, data: MarketData, what: str) -> None:
    """Refuse a configuration whose smallest order (one lot) costs more than the whole account.

    One lot at the median close, ``lot_size x contract_multiplier x close``, is compared with
    ``initial_cash``: above it, every target below that many times leverage rounds to no position and
    the baselines (exposure 1) never trade.

    Raises:
        ValueError: naming the sizes and what to change.
    """
    close = float(np.median(data.close))
    lot = env.lot_size * env.contract_multiplier * close
    if lot > env.initial_cash:
        raise ValueError(
            f"{what}: the smallest order, one lot (env.lot_size={env.lot_size:g} x env.contract_multiplier="
            f"{env.contract_multiplier:g} x median close {close:,.2f}) = {lot:,.0f} quote, is more than the account "
            f"(env.initial_cash={env.initial_cash:,.0f}): most targets round to no position and the baselines "
            f"cannot trade. Raise env.initial_cash above {lot:,.0f}, lower env.lot_size or "
            "env.contract_multiplier, or use an env preset made for this market (env=spot, env=perp)"
        )


@dataclass(frozen=True, slots=True)
class SplitBounds:
    """Bar index ranges [first decision bar, end) of each split, plus the warm-up start."""

    name: str
    warmup_start: int
    start: int
    end: int

    @property
    def n_bars(self) -> int:
        """Bars in the split (decisions run from ``start`` to ``end - 2``)."""
        return self.end - self.start


def split_bounds(timestamps: np.ndarray, split: SplitConfig, window_size: int,
                 first_usable: int = 0) -> dict[str, SplitBounds]:
    """Chronological train / val / test index ranges with ``embargo_bars`` dropped between them.

    ``first_usable`` is the first bar whose observation features all exist (the forecaster's
    warm-up ends there): the training split's first observation window starts at it.

    Raises:
        ValueError: when a split is too short for ``window_size`` (needs >= 2 bars to trade and a
            warm-up of window_size - 1 bars before the first decision).
    """
    n = len(timestamps)
    if split.val_start is not None and split.test_start is not None:
        val_at = int(np.searchsorted(timestamps, to_ms(split.val_start)))
        test_at = int(np.searchsorted(timestamps, to_ms(split.test_start)))
    else:
        val_at = int(n * split.train_frac)
        test_at = int(n * (split.train_frac + split.val_frac))
    emb = split.embargo_bars
    edges = {"train": (0, val_at), "val": (val_at + emb, test_at), "test": (test_at + emb, n)}
    out = {}
    for name, (start, end) in edges.items():
        first = max(start, window_size - 1, first_usable + window_size - 1) if name == "train" else start
        if first_usable and name == "train" and end - first < window_size:
            raise ValueError(
                f"the training split has {max(end - first, 0)} bars after the forecaster's warm-up, fewer than one "
                f"observation window (env.window_size={window_size}): the first {first_usable} of {n} bars have no "
                "out-of-sample forecast yet (forecaster.min_train labelled bars after the features' warm-up). Give "
                "more data, a larger data.split.train_frac, or a smaller forecaster.min_train"
            )
        if end - first < 2:
            raise ValueError(
                f"the {name} split has {max(end - first, 0)} usable bars (of {n}); with "
                f"env.window_size={window_size} and data.split={split} it needs at least 2. "
                "Use more data, a smaller window or other split fractions/dates"
            )
        if end - first < window_size:
            raise ValueError(
                f"env.window_size={window_size} is larger than the {name} split ({end - first} bars of {n}); "
                "lower env.window_size or give the split more data (data.split.*)"
            )
        out[name] = SplitBounds(name=name, warmup_start=max(first - (window_size - 1), 0), start=first, end=end)
    return out


@dataclass(frozen=True, slots=True)
class Splits:
    """The run's market data and its three splits (each a `MarketData` including its warm-up)."""

    full: MarketData
    bounds: dict[str, SplitBounds]
    #: the forecaster's predictions and state when the run has one (their ``fc_*`` columns are in ``full``)
    forecasts: RunForecasts | None = None

    def get(self, name: str) -> MarketData:
        """Split ``name`` as `MarketData`: warm-up bars, then the split's own bars."""
        b = self.bounds[name]
        return self.full.slice(b.warmup_start, b.end)

    def describe(self) -> dict[str, dict[str, object]]:
        """Spans of each split (ISO UTC) for logs and reports."""
        ts = self.full.timestamp

        return {k: {"first_decision": iso_utc(ts[b.start]), "last_bar": iso_utc(ts[b.end - 1]), "bars": b.n_bars}
                for k, b in self.bounds.items()}


def make_splits(df: pd.DataFrame, split: SplitConfig, window_size: int,
                forecasts: RunForecasts | None = None) -> Splits:
    """Validate and convert bars once, then cut the chronological splits (after the forecaster's warm-up)."""
    full = MarketData.load(df)
    bounds = split_bounds(full.timestamp, split, window_size, forecasts.first_bar if forecasts is not None else 0)
    for b in bounds.values():
        require_usable(full, window_size, f"the {b.name} split", b.start, b.end)
    return Splits(full=full, bounds=bounds, forecasts=forecasts)


def load_splits(cfg: DataConfig, window_size: int, features: FeatureConfig | None = None,
                cache_dir: str | Path | None = None, forecaster: ForecastConfig | None = None) -> Splits:
    """Load the configured bars, add causal features and forecasts (cached by content hash), cut the splits.

    Feature columns become observation features of the env; their warm-up rows are NaN (shown to
    the agent as 0) and are ignored when the normaliser is fitted. With an enabled ``forecaster``
    the walk-forward, out-of-sample forecasts of the whole span join as ``fc_*`` feature columns
    (`agents.forecasts.add_forecasts`, cached under ``<cache_dir>/predictions``); the training split
    then starts after the forecaster's warm-up.
    """
    df = bars = load_frame(cfg)
    features = features if features is not None else FeatureConfig.none()
    if features != FeatureConfig.none():
        cache = FeatureCache(cache_dir) if cache_dir is not None else None
        df = build_features(df, features, cache)
    forecasts = None
    if forecaster is not None and forecaster.enabled:
        from agents.forecasts import add_forecasts

        df, forecasts = add_forecasts(bars, df, features, forecaster,
                                      Path(cache_dir) / "predictions" if cache_dir is not None else None)
    return make_splits(df, cfg.split, window_size, forecasts)


def prune_features(splits: Splits, features: FeatureConfig) -> tuple[Splits, PruneResult | None]:
    """Apply ``features.prune_vif`` / ``prune_corr``: drop collinear feature columns from every split.

    The decision uses the TRAINING split's own bars only (its decision rows, not its warm-up and
    nothing after it); the env's derived price features are always kept. Returns the splits
    unchanged and None when neither threshold is set.
    """
    if features.prune_vif is None and features.prune_corr is None:
        return splits, None
    full = splits.full
    candidates = [n for n in full.feature_names if n not in DERIVED_FEATURES]
    if not candidates:
        return splits, None
    b = splits.bounds["train"]
    idx = [full.feature_names.index(n) for n in candidates]
    train = pd.DataFrame(full.raw_features[b.start : b.end, idx].astype(np.float64), columns=candidates)
    result = prune_collinear_report(
        train, candidates, threshold_vif=features.prune_vif if features.prune_vif is not None else np.inf,
        threshold_corr=features.prune_corr,
    )
    logger.info("collinearity pruning on the training split: kept %d of %d features, dropped %s",
                len(result.kept), len(candidates), [c for c, _ in result.dropped])
    kept = set(result.kept)
    keep = [n for n in full.feature_names if n in DERIVED_FEATURES or n in kept]
    return Splits(full=full.select_features(keep), bounds=splits.bounds, forecasts=splits.forecasts), result
