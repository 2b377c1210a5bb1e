"""Indicator, return and time features: values, ranges and documented warm-ups on the real sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from envs.features.indicators import adx, atr, indicator_features, log_return_features, time_features

DOCUMENTED_WARMUP = {  # first non-NaN row with default windows (module docstring)
    "rsi": 13,
    "macd_frac": 25,
    "macd_signal_frac": 33,
    "macd_hist_frac": 33,
    "macd_hist_slope": 34,
    "bb_width": 19,
    "bb_squeeze": 138,
    "atr_frac": 13,
    "adx": 27,
    "obv_roc": 60,
    "vwap_dist": 59,
    "logret_1": 1,
    "logret_60": 60,
    "logret_1_lag2": 3,
    "vol_30": 30,
    "vol_120": 120,
}


@pytest.fixture(scope="module")
def feats(sample_1m: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([indicator_features(sample_1m), log_return_features(sample_1m["close"].to_numpy())], axis=1)


def test_warmups_match_the_docs_and_no_nan_after(feats: pd.DataFrame) -> None:
    for col, w in DOCUMENTED_WARMUP.items():
        valid = feats[col].notna().to_numpy()
        assert not valid[:w].any() and valid[w:].all(), col
    assert np.isfinite(feats.iloc[140:].to_numpy()).all()


def test_ranges(feats: pd.DataFrame) -> None:
    f = feats.iloc[140:]
    assert f["rsi"].between(0, 1).all() and f["adx"].between(0, 1).all()
    assert f["obv_roc"].between(-1, 1).all()
    assert set(np.unique(f["bb_squeeze"])) <= {0.0, 1.0}
    assert (f["bb_width"] > 0).all() and (f["atr_frac"] > 0).all() and (f["atr_frac"] < 0.05).all()
    assert f["vwap_dist"].abs().max() < 0.05 and f["macd_frac"].abs().max() < 0.05


def test_atr_is_wilder(sample_1m: pd.DataFrame) -> None:
    h, lo, c = (sample_1m[x].to_numpy() for x in ("high", "low", "close"))
    tr = np.maximum(h - lo, np.maximum(np.abs(h - np.roll(c, 1)), np.abs(lo - np.roll(c, 1))))
    tr[0] = h[0] - lo[0]
    ref = np.full(len(c), np.nan)
    ref[13] = tr[:14].mean()
    for i in range(14, len(c)):
        ref[i] = (ref[i - 1] * 13 + tr[i]) / 14
    np.testing.assert_allclose(atr(h, lo, c, 14), ref, rtol=1e-12, equal_nan=True)


def test_returns_and_volatility(sample_1m: pd.DataFrame, feats: pd.DataFrame) -> None:
    c = sample_1m["close"].to_numpy()
    t = 500
    assert feats["logret_15"].iat[t] == pytest.approx(np.log(c[t] / c[t - 15]), rel=1e-12)
    assert feats["logret_1_lag2"].iat[t] == pytest.approx(np.log(c[t - 2] / c[t - 3]), rel=1e-12)
    r = np.diff(np.log(c[t - 30 : t + 1]))
    assert feats["vol_30"].iat[t] == pytest.approx(r.std(ddof=1), rel=1e-9)


def test_obv_roc_and_vwap_dist_definitions(sample_1m: pd.DataFrame, feats: pd.DataFrame) -> None:
    c, v = sample_1m["close"].to_numpy(), sample_1m["volume"].to_numpy()
    h, lo = sample_1m["high"].to_numpy(), sample_1m["low"].to_numpy()
    t, w = 700, 60
    sign = np.sign(np.diff(c[t - w : t + 1]))
    signed = np.where(sign < 0, -1.0, 1.0) * v[t - w + 1 : t + 1]
    assert feats["obv_roc"].iat[t] == pytest.approx(signed.sum() / v[t - w + 1 : t + 1].sum(), rel=1e-9)
    tp = (h + lo + c)[t - w + 1 : t + 1] / 3
    vwap = (tp * v[t - w + 1 : t + 1]).sum() / v[t - w + 1 : t + 1].sum()
    assert feats["vwap_dist"].iat[t] == pytest.approx(np.log(c[t] / vwap), rel=1e-7)


def test_flat_zero_volume_bars_give_no_nan(sample_1m: pd.DataFrame) -> None:
    df = sample_1m.iloc[:400].copy()
    df.loc[200:330, ["open", "high", "low"]] = df.loc[199, "close"]
    df.loc[200:330, "close"] = df.loc[199, "close"]
    df.loc[200:330, "volume"] = 0.0  # a long forward-filled outage
    f = indicator_features(df)
    assert np.isfinite(f.iloc[140:].to_numpy()).all()
    assert (f.loc[300:330, "obv_roc"] == 0).all() and (f.loc[300:330, "vwap_dist"] == 0).all()


def test_time_encodings() -> None:
    ts = pd.to_datetime(["2024-06-03 00:00", "2024-06-03 06:00", "2024-06-05 12:00", "2024-06-09 18:00"], utc=True)
    f = time_features(ts.as_unit("ms").asi8)
    np.testing.assert_allclose(f["tod_sin"], [0, 1, 0, -1], atol=1e-12)
    np.testing.assert_allclose(f["tod_cos"], [1, 0, -1, 0], atol=1e-12)
    dow = np.array([0, 0, 2, 6])  # Monday, Monday, Wednesday, Sunday
    np.testing.assert_allclose(f["dow_sin"], np.sin(2 * np.pi * dow / 7), atol=1e-12)
    np.testing.assert_allclose(f["dow_cos"], np.cos(2 * np.pi * dow / 7), atol=1e-12)


def test_bad_windows_name_the_key(sample_1m: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="features.rsi_window=0 is invalid"):
        indicator_features(sample_1m, rsi_window=0)
    with pytest.raises(ValueError, match="features.macd_fast=30 must be < features.macd_slow=26"):
        indicator_features(sample_1m, macd_fast=30)
    with pytest.raises(ValueError, match="features.vol_windows=1"):
        log_return_features(sample_1m["close"].to_numpy(), vol_windows=(1,))


@pytest.mark.parametrize("window", [5, 14])
def test_numba_atr_and_adx_equal_ta(sample_1m: pd.DataFrame, window: int) -> None:
    import ta

    df = sample_1m.iloc[:3000]
    h, lo, c = df["high"], df["low"], df["close"]
    ref_atr = ta.volatility.AverageTrueRange(h, lo, c, window).average_true_range().to_numpy()
    ref_adx = ta.trend.ADXIndicator(h, lo, c, window).adx().to_numpy() / 100
    got_atr = atr(h.to_numpy(), lo.to_numpy(), c.to_numpy(), window)
    got_adx = adx(h.to_numpy(), lo.to_numpy(), c.to_numpy(), window)
    assert np.isnan(got_atr[: window - 1]).all() and np.isnan(got_adx[: 2 * window - 1]).all()
    np.testing.assert_allclose(got_atr[window - 1 :], ref_atr[window - 1 :], rtol=1e-9)
    np.testing.assert_allclose(got_adx[2 * window - 1 :], ref_adx[2 * window - 1 :], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rsi_w,fast,slow,sig,bb_w,dev", [(14, 12, 26, 9, 20, 2.0), (5, 3, 10, 4, 7, 1.5)])
def test_numba_indicators_equal_ta_classes(sample_1m: pd.DataFrame, rsi_w, fast, slow, sig, bb_w, dev) -> None:
    """Each kernel behind ``indicator_features`` against the ``ta`` class it ports, on real bars."""
    import ta

    df = sample_1m.iloc[:5000].reset_index(drop=True)
    c, v = df["close"], df["volume"]
    got = indicator_features(
        df, rsi_window=rsi_w, macd_fast=fast, macd_slow=slow, macd_signal=sig, bb_window=bb_w, bb_dev=dev,
        squeeze_window=50, obv_window=30, vwap_window=30,
    )
    macd = ta.trend.MACD(c, window_slow=slow, window_fast=fast, window_sign=sig)
    bb = ta.volatility.BollingerBands(c, window=bb_w, window_dev=dev)
    width = bb.bollinger_wband().to_numpy() / 100
    wmin = pd.Series(width).rolling(50, min_periods=50).min().to_numpy()
    obv = ta.volume.OnBalanceVolumeIndicator(c, v).on_balance_volume().to_numpy()
    d_obv = np.full(len(df), np.nan)
    d_obv[30:] = obv[30:] - obv[:-30]
    tp = (df["high"] + df["low"] + c) / 3
    vwap = (tp * v).rolling(30).sum() / v.rolling(30).sum()
    ref = {
        "rsi": ta.momentum.RSIIndicator(c, window=rsi_w).rsi().to_numpy() / 100,
        "macd_frac": macd.macd().to_numpy() / c.to_numpy(),
        "macd_signal_frac": macd.macd_signal().to_numpy() / c.to_numpy(),
        "macd_hist_frac": macd.macd_diff().to_numpy() / c.to_numpy(),
        "bb_width": width,
        "bb_squeeze": np.where(np.isnan(wmin), np.nan, (width <= wmin + 1e-12 * np.abs(wmin)).astype(float)),
        "obv_roc": d_obv / v.rolling(30).sum().to_numpy(),
        "vwap_dist": np.log(c / vwap).to_numpy(),
    }
    for name, expected in ref.items():
        # pandas' online rolling std (inside ta's Bollinger) loses ~1e-8 on flat windows: looser there
        atol = 1e-7 if name == "bb_width" else 1e-13
        np.testing.assert_allclose(got[name].to_numpy(), expected, rtol=1e-9, atol=atol, equal_nan=True, err_msg=name)
    # and the width exactly: two-pass population std of the last bb_w closes
    win = np.lib.stride_tricks.sliding_window_view(c.to_numpy(), bb_w)
    exact = np.full(len(df), np.nan)
    exact[bb_w - 1 :] = 2 * dev * win.std(axis=1) / win.mean(axis=1)
    np.testing.assert_allclose(got["bb_width"].to_numpy(), exact, rtol=1e-9, atol=1e-15, equal_nan=True)


def test_numba_rolling_volatility_equals_pandas(sample_1m: pd.DataFrame) -> None:
    c = sample_1m["close"].to_numpy()
    got = log_return_features(c, windows=(1,), lags=(), vol_windows=(2, 30))
    r1 = pd.Series(np.log(c)).diff()
    for w in (2, 30):
        np.testing.assert_allclose(got[f"vol_{w}"], r1.rolling(w, min_periods=w).std(ddof=1), rtol=1e-9, equal_nan=True)
