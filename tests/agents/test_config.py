"""Config validation through Hydra's compose API: every group composes; bad values stop at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from agents.config import to_run_config
from agents.data import load_splits

REPO = str(Path(__file__).resolve().parents[2])
CONF = Path(REPO) / "conf"


@pytest.mark.parametrize("group", ["data", "env", "agent", "train", "evaluation"])
def test_every_group_option_composes_and_converts(compose_cfg, group: str) -> None:
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        overrides = [f"{group}={option}"]
        if group == "agent" and option in ("sac", "td3"):
            overrides.append("env=spot")  # continuous actions
        run = to_run_config(compose_cfg(overrides), base_dir=REPO)
        assert run.env.window_size >= 1


def test_experiment_and_debug_presets_compose(compose_cfg) -> None:
    run = to_run_config(compose_cfg(["experiment=perp_sac"]), base_dir=REPO)
    assert run.agent.name == "sac" and run.env.max_leverage == 3.0 and run.data.funding_path is not None
    smoke = to_run_config(compose_cfg(["debug=smoke"]), base_dir=REPO)
    assert smoke.train.total_timesteps <= 4096


def test_unknown_key_fails_with_its_name(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["env.taker_fees=0.001"])
    assert "taker_fees" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_with_its_name(compose_cfg) -> None:
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_cfg(["env.window_size=wide"])
    assert "window_size" in str(err.value.__cause__ or err.value)


def test_negative_fee_names_key_and_range(compose_cfg) -> None:
    with pytest.raises(ValueError, match=r"env\.taker_fee=-0\.001 is invalid: must be a fraction in \[0, 0\.1\)"):
        to_run_config(compose_cfg(["env.taker_fee=-0.001"]), base_dir=REPO)


def test_sac_and_td3_on_the_long_flat_default_get_its_continuous_form(compose_cfg) -> None:
    default = to_run_config(compose_cfg([]), base_dir=REPO).env
    assert default.action_mode == "discrete" and default.exposure_levels == (0.0, 1.0)
    for agent in ("sac", "td3"):
        env = to_run_config(compose_cfg([f"agent={agent}"]), base_dir=REPO).env
        assert (env.action_mode, env.long_only, env.max_leverage) == ("continuous", True, 1.0)  # exposure in [0, 1]
        assert env.taker_fee == default.taker_fee and env.rebalance_threshold == default.rebalance_threshold


def test_sac_with_discrete_long_short_levels_is_rejected(compose_cfg) -> None:
    with pytest.raises(ValueError, match="SAC needs a continuous action space"):
        to_run_config(compose_cfg(["agent=sac", "env.long_only=false", "env.exposure_levels=[-1.0,0.0,1.0]"]),
                      base_dir=REPO)


def test_dqn_with_continuous_actions_is_rejected(compose_cfg) -> None:
    with pytest.raises(ValueError, match="DQN needs a discrete action space"):
        to_run_config(compose_cfg(["agent=dqn", "env=spot"]), base_dir=REPO)


def test_window_larger_than_a_split_is_rejected(compose_cfg) -> None:
    run = to_run_config(compose_cfg(["env.window_size=4000"]), base_dir=REPO)
    with pytest.raises(ValueError, match=r"env\.window_size=4000 is larger than the val split"):
        load_splits(run.data, run.env.window_size)


def test_bad_split_and_missing_data_path(compose_cfg) -> None:
    with pytest.raises(ValueError, match=r"data\.split\.val_frac"):
        to_run_config(compose_cfg(["data.split.train_frac=0.9", "data.split.val_frac=0.2"]), base_dir=REPO)
    run = to_run_config(compose_cfg(["data.path=nowhere.parquet"]), base_dir=REPO)
    with pytest.raises(ValueError, match=r"data\.path=.*nowhere\.parquet.* not found"):
        load_splits(run.data, run.env.window_size)


def test_unknown_algo_kwarg_is_named(compose_cfg, tmp_path) -> None:
    from agents.sb3 import build_model
    from envs import VecTradingEnv

    run = to_run_config(compose_cfg(["+agent.algo_kwargs.n_stepz=64"]), base_dir=REPO)
    vec = VecTradingEnv(run.data.path, run.env, n_envs=1, seed=0)
    with pytest.raises(ValueError, match=r"\['n_stepz'\] that PPO does not accept"):
        build_model(run.agent, vec, 0, "cpu", None)


def test_splits_are_chronological_with_embargo(compose_cfg) -> None:
    run = to_run_config(compose_cfg(["data.split.embargo_bars=10"]), base_dir=REPO)
    splits = load_splits(run.data, run.env.window_size)
    b = splits.bounds
    assert b["train"].end + 10 == b["val"].start and b["val"].end + 10 == b["test"].start
    assert b["val"].warmup_start == b["val"].start - (run.env.window_size - 1)
    train, val = splits.get("train"), splits.get("val")
    assert train.timestamp[-1] < val.timestamp[run.env.window_size - 1]


def test_every_load_runs_the_data_checks(compose_cfg, tmp_path) -> None:
    import pandas as pd

    bad = pd.read_parquet(REPO + "/data/sample/btcusdt_1h.parquet").iloc[:500]
    bad = pd.concat([bad, bad.iloc[[100]]]).sort_values("timestamp", kind="stable")  # a duplicated bar
    path = tmp_path / "dup.parquet"
    bad.to_parquet(path)
    run = to_run_config(compose_cfg([f"data.path={path}", "env.window_size=8"]), base_dir=REPO)
    with pytest.raises(ValueError, match="duplicates"):
        load_splits(run.data, run.env.window_size)
    run = to_run_config(compose_cfg([f"data.path={path}", "env.window_size=8", "data.cleaning.duplicates=keep_last"]),
                        base_dir=REPO)
    assert len(load_splits(run.data, run.env.window_size).full) == 500


def test_data_can_come_from_a_store_span(compose_cfg, tmp_path) -> None:
    import pandas as pd

    from envs.data.store import ParquetStore

    bars = pd.read_parquet(REPO + "/data/sample/btcusdt_1h.parquet").iloc[:3000]
    ParquetStore(tmp_path / "store").append("binance", "BTC/USDT", "1h", bars)
    run = to_run_config(compose_cfg([f"data.store_root={tmp_path / 'store'}", "data.start=2022-02-01",
                                     "data.end=2022-03-01", "env.window_size=8"]), base_dir=REPO)
    full = load_splits(run.data, run.env.window_size).full
    assert len(full) == 28 * 24
    assert full.timestamp[0] == pd.Timestamp("2022-02-01", tz="UTC").value // 10**6
