"""validate(): every rule on crafted bad data (counts, rows, messages), real samples, the CLI."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.data.cleaning import CleaningConfig
from envs.data.quality import PROBLEM_KINDS, validate
from envs.market.bars import check_bars, find_violations

REPO = Path(__file__).resolve().parents[2]
SAMPLE_1H = REPO / "data" / "sample" / "btcusdt_1h.parquet"
SAMPLE_1M = REPO / "data" / "sample" / "btcusdt_1m_2024-06-01_07.parquet"
H = 3_600_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def bars(n: int = 40, step: int = H) -> pd.DataFrame:
    """Clean synthetic hourly bars with a gentle zig-zag."""
    close = 100.0 + np.sin(np.arange(n) / 3.0)
    return pd.DataFrame(
        {
            "timestamp": T0 + np.arange(n, dtype=np.int64) * step,
            "open": close - 0.1,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": np.full(n, 10.0),
        }
    )


def test_clean_sample_1m_has_no_problem(sample_1m: pd.DataFrame) -> None:
    rep = validate(sample_1m)
    assert rep.ok
    assert rep.timeframe_ms == 60_000 and rep.timeframe_inferred
    for kind in PROBLEM_KINDS:
        if kind != "return_outliers":
            assert rep.problem(kind).count == 0, kind
    assert "verdict: OK" in rep.to_text()


def test_sample_1h_reports_the_known_missing_hour(sample_1h: pd.DataFrame) -> None:
    rep = validate(sample_1h)
    gaps = rep.problem("gaps")
    assert (gaps.count, gaps.n_events) == (1, 1)
    ex = gaps.examples[0]
    assert ex.iso == "2023-03-24T12:00:00+00:00"
    assert "1 missing bar(s) 2023-03-24T13:00:00+00:00" in ex.detail
    assert rep.ok  # gaps are a warning under the default policy
    assert not validate(sample_1h, policy=CleaningConfig(gaps="raise")).ok


@pytest.mark.parametrize(
    ("kind", "mutate", "rows"),
    [
        ("non_finite", lambda d: d.__setitem__("close", d["close"].where(~d.index.isin([7, 9]))), [7, 9]),
        ("non_positive", lambda d: d.__setitem__("low", d["low"].where(d.index != 5, -1.0)), [5]),
        ("negative_volume", lambda d: d.__setitem__("volume", d["volume"].where(d.index != 12, -3.0)), [12]),
        ("ohlc_inconsistent", lambda d: d.__setitem__("high", d["high"].where(d.index != 3, 10.0)), [3]),
        ("ohlc_inconsistent", lambda d: d.__setitem__("low", d["low"].where(d.index != 4, 1e6)), [4]),
    ],
)
def test_row_rules(kind: str, mutate, rows: list[int]) -> None:
    df = bars()
    mutate(df)
    rep = validate(df)
    p = rep.problem(kind)
    assert p.count == len(rows)
    assert [e.index for e in p.examples] == rows
    assert p.examples[0].timestamp == T0 + rows[0] * H
    assert p.is_error and not rep.ok
    msg = p.message()
    assert kind in msg and f"row {rows[0]}" in msg and str(len(rows)) in msg
    assert p.examples[0].iso in rep.to_text()


def test_ohlc_detail_names_broken_sub_rule() -> None:
    df = bars()
    df.loc[3, "high"] = 10.0
    detail = validate(df).problem("ohlc_inconsistent").examples[0].detail
    assert "breaks high >= max(open, close)" in detail and "low <=" not in detail  # only the broken rule
    df.loc[5, ["high", "low"]] = [10.0, 1e6]
    detail = validate(df).problem("ohlc_inconsistent").examples[1].detail
    assert "breaks high >= max(open, close), low <= min(open, close)" in detail  # high < low breaks both


def test_inf_counts_as_non_finite() -> None:
    df = bars()
    df.loc[2, "volume"] = np.inf
    p = validate(df).problem("non_finite")
    assert (p.count, p.examples[0].index) == (1, 2)


def test_duplicates_and_out_of_order() -> None:
    df = bars(10)
    df = pd.concat([df.iloc[:6], df.iloc[[2]], df.iloc[6:]], ignore_index=True)  # row 6 repeats row 2
    rep = validate(df)
    assert rep.problem("duplicates").count == 1 and rep.problem("duplicates").examples[0].index == 6
    ooo = rep.problem("out_of_order")
    assert ooo.count == 1 and ooo.examples[0].index == 6
    swapped = bars(10).iloc[[0, 1, 3, 2, 4, 5, 6, 7, 8, 9]].reset_index(drop=True)
    rep = validate(swapped)
    assert rep.problem("out_of_order").count == 1 and rep.problem("out_of_order").examples[0].index == 3
    assert rep.problem("duplicates").count == 0
    assert rep.problem("gaps").count == 0  # grid checks use the sorted unique timestamps


def test_gaps_count_missing_bars_and_spans() -> None:
    df = bars(40).drop(index=[5, 6, 7, 20]).reset_index(drop=True)
    p = validate(df).problem("gaps")
    assert (p.count, p.n_events) == (4, 2)
    assert p.examples[0].index == 4 and "3 missing bar(s)" in p.examples[0].detail
    assert p.examples[1].index == 16 and "1 missing bar(s)" in p.examples[1].detail
    assert p.note == "largest gap 3 bar(s)"


def test_declared_timeframe_and_misaligned_rows() -> None:
    df = bars(20)
    df.loc[10:, "timestamp"] += 60_000  # shifted one minute off the hourly grid
    rep = validate(df, timeframe_ms=H)
    assert rep.problem("misaligned").count == 10 and rep.problem("misaligned").examples[0].index == 10
    assert not rep.timeframe_inferred
    with pytest.raises(ValueError, match="timeframe_ms=0"):
        validate(df, timeframe_ms=0)


def test_zero_volume_runs_respect_min_run() -> None:
    df = bars(30)
    df.loc[[3, 4], "volume"] = 0.0  # run of 2
    df.loc[10:14, "volume"] = 0.0  # run of 5
    p = validate(df).problem("zero_volume_runs")  # default N = 3
    assert (p.count, p.n_events, p.examples[0].index) == (5, 1, 10)
    p = validate(df, policy=CleaningConfig(zero_volume_min_run=2)).problem("zero_volume_runs")
    assert (p.count, p.n_events, p.examples[0].index) == (7, 2, 3)


def test_return_outlier_robust_z(sample_1m: pd.DataFrame) -> None:
    df = sample_1m.iloc[:2000].copy()
    df.loc[1000, ["open", "high", "low", "close"]] *= 1.2  # a 20 % spike for one minute
    p = validate(df, policy=CleaningConfig(outlier_z=50.0)).problem("return_outliers")
    assert [e.index for e in p.examples][:2] == [1000, 1001]
    assert "robust z" in p.examples[0].detail
    assert p.count == 2  # into and out of the spike


def test_policy_decides_errors_and_rendering() -> None:
    df = bars(30).drop(index=[5]).reset_index(drop=True)
    assert validate(df).ok
    rep = validate(df, policy=CleaningConfig(gaps="raise"))
    assert not rep.ok and [p.kind for p in rep.errors] == ["gaps"]
    assert "[ERROR] gaps: 1" in rep.to_text()
    md = rep.to_markdown()
    assert "| check | status | count | events | note |" in md and "| gaps | error | 1 | 1 |" in md


def test_check_bars_and_find_violations_unchanged() -> None:
    df = bars()
    df.loc[[7, 9], "close"] = np.nan
    v = find_violations(df)
    assert v[0].rule == "no NaN/inf in OHLCV" and v[0].count == 2 and v[0].first_index == 7
    with pytest.raises(ValueError, match="data rule 'no NaN/inf in OHLCV' broken by 2 row"):
        check_bars(df)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=198), max_size=40))
def test_gap_count_equals_removed_interior_bars(removed: set[int]) -> None:
    df = bars(200).drop(index=sorted(removed)).reset_index(drop=True)
    p = validate(df, timeframe_ms=H).problem("gaps")
    assert p.count == len(removed)
    runs = sum(1 for i in removed if i - 1 not in removed)
    assert p.n_events == runs


def _run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "validate.py"), f"hydra.run.dir={tmp_path}/run", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def validate_script():
    """scripts/validate.py imported as a module (registers its schema in Hydra's ConfigStore)."""
    spec = importlib.util.spec_from_file_location("validate_script", REPO / "scripts" / "validate.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["validate_script"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("validate", overrides=list(overrides))


def test_cli_end_to_end_exit_codes(tmp_path: Path) -> None:
    ok = _run_cli(tmp_path, f"data.path={SAMPLE_1H}")
    assert ok.returncode == 0, ok.stderr
    assert "verdict: OK" in ok.stdout and "gaps: 1" in ok.stdout
    bad = _run_cli(tmp_path, f"data.path={SAMPLE_1H}", "cleaning.gaps=raise", "format=markdown")
    assert bad.returncode == 1
    assert "| gaps | error | 1 |" in bad.stdout


def test_cli_config_errors(validate_script, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigCompositionException, match="gapz"):
        _compose(f"data.path={SAMPLE_1H}", "cleaning.gapz=raise")
    assert validate_script.run(_compose(f"data.path={SAMPLE_1H}", "cleaning.gaps=bogus")) == 2
    assert "cleaning.gaps='bogus' is invalid" in capsys.readouterr().err
    assert validate_script.run(_compose("data.path=/nonexistent/bars.parquet")) == 2
    assert "data.path='/nonexistent/bars.parquet' not found" in capsys.readouterr().err


def test_cli_writes_cleaned_bars(validate_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clean.parquet"
    code = validate_script.run(_compose(f"data.path={SAMPLE_1H}", "cleaning.gaps=forward_fill", f"clean_output={out}"))
    assert code == 0
    assert "gaps: forward_fill 1 row(s)" in capsys.readouterr().out
    cleaned = pd.read_parquet(out)
    assert len(cleaned) == 20_184 and int(cleaned["filled"].sum()) == 1


def test_cli_reads_a_store_span(validate_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from envs.data.store import ParquetStore

    ParquetStore(tmp_path / "store").append("binance", "BTC/USDT", "1m", pd.read_parquet(SAMPLE_1M))
    cfg = _compose(
        f"data.store_root={tmp_path / 'store'}",
        "data.symbol=BTC/USDT",
        "data.timeframe=1m",
        "data.start=2024-06-02",
        "data.end=2024-06-03",
    )
    assert validate_script.run(cfg) == 0
    assert capsys.readouterr().out.startswith("1440 rows, 2024-06-02T00:00:00+00:00")
