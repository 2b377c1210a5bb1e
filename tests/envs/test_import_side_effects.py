"""``import envs`` reads and writes nothing; caches go under the working directory, never into the package."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def read_only_copy(tmp_path: Path):
    """A read-only copy of the envs package in ``tmp/pkg`` (as in a site-packages install), an empty
    working directory ``tmp/cwd`` and an empty ``HOME``; made writable again afterwards for cleanup."""
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "envs", pkg / "envs", ignore=shutil.ignore_patterns("__pycache__"))
    for d in ("cwd", "home"):
        (tmp_path / d).mkdir()
    paths = [pkg, *pkg.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield tmp_path
    for p in paths:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _run(root: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(root / "pkg"), HOME=str(root / "home"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=root / "cwd", env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_import_envs_writes_nothing_anywhere(read_only_copy: Path) -> None:
    before = _files(read_only_copy)
    out = _run(read_only_copy, "import sys, envs; print(sorted(m for m in sys.modules if m.startswith('envs')))")
    assert out.strip() == "['envs']"  # no kernel declared, no source read beyond envs/__init__.py
    assert _files(read_only_copy) == before


def test_using_envs_from_a_read_only_install_writes_only_the_numba_cache_under_the_working_dir(
        read_only_copy: Path) -> None:
    before = _files(read_only_copy)
    out = _run(read_only_copy, "import numba\nfrom envs import TradingEnv, EnvConfig\nimport envs.features.pipeline\n"
                               "print(numba.config.CACHE_DIR)")
    cache = Path(out.strip())
    assert cache.parent == read_only_copy / "cwd" / ".cache" / "numba"
    new = _files(read_only_copy) - before
    numba_dir = os.path.join("cwd", ".cache", "numba")
    assert new - {os.path.join("cwd", ".cache"), numba_dir} and all(
        f.startswith(numba_dir) or f == os.path.join("cwd", ".cache") for f in new), sorted(new)


def test_numba_cache_folder_changes_with_any_source_edit(tmp_path: Path) -> None:
    import envs

    pkg = tmp_path / "envs"
    shutil.copytree(REPO / "envs", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import envs; "
            "print(envs.numba_cache_dir(Path('/c')))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def stamp() -> str:
        return subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    first = stamp()
    assert first == stamp() and first.startswith("/c/.cache/numba/")
    (pkg / "sim" / "rewards.py").write_text((pkg / "sim" / "rewards.py").read_text() + "\n# edited\n")
    assert stamp() != first
    assert envs.numba_cache_dir(Path("/c")).parent == Path("/c/.cache/numba")
