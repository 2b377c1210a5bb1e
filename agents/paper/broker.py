"""The paper broker: orders go into a book keyed by ``client_order_id`` and are filled by the env's kernel.

No execution rule lives here: `settle` runs `envs.sim.kernel.step_env` (sizing at close t, the risk
controls, fill at the open of t+1 with the slippage model, fees, funding, liquidation, stops, the
mark at close t+1) on
the kernel's arrays of the bars the session has seen. The kernel indexes its market matrix by row,
so the state's bar indices (current bar, entry bar) are shifted into the tail's rows for the call
and back afterwards (integers in float64: exact). The decision's risk inputs (feed lag, kill switch)
are put into the state's input rows before the step, so a settlement is a function of the ledger.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.paper.ledger import Decision, Ledger
from envs.sim import kernel as K
from envs.sim.simulation import Simulation

logger = logging.getLogger(__name__)

State = npt.NDArray[np.float64]


def to_rows(state: State, offset: int) -> State:
    """A (S_ROWS, 1) kernel state with bar indices moved to tail rows (``absolute - offset``)."""
    s = state.reshape(K.S_ROWS, 1).copy()
    s[K.S_T, 0] -= offset
    s[K.S_START_T, 0] -= offset
    if s[K.S_POS, 0] != 0.0:  # the entry bar only means something while a position is open (else -1)
        s[K.S_ENTRY_T, 0] -= offset
    return s


def from_rows(s: State, offset: int) -> State:
    """Inverse of `to_rows`: a flat (S_ROWS,) state with absolute bar indices."""
    out = s[:, 0].copy()
    out[K.S_T] += offset
    out[K.S_START_T] += offset
    if out[K.S_POS] != 0.0:
        out[K.S_ENTRY_T] += offset
    return out


def initial_state(sim: Simulation, bar_row: int, offset: int) -> State:
    """The env's reset state (flat, initial cash) at decision row ``bar_row``, absolute indices."""
    s = np.zeros((K.S_ROWS, 1), dtype=np.float64)
    K.reset_env(0, bar_row, s, sim.market, sim.params)
    return from_rows(s, offset)


class PaperBroker:
    """Simulated execution through the env's kernel; its order book lives in the ledger.

    Args:
        ledger: the session's ledger (the book is its ``orders`` table).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def submit(self, decision: Decision, now_ms: int) -> bool:
        """Accept the order of ``decision``; a resend of the same ``client_order_id`` is ignored.

        Returns:
            True when the order is new, False for a duplicate.
        """
        new = self.ledger.accept_order(decision.client_order_id, decision.bar_ts, decision.action, now_ms)
        if not new:
            logger.info("order %s already in the book: resend ignored", decision.client_order_id)
        return new

    def settle(self, decision: Decision, state: State, sim: Simulation, offset: int,
               now_ms: int) -> tuple[State, dict[str, Any]]:
        """Fill the order of ``decision`` over the bar after its decision bar and commit the step.

        Args:
            decision: the decision at bar t (``decision.bar_index`` absolute).
            state: the kernel state at bar t, absolute indices.
            sim: kernel arrays whose rows include t and t + 1 (row = absolute index - ``offset``).
            offset: absolute index of ``sim``'s row 0.
            now_ms: wall-clock time of the settlement, ms UTC.

        Returns:
            (state after the step, the env's info dict of the step).
        """
        if self.ledger.order(decision.client_order_id) is None:
            raise RuntimeError(f"order {decision.client_order_id} was never accepted; cannot settle it")
        s = to_rows(state, offset)
        t = int(s[K.S_T, 0])
        if t != decision.bar_index - offset or t + 1 >= sim.market.shape[0]:
            raise RuntimeError(f"settling decision bar {decision.bar_index} needs rows {t} and {t + 1} "
                               f"of {sim.market.shape[0]} (offset {offset})")
        s[K.S_FEED_LAG, 0] = decision.feed_lag  # the risk inputs as they were at the decision
        s[K.S_KILL, 0] = 1.0 if decision.kill_reason is not None else 0.0
        K.step_env(0, decision.action, s, sim.market, sim.params, sim.levels)
        info = sim.info_from_column(s[:, 0].tolist())
        new_state = from_rows(s, offset)
        terminated = bool(s[K.S_TERMINATED, 0] > 0.0)
        self.ledger.commit_settlement(decision, decision.bar_index + 1, info, float(s[K.S_REWARD, 0]), terminated,
                                      new_state, now_ms)
        return new_state, info
