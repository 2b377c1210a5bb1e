"""Output layout: tools that produce no results leave no folder; evaluate writes its log beside its results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.config import to_run_config
from agents.train import run

REPO = Path(__file__).resolve().parents[2]
SAMPLE_1H = REPO / "data" / "sample" / "btcusdt_1h.parquet"


def _script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_validate_writes_nothing_ok_or_failed(tmp_path: Path) -> None:
    ok = _script("validate", f"data.path={SAMPLE_1H}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = _script("validate", "data.path=missing.parquet", cwd=tmp_path)
    assert bad.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_download_writes_only_the_store(tmp_path: Path) -> None:
    from tests.data.conftest import SAMPLE_END_MS
    from tests.fake_exchange import FakeExchange

    fx = FakeExchange.from_samples(now_ms=SAMPLE_END_MS + 60_000).start()
    try:
        args = ["feed.start=2024-06-01", "feed.end=2024-06-01T03:00", f"feed.api_url={fx.url}", "feed.progress=false",
                "store.root=store"]
        ok = _script("download", *args, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        failed = _script("download", *args[:-1], "feed.symbol=NOPE/USDT", "store.root=store", cwd=tmp_path)
        assert failed.returncode == 1, failed.stderr
    finally:
        fx.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


@pytest.mark.slow
def test_evaluate_writes_its_log_with_its_results_and_nothing_else(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg(["debug=smoke", "features=none", "train.total_timesteps=512",
                                     "train.eval_freq=512"]), base_dir=str(REPO))
    run_dir = tmp_path / "run"
    run(cfg, run_dir, test_report=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = _script("evaluate", f"run_dir={run_dir}", "split=val", "model=final", cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert list(cwd.iterdir()) == []
    results = run_dir / "eval_val"
    assert {"report.md", "metrics.json", "evaluate.log"} <= {p.name for p in results.iterdir()}
    assert (results / "evaluate.log").stat().st_size > 0
    bad = _script("evaluate", f"run_dir={run_dir}", f"data_path={REPO / 'data/sample/btcusdt_1m_2024-06-01_07.parquet'}",
                  "model=final", cwd=cwd)
    assert bad.returncode == 2 and "1m" in bad.stderr
    assert not (run_dir / "eval_btcusdt_1m_2024-06-01_07").exists() and list(cwd.iterdir()) == []
