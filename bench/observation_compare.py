"""Today's observation vs the compact one at an equal training budget (issue 14, point 4; results go in the README).

    python bench/observation_compare.py [--budget-seconds 150] [--variants window compact compact_128] [--seed 0]

The main job (conf/config.yaml as ``make train`` runs it: shipped hourly BTC/USDT bars, hourly features, the
LightGBM forecaster's ``fc_*`` columns, env spot_inout, PPO, 8 envs) is trained once per observation variant:

- ``window``: the default before issue 14, every feature of the last 32 bars (``env.observation=window``);
- ``compact``: every feature of the last 8 bars plus per-feature means over 8 and 32 bars (``window_size=32``;
  the main job's default since this comparison);
- ``compact_128``: every feature of the last 8 bars plus means over 32 and 128 bars (``window_size=128``).

Equal wall-clock budget on a shared machine: each variant's PPO ``learn`` rate is first measured in frames
per second of this process's CPU time (`time.process_time`, so other jobs on the machine do not distort it;
torch uses ``train.torch_threads`` threads), then the variant trains for ``budget x rate`` env steps with
`agents.train.run` (validation passes every ``train.eval_freq`` steps select the best model, as in the main
job; they are not counted in the budget). The best model is then evaluated on the validation split with
`agents.evaluation.suite.evaluate_policy` (the run's report: annualised Sharpe with its block-bootstrap CI,
Sharpe minus buy-and-hold's, PSR). The test split is not touched. SAC frames/s (``agent=sac``, the same data,
features and observation; the continuous form of the env) are measured the same way, for the table only.
"minus window" is the paired block-bootstrap CI of the Sharpe difference to the ``window`` variant on the same
validation bars (`agents.evaluation.stats.bootstrap_sharpe_diff_ci`). One seed per variant: the CIs cover the
validation returns, not the spread over training seeds. ``--report-only`` re-evaluates finished runs in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]

#: env overrides of each variant (on top of the main job's env preset)
VARIANTS: dict[str, list[str]] = {
    "window": ["env.observation=window"],
    "compact": ["env.observation=compact", "env.compact_bars=8", "env.summary_windows=[8,32]"],
    "compact_128": ["env.observation=compact", "env.window_size=128", "env.compact_bars=8",
                    "env.summary_windows=[32,128]"],
}


def run_config(overrides: list[str]) -> Any:
    """The main job's validated `RunConfig` with ``overrides`` (Hydra overrides, as on the command line)."""
    from agents.config import register_configs, to_run_config

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["train.progress_bar=false", *overrides])
    return to_run_config(cfg, base_dir=str(REPO))


def frames_per_second(cfg: Any, steps: int) -> tuple[float, int]:
    """(``learn`` frames per CPU second after a warm-up, observation floats) of ``cfg``'s agent on its train split."""
    import torch

    from agents.data import load_splits, prune_features
    from agents.sb3 import build_model
    from agents.train import _make_vec, _wrap
    from envs.market.market_data import FeatureNormalizer

    torch.set_num_threads(cfg.train.torch_threads)
    splits = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
    splits, _ = prune_features(splits, cfg.features)
    train = splits.get("train")
    vec = _make_vec(train, cfg, FeatureNormalizer.fit(train))
    model = build_model(cfg.agent, _wrap(vec, cfg), cfg.train.seed, cfg.train.device, None)
    warm = max(int(cfg.agent.algo_kwargs.get("learning_starts", 0)) + 512,
               int(cfg.agent.algo_kwargs.get("n_steps", 1)) * cfg.train.n_envs)
    model.learn(warm)
    t0 = time.process_time()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.process_time() - t0), vec.sim.obs_dim


def train(cfg: Any, steps: int, out: Path) -> dict[str, Any]:
    """Train ``steps`` env steps with `agents.train.run` into ``out`` (no test report)."""
    from agents.train import run

    cfg = replace(cfg, train=replace(cfg.train, total_timesteps=steps))
    t0, c0 = time.perf_counter(), time.process_time()
    summary = run(cfg, out, test_report=False)
    return {"steps": summary.num_timesteps, "train_wall_s": time.perf_counter() - t0,
            "train_cpu_s": time.process_time() - c0}


