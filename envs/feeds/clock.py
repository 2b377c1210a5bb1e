"""Clocks for feeds: the wall clock, an exchange-synchronised clock, and a simulated clock for replays.

A ``Clock`` has ``now_ms()`` (int ms UTC) and ``sleep(seconds)``. ``SimulatedClock.sleep`` advances
simulated time instantly, so tests and replays run at many bars per second while the code under test
believes it waits (a fake exchange can read the same clock as its "server now").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)


@runtime_checkable
class Clock(Protocol):
    """Time source of a feed."""

    def now_ms(self) -> int:
        """Current time, int ms since the Unix epoch (UTC)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (>= 0) of this clock's time."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now_ms(self) -> int:
        """Wall-clock time, ms UTC."""
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` of real time."""
        if seconds > 0:
            time.sleep(seconds)


class ExchangeClock(SystemClock):
    """Wall clock corrected by the exchange's offset (``fetch_time`` minus local time), measured once.

    Args:
        exchange: ccxt exchange with ``fetch_time``.
    """

    def __init__(self, exchange: Any) -> None:
        local_before = time.time_ns() // 1_000_000
        server = int(exchange.fetch_time())
        local_after = time.time_ns() // 1_000_000
        self.offset_ms = server - (local_before + local_after) // 2
        logger.info("%s clock offset: %+d ms", getattr(exchange, "id", "exchange"), self.offset_ms)

    def now_ms(self) -> int:
        """Exchange time estimate, ms UTC."""
        return super().now_ms() + self.offset_ms


class SimulatedClock:
    """A clock that only moves when told to (thread-safe).

    Args:
        start_ms: initial time, ms UTC.
    """

    def __init__(self, start_ms: int) -> None:
        self._now = int(start_ms)
        self._lock = threading.Lock()
        self.slept_s = 0.0  # total simulated sleeping, seconds

    def now_ms(self) -> int:
        """Simulated time, ms UTC."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance simulated time by ``seconds`` (returns at once)."""
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        with self._lock:
            self._now += round(seconds * 1000)
            self.slept_s += seconds

    def advance_ms(self, ms: int) -> int:
        """Move time forward by ``ms`` (>= 0); return the new time."""
        if ms < 0:
            raise ValueError(f"simulated time only moves forward (got {ms} ms)")
        with self._lock:
            self._now += int(ms)
            return self._now

    def set_ms(self, now_ms: int) -> None:
        """Jump to ``now_ms`` (must not be in the past)."""
        with self._lock:
            if now_ms < self._now:
                raise ValueError(f"simulated time only moves forward ({now_ms} < {self._now})")
            self._now = int(now_ms)
