"""Shared fixtures: the real sample data shipped in data/sample/, and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
# Scripts run by tests from a temporary folder reuse the repository's compiled kernels instead of compiling
# them again into <tmp>/.cache (which would also show up as an unexpected folder in output-layout tests).
from envs import numba_cache_dir  # noqa: E402  (after REPO; `import envs` itself writes nothing)

os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir(REPO)))
SAMPLE_1H = REPO / "data" / "sample" / "btcusdt_1h.parquet"
SAMPLE_1M = REPO / "data" / "sample" / "btcusdt_1m_2024-06-01_07.parquet"
SAMPLE_FUNDING = REPO / "data" / "sample" / "btcusdt_perp_funding_8h.parquet"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def sample_1h() -> pd.DataFrame:
    """Real BTC/USDT hourly bars (20k rows) shipped with the repo."""
    return pd.read_parquet(SAMPLE_1H)


@pytest.fixture(scope="session")
def sample_1m() -> pd.DataFrame:
    """Real BTC/USDT minute bars (one week) shipped with the repo."""
    return pd.read_parquet(SAMPLE_1M)


@pytest.fixture(scope="session")
def sample_funding() -> pd.DataFrame:
    """Real BTCUSDT perpetual funding rates (8h) shipped with the repo."""
    return pd.read_parquet(SAMPLE_FUNDING)


def shared_file(name: str) -> Path:
    """A file from ../shared/data, or skip with a reason when the shared folder is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (only developers' machines and CI have ../shared/data)")
    return path
