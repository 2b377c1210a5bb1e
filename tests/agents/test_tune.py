"""Ray Tune search: space syntax and start-up checks (fast), tiny real experiments (slow: real Ray, real SB3).

The slow tests share one local Ray (2 CPUs) where they run in-process; the interruption test and the
cluster test run `scripts/tune.py` in subprocesses (the cluster test starts and stops its own
two-process Ray cluster on 127.0.0.1).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from agents.tune import (
    ATTEMPTS_LOG,
    Experiment,
    parse_space,
    prepare_experiment,
    quantgym_trial,
    register_tune_configs,
    run_experiment,
    to_tune_space,
    trial_config,
    trial_index_of,
)

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
register_tune_configs()


def _plain(cfg: Any) -> dict[str, Any]:
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    return {str(k): v for k, v in raw.items()}


def _experiment(compose_cfg: Callable[..., Any], tmp_path: Path, overrides: list[str],
                space: dict[str, Any] | None = None) -> Experiment:
    raw = _plain(compose_cfg(["tune=smoke", f"tune.storage_path={tmp_path}", *overrides], config_name="tune"))
    if space is not None:
        raw["tune"]["space"] = space
    return prepare_experiment(raw, str(REPO), str(tmp_path))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _attempts(trial_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (trial_dir / ATTEMPTS_LOG).read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# fast: syntax and start-up validation


def test_space_entries_become_tune_domains_and_named_values_resolve() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    specs = parse_space({
        "agent.algo_kwargs.learning_rate": {"dist": "loguniform", "low": 1e-5, "high": 1e-3},
        "agent.algo_kwargs.n_steps": {"dist": "choice", "values": [128, 256]},
        "agent.algo_kwargs.gamma": {"dist": "quniform", "low": 0.9, "high": 0.99, "q": 0.01},
        "env.window_size": {"dist": "randint", "low": 8, "high": 64},
        "agent.policy_kwargs.net_arch": {"dist": "choice", "values": {"small": [64, 64], "large": [256, 256]}},
    })
    space = to_tune_space(specs)
    assert isinstance(space["agent.algo_kwargs.learning_rate"], Float)
    assert isinstance(space["env.window_size"], Integer)
    assert isinstance(space["agent.policy_kwargs.net_arch"], Categorical)
    assert space["agent.policy_kwargs.net_arch"].categories == ["small", "large"]
    assert specs[-1].resolve("large") == [256, 256]


def test_shorthand_strings_equal_the_mapping_form() -> None:
    short = parse_space({"a.lr": "loguniform(1e-5, 1e-3)", "a.n": "choice([256, 512, 1024])",
                         "a.g": "quniform(0.9, 0.99, 0.01)", "a.arch": "choice({'small': [64], 'big': [256]})"})
    long = parse_space({"a.lr": {"dist": "loguniform", "low": 1e-5, "high": 1e-3},
                        "a.n": {"dist": "choice", "values": [256, 512, 1024]},
                        "a.g": {"dist": "quniform", "low": 0.9, "high": 0.99, "q": 0.01},
                        "a.arch": {"dist": "choice", "values": {"small": [64], "big": [256]}}})
    assert short == long
    with pytest.raises(ValueError, match=r"tune\.space\.a\.lr.*low, high"):
        parse_space({"a.lr": "loguniform(1e-5)"})
    with pytest.raises(ValueError, match=r"tune\.space\.a\.lr"):
        parse_space({"a.lr": "1e-4"})


def test_agent_level_keys_hint_at_algo_kwargs(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"agent\.learning_rate.*did you mean agent\.algo_kwargs\.learning_rate"):
        _experiment(compose_cfg, tmp_path, [], {"agent.learning_rate": "loguniform(1e-5, 1e-3)"})


@pytest.mark.parametrize("entry, message", [
    ({"dist": "loguniform", "low": 0.0, "high": 1.0}, "low > 0"),
    ({"dist": "uniform", "low": 2.0, "high": 1.0}, "low < high"),
    ({"dist": "gaussian", "low": 0.0, "high": 1.0}, "unknown dist"),
    ({"dist": "choice", "values": []}, "non-empty"),
    ({"dist": "choice", "values": [[64, 64], [128]]}, "named values"),
    ({"low": 0.0}, "'dist'"),
])
def test_malformed_space_entries_fail_naming_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_space({"agent.algo_kwargs.learning_rate": entry})
    assert "tune.space.agent.algo_kwargs.learning_rate" in str(err.value)


@pytest.mark.parametrize("key", ["env.windw_size", "agent.algo_kwargs.learning_rat", "train.not_a_key",
                                 "agent.policy_kwargs.net_arc"])
def test_keys_missing_from_the_base_config_fail_at_startup_with_their_name(compose_cfg, tmp_path: Path,
                                                                             key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _experiment(compose_cfg, tmp_path, [], {key: {"dist": "choice", "values": [16, 32]}})


def test_constructor_keywords_absent_from_the_yaml_are_accepted(compose_cfg, tmp_path: Path) -> None:
    exp = _experiment(compose_cfg, tmp_path, [], {
        "agent.algo_kwargs.vf_coef": {"dist": "uniform", "low": 0.3, "high": 0.7},  # a PPO keyword, not in ppo.yaml
        "agent.policy_kwargs.ortho_init": {"dist": "choice", "values": [True, False]},
    })
    assert [s.key for s in exp.specs] == ["agent.algo_kwargs.vf_coef", "agent.policy_kwargs.ortho_init"]


def test_invalid_candidate_values_fail_at_startup(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tune\.space\.env\.reward.*'sharpe_ratio'"):
        _experiment(compose_cfg, tmp_path, [], {"env.reward": {"dist": "choice", "values": ["log_return",
                                                                                           "sharpe_ratio"]}})
    with pytest.raises(ValueError, match="tune.metric='sharp'"):
        _experiment(compose_cfg, tmp_path, ["tune.metric=sharp"])
    with pytest.raises(ValueError, match="tune.searcher"):
        _experiment(compose_cfg, tmp_path, [], {"env.window_size": {"dist": "grid", "values": [16, 32]}})


@pytest.mark.parametrize("preset", ["smoke", "ppo", "sac"])
def test_every_preset_composes_and_validates(compose_cfg, tmp_path: Path, preset: str) -> None:
    raw = _plain(compose_cfg([f"tune={preset}", f"tune.storage_path={tmp_path}"], config_name="tune"))
    exp = prepare_experiment(raw, str(REPO), str(tmp_path))
    assert exp.settings.scheduler == "asha" and exp.settings.searcher == "optuna"
    assert exp.settings.metric == "sharpe" and exp.specs
    assert Path(exp.base["data"]["path"]).is_absolute()
    if preset == "sac":
        assert exp.base["agent"]["name"] == "sac"
    if preset == "smoke":
        assert exp.base["train"]["total_timesteps"] <= 2048 and exp.settings.num_samples <= 4


def test_trial_config_applies_samples_and_derives_the_seed(compose_cfg, tmp_path: Path) -> None:
    exp = _experiment(compose_cfg, tmp_path, ["train.seed=7"], {
        "env.window_size": {"dist": "choice", "values": [16, 32]},
        "agent.policy_kwargs.net_arch": {"dist": "choice", "values": {"tiny": [8], "small": [64, 64]}},
    })
    raw = trial_config(exp.base, exp.specs, {"env.window_size": 16, "agent.policy_kwargs.net_arch": "tiny"},
                       trial_index_of("83f63_00003"))
    assert raw["env"]["window_size"] == 16 and raw["agent"]["policy_kwargs"]["net_arch"] == [8]
    assert raw["train"]["seed"] == 10 and "tune" not in raw
    assert trial_index_of("a750d092") == trial_index_of("a750d092") != trial_index_of("b56ea13f")


def _spec(exp: Experiment, key: str) -> Any:
    return next(s for s in exp.specs if s.key == key)


def test_one_command_line_override_narrows_replaces_adds_or_drops_a_searched_key(compose_cfg,
                                                                                 tmp_path: Path) -> None:
    lr = "agent.algo_kwargs.learning_rate"
    preset = _experiment(compose_cfg, tmp_path, [])
    assert (_spec(preset, lr).low, _spec(preset, lr).high) == (1e-5, 1e-3)

    narrowed = _experiment(compose_cfg, tmp_path, [f"tune.space.{lr}.high=1e-4"])
    assert (_spec(narrowed, lr).dist, _spec(narrowed, lr).low, _spec(narrowed, lr).high) == ("loguniform", 1e-5, 1e-4)
    # the override as Hydra receives it from the shell: "tune.space.<key>='dist(args)'"
    replaced = _experiment(compose_cfg, tmp_path, [f"tune.space.{lr}='uniform(1e-4,2e-4)'",
                                                   "tune.space.env.reward='choice([\"log_return\"])'"])
    assert (_spec(replaced, lr).dist, _spec(replaced, lr).low, _spec(replaced, lr).high) == ("uniform", 1e-4, 2e-4)
    assert _spec(replaced, "env.reward").values == ("log_return",)
    assert [s.key for s in replaced.specs] == [s.key for s in preset.specs]  # the other keys are untouched

    changed = _experiment(compose_cfg, tmp_path, ["+tune.space.agent.algo_kwargs.vf_coef='uniform(0.3,0.7)'",
                                                  "~tune.space.env.reward"])
    keys = [s.key for s in changed.specs]
    assert "agent.algo_kwargs.vf_coef" in keys and "env.reward" not in keys


@pytest.mark.parametrize("override, message", [
    ("+tune.space.agent.learning_rate='loguniform(1e-5,1e-3)'", r"did you mean agent\.algo_kwargs\.learning_rate"),
    ("tune.space.agent.algo_kwargs.learning_rate='gaussian(0,1)'", "unknown dist"),
    ("tune.space.agent.algo_kwargs.learning_rate.low=0", "low > 0"),
    ("tune.space.agent.algo_kwargs.learning_rate.high=1e-6", "low < high"),
    ("tune.space.env.window_size='choice([16, 0])'", r"candidate value 0 is invalid"),
    ("tune.space.env.window_size.values=[16,32.5]", r"tune\.space\.env\.window_size"),
])
def test_command_line_space_overrides_are_validated_like_the_yaml_form(compose_cfg, tmp_path: Path, override: str,
                                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _experiment(compose_cfg, tmp_path, [override])


def test_a_bad_space_override_stops_scripts_tune_before_ray_starts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tune.py"), "tune=smoke",
         "tune.space.agent.algo_kwargs.learning_rate='loguniform(0,1e-3)'", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "tune.space.agent.algo_kwargs.learning_rate" in proc.stderr and "low > 0" in proc.stderr, proc.stderr
    assert "ray" not in proc.stdout.lower()


def test_dotted_and_nested_space_entries_mix_but_a_key_given_twice_fails() -> None:
    entry = {"dist": "choice", "values": [16]}
    assert parse_space({"env": {"window_size": entry}}) == parse_space({"env.window_size": entry})
    with pytest.raises(ValueError, match=r"env\.window_size is given twice"):
        parse_space({"env.window_size": entry, "env": {"window_size": entry}})


def test_resume_without_a_saved_experiment_fails_with_the_fix(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tune.storage_path"):
        _experiment(compose_cfg, tmp_path, ["tune.resume=true"])


# ---------------------------------------------------------------------------------------------
# slow: real experiments


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard) for the in-process experiments of this module."""
    import numba
    import ray

    import envs  # noqa: F401 - sets numba's cache folder, which the workers share (as scripts/tune.py does)

    temp_dir = tempfile.mkdtemp(prefix="qgt", dir="/tmp")  # Ray's session files, removed at the end
    os.environ.setdefault("NUMBA_CACHE_DIR", str(numba.config.CACHE_DIR))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             _temp_dir=temp_dir)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_tiny_asha_experiment_writes_results_and_its_best_config_trains(local_ray, compose_cfg,
                                                                         tmp_path: Path) -> None:
    exp = _experiment(compose_cfg, tmp_path / "store", ["tune.verbose=0"])
    assert exp.settings.num_samples == 4 and exp.settings.scheduler == "asha"
    summary = run_experiment(exp)
    exp_dir = exp.settings.experiment_dir
    assert not summary.interrupted and summary.n_trials == 4

    rows = _rows(exp_dir / "results.csv")
    assert len(rows) == 4
    for spec in exp.specs:
        assert spec.key in rows[0]
    sharpes = [float(r["sharpe"]) for r in rows if r["sharpe"]]
    assert sharpes == sorted(sharpes, reverse=True) and len(sharpes) == 4
    assert all(r["status"] in ("completed", "stopped early") for r in rows)
    for r in rows:  # completed trials end by themselves (final files); ASHA kills the others mid-run
        assert (Path(r["run_dir"]) / "final_model.zip").exists() == (r["status"] == "completed"), r
    assert "| rank | trial |" in (exp_dir / "results.md").read_text()
    # TensorBoard of every trial under the experiment dir, Tune checkpoints, one attempt each
    trial_dirs = sorted(exp_dir.glob("trial_*"))
    assert len(trial_dirs) == 4
    for d in trial_dirs:
        assert list((d / "run" / "tb" / "run_1").glob("events.out.tfevents.*")), d
        assert list(d.glob("checkpoint_*")), d
        assert len(_attempts(d)) == 1
    # the winner on the test split beside its validation score, with the deflated Sharpe
    best = summary.best
    assert best is not None and best.trial_id == rows[0]["trial_id"]
    assert best.validation.sharpe == pytest.approx(float(rows[0]["sharpe"]))
    assert best.test.sharpe is not None and best.deflated_sharpe is not None and 0.0 <= best.deflated_sharpe <= 1.0
    assert best.n_trials_for_dsr == 4
    assert (exp_dir / "best_test" / "report.md").exists()
    summary_md = (exp_dir / "summary.md").read_text()
    assert "Deflated Sharpe ratio over 4 trials" in summary_md and "validation" in summary_md
    for png in ("metric_by_trial.png", "hyperparameter_influence.png"):
        assert (exp_dir / png).read_bytes()[:8] == PNG

    # best_config.yaml is a complete primary config for scripts/train.py, used as is
    retrain = tmp_path / "retrain"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(exp_dir), "--config-name",
         "best_config", f"hydra.run.dir={retrain}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((retrain / "metrics.json").read_text())
    assert "verdict" in metrics["judgement"]
    saved = OmegaConf.load(retrain / ".hydra" / "config.yaml")
    for spec in exp.specs:
        assert OmegaConf.select(saved, spec.key) == OmegaConf.select(OmegaConf.load(exp_dir / "best_config.yaml"),
                                                                     spec.key)


