"""The bars a paper session has seen, and the kernel's arrays over a bounded tail of them.

At every closed bar the features are recomputed on the last ``tail_bars`` bars with the training
pipeline's array form (`envs.features.pipeline.feature_matrix`, the code `build_features` runs, without
its pandas frame) -> `MarketData` -> the run's feature selection and `FeatureNormalizer`, so one bar
costs O(tail_bars), not O(history), and every value is a function of those bars only: a resumed session
(seeded with the same tail) computes bit for bit what an uninterrupted one did. Every feature is causal
and its memory is bounded or decays geometrically (the longest is the env's EWM z-score, half-life
`envs.market.market_data.NORM_HALFLIFE_BARS` = 64 bars: 4096 bars shrink an initial difference by 2^-64),
so the tail's last row equals the batch features of the whole history; tests/agents/paper/
test_market.py bounds the difference on the shipped sample (<= 1e-9). While the history is not
longer than the tail, the two are the same computation and agree bit for bit.

`envs.features.stream.FeatureStream` computes one new bar's features at a bounded cost per bar (the
forecast benchmark's per-bar path), but its levels and higher-timeframe state depend on every bar since
the stream started; paper mode does not use it yet because a resumed session, seeded with the last
``tail_bars`` bars, could not rebuild that state (see docs/features.md).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from agents.evaluate_run import run_features
from agents.paper.config import DEFAULT_TAIL_BARS
from envs.features.pipeline import FeatureConfig, feature_matrix
from envs.features.stream import Ring
from envs.feeds.base import Bar
from envs.market.bars import OHLCV_COLUMNS
from envs.market.market_data import FeatureNormalizer, MarketData
from envs.sim.config import EnvConfig
from envs.sim.simulation import Simulation

if TYPE_CHECKING:
    from agents.paper.forecasts import PaperForecasts
    from agents.paper.funding import SessionFunding


def simulation_of(md: MarketData, config: EnvConfig, normalizer: FeatureNormalizer | None) -> Simulation:
    """`Simulation` arrays of ``md`` exactly as `Simulation.build` prepares them, for as few as
    ``window_size`` bars (a paper session decides at bar W-1 before bar W exists; ``build``
    requires W + 1 bars because an env must be able to fill its first decision)."""
    config = dataclasses.replace(config, episode_length=None)  # one pass, as `evaluation_env`
    return Simulation.of_bars(md, config, normalizer)


class BarTail:
    """The last ``tail_bars`` bars of a session and their kernel arrays.

    Args:
        env: the run's env config.
        features: the run's feature config.
        normalizer: the run's feature normaliser (its names select the run's feature columns).
        tail_bars: bars kept (this bar included), >= window_size + 1.
        forecasts: the ``fc_*`` columns of a run with a forecaster.
        funding: the funding events of a run with ``data.funding_path`` (joined before the features, as the loader does).
    """

    def __init__(self, env: EnvConfig, features: FeatureConfig, normalizer: FeatureNormalizer,
                 tail_bars: int = DEFAULT_TAIL_BARS, forecasts: PaperForecasts | None = None,
                 funding: SessionFunding | None = None) -> None:
        if tail_bars < env.window_size + 1:
            raise ValueError(f"paper.tail_bars={tail_bars} is invalid: must be >= env.window_size + 1 = "
                             f"{env.window_size + 1} (4096 keeps features within 1e-9 of the batch features)")
        self.env = env
        self.features = features
        self.normalizer = normalizer
        self.bars: deque[Bar] = deque(maxlen=tail_bars)
        self._arrays = Ring(len(OHLCV_COLUMNS), tail_bars)  # the same bars as columns, for the frame
        self.n_seen = 0  # bars appended since the session's first bar (absolute index of the next bar)
        self._cached: tuple[int, Simulation] | None = None  # (n_seen, arrays) of the last `simulation()`
        self.forecasts = forecasts  # the fc_* columns of a run with a forecaster
        self.funding = funding

    def seed(self, bars: Iterable[Bar], first_index: int) -> None:
        """History before the first bar the engine sees: ``bars`` are absolute bars ``first_index``, ...

        A negative ``first_index`` seeds bars before the session's first bar (a forecaster run's own
        bars): they feed the features only and never become kernel rows.
        """
        if self.n_seen or self.bars:
            raise RuntimeError("seed the tail before appending bars")
        bars = list(bars)
        for bar in bars:
            self._push(bar)
        self.n_seen = first_index + len(bars)

    def append(self, bar: Bar) -> None:
        """Add the newest closed bar (must be later than the previous one)."""
        self._push(bar)
        self.n_seen += 1

    def _push(self, bar: Bar) -> None:
        if self.bars and bar.timestamp <= self.bars[-1].timestamp:
            raise ValueError(f"bar {bar.timestamp} is not after the previous bar {self.bars[-1].timestamp}: "
                             "a feed must deliver strictly increasing bar times")
        self.bars.append(bar)
        self._arrays.append(bar)

    @property
    def last_index(self) -> int:
        """Absolute index of the newest bar (0 = the session's first bar)."""
        return self.n_seen - 1

    @property
    def offset(self) -> int:
        """Absolute index of the tail's first session bar (kernel row 0)."""
        return max(0, self.n_seen - len(self.bars))

    def forecast_provenance(self, k: int) -> tuple[str | None, int | None]:
        """``(model_id, train_label_end)`` of the forecasts at bar ``k`` (None, None without a forecaster)."""
        return (None, None) if self.forecasts is None else self.forecasts.provenance(k)

    def simulation(self) -> Simulation:
        """The kernel's arrays over the tail (row i = absolute bar ``offset + i``); computed once per new bar
        (the engine and a testnet broker's order sizing share them)."""
        if self._cached is not None and self._cached[0] == self.n_seen:
            return self._cached[1]
        n = len(self.bars)
        arr = self._arrays.view(n)
        columns = {name: arr[j] for j, name in enumerate(OHLCV_COLUMNS)}
        columns["timestamp"] = arr[0].astype(np.int64)  # ms, exact in float64
        names: tuple[str, ...] = ()
        if self.features != FeatureConfig.none():
            names, feats = feature_matrix(columns, self.features)
            columns.update((name, feats[:, j]) for j, name in enumerate(names))
        frame = pd.DataFrame(columns)
        if self.funding is not None:  # the loader's funding join (no feature reads it)
            frame = self.funding.join(frame)
        first = self.n_seen - len(self.bars)
        if self.forecasts is not None:  # (its contract: `build_features`' frame; set here only, pandas deep-copies attrs)
            frame.attrs["feature_columns"] = list(names)
            frame = self.forecasts.join(frame, first)
        if first < 0:  # the run's bars before the session: history for the features only
            frame = frame.iloc[-first:].reset_index(drop=True)
        md = run_features(MarketData.load(frame), self.normalizer)
        sim = simulation_of(md, self.env, self.normalizer)
        self._cached = (self.n_seen, sim)
        return sim
