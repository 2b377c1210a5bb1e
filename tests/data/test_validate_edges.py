"""scripts/validate.py and the run loader on edge inputs: no rows, a folder, an impossible forward fill.
Exit codes: 0 = OK, 1 = a `raise` rule is broken, 2 = could not run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from agents.config import DataConfig
from agents.data import load_frame
from envs import TradingEnv
from envs.data.cleaning import CleaningConfig, clean
from tests.conftest import REPO, SAMPLE_1H

MIN = 60_000
START_2000 = 946_684_800_000


@pytest.fixture(scope="module")
def validate_script():
    spec = importlib.util.spec_from_file_location("validate_script", REPO / "scripts" / "validate.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["validate_script"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _run(script, *overrides: str) -> int:  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return script.run(compose("validate", overrides=list(overrides)))


def _gap_bars(gap_bars: int) -> pd.DataFrame:
    """Ten 1m bars from 2000-01-01, then ten more after ``gap_bars`` missing minutes."""
    ts = np.concatenate([np.arange(10), 10 + gap_bars + np.arange(10)]).astype(np.int64) * MIN + START_2000
    return pd.DataFrame({"timestamp": ts, "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0})


def test_a_file_without_rows_gets_no_verdict(validate_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.parquet"
    pd.read_parquet(SAMPLE_1H).iloc[:0].to_parquet(path)
    assert _run(validate_script, f"data.path={path}") == 2
    out = capsys.readouterr()
    assert "has no rows" in out.err and "verdict" not in out.out


def test_a_folder_is_named_as_a_folder(validate_script, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "unrelated.parquet").write_bytes(b"not parquet")
    assert _run(validate_script, f"data.path={tmp_path}") == 2
    assert "is a folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a folder"):
        load_frame(DataConfig(path=str(tmp_path)))
    with pytest.raises(ValueError, match="is a folder"):
        TradingEnv(str(tmp_path))


def test_an_impossible_forward_fill_is_refused_up_front(validate_script, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """One gap of 5e7 bars: an out-of-memory traceback and exit 1 ("a rule is broken") before."""
    path = tmp_path / "gap.parquet"
    _gap_bars(50_000_000).to_parquet(path)
    for extra in ([], [f"clean_output={tmp_path / 'out.parquet'}"]):
        assert _run(validate_script, f"data.path={path}", "cleaning.gaps=forward_fill", *extra) == 2
        err = capsys.readouterr().err
        assert "would invent 50000000 bars for one gap" in err and "cleaning.max_fill_bars=10000" in err
    assert not (tmp_path / "out.parquet").exists()
    assert _run(validate_script, f"data.path={path}", "cleaning.gaps=raise") == 1  # a broken rule stays 1
    assert _run(validate_script, f"data.path={path}") == 0  # gaps=warn: reported, not an error
    with pytest.raises(ValueError, match="would invent 50000000 bars"):
        clean(_gap_bars(50_000_000), CleaningConfig(gaps="forward_fill"))
    with pytest.raises(ValueError, match="would invent"):
        load_frame(DataConfig(path=str(path), cleaning=CleaningConfig(gaps="forward_fill")))


def test_fills_up_to_the_limit_still_work() -> None:
    out, _ = clean(_gap_bars(30), CleaningConfig(gaps="forward_fill", max_fill_bars=30))
    assert len(out) == 50 and int(out["filled"].sum()) == 30
    with pytest.raises(ValueError, match="max_fill_bars=29"):
        clean(_gap_bars(30), CleaningConfig(gaps="forward_fill", max_fill_bars=29))
    with pytest.raises(ValueError, match="cleaning.max_fill_bars=0 is invalid"):
        CleaningConfig(max_fill_bars=0)
