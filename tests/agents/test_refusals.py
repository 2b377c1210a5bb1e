"""Nonsense inputs are refused with a message that says what is wrong and what to change."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agents.config import to_run_config
from agents.evaluate_run import evaluate_run
from agents.train import run

REPO = Path(__file__).resolve().parents[2]
SAMPLE_1M = REPO / "data" / "sample" / "btcusdt_1m_2024-06-01_07.parquet"
SAMPLE_1H = REPO / "data" / "sample" / "btcusdt_1h.parquet"


def test_training_on_bars_of_another_timeframe_is_refused(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg(["debug=smoke", f"data.path={SAMPLE_1M}"]), base_dir=str(REPO))
    with pytest.raises(ValueError, match=r"bars every 1m but the run is configured for 1h bars .*data.timeframe=1m"):
        run(cfg, tmp_path)


def test_futures_contract_larger_than_the_account_is_refused(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg(["debug=smoke", "env=es_futures", "features=none"]), base_dir=str(REPO))
    with pytest.raises(ValueError, match=r"smallest order, one lot .*contract_multiplier=50.* more than the account "
                                         r"\(env.initial_cash=500,000\).*Raise env.initial_cash above"):
        run(cfg, tmp_path)


def test_a_span_still_in_feature_warm_up_is_refused(compose_cfg, tmp_path: Path) -> None:
    # 400 hourly bars: the train split (280) barely outlasts the 244-bar warm-up of features=hourly
    short = tmp_path / "short.parquet"
    pd.read_parquet(SAMPLE_1H).iloc[:400].to_parquet(short)
    cfg = to_run_config(compose_cfg(["debug=smoke", f"data.path={short}"]), base_dir=str(REPO))
    with pytest.raises(ValueError, match=r"the train split has \d+ bars with a full observation window of valid "
                                         r"features, fewer than one window \(env.window_size=32\)"):
        run(cfg, tmp_path / "run")


@pytest.mark.slow
def test_evaluating_an_hourly_run_on_minute_bars_or_a_warm_up_only_span_is_refused(compose_cfg,
                                                                                  tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg(["debug=smoke", "train.total_timesteps=512", "train.eval_freq=512"]),
                        base_dir=str(REPO))
    run(cfg, tmp_path / "run", test_report=False)
    with pytest.raises(ValueError, match=r"has bars every 1m but the run is configured for 1h bars"):
        evaluate_run(tmp_path / "run", data_path=str(SAMPLE_1M), model="final", base_dir=str(REPO))
    head = tmp_path / "head.parquet"
    pd.read_parquet(SAMPLE_1H).iloc[:150].to_parquet(head)  # shorter than the hourly features' warm-up + window
    with pytest.raises(ValueError, match=r"head.parquet.* fewer than one window .*NaN on every bar"):
        evaluate_run(tmp_path / "run", data_path=str(head), model="final", base_dir=str(REPO))
