"""bench/env_speed.py runs its own measurements without the peers' venv and says how to add them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_without_peer_venv_measures_quantgym_and_says_how_to_add_peers(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "bench" / "env_speed.py"), "--bars", "20000",
                          "--single-steps", "5000", "--quick", "--peer-python", str(tmp_path / "no-venv" / "bin" / "python")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| TradingEnv (1 env, all realism on) |" in out.stdout
    for row in ("| SAC learn, main job (8 envs, 996-float obs), SB3 VecMonitor + VecNormalize [frames/s] |",
                "| SAC learn, main job, statistics inside VecTradingEnv [frames/s] |",
                "main job's features, compact observation (314 floats)"):
        assert row in out.stdout
    assert "peers not measured" in out.stdout and "make bench" in out.stdout
