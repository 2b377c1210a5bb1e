"""Tests of envs/metrics.py: hand-computed cases, empyrical on real BTC returns, properties."""

from __future__ import annotations

import math
from pathlib import Path

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envs import metrics as m

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "btcusdt_1h.parquet"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return pd.read_parquet(SAMPLE)


# ------------------------------------------------------------------------------------------------
# bars_per_year
# ------------------------------------------------------------------------------------------------
def test_bars_per_year_hourly_crypto_is_8766(btc: pd.DataFrame) -> None:
    # 365.25 days * 24 bars
    assert m.bars_per_year(btc["timestamp"].to_numpy()) == pytest.approx(8766.0, abs=1e-9)


def test_bars_per_year_daily_session_bars_is_252() -> None:
    days = pd.bdate_range("2023-01-02", "2023-12-29")  # weekdays only: 3-day gaps over weekends
    ts = (days.as_unit("ms").asi8).astype(np.int64)
    assert m.bars_per_year(ts, calendar="sessions") == 252.0
    # 24/7 reading of the same bars would be 365.25 (median spacing 1 day): the calendars differ
    assert m.bars_per_year(ts, calendar="24/7") == pytest.approx(365.25)


def test_bars_per_year_intraday_sessions() -> None:
    # 7 hourly bars (14:00..20:00 UTC) per weekday -> 7 * 252
    days = pd.bdate_range("2023-01-02", periods=30).as_unit("ms").asi8
    ts = np.sort(np.concatenate([days + (14 + h) * HOUR_MS for h in range(7)])).astype(np.int64)
    assert m.bars_per_year(ts, calendar="sessions") == 7 * 252.0
    # a half-day session (3 bars) and a partial first day (2 bars) do not move the median day
    extra = np.array([-40, -39]) * HOUR_MS + days[0]
    half_day = days[-1] + DAY_MS * 3 + np.arange(14, 17) * HOUR_MS
    ts = np.sort(np.concatenate([extra, ts, half_day])).astype(np.int64)
    assert m.bars_per_year(ts, calendar="sessions") == 7 * 252.0


def test_bars_per_year_five_minute_bars() -> None:
    ts = np.arange(0, 1000) * 300_000
    assert m.bars_per_year(ts) == pytest.approx(365.25 * 288)


@pytest.mark.parametrize(
    ("ts", "calendar"),
    [(np.array([0]), "24/7"), (np.array([], dtype=np.int64), "24/7"), (np.array([0, HOUR_MS]), "252"),
     (np.array([3 * HOUR_MS, 2 * HOUR_MS, HOUR_MS]), "24/7")],
)
def test_bars_per_year_rejects_bad_input(ts: np.ndarray, calendar: str) -> None:
    with pytest.raises(ValueError):
        m.bars_per_year(ts, calendar)


# ------------------------------------------------------------------------------------------------
# hand-computed values
# ------------------------------------------------------------------------------------------------
# equity 100 -> 110 -> 99 -> 128.7 has simple returns r = [0.1, -0.1, 0.3]
EQ = np.array([100.0, 110.0, 99.0, 128.7])
R = np.array([0.1, -0.1, 0.3])


def test_returns_from_equity_hand() -> None:
    np.testing.assert_allclose(m.returns_from_equity(EQ), R, rtol=1e-12)


def test_sharpe_sortino_vol_hand() -> None:
    # mean = 0.3 / 3 = 0.1; deviations 0, -0.2, 0.2 -> sum sq 0.08 -> var (ddof=1) 0.04 -> std 0.2
    # per-bar Sharpe 0.1 / 0.2 = 0.5; with 4 bars a year: 0.5 * sqrt(4) = 1.0
    assert m.sharpe(R, 4.0) == pytest.approx(1.0, rel=1e-12)
    # downside: min(r, 0) = [0, -0.1, 0] -> mean square 0.01 / 3 -> dd = sqrt(1/300)
    # per-bar Sortino 0.1 / sqrt(1/300) = sqrt(3); annualised x sqrt(4) = 2 sqrt(3)
    assert m.sortino(R, 4.0) == pytest.approx(2.0 * math.sqrt(3.0), rel=1e-12)
    # annual vol 0.2 * sqrt(4) = 0.4
    assert m.annual_volatility(R, 4.0) == pytest.approx(0.4, rel=1e-12)


