"""The paper ledger: one SQLite file (WAL) per paper folder, written ahead of every action.

Tables:
    meta(key, value): what the session trades (run, model id, feed); checked on resume.
    decisions: one row per decided bar (action, target exposure, ``client_order_id``, observation hash,
        model id, the bar's close, the risk inputs: feed lag and kill reason, the forecaster model id and
        its ``train_label_end``), committed BEFORE its order goes to the broker.
    orders: the paper broker's book, keyed by ``client_order_id`` (a resend is ignored).
    steps: one row per settled step, committed in ONE transaction with the order's fill status;
        columns are the env's info keys (`envs.sim.simulation.INFO_KEYS`, same names and meaning) plus
        the decision bar, the order id and the full kernel state needed to continue.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from agents.evaluation.steps import INT_KEYS, step_values
from envs.sim.simulation import INFO_KEYS

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite"


def _info_columns_sql() -> str:
    return ", ".join(f"{k} {'INTEGER' if k in INT_KEYS else 'REAL'} NOT NULL" for k in INFO_KEYS)


@dataclass(frozen=True, slots=True)
class Decision:
    """A committed decision for bar t.

    Attributes:
        bar_ts: decision bar's open time, ms UTC.
        bar_index: the bar's index in the session's bar sequence (0 = first bar of the history).
        client_order_id: deterministic order id (run id + bar_ts).
        action: the model's action (discrete index or continuous value) as float64.
        target_exposure: the kernel's sized target exposure for the action (position value / equity).
        obs_hash: blake2b hex digest of the float32 observation bytes.
        model_id: algorithm, model file and its content hash.
        price: the decision bar's close, quote currency per base unit.
        feed_lag: bars the feed was behind at the decision (the kernel's stale-feed input), >= 0.
        kill_reason: the kill switch's reason when it was engaged at the decision (the order then
            flattens), else None.
        forecaster_id: ``model_id`` of the forecaster model behind the observation's ``fc_*`` columns
            (``<model>:fit<N>.u<M>@<ms of its fit/update bar>``), None for a run without forecaster.
        forecast_label_end: that model's ``train_label_end`` (ms UTC: when its latest label became
            known; never after the decision bar's close).
    """

    bar_ts: int
    bar_index: int
    client_order_id: str
    action: float
    target_exposure: float
    obs_hash: str
    model_id: str
    price: float
    feed_lag: int = 0
    kill_reason: str | None = None
    forecaster_id: str | None = None
    forecast_label_end: int | None = None


_DECISION_COLUMNS = ("bar_ts, bar_index, client_order_id, action, target_exposure, obs_hash, model_id, price, "
                     "feed_lag, kill_reason, forecaster_id, forecast_label_end")


@dataclass(frozen=True, slots=True)
class Settled:
    """The last settled step: its marked bar and the kernel state after it.

    Attributes:
        bar_ts: marked (settled) bar's open time, ms UTC.
        bar_index: its index in the bar sequence.
        state: the kernel state column (``kernels.S_ROWS`` float64) with absolute bar indices.
    """

    bar_ts: int
    bar_index: int
    state: npt.NDArray[np.float64]


class Ledger:
    """Write-ahead ledger of a paper session in ``<paper_dir>/ledger.sqlite`` (WAL, synchronous=FULL).

    Args:
        paper_dir: the paper folder (created if missing).
    """

    def __init__(self, paper_dir: str | Path) -> None:
        self.path = Path(paper_dir) / LEDGER_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN/COMMIT below
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self._create()

    def _create(self) -> None:
        with self.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            c.execute(
                "CREATE TABLE IF NOT EXISTS decisions (bar_ts INTEGER PRIMARY KEY, bar_index INTEGER NOT NULL, "
                "client_order_id TEXT NOT NULL UNIQUE, action REAL NOT NULL, target_exposure REAL NOT NULL, "
                "obs_hash TEXT NOT NULL, model_id TEXT NOT NULL, price REAL NOT NULL, decided_at_ms INTEGER NOT NULL, "
                "latency_ms REAL NOT NULL, feed_lag INTEGER NOT NULL, kill_reason TEXT, forecaster_id TEXT, "
                "forecast_label_end INTEGER)")
            c.execute(
                "CREATE TABLE IF NOT EXISTS orders (client_order_id TEXT PRIMARY KEY, bar_ts INTEGER NOT NULL, "
                "action REAL NOT NULL, status TEXT NOT NULL, submitted_at_ms INTEGER NOT NULL, "
                "filled_bar_ts INTEGER)")
            c.execute(
                f"CREATE TABLE IF NOT EXISTS steps (step INTEGER PRIMARY KEY, decision_ts INTEGER NOT NULL UNIQUE, "
                f"client_order_id TEXT NOT NULL UNIQUE, bar_index INTEGER NOT NULL, {_info_columns_sql()}, "
                f"reward REAL NOT NULL, terminated INTEGER NOT NULL, state BLOB NOT NULL, "
                f"settled_at_ms INTEGER NOT NULL)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (committed data is already durable)."""
        self.conn.close()

    # -- meta -----------------------------------------------------------------------------------
    def check_meta(self, meta: Mapping[str, str]) -> None:
        """Store ``meta`` on first use; on resume, require the same values.

        Raises:
            ValueError: when this folder belongs to a session with other values (names them).
        """
        stored = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            with self.transaction() as c:
                c.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            return
        diff = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
        if diff:
            raise ValueError(
                f"paper.dir={str(self.path.parent)!r} holds a session with other settings "
                f"{ {k: old for k, (old, _) in diff.items()} } (this command: { {k: new for k, (_, new) in diff.items()} }); "
                "rerun with the same settings to resume, or choose a new paper.dir")

    # -- decisions ------------------------------------------------------------------------------
    def commit_decision(self, d: Decision, decided_at_ms: int, latency_ms: float) -> None:
        """Commit the decision for bar ``d.bar_ts`` (fails if that bar was already decided)."""
        with self.transaction() as c:
            c.execute(f"INSERT INTO decisions ({_DECISION_COLUMNS}, decided_at_ms, latency_ms) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (d.bar_ts, d.bar_index, d.client_order_id, d.action, d.target_exposure, d.obs_hash,
                       d.model_id, d.price, d.feed_lag, d.kill_reason, d.forecaster_id, d.forecast_label_end,
                       decided_at_ms, latency_ms))

    def decision(self, bar_ts: int) -> Decision | None:
        """The decision for bar ``bar_ts``, if committed."""
        row = self.conn.execute(f"SELECT {_DECISION_COLUMNS} FROM decisions WHERE bar_ts = ?", (bar_ts,)).fetchone()
        return None if row is None else Decision(*row)

    def last_decision(self) -> Decision | None:
        """The latest committed decision."""
        row = self.conn.execute("SELECT MAX(bar_ts) FROM decisions").fetchone()
        return None if row[0] is None else self.decision(int(row[0]))

    # -- the paper broker's book ----------------------------------------------------------------
    def accept_order(self, client_order_id: str, bar_ts: int, action: float, now_ms: int) -> bool:
        """Put an order in the book; False (and nothing changes) when that id is already there."""
        with self.transaction() as c:
            cur = c.execute("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, 'accepted', ?, NULL)",
                            (client_order_id, bar_ts, action, now_ms))
            return cur.rowcount == 1

    def order(self, client_order_id: str) -> tuple[int, float, str] | None:
        """(bar_ts, action, status) of an order in the book."""
        row = self.conn.execute("SELECT bar_ts, action, status FROM orders WHERE client_order_id = ?",
                                (client_order_id,)).fetchone()
        return None if row is None else (int(row[0]), float(row[1]), str(row[2]))

    # -- settlement -----------------------------------------------------------------------------
    def commit_settlement(self, decision: Decision, bar_index: int, info: Mapping[str, Any], reward: float,
                          terminated: bool, state: npt.NDArray[np.float64], now_ms: int) -> None:
        """One transaction: the step row (info, kernel state) and the order marked filled."""
        values = step_values(info)
        blob = np.ascontiguousarray(state, dtype="<f8").tobytes()
        cols = ", ".join(INFO_KEYS)
        marks = ", ".join("?" * len(INFO_KEYS))
        with self.transaction() as c:
            c.execute(
                f"INSERT INTO steps (decision_ts, client_order_id, bar_index, {cols}, reward, terminated, state, "
                f"settled_at_ms) VALUES (?, ?, ?, {marks}, ?, ?, ?, ?)",
                (decision.bar_ts, decision.client_order_id, bar_index, *values, reward, int(terminated), blob, now_ms))
            updated = c.execute("UPDATE orders SET status = 'filled', filled_bar_ts = ? WHERE client_order_id = ? "
                                "AND status = 'accepted'", (int(info["timestamp"]), decision.client_order_id))
            if updated.rowcount != 1:
                raise RuntimeError(f"order {decision.client_order_id} is not an accepted order in the book")

    def last_settled(self) -> Settled | None:
        """The latest settled step (marked bar and kernel state), or None before the first."""
        row = self.conn.execute("SELECT timestamp, bar_index, state FROM steps ORDER BY step DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return Settled(int(row[0]), int(row[1]), np.frombuffer(row[2], dtype="<f8").copy())

    def last_settled_decision(self) -> Decision | None:
        """The decision of the latest settled step, or None before the first."""
        row = self.conn.execute("SELECT decision_ts FROM steps ORDER BY step DESC LIMIT 1").fetchone()
        return None if row is None else self.decision(int(row[0]))

    def is_terminated(self) -> bool:
        """Whether the last settled step ended the session (bankruptcy or the drawdown stop)."""
        row = self.conn.execute("SELECT terminated FROM steps ORDER BY step DESC LIMIT 1").fetchone()
        return bool(row and row[0])

    def counts(self) -> dict[str, int]:
        """Rows per table (decisions, orders, steps)."""
        return {t: int(self.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("decisions", "orders", "steps")}


def read_table(paper_dir: str | Path, table: str, after: int | None = None) -> pd.DataFrame:
    """A table of a paper folder's ledger (read-only; also while the session runs).

    Args:
        paper_dir: the paper folder.
        table: ``meta``, ``decisions``, ``orders``, ``steps``, or broker=testnet's ``exchange_orders``,
            ``fills_vs_model``, ``reconciliations``.
        after: only the rows whose key is greater (``step`` for steps, ``bar_ts`` for decisions and
            orders): an incremental read for a reader that already holds the earlier rows.
    """
    order_by = {"meta": "key", "decisions": "bar_ts", "orders": "bar_ts", "steps": "step",
                # broker=testnet (agents.paper.brokers.testnet)
                "exchange_orders": "bar_ts", "fills_vs_model": "bar_ts", "reconciliations": "at_ms",
                "protective_orders": "rowid", "exits_vs_model": "trigger_bar_ts"}
    if table not in order_by:
        raise ValueError(f"unknown ledger table {table!r}: one of {sorted(order_by)}")
    path = Path(paper_dir) / LEDGER_FILE
    if not path.exists():
        raise ValueError(f"{path} not found: paper_dir must be a paper folder written by scripts/paper.py")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        order = order_by[table]
        if after is None:
            return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", conn)
        if table == "meta":
            raise ValueError("read_table(..., 'meta', after=...) is invalid: meta has no ordered key")
        return pd.read_sql_query(f"SELECT * FROM {table} WHERE {order} > ? ORDER BY {order}", conn, params=(int(after),))
    finally:
        conn.close()


def read_steps(paper_dir: str | Path) -> pd.DataFrame:
    """The ``steps`` table of a paper folder (read-only; also while the session runs)."""
    return read_table(paper_dir, "steps")
