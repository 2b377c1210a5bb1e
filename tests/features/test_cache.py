"""build_features + FeatureCache: columns, dtype, NaN only in warm-up, cache hits skip computation, presets."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import envs.features.pipeline as pipeline
from envs.features.collinearity import vif
from envs.features.pipeline import (
    INDICATOR_COLUMNS,
    FeatureCache,
    FeatureConfig,
    build_features,
    nominal_warmup_bars,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small(sample_1m: pd.DataFrame) -> pd.DataFrame:
    return sample_1m.iloc[:4000].reset_index(drop=True)


def test_build_features_layout_and_warmup(small: pd.DataFrame) -> None:
    out = build_features(small)
    cols = out.attrs["feature_columns"]
    assert list(out.columns[:6]) == ["timestamp", "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(out.iloc[:, :6], small)
    assert all(out[c].dtype == np.float32 for c in cols) and len(cols) == 27
    w = out.attrs["warmup_bars"]
    x = out[cols].to_numpy()
    assert np.isfinite(x[w:]).all() and not np.isfinite(x[w - 1]).all()
    assert w <= nominal_warmup_bars(FeatureConfig())
    no_levels = build_features(small, FeatureConfig(levels=False, fibonacci=False))
    assert no_levels.attrs["warmup_bars"] <= nominal_warmup_bars(FeatureConfig(levels=False, fibonacci=False))


def test_indicator_columns_select_outputs_and_reject_unknown_names(small: pd.DataFrame) -> None:
    full = build_features(small, FeatureConfig(indicator_columns=INDICATOR_COLUMNS, mtf_timeframes=()))
    picked = build_features(small, FeatureConfig(indicator_columns=("adx", "rsi"), mtf_timeframes=()))
    dropped = set(full.attrs["feature_columns"]) - set(picked.attrs["feature_columns"])
    assert dropped == set(INDICATOR_COLUMNS) - {"adx", "rsi"}
    for col in picked.attrs["feature_columns"]:  # selecting columns does not change the others' values
        np.testing.assert_array_equal(picked[col].to_numpy(), full[col].to_numpy())
    with pytest.raises(ValueError, match=r"features.mtf_indicator_columns has \['rsi_14'\]: allowed \['rsi'"):
        FeatureConfig(mtf_indicator_columns=("rsi_14",))


def test_default_preset_has_no_exact_collinearity(sample_1m: pd.DataFrame) -> None:
    """The curated default: no column is a linear combination of the others on real bars (finite VIF)."""
    out = build_features(sample_1m, FeatureConfig())
    v = vif(out.iloc[out.attrs["warmup_bars"] :], out.attrs["feature_columns"])
    assert np.isfinite(v.to_numpy()).all() and v.max() < 100, v.sort_values().tail(3)
    full = build_features(sample_1m, FeatureConfig(indicator_columns=INDICATOR_COLUMNS))
    assert not np.isfinite(vif(full.iloc[full.attrs["warmup_bars"] :], full.attrs["feature_columns"])).all()


def test_none_preset_returns_bars_only(small: pd.DataFrame) -> None:
    out = build_features(small, FeatureConfig.none())
    assert list(out.columns) == list(small.columns) and out.attrs["warmup_bars"] == 0


def test_second_call_hits_the_cache(small: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = pipeline.compute_features
    monkeypatch.setattr(pipeline, "compute_features", lambda df, cfg: calls.append(1) or real(df, cfg))
    cache = FeatureCache(tmp_path / "cache")
    cfg = FeatureConfig(mtf_timeframes=())
    first = build_features(small, cfg, cache)
    second = build_features(small, cfg, cache)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    pd.testing.assert_frame_equal(first, second)
    assert second.attrs["warmup_bars"] == first.attrs["warmup_bars"]
    assert len(list((tmp_path / "cache").glob("features_*.parquet"))) == 1
    # another config or other data -> a miss
    build_features(small, FeatureConfig(mtf_timeframes=(), rsi_window=7), cache)
    changed = small.copy()
    changed.loc[3999, "close"] *= 1.0001
    build_features(changed, cfg, cache)
    assert len(calls) == 3 and (cache.hits, cache.misses) == (1, 3)


@pytest.mark.parametrize("preset", ["default", "none"])
def test_presets_match_the_schema(preset: str) -> None:
    node = OmegaConf.merge(OmegaConf.structured(FeatureConfig), OmegaConf.load(REPO / "conf" / "features" / f"{preset}.yaml"))
    cfg = FeatureConfig.from_mapping(OmegaConf.to_container(node))  # type: ignore[arg-type]
    if preset == "default":
        assert cfg == FeatureConfig()  # the yaml spells out the defaults
    else:
        assert cfg == FeatureConfig.none()
    raw = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "features" / f"{preset}.yaml"))
    assert set(raw) <= {f.name for f in fields(FeatureConfig)}  # type: ignore[arg-type]


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown features key\(s\) \['rsi_windw'\]"):
        FeatureConfig.from_mapping({"rsi_windw": 3})
    with pytest.raises(ValueError, match="features.mtf_families has \\['volume'\\]"):
        FeatureConfig(mtf_families=("volume",))
    with pytest.raises(ValueError, match="timeframe='2x'"):
        FeatureConfig(mtf_timeframes=("2x",))


def test_concurrent_writers_of_one_key_never_collide(tmp_path) -> None:
    """Parallel tuning trials build the same features at once: every save succeeds, the file is whole."""
    import threading

    import numpy as np
    import pandas as pd

    from envs.features.pipeline import FeatureCache

    cache = FeatureCache(tmp_path)
    frame = pd.DataFrame({"a": np.arange(50_000, dtype=np.float32), "b": np.ones(50_000, dtype=np.float32)})
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(5):
                cache.save("same-key", frame)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pd.testing.assert_frame_equal(cache.load("same-key"), frame)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("name", ["binance_ETHUSDT_1m.parquet", "binance_SOLUSDT_1m.parquet"])
def test_default_preset_has_no_exact_collinearity_on_other_assets(name: str) -> None:
    """The curation was done on BTC: check it holds on other real minute series (100k bars)."""
    from tests.conftest import shared_file

    bars = pd.read_parquet(shared_file(name)).iloc[-100_000:].reset_index(drop=True)
    out = build_features(bars[["timestamp", "open", "high", "low", "close", "volume"]], FeatureConfig())
    v = vif(out.iloc[out.attrs["warmup_bars"] :], out.attrs["feature_columns"])
    assert np.isfinite(v.to_numpy()).all() and v.max() < 100, v.sort_values().tail(3)


def _corrupt_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _corrupt_empty(p: Path) -> None:
    p.write_bytes(b"")


def _rewrite(p: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the file's table through ``edit`` but keep the footer it was saved with (what a disk
    fault or a foreign tool leaves: a file that still parses, with the old row count and checksum)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(p)
    meta = table.schema.metadata
    pq.write_table(pa.Table.from_pandas(edit(table.to_pandas()), preserve_index=False).replace_schema_metadata(meta), p)


def _corrupt_flip_bits(p: Path) -> None:
    def flip(df: pd.DataFrame) -> pd.DataFrame:
        col = df.columns[-1]
        vals = df[col].to_numpy().copy()
        raw = vals.view(np.uint32)
        raw[len(raw) // 2] ^= np.uint32(1 << 30)  # one exponent bit: an error of ~1e28 at one row
        return df.assign(**{col: vals})

    _rewrite(p, flip)


def _corrupt_drop_rows(p: Path) -> None:
    _rewrite(p, lambda df: df.iloc[: 2 * len(df) // 3])


def _corrupt_no_checksum(p: Path) -> None:
    pd.read_parquet(p).to_parquet(p, index=False)  # a file of the previous version: nothing to verify


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_empty, _corrupt_flip_bits, _corrupt_drop_rows,
                                     _corrupt_no_checksum], ids=lambda f: f.__name__[9:])
def test_a_damaged_cache_file_is_rebuilt_with_a_warning_never_used(
    small: pd.DataFrame, tmp_path: Path, corrupt, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    cache = FeatureCache(tmp_path)
    cfg = FeatureConfig(mtf_timeframes=())
    fresh = build_features(small, cfg, cache)
    (path,) = tmp_path.glob("features_*.parquet")
    corrupt(path)
    with caplog.at_level("WARNING", logger="envs.features.pipeline"):
        again = build_features(small, cfg, cache)
    pd.testing.assert_frame_equal(again, fresh)
    assert cache.rejected == 1 and (cache.hits, cache.misses) == (0, 2)
    assert f"cache file {path} is unusable" in caplog.text and "rebuilding" in caplog.text
    pd.testing.assert_frame_equal(build_features(small, cfg, cache), fresh)  # the rebuilt file verifies
    assert (cache.hits, cache.rejected) == (1, 1)


def test_random_byte_damage_is_never_used(small: pd.DataFrame, tmp_path: Path) -> None:
    """Whatever byte is damaged, the frame served equals a fresh computation (rebuilt or intact)."""
    cache = FeatureCache(tmp_path)
    cfg = FeatureConfig(mtf_timeframes=())
    fresh = build_features(small, cfg, cache)
    (path,) = tmp_path.glob("features_*.parquet")
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    for pos in rng.integers(4, len(good) - 4, size=12):
        damaged = bytearray(good)
        damaged[pos] ^= 0xFF
        path.write_bytes(bytes(damaged))
        pd.testing.assert_frame_equal(build_features(small, cfg, cache), fresh)