def test_moment_versions_hand() -> None:
    # sum r = 0.3, sum r^2 = 0.01 + 0.01 + 0.09 = 0.11, sum min(r,0)^2 = 0.01
    assert m.sharpe_from_moments(0.3, 0.11, 3, 4.0) == pytest.approx(1.0, rel=1e-12)
    assert m.sortino_from_moments(0.3, 0.01, 3, 4.0) == pytest.approx(2.0 * math.sqrt(3.0), rel=1e-12)


def test_equity_metrics_hand() -> None:
    assert m.total_return(EQ) == pytest.approx(0.287, rel=1e-12)  # 128.7 / 100 - 1
    # 3 bars at 3 bars/year = 1 year -> CAGR = total return
    assert m.cagr(EQ, 3.0) == pytest.approx(0.287, rel=1e-12)
    # 3 bars at 6 bars/year = half a year -> 1.287 ** 2 - 1
    assert m.cagr(EQ, 6.0) == pytest.approx(1.287**2 - 1.0, rel=1e-12)
    # peak 110, trough 99: 1 - 99/110 = 0.1
    np.testing.assert_allclose(m.drawdown_series(EQ), [0.0, 0.0, 0.1, 0.0], atol=1e-15)
    assert m.max_drawdown(EQ) == pytest.approx(0.1, rel=1e-12)
    # peak at index 1, recovered (above 110) at index 3 -> 2 bars
    assert m.max_drawdown_duration(EQ) == 2
    assert m.calmar(EQ, 3.0) == pytest.approx(0.287 / 0.1, rel=1e-12)


@pytest.mark.parametrize(
    ("equity", "expected"),
    [
        ([1.0, 0.9, 0.95, 1.0], 3),  # peak 0, recovery at 3
        ([1.0, 0.9, 0.95], 2),  # peak 0, never recovers, end at index 2
        ([1.0, 2.0, 1.5, 1.8, 2.5, 2.4], 3),  # peak 1 -> recovery 4 (3 bars); peak 4 -> end 5 (1 bar)
        ([1.0, 1.0, 1.0], 0),  # flat: never below a peak
        ([5.0], 0),
    ],
)
def test_max_drawdown_duration_hand(equity: list[float], expected: int) -> None:
    assert m.max_drawdown_duration(equity) == expected


def test_turnover_hand() -> None:
    # traded / equity = [50/100, 0/100, 100/200] = [0.5, 0, 0.5] -> mean 1/3 per bar; 12 bars/yr -> 4
    assert m.turnover([50.0, 0.0, 100.0], [100.0, 100.0, 200.0], 12.0) == pytest.approx(4.0, rel=1e-12)
    with pytest.raises(ValueError, match="same length"):
        m.turnover([1.0, 2.0], [100.0], 12.0)


# positions per bar: flat, long, long, flat, short, short, long (flip), flat
POS = np.array([0.0, 1.0, 1.0, 0.0, -1.0, -1.0, 1.0, 0.0])
# equity before bar 0 .. after bar 7 (9 points)
TRADE_EQ = np.array([100.0, 100.0, 110.0, 121.0, 120.0, 108.0, 97.2, 106.92, 105.0])


def test_trade_spans_hand() -> None:
    np.testing.assert_array_equal(m.trade_spans(POS), [[1, 3], [4, 6], [6, 7]])
    np.testing.assert_array_equal(m.trade_spans([0.0, 0.0]).shape, (0, 2))
    np.testing.assert_array_equal(m.trade_spans([1.0, 1.0]), [[0, 2]])  # still open at the end


