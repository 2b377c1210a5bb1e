"""The paper loop: on every closed bar, settle the previous decision, then decide and send the next.

Per bar t (see docs/paper.md):
1. the bar joins the tail and the kernel arrays are rebuilt over it (`agents.paper.market`);
2. the decision of bar t-1, if any and not yet settled, is settled by the broker through the kernel
   (fill at t's open, exits inside t, mark at t's close) and committed with the step row;
3. the observation at t is written by the kernel's `write_obs` (the same features, normaliser and
   account values as training and evaluation), the model acts deterministically, and the decision
   is committed to the ledger BEFORE its order goes to the broker, with the risk inputs of that
   moment: the feed lag and the kill switch (``<paper.dir>/KILL`` or SIGTERM, checked before every
   decision; `agents.paper.killswitch`). The risk controls themselves run in the kernel at
   settlement; once a kill decision has settled (flat), the session stops.
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
from agents.paper.feeds import FeedLag
from agents.paper.killswitch import KILL_FILE, StopSignals, read_kill
from agents.paper.ledger import Decision, Ledger
from agents.paper.market import BarTail
from envs.feeds.base import Bar, timeframe_ms
from envs.market.market_data import FeatureNormalizer
from envs.sim import kernel as K
from envs.sim.simulation import Simulation

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


def feed_lag_bars(bar_ts: int, now_ms: int, bar_ms: int) -> int:
    """Whole bars between the close of the bar opening at ``bar_ts`` and ``now_ms`` (all ms UTC), >= 0.

    The stale-feed input of a live feed's `PaperEngine.on_bar` (0 while the newest bar is the last
    closed one; a replay always passes 0).
    """
    return max(0, (now_ms - (bar_ts + bar_ms)) // bar_ms)


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
        signals: what the session's SIGTERM handler received (a kill with reason ``SIGTERM``).

    Attributes:
        halted: the episode ended (bankruptcy or ``env.max_drawdown``): no further decisions.
        stopped: why the session stopped (a kill reason), or None while it runs.
    """

    def __init__(self, run: PaperRun, ledger: Ledger, tail: BarTail, broker: PaperBroker | None = None,
                 signals: StopSignals | None = None) -> None:
        self.run = run
        self.ledger = ledger
        self.tail = tail
        self.broker = broker if broker is not None else PaperBroker(ledger)
        self.signals = signals if signals is not None else StopSignals()
        self.paper_dir = ledger.path.parent
        self.window = run.cfg.env.window_size
        last = ledger.last_settled()
        self.state: State | None = None if last is None else last.state
        self.settled_ts: int | None = None if last is None else last.bar_ts
        self.halted = ledger.is_terminated()
        self.stopped: str | None = None
        self.tf_ms = timeframe_ms(run.cfg.data.timeframe)
        #: lag of the bar being processed (feed clock at receipt minus the bar's close), in bars and ms
        self.feed_lag_bars = 0.0
        self.feed_lag_ms = 0
        killed = ledger.last_settled_decision()
        reason = read_kill(self.paper_dir)
        if killed is not None and killed.kill_reason is not None and reason is not None:
            self.stopped = reason
            logger.warning("the session was stopped by the kill switch (%s) and %s is still there: no trading; delete "
                           "it and rerun to resume", killed.kill_reason, self.paper_dir / KILL_FILE)

    def kill_reason(self) -> str | None:
        """The kill switch's reason now: the ``KILL`` file's text, else ``SIGTERM`` if received, else None."""
        return read_kill(self.paper_dir) or self.signals.kill_reason

    def on_bar(self, bar: Bar, now_ms: int, lag: FeedLag | None = None) -> dict[str, Any] | None:
        """Process one closed bar; returns the status of the bar (None while still in the warm-up).

        Args:
            bar: the newest closed bar.
            now_ms: the feed clock's time, ms UTC (recorded in the ledger).
            lag: how late the bar arrived (live feeds); None = ``now_ms`` minus the bar's close (0 in a
                replay). Sets ``feed_lag_bars`` / ``feed_lag_ms`` before anything is decided; above
                ``env.risk.stale_after`` whole bars the kernel sends no order.
        """
        started = time.perf_counter()
        lag = lag if lag is not None else FeedLag.of(bar.timestamp, self.tf_ms, now_ms)
        self.feed_lag_bars, self.feed_lag_ms = lag.lag_bars, lag.lag_ms
        self.tail.append(bar)
        k = self.tail.last_index
        if k < self.window - 1 or self.halted or self.stopped is not None:
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
            if prev.kill_reason is not None:
                self.stopped = prev.kill_reason
                logger.warning("kill switch (%s): position %.6g after the open of %s; the session stops", prev.kill_reason,
                               info["position"], _iso(bar.timestamp))
                return self._status(bar, info, None, now_ms)
        if self.state is None:
            self.state = initial_state(sim, k - offset, offset)
        decision = self.ledger.decision(bar.timestamp)
        latency_ms = None
        if decision is None:
            stale = feed_lag_bars(bar.timestamp, lag.received_ms, self.tf_ms)  # whole bars behind: the kernel's input
            decision = self._decide(bar, k, sim, offset, stale, self.kill_reason())
            latency_ms = 1000.0 * (time.perf_counter() - started)
            self.ledger.commit_decision(decision, now_ms, latency_ms)
        self.broker.submit(decision, now_ms)
        return self._status(bar, info, latency_ms, now_ms)

    def _decide(self, bar: Bar, k: int, sim: Simulation, offset: int, feed_lag: int, kill: str | None) -> Decision:
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
                        price=float(bar.close), feed_lag=int(feed_lag), kill_reason=kill,
                        forecaster_id=forecaster_id, forecast_label_end=label_end)

    def _status(self, bar: Bar, info: dict[str, Any] | None, latency_ms: float | None, now_ms: int) -> dict[str, Any]:
        """The bar's status for `agents.paper.monitor` (which logs it): ``settled`` when a step was committed."""
        status: dict[str, Any] = {"bar": _iso(bar.timestamp), "bar_ts": int(bar.timestamp), "now_ms": int(now_ms),
                                  "latency_ms": latency_ms, "settled": info is not None,
                                  "feed_lag_bars": self.feed_lag_bars, "feed_lag_ms": self.feed_lag_ms}
        if info is not None:
            status.update(equity=info["equity"], position=info["position"], drawdown=info["drawdown"],
                          exposure=info["exposure"], risk_state=int(info["risk_state"]),
                          risk_reason=int(info["risk_reason"]))
        else:
            assert self.state is not None
            status.update(equity=float(self.state[K.S_EQUITY]), position=float(self.state[K.S_POS]),
                          drawdown=float(self.state[K.S_DRAWDOWN]), exposure=float(self.state[K.S_EXPOSURE]),
                          risk_state=int(self.state[K.S_RISK_STATE]), risk_reason=int(self.state[K.S_RISK_REASON]))
        status["risk"] = risk_text(status["risk_state"], status["risk_reason"])
        status["risk_state"], status["risk_reason"] = risk_names(status["risk_state"], status["risk_reason"])
        return status


def risk_names(state: int, reason: int) -> tuple[str, str | None]:
    """The kernel's risk codes as names: (``ACTIVE`` / ``REDUCING`` / ``HALTED``, the reason or None)."""
    return K.RISK_STATES[state], None if reason == K.REASON_NONE else K.RISK_REASONS[reason]


def risk_text(state: int, reason: int) -> str:
    """``ACTIVE``, or the regime and its reason, e.g. ``HALTED (drawdown)``; the last settled step's."""
    name = K.RISK_STATES[state]
    return name if reason == K.REASON_NONE else f"{name} ({K.RISK_REASONS[reason]})"


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
