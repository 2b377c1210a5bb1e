"""Secrets: a testnet session run through scripts/paper.py with recognisable fake keys in the environment
writes neither the key nor the secret into any file (ledger, logs, Hydra's config copies, the store,
TensorBoard), nor to its console, while the fake exchange proves the keys were used (signed requests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agents.paper.ledger import read_table
from tests.agents.paper.conftest import REPO
from tests.agents.paper.live.conftest import HOUR, T0, iso
from tests.fake_exchange import FakeExchange

KEY = "QGFAKEKEY-3f9a1c7e5b2d4068"
SECRET = "QGFAKESECRET-8e4b0d2c6a1f3957"


def _run(cmd: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_no_secret_in_any_file_the_testnet_session_wrote(tiny_run: Path, hourly: pd.DataFrame, tmp_path: Path) -> None:
    fx = FakeExchange(hourly, now_ms=T0 + 118 * HOUR + HOUR // 2, timeframe="1h").start()
    fx.enable_trading(KEY, SECRET)
    paper_dir = tmp_path / "paper"
    env = {**os.environ, "QUANTGYM_API_KEY": KEY, "QUANTGYM_API_SECRET": SECRET,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    base = [sys.executable, str(REPO / "scripts" / "paper.py"), f"run_dir={tiny_run}", "paper_feed=binance_spot",
            f"feed.api_url={fx.url}", "broker=testnet", f"broker.api_url={fx.sandbox_url}", f"paper.dir={paper_dir}",
            "paper.tail_bars=64", "feed.max_retries=1", "feed.rate_limit_ms=2", "broker.rate_limit_ms=2"]
    try:
        console = _run([*base, f"feed.end={iso(T0 + 118 * HOUR)}"], env)  # decides bar 117, sends its order
        fx.now_ms = T0 + 119 * HOUR + HOUR // 2
        console += _run([*base, f"feed.end={iso(T0 + 119 * HOUR)}"], env)  # resumes: settles 117, decides 118
    finally:
        fx.stop()
    signed = [r for r in fx.requests if r.signed]
    assert signed and all(r.sandbox and r.status in (200, 400) for r in signed)  # the keys were used
    assert [r.method for r in signed].count("POST") >= 1, "the session must have sent an order"
    # the restart through scripts/paper.py: each closed bar decided once, the first order settled once
    assert read_table(paper_dir, "decisions").bar_ts.tolist() == [T0 + 117 * HOUR, T0 + 118 * HOUR]
    assert len(read_table(paper_dir, "steps")) == 1 and len(read_table(paper_dir, "exchange_orders")) == 2
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.relative_to(paper_dir).as_posix() for p in files if paper_dir in p.parents}
    assert {"ledger.sqlite", "paper.log", ".hydra/config.yaml", ".hydra/overrides.yaml"} <= names
    assert any(n.startswith("store/") for n in names)
    for secret in (KEY, SECRET):
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret[:10]}... leaked into {path}"
        assert secret not in console
