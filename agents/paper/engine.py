"""The paper loop: on every closed bar, settle the previous decision, then decide and send the next.

Per bar t (see docs/paper.md):
1. the bar joins the tail and the kernel arrays are rebuilt over it (`agents.paper.market`);
2. the decision of bar t-1, if any and not yet settled, is settled by the broker through the kernel
   (fill at t's open, exits inside t, mark at t's close) and committed with the step row;
3. the observation at t is written by the kernel's `write_obs` (the same features, normaliser and
   account values as training and evaluation), the model acts deterministically, and the decision
   is committed to the ledger BEFORE its order goes to the broker.
Every part is idempotent against the ledger, so a resumed session replays its last bar safely.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.config import RunConfig
from agents.paper.broker import PaperBroker, State, initial_state, to_rows
from agents.paper.ledger import Decision, Ledger
from agents.paper.market import BarTail
from envs import kernels as K
from envs.feeds.base import Bar
from envs.market_data import FeatureNormalizer
from envs.simulation import Simulation

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PaperRun:
    """What a session takes from the training run folder.

    Attributes:
        cfg: the run's validated config.
        normalizer: its feature normaliser (training split statistics).
        model: the loaded SB3 model.
        model_id: ``<algo>:<file>:<blake2b of the file>``.
        run_id: 12 hex digits identifying the run folder (prefix of every ``client_order_id``).
    """

    cfg: RunConfig
    normalizer: FeatureNormalizer
    model: BaseAlgorithm
    model_id: str
    run_id: str


def client_order_id(run_id: str, bar_ts: int) -> str:
    """Deterministic order id of the decision at bar ``bar_ts`` (ms UTC): ``qg<run_id>-<bar_ts>``."""
    return f"qg{run_id}-{bar_ts}"


def obs_hash(obs: np.ndarray) -> str:
    """blake2b hex digest (16 bytes) of a float32 observation's bytes."""
    return hashlib.blake2b(np.ascontiguousarray(obs, dtype=np.float32).tobytes(), digest_size=16).hexdigest()


class PaperEngine:
    """Decides and settles bar by bar against a ledger; resumes from it.

    Args:
        run: the trained run.
        ledger: the session's ledger (may already hold steps: the engine continues from them).
        tail: the bars seen so far (seeded with history before the first bar given to `on_bar`).
        broker: the execution client (default: the kernel's `PaperBroker`).
    """

    def __init__(self, run: PaperRun, ledger: Ledger, tail: BarTail, broker: PaperBroker | None = None) -> None:
        self.run = run
        self.ledger = ledger
        self.tail = tail
        self.broker = broker if broker is not None else PaperBroker(ledger)
        self.window = run.cfg.env.window_size
        last = ledger.last_settled()
        self.state: State | None = None if last is None else last.state
        self.settled_ts: int | None = None if last is None else last.bar_ts
        self.halted = ledger.is_terminated()

    def on_bar(self, bar: Bar, now_ms: int) -> dict[str, Any] | None:
        """Process one closed bar; returns the status of the bar (None while still in the warm-up).

        Args:
            bar: the newest closed bar.
            now_ms: the feed clock's time, ms UTC (recorded in the ledger).
        """
        started = time.perf_counter()
        self.tail.append(bar)
        k = self.tail.last_index
        if k < self.window - 1 or self.halted:
            return None
        sim = self.tail.simulation()
        offset = self.tail.offset
        info = None
        prev = self.ledger.decision(int(self.tail.bars[-2].timestamp)) if len(self.tail.bars) >= 2 else None
        if prev is not None and (self.settled_ts is None or self.settled_ts < bar.timestamp):
            assert self.state is not None, "a decision exists, so the state it was decided on must too"
            self.state, info = self.broker.settle(prev, self.state, sim, offset, now_ms)
            self.settled_ts = bar.timestamp
            if self.state[K.S_TERMINATED] > 0.0:
                self.halted = True
                logger.warning("the session ended at %s: equity %.2f, drawdown %.2f%% (bankruptcy or the drawdown "
                               "stop); no further decisions", _iso(bar.timestamp), info["equity"], 100 * info["drawdown"])
                return self._status(bar, info, None, now_ms)
        if self.state is None:
            self.state = initial_state(sim, k - offset, offset)
        decision = self.ledger.decision(bar.timestamp)
        latency_ms = None
        if decision is None:
            decision = self._decide(bar, k, sim, offset)
            latency_ms = 1000.0 * (time.perf_counter() - started)
            self.ledger.commit_decision(decision, now_ms, latency_ms)
        self.broker.submit(decision, now_ms)
        return self._status(bar, info, latency_ms, now_ms)

    def _decide(self, bar: Bar, k: int, sim: Simulation, offset: int) -> Decision:
        """Observation at bar k (absolute) from the kernel, the model's deterministic action, its target."""
        assert self.state is not None
        s = to_rows(self.state, offset)
        obs = np.zeros((1, sim.obs_dim), dtype=np.float32)
        K.write_obs(0, s, sim.market, sim.features, sim.params, obs)
        action = self.run.model.predict(obs[0].copy(), deterministic=True)[0]
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        row = k - offset
        target = float(K.target_exposure(a, sim.params, sim.levels, sim.market[row, K.M_SIGMA], sim.market[row, K.M_MU]))
        forecaster_id, label_end = self.tail.forecast_provenance(k)
        return Decision(bar_ts=int(bar.timestamp), bar_index=k, client_order_id=client_order_id(self.run.run_id, bar.timestamp),
                        action=a, target_exposure=target, obs_hash=obs_hash(obs[0]), model_id=self.run.model_id,
                        price=float(bar.close), forecaster_id=forecaster_id, forecast_label_end=label_end)

    def _status(self, bar: Bar, info: dict[str, Any] | None, latency_ms: float | None, now_ms: int) -> dict[str, Any]:
        """The bar's status for `agents.paper.monitor` (which logs it): ``settled`` when a step was committed."""
        status: dict[str, Any] = {"bar": _iso(bar.timestamp), "bar_ts": int(bar.timestamp), "now_ms": int(now_ms),
                                  "latency_ms": latency_ms, "settled": info is not None}
        if info is not None:
            status.update(equity=info["equity"], position=info["position"], drawdown=info["drawdown"],
                          exposure=info["exposure"])
        else:
            assert self.state is not None
            status.update(equity=float(self.state[K.S_EQUITY]), position=float(self.state[K.S_POS]),
                          drawdown=float(self.state[K.S_DRAWDOWN]), exposure=float(self.state[K.S_EXPOSURE]))
        return status


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