@pytest.mark.slow
def test_a_crashing_trial_is_retried_and_does_not_stop_the_others(local_ray, compose_cfg, tmp_path: Path) -> None:
    # PPO rejects batch_size=1 in its constructor: one grid point crashes on every attempt
    exp = _experiment(compose_cfg, tmp_path, ["tune.searcher=random", "tune.scheduler=fifo", "tune.num_samples=1",
                                              "tune.max_failures=1", "train.total_timesteps=512", "tune.verbose=0"],
                      {"agent.algo_kwargs.batch_size": {"dist": "grid", "values": [64, 1]}})
    summary = run_experiment(exp)
    rows = {r["agent.algo_kwargs.batch_size"]: r for r in _rows(exp.settings.experiment_dir / "results.csv")}
    assert set(rows) == {"64", "1"}
    assert rows["64"]["status"] == "completed" and rows["1"]["status"] == "error"
    assert "batch_size" in rows["1"]["error"]
    assert summary.best is not None and summary.best.hyperparameters["agent.algo_kwargs.batch_size"] == 64
    failed_dir = exp.settings.experiment_dir / f"trial_{rows['1']['trial_id']}"
    assert len(_attempts(failed_dir)) == 2  # first run + max_failures=1 retry


FAIL_AT_STEP = 512


