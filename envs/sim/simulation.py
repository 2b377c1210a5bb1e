"""Set-up shared by `TradingEnv` and `VecTradingEnv`: arrays prepared once, info and summaries.

Everything the kernels read is built here at construction; ``step()`` only indexes it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from envs import metrics
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim import kernel as K
from envs.sim.config import EnvConfig
from envs.sim.observation import observation_matrix, observation_size

#: info keys of every reset()/step(), in order (see the README's info table)
INFO_KEYS = (
    "timestamp", "price", "equity", "cash", "position", "exposure", "fill_price", "traded_qty",
    "fees_paid", "slippage_paid", "funding_paid", "n_fills", "liquidated", "drawdown",
    "participation_clipped", "risk_state", "risk_reason",
)
_FLOAT_ROWS = (K.S_PRICE, K.S_EQUITY, K.S_CASH, K.S_POS, K.S_EXPOSURE, K.S_FILL_PX, K.S_TRADED_QTY,
               K.S_FEES, K.S_SLIPPAGE, K.S_FUNDING)
#: account arrays exposed by `VecTradingEnv.account` (state row per info key)
ACCOUNT_ROWS = {
    "price": K.S_PRICE, "equity": K.S_EQUITY, "cash": K.S_CASH, "position": K.S_POS,
    "exposure": K.S_EXPOSURE, "fill_price": K.S_FILL_PX, "traded_qty": K.S_TRADED_QTY,
    "fees_paid": K.S_FEES, "slippage_paid": K.S_SLIPPAGE, "funding_paid": K.S_FUNDING,
    "n_fills": K.S_N_TRADES, "liquidated": K.S_LIQUIDATED, "drawdown": K.S_DRAWDOWN,
    "participation_clipped": K.S_CLIPPED_QTY, "risk_state": K.S_RISK_STATE, "risk_reason": K.S_RISK_REASON,
}

#: caller-set kernel inputs exposed by `TradingEnv.risk_inputs` / `VecTradingEnv.risk_inputs`
RISK_INPUT_ROWS = {"feed_lag": K.S_FEED_LAG, "kill": K.S_KILL}

#: info values that are not floats, with their Python type (every other info value is a float)
INFO_TYPES: dict[str, type] = {"timestamp": int, "n_fills": int, "liquidated": bool, "risk_state": int,
                                "risk_reason": int}
_KINDS = {float: K.INFO_FLOAT, int: K.INFO_INT, bool: K.INFO_BOOL}


def _info_layout() -> tuple[npt.NDArray[np.float64], np.dtype]:
    """The kernels' info source table ((2, K): state row, kind) and the record's structured dtype.

    Derived from `INFO_KEYS`, `ACCOUNT_ROWS` and `INFO_TYPES`, so a key appended to them just works.
    One 8-byte word per key; a bool is read from the word's first byte (little-endian, as numba's targets).
    """
    rows, kinds, formats = [], [], []
    for key in INFO_KEYS:
        typ = INFO_TYPES.get(key, float)
        rows.append(K.S_T if key == "timestamp" else ACCOUNT_ROWS[key])
        kinds.append(K.INFO_TIMESTAMP if key == "timestamp" else _KINDS[typ])
        formats.append({float: np.float64, int: np.int64, bool: np.bool_}[typ])
    dtype = np.dtype({"names": list(INFO_KEYS), "formats": formats,
                      "offsets": [8 * k for k in range(len(INFO_KEYS))], "itemsize": 8 * len(INFO_KEYS)})
    return np.array([rows, kinds], dtype=np.float64), dtype


#: (2, len(INFO_KEYS)) float64: source state row and kind (`kernels.INFO_*`) of each info value
#: and the structured dtype of an info record written by `kernels.write_info`
INFO_TABLE, INFO_DTYPE = _info_layout()


def info_from_record(record: npt.NDArray[np.int64]) -> dict[str, object]:
    """The info dict (plain Python scalars, keys `INFO_KEYS`) of a record written by `kernels.write_info`."""
    return dict(zip(INFO_KEYS, record.view(INFO_DTYPE)[0].item(), strict=True))


class ObservationBuffers:
    """Two observation buffers handed out in turn, so observations are written in place, not copied.

    `next` returns the buffer handed out two calls ago, to be overwritten, only when nothing outside
    refers to it any more (its reference count equals the one measured at construction, when only
    this object held it). A buffer a caller kept, or a view of it, is never written again: a new
    buffer takes its place. So an observation once returned never changes.

    Args:
        shape: shape of one buffer ((obs_dim,) or (n_envs, obs_dim)).
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self._last = np.zeros(shape, dtype=np.float32)
        self._spare = np.zeros(shape, dtype=np.float32)
        self._free_refs = sys.getrefcount(self._spare)  # the same expression as in `next`

    def next(self) -> npt.NDArray[np.float32]:
        """The buffer to write the next observation into (it becomes the last one handed out)."""
        if sys.getrefcount(self._spare) > self._free_refs:
            self._spare = np.empty_like(self._last)
        buf = self._spare
        self._spare = self._last
        self._last = buf
        return buf

    @property
    def last(self) -> npt.NDArray[np.float32]:
        """The buffer handed out last."""
        return self._last