def validate(cfg: Any, out: Path) -> tuple[dict[str, Any], np.ndarray, float]:
    """The best model of the run in ``out`` on the validation split (the run's report); its per-bar returns and
    the annualisation factor."""
    from agents.artifacts import sb3_policy
    from agents.data import load_splits, prune_features
    from agents.evaluation.suite import evaluate_policy
    from agents.sb3 import load_model
    from envs import metrics
    from envs.market.market_data import FeatureNormalizer

    splits = load_splits(cfg.data, cfg.env.window_size, cfg.features, cfg.paths.feature_cache_dir, cfg.forecaster)
    splits, _ = prune_features(splits, cfg.features)
    normalizer = FeatureNormalizer.from_dict(json.loads((out / "normalizer.json").read_text()))
    best = load_model(cfg.agent.name, out / "best_model.zip", device=cfg.train.device)
    result = evaluate_policy(sb3_policy(best), splits.get("val"), cfg.env, normalizer, cfg.evaluation,
                             out / "validation_report", cfg.data.calendar, title="best model on the validation split",
                             seed=cfg.train.seed)
    judgement = result.judgement
    summary = {"sharpe_ci": list(judgement.sharpe_ci), "diff_vs_buy_and_hold_ci": list(judgement.diff_ci),
               "psr": judgement.psr, "buy_and_hold_sharpe": float(result.metrics["buy_and_hold"]["sharpe"])}
    agent = result.agent
    ppy = metrics.bars_per_year(agent.timestamps, cfg.data.calendar)
    return summary, np.asarray(agent.returns, dtype=np.float64), ppy


def paired_difference(r_a: np.ndarray, r_b: np.ndarray, ppy: float, cfg: Any, seed: int) -> list[float]:
    """(point, low, high) Sharpe of returns ``r_a`` minus ``r_b`` over the same validation bars (paired blocks)."""
    from agents.evaluation import stats

    ev = cfg.evaluation
    n = min(len(r_a), len(r_b))
    return list(stats.bootstrap_sharpe_diff_ci(r_a[:n], r_b[:n], ppy, ev.n_boot, ev.block_len, ev.alpha,
                                               np.random.default_rng(seed)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-seconds", type=float, default=150.0, help="PPO learn CPU seconds per variant")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--calibrate-steps", type=int, default=8192, help="timed learn steps per rate measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sac", action="store_true", help="skip the SAC frames/s measurement")
    ap.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--report-only", action="store_true",
                    help="re-evaluate the finished runs in --out (observation_compare.json) instead of training")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="qg_obs_compare_"))
    saved = out / "observation_compare.json"
    rows = json.loads(saved.read_text()) if args.report_only else {}
    returns = {}
    for name in args.variants:
        seed = [f"train.seed={args.seed}"]
        ppo_cfg = run_config(VARIANTS[name] + seed)
        if not args.report_only:
            ppo_fps, obs_dim = frames_per_second(ppo_cfg, args.calibrate_steps)
            sac_fps = None if args.no_sac else frames_per_second(
                run_config(VARIANTS[name] + seed + ["agent=sac"]), args.calibrate_steps // 4)[0]
            steps = int(args.budget_seconds * ppo_fps)
            print(f"{name}: {obs_dim} floats, PPO {ppo_fps:,.0f} frames/s -> {steps:,} steps in "
                  f"{args.budget_seconds:g} CPU s" + (f"; SAC {sac_fps:,.0f} frames/s" if sac_fps else ""), flush=True)
            rows[name] = {"obs_dim": obs_dim, "ppo_fps": ppo_fps, "sac_fps": sac_fps, **train(ppo_cfg, steps, out / name)}
        summary, returns[name], ppy = validate(ppo_cfg, out / name)
        rows[name].update(summary)
        print(json.dumps(rows[name]), flush=True)
    if "window" in returns:
        for name in returns:
            if name != "window":
                rows[name]["diff_vs_window_ci"] = paired_difference(returns[name], returns["window"], ppy,
                                                                    run_config([]), args.seed)
    saved.write_text(json.dumps(rows, indent=1))
    print_table(rows, args.budget_seconds, out)


def print_table(rows: dict[str, Any], budget: float, out: Path) -> None:
    """The README's markdown table."""
    print(f"\nbudget {budget:g} s of PPO learn CPU time per variant; runs in {out}\n")
    print("| observation | floats | PPO frames/s | SAC frames/s | PPO steps in budget | validation Sharpe [95% CI] "
          "| minus buy & hold [95% CI] | minus window [95% CI] | PSR |\n|---|---:|---:|---:|---:|---|---|---|---:|")
    for name, r in rows.items():
        s, d = r["sharpe_ci"], r["diff_vs_buy_and_hold_ci"]
        w = r.get("diff_vs_window_ci")
        sac = f"{r['sac_fps']:,.0f}" if r["sac_fps"] else "-"
        vs = f"{w[0]:.2f} [{w[1]:.2f}, {w[2]:.2f}]" if w else "-"
        print(f"| {name} | {r['obs_dim']} | {r['ppo_fps']:,.0f} | {sac} | {r['steps']:,} | {s[0]:.2f} [{s[1]:.2f}, "
              f"{s[2]:.2f}] | {d[0]:.2f} [{d[1]:.2f}, {d[2]:.2f}] | {vs} | {r['psr']:.2f} |")
    print(f"buy & hold validation Sharpe: {next(iter(rows.values()))['buy_and_hold_sharpe']:.2f}")

if __name__ == "__main__":
    main()
