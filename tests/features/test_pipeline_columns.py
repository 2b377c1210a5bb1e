"""The streaming pipeline (columns written one by one into a float32 matrix) equals the public family frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from envs.features.indicators import atr, indicator_features, log_return_features, time_features
from envs.features.levels import level_features
from envs.features.mtf import mtf_features
from envs.features.pipeline import INDICATOR_COLUMNS, FeatureConfig, compute_features


def test_compute_features_equals_family_frames_cast_once(sample_1m):
    cfg = FeatureConfig(mtf_timeframes=("1h", "4h"), mtf_families=("returns", "indicators", "levels"),
                        indicator_columns=INDICATOR_COLUMNS, mtf_indicator_columns=INDICATOR_COLUMNS)
    got = compute_features(sample_1m, cfg)
    h, lo, c = (sample_1m[k].to_numpy() for k in ("high", "low", "close"))
    a = atr(h, lo, c, cfg.atr_window)
    htf = cfg.htf_config()

    def htf_frame(bars: pd.DataFrame) -> pd.DataFrame:
        return pd.concat(
            [
                log_return_features(bars["close"].to_numpy(), htf.return_windows, (), htf.vol_windows),
                indicator_features(bars, squeeze_window=htf.squeeze_window, obv_window=htf.obv_window,
                                   vwap_window=htf.vwap_window),
                level_features(bars),
            ],
            axis=1,
        )

    expect = pd.concat(
        [
            log_return_features(c, cfg.return_windows, cfg.return_lags, cfg.vol_windows),
            time_features(sample_1m["timestamp"].to_numpy()),
            indicator_features(sample_1m, atr_values=a),
            level_features(sample_1m, atr_values=a),
            mtf_features(sample_1m, "1h", htf_frame),
            mtf_features(sample_1m, "4h", htf_frame),
        ],
        axis=1,
    ).astype(np.float32)
    assert list(got.columns) == list(expect.columns)
    assert (got.dtypes == np.float32).all()
    np.testing.assert_array_equal(got.to_numpy(), expect.to_numpy())  # bit-identical, NaN in the same places