def test_trades_from_positions_hand() -> None:
    # without the exit bar: e[3]/e[1]-1 = 0.21, e[6]/e[4]-1 = 97.2/120-1 = -0.19, e[7]/e[6]-1 = 0.1
    held = m.trades_from_positions(POS, TRADE_EQ, include_exit_bar=False)
    np.testing.assert_allclose(held, [0.21, -0.19, 0.1], rtol=1e-12)
    # with the exit bar: trade 1 is followed by a flat bar -> e[4]/e[1]-1 = 0.2;
    # trade 2 ends in a flip -> unchanged -0.19; trade 3 is followed by a flat bar -> e[8]/e[6]-1
    full = m.trades_from_positions(POS, TRADE_EQ)
    np.testing.assert_allclose(full, [0.2, -0.19, 105.0 / 97.2 - 1.0], rtol=1e-12)
    with pytest.raises(ValueError, match="one more point"):
        m.trades_from_positions(POS, TRADE_EQ[:-1])


def test_trade_statistics_hand() -> None:
    trades = np.array([0.2, -0.19, 105.0 / 97.2 - 1.0])
    assert m.win_rate(trades) == pytest.approx(2.0 / 3.0)
    assert m.profit_factor(trades) == pytest.approx((0.2 + 105.0 / 97.2 - 1.0) / 0.19, rel=1e-12)
    # trade lengths 2, 2, 1 bars
    assert m.average_holding_bars(POS) == pytest.approx(5.0 / 3.0)


def test_degenerate_cases_are_documented_values() -> None:
    assert m.sharpe([0.01], 8766.0) == 0.0  # n < 2
    assert m.sharpe([], 8766.0) == 0.0
    # constant returns: zero variance, although the running-sum variance comes out ~1e-18, not 0
    assert m.sharpe(np.full(8766, 0.01), 8766.0) == 0.0
    s1 = s2 = 0.0
    for _ in range(8766):
        s1 += 0.01
        s2 += 0.01 * 0.01
    assert m.sharpe_from_moments(s1, s2, 8766, 8766.0) == 0.0
    assert m.sharpe(np.zeros(10), 8766.0) == 0.0
    assert m.sortino([0.01, 0.02, 0.0], 8766.0) == 0.0  # no downside
    assert m.sharpe_from_moments(0.0, 0.0, 0, 8766.0) == 0.0
    assert math.isinf(m.profit_factor([0.1, 0.2]))
    assert math.isnan(m.profit_factor([]))
    assert math.isnan(m.profit_factor([0.0, 0.0]))
    assert m.profit_factor([-0.1]) == 0.0
    assert math.isnan(m.win_rate([]))
    assert math.isnan(m.average_holding_bars([0.0, 0.0]))
    assert math.isnan(m.calmar([1.0, 1.1, 1.2], 12.0))  # no drawdown
    assert m.cagr([100.0], 12.0) == 0.0
    assert m.cagr([100.0, 0.0], 12.0) == -1.0  # ruin on the last bar
    assert m.max_drawdown([100.0, 0.0]) == 1.0
    # +1 % over one 1-minute bar compounded over a year (525,960 bars) overflows a float
    assert m.cagr([100.0, 101.0], 525_960.0) == math.inf


@pytest.mark.parametrize("bad", [[1.0, math.nan], [1.0, math.inf]])
def test_non_finite_returns_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="finite"):
        m.sharpe(bad, 12.0)


