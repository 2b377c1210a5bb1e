"""Walk-forward mode: folds never test on what they trained on; a tiny real 2-fold run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.config import SplitConfig, to_run_config
from agents.walk_forward import run_walk_forward, walk_forward_bounds

REPO = Path(__file__).resolve().parents[2]


def test_fold_bounds_are_chronological_and_tests_are_unseen() -> None:
    folds = walk_forward_bounds(10_000, 4, SplitConfig(train_frac=0.7, val_frac=0.15, embargo_bars=5), 32)
    assert len(folds) == 4
    prev_test_end = None
    for k, f in enumerate(folds):
        assert f["train"].end + 5 <= f["val"].start and f["val"].end + 5 <= f["test"].start
        if prev_test_end is not None:
            assert f["test"].start >= prev_test_end  # test spans are consecutive, never reused
        prev_test_end = f["test"].end
        if k:
            assert f["train"].start >= folds[k - 1]["test"].start - 5 - 1  # rolling window
    assert folds[-1]["test"].end == 10_000
    with pytest.raises(ValueError, match="walk_forward_folds"):
        walk_forward_bounds(10_000, 1, SplitConfig(), 32)
    with pytest.raises(ValueError, match="fewer folds"):
        walk_forward_bounds(300, 10, SplitConfig(), 32)


@pytest.mark.slow
def test_two_fold_walk_forward_writes_per_fold_and_aggregate(compose_cfg, tmp_path: Path) -> None:
    cfg = to_run_config(compose_cfg(["debug=smoke", "train.total_timesteps=512", "train.eval_freq=512",
                                     "evaluation.walk_forward_folds=2", "features=none", "env.window_size=8"]),
                        base_dir=str(REPO))
    out = run_walk_forward(cfg, tmp_path)
    assert len(out.folds) == 2 and out.report == tmp_path / "walk_forward.md"
    assert (tmp_path / "fold_0" / "report.md").exists() and (tmp_path / "fold_1" / "report.md").exists()
    saved = json.loads((tmp_path / "walk_forward.json").read_text())
    assert saved["aggregate"]["sharpe"]["mean"] is not None and "verdict" in saved["judgement"]
    md = (tmp_path / "walk_forward.md").read_text()
    assert "| metric | fold 0 | fold 1 | mean | std |" in md and "all test spans together" in md
    assert [f["fold"] for f in saved["folds"]] == [0, 1] and saved["policies"]["mean"]["sharpe"] is not None
