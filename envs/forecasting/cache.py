"""Parquet cache of prediction frames, keyed by everything they depend on.

The key hashes the bars (``envs.features.pipeline.data_hash``: timestamp/OHLCV bytes), every field
of the `FeatureConfig`, every field of the `ForecastConfig` and the code versions
(``FORECAST_VERSION``, ``FEATURE_VERSION``): a change to any of them is a different file, so a stale
hit is impossible. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from envs.features.pipeline import FEATURE_VERSION, FeatureConfig, build_features, data_hash
from envs.forecasting.config import ForecastConfig
from envs.forecasting.walk_forward import walk_forward_predictions

logger = logging.getLogger(__name__)

#: Bump when targets, models, the schedule or the prediction layout change.
FORECAST_VERSION = "2"


class PredictionCache:
    """Prediction frames on disk as ``predictions_<key>.parquet``.

    Attributes:
        directory: folder of the files (created on the first save).
        hits: lookups served from disk.
        misses: lookups that had to compute.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(bars: pd.DataFrame, features: FeatureConfig, forecast: ForecastConfig) -> str:
        """Hash of the data span, both configs (all fields) and the code versions."""
        cfg = json.dumps({"features": asdict(features), "forecast": asdict(forecast)}, sort_keys=True, default=list)
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{FORECAST_VERSION}|{FEATURE_VERSION}|{data_hash(bars)}|{cfg}".encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        """File of ``key``."""
        return self.directory / f"predictions_{key}.parquet"

    def load(self, key: str) -> pd.DataFrame | None:
        """Cached frame of ``key`` or None."""
        p = self.path(key)
        return pd.read_parquet(p) if p.exists() else None

    def save(self, key: str, frame: pd.DataFrame) -> Path:
        """Write ``frame`` atomically and return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        p = self.path(key)
        fd, tmp_name = tempfile.mkstemp(prefix=p.stem + ".", suffix=".tmp", dir=self.directory)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            frame.to_parquet(tmp, index=False)
            tmp.replace(p)
        finally:
            tmp.unlink(missing_ok=True)
        return p


def cached_predictions(
    bars: pd.DataFrame, features: FeatureConfig, forecast: ForecastConfig, cache: PredictionCache | None,
    feature_frame: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Walk-forward predictions of ``forecast`` on ``bars`` with ``features``, through ``cache``.

    Args:
        bars: clean bars (no feature columns; they are built here from ``features``).
        features: the feature config of the run.
        forecast: the forecaster config.
        cache: a `PredictionCache`, or None to always compute.
        feature_frame: the feature columns already built from ``bars`` with ``features`` (saves
            recomputing them); None builds them here.
    """
    key = PredictionCache.key(bars, features, forecast) if cache is not None else ""
    if cache is not None:
        hit = cache.load(key)
        if hit is not None:
            cache.hits += 1
            logger.info("forecast: cache hit %s", cache.path(key))
            return hit
        cache.misses += 1
    feats = feature_frame
    if feats is None and features != FeatureConfig.none():
        built = build_features(bars, features)
        feats = built[built.attrs["feature_columns"]]
    preds = walk_forward_predictions(bars, feats, forecast)
    if cache is not None:
        logger.info("forecast: cached to %s", cache.save(key, preds))
    return preds
