"""Time in one place: the timeframe parser, times to int64 ms UTC, and ms to ISO text.

Every bar timestamp in quantgym is int64 milliseconds since the epoch, UTC, at the bar's open.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

#: milliseconds per timeframe unit (months are not fixed-length and are not supported)
UNIT_MS: dict[str, int] = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TF_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
#: the end (exclusive) of the times quantgym accepts: 2100-01-01 in ms
MAX_MS = 4_102_444_800_000


def parse_timeframe(timeframe: str | int) -> int:
    """A bar interval in milliseconds (> 0).

    Args:
        timeframe: ``"<n><unit>"`` with unit s/m/h/d/w (``"1m"``, ``"15m"``, ``"4h"``, ``"1d"``, ``"1w"``), a
            string of digits, or an int, both meaning milliseconds.

    Raises:
        ValueError: unparseable or non-positive, with the accepted forms.
    """
    if isinstance(timeframe, (int, np.integer)) and not isinstance(timeframe, bool):
        ms = int(timeframe)
    elif isinstance(timeframe, str) and timeframe.strip().isdigit():
        ms = int(timeframe)
    elif isinstance(timeframe, str) and (m := _TF_RE.match(timeframe)):
        ms = int(m.group(1)) * UNIT_MS[m.group(2)]
    else:
        raise ValueError(
            f"timeframe={timeframe!r} is invalid: use '<n><unit>' with unit s/m/h/d/w (e.g. '5m', '1h', '1d'; "
            "months are unsupported) or an integer number of milliseconds"
        )
    if ms <= 0:
        raise ValueError(f"timeframe={timeframe!r} is invalid: must be > 0 ms")
    return ms


def to_ms(value: int | str | pd.Timestamp | np.integer, name: str = "time") -> int:
    """ms ints, ISO strings (UTC unless an offset is given) or a pd.Timestamp as int64 ms UTC in [1970, 2100).

    Raises:
        ValueError: when ``value`` cannot be parsed or is out of range; the message names ``name``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a time; give ms since epoch (UTC), an ISO date or a Timestamp")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        ts = pd.Timestamp(value)
        if ts is pd.NaT:
            raise ValueError("NaT")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        ms = int((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "ms"))
        if not 0 <= ms < MAX_MS:
            raise ValueError("out of range")
        return ms
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(
            f"{name}={value!r} is not a valid time; use ms since epoch (UTC), e.g. 1717200000000, "
            "or an ISO date between 1970 and 2100 such as '2024-06-01' / '2024-06-01T12:00:00Z'"
        ) from e


def iso_utc(ms: int | np.integer | None, fmt: str | None = None) -> str:
    """``ms`` as UTC text: ISO 8601 (``2024-06-01T12:00:00+00:00``) or ``strftime(fmt)``; ``-`` for None."""
    if ms is None:
        return "-"
    ts = pd.Timestamp(int(ms), unit="ms", tz="UTC")
    return ts.isoformat() if fmt is None else ts.strftime(fmt)
