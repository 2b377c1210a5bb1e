"""clean(): every policy on crafted bad data; raise messages name problem, row, count and key."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from envs.data.cleaning import ALLOWED_POLICIES, CleaningConfig, clean
from envs.data.quality import validate

H = 3_600_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def bars(n: int = 30) -> pd.DataFrame:
    close = 100.0 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "timestamp": T0 + np.arange(n, dtype=np.int64) * H,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.arange(1, n + 1, dtype=float),
        }
    )


def with_nan(rows: list[int]) -> pd.DataFrame:
    df = bars()
    df.loc[rows, "close"] = np.nan
    return df


def with_value(col: str, rows: list[int], value: float) -> pd.DataFrame:
    df = bars()
    df.loc[rows, col] = value
    return df


def with_duplicate() -> pd.DataFrame:
    df = bars()
    dup = df.iloc[[4]].assign(close=104.25, volume=99.0)
    return pd.concat([df.iloc[:5], dup, df.iloc[5:]], ignore_index=True)  # row 5 repeats row 4


def with_swap() -> pd.DataFrame:
    return bars().iloc[[0, 1, 2, 4, 3, *range(5, 30)]].reset_index(drop=True)


@pytest.mark.parametrize(
    ("df", "kind", "row", "count"),
    [
        (with_nan([7, 9]), "non_finite", 7, 2),
        (with_value("open", [11], -1.0), "non_positive", 11, 1),
        (with_value("volume", [6], -5.0), "negative_volume", 6, 1),
        (with_value("high", [3, 8, 12], 50.0), "ohlc_inconsistent", 3, 3),
        (with_duplicate(), "duplicates", 5, 1),
        (with_swap(), "out_of_order", 4, 1),
        (with_value("timestamp", [10], T0 + 10 * H + 1), "misaligned", 10, 1),
    ],
)
def test_raise_policies_name_problem_row_count_and_key(df: pd.DataFrame, kind: str, row: int, count: int) -> None:
    with pytest.raises(ValueError) as err:
        clean(df)
    msg = str(err.value)
    assert msg.startswith(f"data problem '{kind}'")
    assert f"{count} found" in msg
    assert f"first at row {row} @ {int(df['timestamp'].iat[row])}" in msg
    assert f"cleaning.{kind}='raise'" in msg
    alternatives = [a for a in ALLOWED_POLICIES[kind] if a != "raise"]
    assert f"set cleaning.{kind} to one of {alternatives}" in msg


def test_soft_problems_raise_only_when_asked() -> None:
    df = bars().drop(index=[5]).reset_index(drop=True)
    out, rep = clean(df)  # gaps: warn by default
    assert len(out) == len(df) and not rep.repairs
    assert rep.warnings and rep.warnings[0].startswith("gaps: 1 missing bars")
    with pytest.raises(ValueError, match=r"data problem 'gaps'.*1 found.*cleaning.gaps='raise'"):
        clean(df, CleaningConfig(gaps="raise"))
    z = bars()
    z.loc[10:13, "volume"] = 0.0
    with pytest.raises(ValueError, match=r"'zero_volume_runs'.*4 found.*first at row 10"):
        clean(z, CleaningConfig(zero_volume_runs="raise"))


@pytest.mark.parametrize(
    ("df", "kind", "dropped", "first_row"),
    [
        (with_nan([7, 9]), "non_finite", 2, 7),
        (with_value("low", [11], 0.0), "non_positive", 1, 11),
        (with_value("volume", [6], -5.0), "negative_volume", 1, 6),
        (with_value("low", [3, 8], 1e9), "ohlc_inconsistent", 2, 3),
        (with_value("timestamp", [10], T0 + 10 * H + 1), "misaligned", 1, 10),
    ],
)
def test_drop_policies(df: pd.DataFrame, kind: str, dropped: int, first_row: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="envs.data.cleaning")
    out, rep = clean(df, CleaningConfig(**{kind: "drop"}))
    assert len(out) == len(df) - dropped
    (r,) = rep.repairs
    assert (r.kind, r.action, r.rows, r.first_index) == (kind, "drop", dropped, first_row)
    assert r.first_timestamp == int(df["timestamp"].iat[first_row])
    assert f"{kind}: drop {dropped} row(s); first at input row {first_row}" in caplog.text
    assert validate(out, H).problem(kind).count == 0
    assert rep.n_rows_in == len(df) and rep.n_rows_out == len(out)
    assert f"repaired  {kind}: drop {dropped} row(s)" in rep.to_text()


def test_row_broken_twice_is_counted_once() -> None:
    df = bars()
    df.loc[4, ["close", "open"]] = [np.nan, -1.0]
    out, rep = clean(df, CleaningConfig(non_finite="drop", non_positive="drop"))
    assert len(out) == 29 and [(r.kind, r.rows) for r in rep.repairs] == [("non_finite", 1)]


@pytest.mark.parametrize(("policy", "kept_close"), [("keep_first", 104.0), ("keep_last", 104.25)])
def test_duplicates_keep_first_or_last(policy: str, kept_close: float) -> None:
    out, rep = clean(with_duplicate(), CleaningConfig(duplicates=policy))
    assert len(out) == 30 and out["timestamp"].is_unique
    assert out.loc[4, "close"] == kept_close
    (r,) = rep.repairs
    assert (r.kind, r.action, r.rows) == ("duplicates", policy, 1)
    assert r.first_index == (5 if policy == "keep_first" else 4)


def test_out_of_order_sort_and_drop() -> None:
    out, rep = clean(with_swap(), CleaningConfig(out_of_order="sort"))
    pd.testing.assert_frame_equal(out, bars())
    assert (rep.repairs[0].kind, rep.repairs[0].action, rep.repairs[0].rows) == ("out_of_order", "sort", 2)
    out, rep = clean(with_swap(), CleaningConfig(out_of_order="drop"))
    assert len(out) == 29 and out["timestamp"].is_monotonic_increasing
    assert (rep.repairs[0].rows, rep.repairs[0].first_index) == (1, 4)


def test_forward_fill_inserts_flat_bars_with_filled_flag(sample_1h: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="envs.data.cleaning")
    out, rep = clean(sample_1h, CleaningConfig(gaps="forward_fill"))
    assert len(out) == len(sample_1h) + 1
    assert (np.diff(out["timestamp"].to_numpy()) == H).all()
    assert out["filled"].dtype == np.int8 and int(out["filled"].sum()) == 1
    i = int(np.flatnonzero(out["filled"].to_numpy())[0])
    assert pd.Timestamp(int(out["timestamp"].iat[i]), unit="ms", tz="UTC").isoformat() == "2023-03-24T13:00:00+00:00"
    prev_close = out["close"].iat[i - 1]
    assert (out.loc[i, ["open", "high", "low", "close"]] == prev_close).all() and out.loc[i, "volume"] == 0.0
    (r,) = rep.repairs
    assert (r.kind, r.action, r.rows, r.first_index) == ("gaps", "forward_fill", 1, 10740)
    assert "gaps: forward_fill 1 row(s)" in caplog.text
    assert rep.after.problem("gaps").count == 0 and rep.after.ok
    real = out[out["filled"] == 0].drop(columns="filled").reset_index(drop=True)
    pd.testing.assert_frame_equal(real, sample_1h.reset_index(drop=True))


def test_forward_fill_keeps_extra_columns_and_multi_bar_gaps() -> None:
    df = bars(12).assign(note=np.arange(12.0)).drop(index=[3, 4, 5, 9]).reset_index(drop=True)
    out, rep = clean(df, CleaningConfig(gaps="forward_fill"))
    assert len(out) == 12 and out["filled"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0]
    assert out.loc[3:5, "close"].tolist() == [102.0] * 3 and np.isnan(out.loc[3:5, "note"]).all()
    assert rep.repairs[0].rows == 4


def test_outlier_and_zero_volume_drop(sample_1m: pd.DataFrame) -> None:
    df = sample_1m.iloc[:500].copy()
    df.loc[200, ["open", "high", "low", "close"]] *= 1.5
    out, rep = clean(df, CleaningConfig(return_outliers="drop", outlier_z=50.0))
    assert validate(df, policy=CleaningConfig(outlier_z=50.0)).problem("return_outliers").count == 2  # in and out
    (r,) = rep.repairs
    assert (r.kind, r.rows, r.first_index) == ("return_outliers", 1, 200)  # only the spike bar goes
    assert len(out) == len(df) - 1 and df["timestamp"].iat[200] not in set(out["timestamp"])
    z = bars()
    z.loc[10:13, "volume"] = 0.0
    z.loc[20, "volume"] = 0.0  # single zero-volume bar: below the min run, kept
    out, rep = clean(z, CleaningConfig(zero_volume_runs="drop"))
    assert len(out) == 26 and (rep.repairs[0].rows, rep.repairs[0].first_index) == (4, 10)


def test_clean_data_passes_through_unchanged(sample_1m: pd.DataFrame) -> None:
    out, rep = clean(sample_1m)
    pd.testing.assert_frame_equal(out, sample_1m.reset_index(drop=True))
    assert rep.repairs == () and "no repairs" in rep.to_text()
    assert "| problem | action | rows |" in rep.to_markdown()


def test_config_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"cleaning.duplicates='keep' is invalid: must be one of \['raise', 'keep_first', 'keep_last'\]"):
        CleaningConfig(duplicates="keep")
    with pytest.raises(ValueError, match="cleaning.zero_volume_min_run=0"):
        CleaningConfig(zero_volume_min_run=0)
    with pytest.raises(ValueError, match=r"unknown cleaning key\(s\) \['gapz'\]"):
        CleaningConfig.from_mapping({"gapz": "raise"})