@dataclass(frozen=True, slots=True)
class Simulation:
    """Arrays and constants for the kernels, built once from data + config.

    Attributes:
        config: the validated env config.
        data: the market data.
        market: (T, kernels.M_COLS) float64 market matrix.
        features: (T, C) float32 observation matrix (`envs.sim.observation`): the features (normalised,
            clipped, finite), then for the compact observation their summaries; C-contiguous.
        params: kernel parameter vector.
        levels: discrete exposure levels (float64).
        timestamps: int64 bar open times, ms UTC.
        bars_per_year: annualisation factor from the median bar spacing (24/7 calendar).
        obs_dim: observation length (`envs.sim.observation.observation_size`; W x F + 4 for "window").
    """

    config: EnvConfig
    data: MarketData
    market: npt.NDArray[np.float64]
    features: npt.NDArray[np.float32]
    params: npt.NDArray[np.float64]
    levels: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.int64]
    bars_per_year: float
    obs_dim: int

    @classmethod
    def build(
        cls,
        data: pd.DataFrame | str | MarketData,
        config: EnvConfig,
        normalizer: FeatureNormalizer | None = None,
    ) -> Simulation:
        """Validate data against config and prepare every array the kernels use."""
        if not isinstance(config, EnvConfig):
            raise TypeError(f"config must be an envs.EnvConfig, got {type(config).__name__}")
        md = MarketData.load(data)
        n = len(md)
        w = config.window_size
        if n < w + 1:
            raise ValueError(
                f"env.window_size={w} is invalid for {n} bars: the data needs at least window_size + 1 "
                f"bars (one decision and one bar to fill in); lower window_size or use more data"
            )
        if config.episode_length is not None and n - 1 - config.episode_length < w - 1:
            raise ValueError(
                f"env.episode_length={config.episode_length} is invalid: with window_size={w} and {n} bars "
                f"it must be <= {n - w} (starts are drawn from [window_size-1, n-1-episode_length])"
            )
        return cls.of_bars(md, config, normalizer)

    @classmethod
    def of_bars(cls, md: MarketData, config: EnvConfig, normalizer: FeatureNormalizer | None = None) -> Simulation:
        """Every array the kernels use, for bars already checked against ``config`` (`build` checks them).

        Paper mode calls it directly on a tail of ``window_size`` bars: it decides at bar W-1 before
        bar W (the fill bar) exists, which `build` refuses for an env.
        """
        mu, sigma = md.log_return_stats(config.vol_lookback)
        funding = md.funding_per_bar(config.funding_rate, config.funding_interval_h)
        market = K.build_market_matrix(md.open, md.high, md.low, md.close, md.volume, md.spread, sigma, mu, funding,
                                       md.timestamp)
        bpy = metrics.bars_per_year(md.timestamp)
        nf = md.raw_features.shape[1]
        return cls(
            config=config,
            data=md,
            market=market,
            features=observation_matrix(md.observation_features(config.obs_clip, normalizer), config),
            params=K.make_params(config, bpy, len(md), nf),
            levels=np.asarray(config.exposure_levels, dtype=np.float64),
            timestamps=md.timestamp,
            bars_per_year=bpy,
            obs_dim=observation_size(config, nf),
        )

    @property
    def first_decision_bar(self) -> int:
        """Bar index of the first decision (window_size - 1)."""
        return self.config.window_size - 1

    def draw_start(self, rng: np.random.Generator) -> int:
        """Start bar: W-1 for a full pass, else uniform in [W-1, n-1-L] from ``rng``."""
        if self.config.episode_length is None:
            return self.first_decision_bar
        hi = len(self.data) - 1 - self.config.episode_length
        return int(rng.integers(self.first_decision_bar, hi + 1))

    def info(self, S: npt.NDArray[np.float64], i: int) -> dict[str, object]:
        """The info dict of env i (plain Python scalars; keys `INFO_KEYS`)."""
        record = np.empty(len(INFO_KEYS), dtype=np.int64)
        K.write_info(i, S, self.timestamps, INFO_TABLE, record)
        return info_from_record(record)

    def info_from_column(self, col: list[float]) -> dict[str, object]:
        """The info dict from one env's state column as a Python list (``S[:, i].tolist()``)."""
        return self.info(np.asarray(col, dtype=np.float64).reshape(-1, 1), 0)

    def episode_summary(self, S: npt.NDArray[np.float64], i: int) -> dict[str, float]:
        """Episode statistics of env i from its running sums (no per-step history kept)."""
        col = S[:, i].tolist()
        n = int(col[K.S_N_R])
        ppy = self.bars_per_year
        initial = self.config.initial_cash
        return {
            "n_steps": float(n),
            "total_return": col[K.S_EQUITY] / initial - 1.0,
            "final_equity": col[K.S_EQUITY],
            "sharpe": metrics.sharpe_from_moments(col[K.S_SUM_R], col[K.S_SUM_R2], n, ppy),
            "sortino": metrics.sortino_from_moments(col[K.S_SUM_R], col[K.S_SUM_DOWN2], n, ppy),
            "max_drawdown": col[K.S_MAX_DD],
            "turnover": metrics.turnover_from_sum(col[K.S_SUM_TURNOVER], n, ppy),
            "avg_exposure": col[K.S_SUM_ABS_EXPOSURE] / n if n else 0.0,
            "fees_paid": col[K.S_FEES],
            "slippage_paid": col[K.S_SLIPPAGE],
            "funding_paid": col[K.S_FUNDING],
            "n_fills": col[K.S_N_TRADES],
            "liquidated": col[K.S_LIQUIDATED],
        }
