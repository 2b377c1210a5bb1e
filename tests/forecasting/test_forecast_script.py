"""scripts/forecast.py: typed config (typos fail at start-up) and a real end-to-end run on hourly bars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from agents.forecast_run import register_forecast_configs, to_forecast_run_config
from envs.forecasting.walk_forward import check_provenance

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def _compose(overrides: list[str]):  # noqa: ANN202
    register_forecast_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("forecast", overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "forecaster").glob("*.yaml")))
def test_every_forecaster_option_composes_and_converts(option: str) -> None:
    cfg = to_forecast_run_config(_compose([f"forecaster={option}"]), base_dir=str(REPO))
    assert cfg.forecaster.model == option
    assert cfg.data.path.endswith("btcusdt_1h.parquet")


def test_a_typo_or_a_wrong_type_fails_at_start_up_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose(["forecaster.horizn=2"])
    assert "horizn" in str(err.value.__cause__ or err.value)
    with pytest.raises((ConfigCompositionException, ValidationError)) as err2:
        _compose(["forecaster.refit_every=often"])
    assert "refit_every" in str(err2.value.__cause__ or err2.value)
    with pytest.raises(ValueError, match="forecaster.window"):
        to_forecast_run_config(_compose(["forecaster.window=sliding"]), base_dir=str(REPO))
    with pytest.raises(ValueError, match="forecaster.params"):  # unknown model parameter, caught by the model
        from envs.forecasting.models import ModelContext, make_forecaster

        cfg = to_forecast_run_config(_compose(["forecaster=gbm", "+forecaster.params.n_trees=3"]), base_dir=str(REPO))
        make_forecaster(cfg.forecaster.model, ModelContext("fwd_log_return", 1, ("lag_0",)), cfg.forecaster.params)


@pytest.mark.slow
def test_forecast_script_writes_predictions_metrics_report_plots_and_tensorboard(tmp_path: Path,
                                                                                 sample_1h: pd.DataFrame) -> None:
    bars = tmp_path / "bars.parquet"
    sample_1h.iloc[:1500].to_parquet(bars, index=False)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, str(REPO / "scripts" / "forecast.py"), f"data.path={bars}", "forecaster=gbm",
        "forecaster.targets=[fwd_log_return,direction]", "forecaster.min_train=300", "forecaster.train_window=500",
        "forecaster.refit_every=200", "forecaster.update_every=100", "forecaster.params.n_estimators=20",
        "skill.n_boot=50", f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evidence of skill" in proc.stdout.lower()

    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert list(preds.columns) == ["timestamp", "fc_fwd_log_return", "fc_direction", "y_true", "y_direction",
                                   "model_id", "train_label_end"]
    assert preds["timestamp"].dtype == np.int64 and preds["train_label_end"].dtype == np.int64
    assert preds["y_true"].isna().sum() == 1  # horizon 1: the last label is not known yet
    check_provenance(preds, 3_600_000)

    m = json.loads((run_dir / "forecast_metrics.json").read_text())
    for key in ("target", "horizon", "n_predictions", "ic", "ic_ci", "hit_rate", "mae", "rmse", "baseline",
                "dm_pvalue", "p_value_corrected", "significant", "folds"):
        assert key in m, key
    assert m["target"] == "fwd_log_return" and m["horizon"] == 1 and isinstance(m["significant"], bool)
    assert m["n_predictions"] == len(preds) - 1
    assert "direction/gbm" in m["components"] and "direction/class_prior" in m["components"]
    assert m["components"]["direction/gbm"]["baseline"]["name"] in ("class_prior", "last")

    md = (run_dir / "forecast_report.md").read_text()
    assert "Forecast report" in md and "fwd_log_return/gbm" in md
    for png in ("predicted_vs_realised", "rolling_ic", "feature_importance"):
        assert (run_dir / "plots" / f"{png}.png").stat().st_size > 1000
    assert (run_dir / "forecaster_state" / "direction" / "gbm.txt").exists()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    ic = acc.Scalars("forecast/ic")
    assert len(ic) == len(m["folds"]) and ic[0].step == m["folds"][0]["fold"]
