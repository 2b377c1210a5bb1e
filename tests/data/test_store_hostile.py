"""The store never mixes markets in one series and survives manifests of the wrong shape."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.data.store import ParquetStore, dirname_symbol, symbol_dirname

EX, TF = "binance", "1h"


@pytest.fixture
def bars(bars_1h: pd.DataFrame) -> pd.DataFrame:
    return bars_1h.iloc[:48].reset_index(drop=True)


@pytest.mark.parametrize("symbol", ["BTC-USDT", "BTC:USDT", "BTC/USDT/", "../BTC", "BTC/USDT:USDT:X", "", "..", "BTC/"])
def test_ambiguous_symbols_are_refused_before_anything_is_written(tmp_path: Path, bars: pd.DataFrame,
                                                                  symbol: str) -> None:
    store = ParquetStore(tmp_path)
    for call in (lambda: store.append(EX, symbol, TF, bars), lambda: store.read(EX, symbol, TF),
                 lambda: store.info(EX, symbol, TF)):
        with pytest.raises(ValueError, match="ccxt's unified form"):
            call()
    assert not list(tmp_path.rglob("*"))


def test_spot_and_perpetual_never_share_a_series(tmp_path: Path, bars: pd.DataFrame) -> None:
    """BTC/USDT, BTC-USDT and BTC:USDT used to land in one folder: the second symbol's rows were
    counted as conflicts and the manifest's symbol overwritten."""
    store = ParquetStore(tmp_path)
    perp = bars.assign(close=bars["close"] * 1.001, high=bars["high"] * 1.001)
    assert store.append(EX, "BTC/USDT", TF, bars).rows_added == 48
    assert store.append(EX, "BTC/USDT:USDT", TF, perp).rows_added == 48
    for bad in ("BTC-USDT", "BTC:USDT"):
        with pytest.raises(ValueError):
            store.append(EX, bad, TF, perp)
    pd.testing.assert_frame_equal(store.read(EX, "BTC/USDT", TF), bars)
    pd.testing.assert_frame_equal(store.read(EX, "BTC/USDT:USDT", TF), perp)
    assert [(s.symbol, s.rows) for s in store.series()] == [("BTC/USDT", 48), ("BTC/USDT:USDT", 48)]


_part = st.text("ABCXYZabc019._", min_size=1, max_size=4).filter(lambda s: set(s) != {"."})
symbols = st.one_of(
    _part,
    st.builds(lambda b, q: f"{b}/{q}", _part, _part),
    st.builds(lambda b, q, s: f"{b}/{q}:{s}", _part, _part, _part),
    st.builds(lambda b, q, s, e: f"{b}/{q}:{s}-{e}", _part, _part, _part, st.text("0129C-", min_size=1, max_size=6).filter(lambda s: "--" not in s and not s.endswith("-"))),
)


@given(a=symbols, b=symbols)
@settings(max_examples=200, deadline=None)
def test_symbol_folders_are_injective(a: str, b: str) -> None:
    """Property: accepted symbols map to folders one to one (and the folder gives the symbol back)."""
    assert dirname_symbol(symbol_dirname(a)) == a
    assert (symbol_dirname(a) == symbol_dirname(b)) == (a == b)


WRONG_SHAPES = [[], [1, 2], "text", 3, None, {}, {"partitions": []}, {"exchange": EX, "symbol": "BTC/USDT"},
                {"exchange": EX, "symbol": "BTC/USDT", "timeframe": TF, "rows": "48", "partitions": {},
                 "updated_at": "", "first_timestamp": None, "last_timestamp": None},
                {"exchange": EX, "symbol": "BTC/USDT", "timeframe": TF, "rows": 48, "updated_at": "",
                 "first_timestamp": None, "last_timestamp": None, "partitions": {"2022-01": 48}}]


@pytest.mark.parametrize("content", WRONG_SHAPES, ids=lambda c: json.dumps(c)[:40])
def test_a_manifest_of_the_wrong_shape_is_rebuilt(tmp_path: Path, bars: pd.DataFrame, content: object,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    store = ParquetStore(tmp_path)
    store.append(EX, "BTC/USDT", TF, bars.iloc[:24])
    (tmp_path / EX / "BTC-USDT" / TF / "manifest.json").write_text(json.dumps(content))
    with caplog.at_level(logging.WARNING, logger="envs.data.store"):
        info = store.info(EX, "BTC/USDT", TF)
        assert info is not None and info.rows == 24
        assert [s.rows for s in store.series()] == [24]
        assert store.last_timestamp(EX, "BTC/USDT", TF) == int(bars["timestamp"].iloc[23])
        assert store.append(EX, "BTC/USDT", TF, bars).rows_added == 24
    assert "wrong shape" in caplog.text
    assert store.info(EX, "BTC/USDT", TF).rows == 48  # type: ignore[union-attr]
    assert json.loads((tmp_path / EX / "BTC-USDT" / TF / "manifest.json").read_text())["rows"] == 48