def test_bad_equity_and_periods_rejected() -> None:
    with pytest.raises(ValueError, match="> 0"):
        m.max_drawdown([100.0, 0.0, 50.0])  # ruin before the last bar
    with pytest.raises(ValueError, match="start > 0"):
        m.max_drawdown([0.0])
    # a bankrupt last bar may end below 0 (gap through the liquidation price): kept, not rejected
    assert m.total_return([100.0, -5.0]) == pytest.approx(-1.05)
    assert m.max_drawdown([100.0, -5.0]) == pytest.approx(1.05)
    assert m.cagr([100.0, -5.0], 12.0) == -1.0
    with pytest.raises(ValueError, match="periods_per_year"):
        m.sharpe([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="1-D"):
        m.max_drawdown([[1.0, 2.0]])


def test_summarize_hand() -> None:
    ts = np.arange(9, dtype=np.int64) * HOUR_MS  # hourly: 8766 bars / year
    traded = np.array([0.0, 100.0, 0.0, 121.0, 120.0, 0.0, 2 * 97.2, 106.92])
    s = m.summarize(TRADE_EQ, POS, traded, fees=1.5, slippage=0.5, funding=-0.25, timestamps_ms=ts)
    r = TRADE_EQ[1:] / TRADE_EQ[:-1] - 1.0
    assert set(s) >= {
        "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown",
        "max_drawdown_duration_bars", "win_rate", "profit_factor", "n_round_trips", "avg_holding_bars",
        "avg_exposure", "turnover", "fees_paid", "slippage_paid", "funding_paid",
    }
    assert all(isinstance(v, float) for v in s.values())
    assert s["total_return"] == pytest.approx(0.05)  # 105 / 100 - 1
    assert s["n_round_trips"] == 3.0
    assert s["win_rate"] == pytest.approx(2.0 / 3.0)
    assert s["avg_holding_bars"] == pytest.approx(5.0 / 3.0)
    assert s["avg_exposure"] == pytest.approx(5.0 / 8.0)  # |POS| is 1 on 5 of 8 bars
    assert s["sharpe"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(8766.0), rel=1e-10)
    # peak 121 (index 3) -> 97.2 (index 6): 1 - 97.2/121; never recovers: 8 - 3 = 5 bars
    assert s["max_drawdown"] == pytest.approx(1.0 - 97.2 / 121.0)
    assert s["max_drawdown_duration_bars"] == 5.0
    expected_turnover = np.mean(traded / TRADE_EQ[:-1]) * 8766.0
    assert s["turnover"] == pytest.approx(expected_turnover, rel=1e-12)
    assert (s["fees_paid"], s["slippage_paid"], s["funding_paid"]) == (1.5, 0.5, -0.25)
    assert s["bars_per_year"] == pytest.approx(8766.0)


def test_summarize_rejects_misaligned_series() -> None:
    ts = np.arange(9, dtype=np.int64) * HOUR_MS
    with pytest.raises(ValueError, match="one value per bar"):
        m.summarize(TRADE_EQ, POS[:-1], np.zeros(7), 0.0, 0.0, 0.0, ts)


# ------------------------------------------------------------------------------------------------
# independent implementation: empyrical-reloaded on real BTC/USDT hourly returns
# ------------------------------------------------------------------------------------------------
def _real_series(btc: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    close = btc["close"].to_numpy()
    r_bh = close[1:] / close[:-1] - 1.0
    pos = np.random.default_rng(7).choice([-1.0, 0.0, 1.0], size=r_bh.size)
    return [("buy_and_hold", r_bh), ("random_policy", pos * r_bh)]


def test_against_empyrical_on_real_returns(btc: pd.DataFrame) -> None:
    ppy = m.bars_per_year(btc["timestamp"].to_numpy())
    for name, r in _real_series(btc):
        equity = 1000.0 * np.concatenate(([1.0], np.cumprod(1.0 + r)))
        ctx = f"series {name}"
        assert m.sharpe(r, ppy) == pytest.approx(empyrical.sharpe_ratio(r, annualization=ppy), rel=1e-9), ctx
        assert m.sortino(r, ppy) == pytest.approx(empyrical.sortino_ratio(r, annualization=ppy), rel=1e-9), ctx
        assert m.max_drawdown(equity) == pytest.approx(-empyrical.max_drawdown(r), rel=1e-9), ctx
        assert m.annual_volatility(r, ppy) == pytest.approx(
            empyrical.annual_volatility(r, annualization=ppy), rel=1e-9
        ), ctx
        assert m.cagr(equity, ppy) == pytest.approx(empyrical.annual_return(r, annualization=ppy), rel=1e-9), ctx
        assert m.calmar(equity, ppy) == pytest.approx(empyrical.calmar_ratio(r, annualization=ppy), rel=1e-9), ctx
        assert m.total_return(equity) == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9), ctx


def test_running_sums_like_the_env_match_array_versions(btc: pd.DataFrame) -> None:
    ppy = 8766.0
    for _, r in _real_series(btc):
        s1 = s2 = d2 = 0.0
        for x in r.tolist():  # accumulate one bar at a time, as the env's kernel does
            s1 += x
            s2 += x * x
            d2 += min(x, 0.0) ** 2
        assert m.sharpe_from_moments(s1, s2, r.size, ppy) == pytest.approx(m.sharpe(r, ppy), rel=1e-9)
        assert m.sortino_from_moments(s1, d2, r.size, ppy) == pytest.approx(m.sortino(r, ppy), rel=1e-9)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
returns_lists = st.lists(
    st.floats(min_value=-0.5, max_value=0.5, allow_nan=False, allow_infinity=False), min_size=3, max_size=200
)


@settings(max_examples=150, deadline=None)
@given(returns_lists)
def test_max_drawdown_in_unit_interval_for_positive_equity(r: list[float]) -> None:
    equity = 100.0 * np.concatenate(([1.0], np.cumprod(1.0 + np.asarray(r))))
    mdd = m.max_drawdown(equity)
    assert 0.0 <= mdd <= 1.0
    dd = m.drawdown_series(equity)
    assert np.all(dd >= 0.0) and np.all(dd <= 1.0)
    assert m.max_drawdown_duration(equity) <= len(r)


@settings(max_examples=150, deadline=None)
@given(returns_lists, st.floats(min_value=0.01, max_value=100.0))
def test_sharpe_and_sortino_invariant_to_positive_scaling(r: list[float], c: float) -> None:
    a = np.asarray(r)
    assume(np.std(a) > 1e-4)
    assert m.sharpe(c * a, 8766.0) == pytest.approx(m.sharpe(a, 8766.0), rel=1e-7, abs=1e-9)
    assert m.sortino(c * a, 8766.0) == pytest.approx(m.sortino(a, 8766.0), rel=1e-7, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(returns_lists)
def test_moment_version_matches_two_pass_formula(r: list[float]) -> None:
    a = np.asarray(r)
    assume(np.std(a) > 1e-4)
    two_pass = np.mean(a) / np.std(a, ddof=1) * math.sqrt(252.0)
    moments = m.sharpe_from_moments(float(np.sum(a)), float(np.dot(a, a)), a.size, 252.0)
    assert moments == pytest.approx(two_pass, rel=1e-7, abs=1e-9)
    assert m.sharpe(a, 252.0) == pytest.approx(moments, rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=100))
def test_monotonically_rising_curve_has_no_drawdown(gains: list[float]) -> None:
    equity = 10.0 * np.concatenate(([1.0], np.cumprod(1.0 + np.asarray(gains))))
    assert m.max_drawdown(equity) == 0.0
    assert m.max_drawdown_duration(equity) == 0
    assert math.isnan(m.calmar(equity, 12.0))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0]), min_size=1, max_size=60))
def test_trades_partition_the_held_bars(pos: list[float]) -> None:
    p = np.asarray(pos)
    spans = m.trade_spans(p)
    lengths = spans[:, 1] - spans[:, 0]
    assert lengths.sum() == np.count_nonzero(p)  # every held bar belongs to exactly one trade
    for a, b in spans:
        assert len(set(np.sign(p[a:b]))) == 1 and p[a] != 0.0