def _fails_once_midway(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """`quantgym_trial` whose first attempt raises right after its first report at >= FAIL_AT_STEP steps.

    Runs in a Ray worker: it wraps Ray's ``tune.report`` there (the test side injects the fault; the
    production trainable has no hook for it).
    """
    from ray import tune

    first_attempt = tune.get_checkpoint() is None
    real_report = tune.report

    def report(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        real_report(metrics, *args, **kwargs)
        if first_attempt and metrics["timesteps"] >= FAIL_AT_STEP:
            raise RuntimeError(f"injected failure at {metrics['timesteps']} steps")

    tune.report = report
    try:
        quantgym_trial(config, setup)
    finally:
        tune.report = real_report


@pytest.mark.slow
def test_a_trial_failing_midway_is_retried_from_its_tune_checkpoint(local_ray, compose_cfg, tmp_path: Path) -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    exp = _experiment(compose_cfg, tmp_path, ["tune.searcher=random", "tune.scheduler=fifo", "tune.num_samples=1",
                                              "tune.max_failures=1", "tune.verbose=0",
                                              "train.keep_checkpoints=100"],  # keep the evidence below
                      {"env.window_size": {"dist": "choice", "values": [16]}})
    run_experiment(exp, trainable=_fails_once_midway)
    (row,) = _rows(exp.settings.experiment_dir / "results.csv")
    assert row["status"] == "completed" and float(row["timesteps"]) >= 1024  # rollouts may overshoot
    trial_dir = exp.settings.experiment_dir / f"trial_{row['trial_id']}"
    first, retry = _attempts(trial_dir)
    assert first["resume"] is False and first["checkpoint"] is None
    assert retry["resume"] is True and retry["checkpoint"].startswith("checkpoint_")
    history = json.loads((trial_dir / "run" / "eval_history.json").read_text())
    assert history[-1]["timesteps"] >= 1024
    ckpts = sorted(int(p.stem.split("_")[1]) for p in (trial_dir / "run" / "checkpoints").glob("model_*_steps.zip"))
    assert ckpts[0] <= 512 < ckpts[-1]  # training continued from the restored SB3 checkpoint


@pytest.mark.slow
def test_tune_leaves_no_ray_files_in_temp_prints_one_tensorboard_hint_and_a_working_retrain(tmp_path: Path) -> None:
    system_tmp = Path(tempfile.mkdtemp(prefix="qgt", dir="/tmp"))  # short: Ray's socket paths have a length limit
    env = {**os.environ, "TMPDIR": str(system_tmp), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_TMPDIR", None)
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "tune.py"), "tune=smoke", "tune.searcher=random",
             "tune.scheduler=fifo", "tune.num_samples=1", "train.total_timesteps=256", "tune.verbose=1",
             f"tune.storage_path={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        leftovers = sorted(str(p.relative_to(system_tmp)) for p in system_tmp.rglob("*")
                           if "ray" in p.name or p.name.startswith("session_"))
        assert leftovers == [], leftovers
    finally:
        shutil.rmtree(system_tmp, ignore_errors=True)
    out = proc.stdout + proc.stderr
    hints = [line for line in out.splitlines() if "tensorboard --logdir" in line]
    assert len(hints) == 1 and str(tmp_path / "smoke") in hints[0], hints

    # the printed "Retrain:" command works as printed, from another folder
    (retrain,) = [line.removeprefix("Retrain:").strip() for line in proc.stdout.splitlines()
                  if line.startswith("Retrain:")]
    fresh = tmp_path / "fresh_shell"
    fresh.mkdir()
    run = subprocess.run([*shlex.split(retrain), f"hydra.run.dir={fresh / 'run'}"], cwd=fresh,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (fresh / "run" / "final_model.zip").exists()


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the tune script ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _started_trials(exp_dir: Path) -> list[Path]:
    return [p.parent for p in exp_dir.glob(f"trial_*/{ATTEMPTS_LOG}")]


def _first_trial_done(exp_dir: Path) -> bool:
    """With one trial at a time, a second trial starts only after Tune marked the first one finished."""
    started = _started_trials(exp_dir)
    return len(started) >= 2 and any((d / "run" / "final_model.zip").exists() for d in started)


@pytest.mark.slow
def test_interrupted_experiment_resumes_without_repeating_finished_trials(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    script = str(REPO / "scripts" / "tune.py")
    exp_dir = tmp_path / "smoke"
    cmd = [sys.executable, script, "tune=smoke", "tune.scheduler=fifo", "tune.num_samples=3",
           "tune.max_concurrent_trials=1", "train.total_timesteps=512", f"tune.storage_path={tmp_path}",
           f"hydra.run.dir={tmp_path / 'first'}"]
    log = (tmp_path / "first.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _first_trial_done(exp_dir), proc, 240, "the first trial to finish")
        finished = [d for d in _started_trials(exp_dir) if (d / "run" / "final_model.zip").exists()][:1]
        before = {d.name: ((d / "progress.csv").read_text(), (d / "run" / "final_model.zip").stat().st_mtime_ns)
                  for d in finished}
        proc.send_signal(signal.SIGINT)  # Ctrl+C: Tune saves its state and stops
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    out = (tmp_path / "first.log").read_text(errors="replace")
    assert "Interrupted" in out, out[-3000:]
    assert not (exp_dir / "results.csv").exists()  # interrupted: no summary yet

    resume = subprocess.run([sys.executable, script, "tune.resume=true", f"tune.storage_path={tmp_path}",
                             "tune.experiment_name=smoke", f"hydra.run.dir={tmp_path / 'second'}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-3000:]
    rows = _rows(exp_dir / "results.csv")
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    assert all(r["status"] == "completed" and float(r["timesteps"]) == 512 for r in rows)
    assert len(list(exp_dir.glob("trial_*"))) == 3
    for name, (progress, mtime) in before.items():  # finished trials were not run again
        d = exp_dir / name
        assert (d / "progress.csv").read_text() == progress
        assert (d / "run" / "final_model.zip").stat().st_mtime_ns == mtime
        assert len(_attempts(d)) == 1
    assert (exp_dir / "best_config.yaml").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop every process of the session a `ray start` of ours created (and nothing else)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2.0)


@pytest.mark.slow
def test_two_process_local_cluster_runs_a_tiny_experiment_through_ray_address(tmp_path: Path) -> None:
    ray_bin = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    temp_dir = tempfile.mkdtemp(prefix="qgray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head_cmd = [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                f"--dashboard-port={_free_port()}", f"--ray-client-server-port={_free_port()}",
                f"--dashboard-agent-listen-port={_free_port()}", "--node-ip-address=127.0.0.1",
                f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    worker_cmd = [ray_bin, "start", f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                  f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in (head_cmd, worker_cmd):
            # a new session per `ray start`: its daemons share that process group, which the finally stops
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            started.append(p)
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out.decode(errors="replace")[-3000:]
        run = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "tune.py"), "tune=smoke", f"tune.ray_address={address}",
             "tune.num_samples=2", "tune.max_concurrent_trials=2", "train.total_timesteps=512",
             f"tune.storage_path={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        rows = _rows(tmp_path / "smoke" / "results.csv")
        assert len(rows) == 2 and all(r["sharpe"] for r in rows)
        assert (tmp_path / "smoke" / "best_config.yaml").exists()
        assert "Best trial" in run.stdout
    finally:
        for p in reversed(started):
            _stop_group(p)
        shutil.rmtree(temp_dir, ignore_errors=True)
