"""The paper session's kill switch: a ``KILL`` file in the paper folder, SIGTERM, or SIGINT.

Contract (docs/paper.md, "Risk controls"):

- ``<paper.dir>/KILL``: a UTF-8 text file whose text (stripped, at most `MAX_REASON_CHARS`) is the
  reason; an empty file reads as ``"KILL file"``. Write it atomically (`request_kill` does: a
  temporary file in the same folder, then ``os.replace``). The session checks for it before every
  decision. While it exists, the next decision is a kill: its order flattens the position at the
  next bar's open (the kernel's kill input, HALTED / ``kill``), and the session stops once that
  order has settled. A rerun with the file still there stops again without trading; delete the file
  to resume trading.
- SIGTERM: the same as the file with reason ``"SIGTERM"`` (the file is not written, so a rerun
  resumes trading).
- SIGINT (Ctrl-C): stop after the current bar without flattening; the open position and the pending
  order stay in the ledger, and a rerun resumes. A second SIGINT interrupts at once.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

KILL_FILE = "KILL"
#: longest reason kept from a KILL file (characters)
MAX_REASON_CHARS = 500


def read_kill(paper_dir: str | Path) -> str | None:
    """The reason in ``<paper_dir>/KILL``, or None when there is no such file."""
    path = Path(paper_dir) / KILL_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return text.strip()[:MAX_REASON_CHARS] or "KILL file"


def request_kill(paper_dir: str | Path, reason: str) -> Path:
    """Write ``<paper_dir>/KILL`` with ``reason`` atomically (readers never see a partial file)."""
    folder = Path(paper_dir)
    fd, tmp = tempfile.mkstemp(prefix=".KILL.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(reason)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / KILL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / KILL_FILE


class StopSignals:
    """What the signal handlers received: ``kill_reason`` (SIGTERM) and ``stop`` (SIGINT)."""

    def __init__(self) -> None:
        self.kill_reason: str | None = None
        self.stop = False

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        logger.warning("SIGTERM: kill switch engaged, the position is flattened at the next open, then the session stops")
        self.kill_reason = "SIGTERM"

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:
            raise KeyboardInterrupt
        logger.warning("SIGINT: stopping after this bar without flattening (press Ctrl-C again to interrupt at once)")
        self.stop = True


@contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install SIGTERM / SIGINT handlers for the block (main thread only; elsewhere nothing is installed)."""
    signals = StopSignals()
    try:
        old = {signal.SIGTERM: signal.signal(signal.SIGTERM, signals._on_sigterm),
               signal.SIGINT: signal.signal(signal.SIGINT, signals._on_sigint)}
    except ValueError:  # not the main thread: signals stay with the caller
        yield signals
        return
    try:
        yield signals
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
