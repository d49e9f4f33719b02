"""Virtual time for the simulator: calls advance their own timeline, nothing sleeps.

Each call keeps its own position on the shared virtual axis (seconds since the clock's
epoch), so concurrent calls need no global tick. Only queue waits, where calls meet other
calls, also pass a little real time (see `Simulator.time_scale`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

DEFAULT_EPOCH = datetime(2024, 1, 15, 9, 0, 0, tzinfo=UTC)  # a Monday morning


class SimClock:
    """A thread-safe virtual clock: `now()` is seconds since `epoch`."""

    def __init__(self, epoch: datetime | None = None, start: float = 0.0) -> None:
        self.epoch = epoch or DEFAULT_EPOCH
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += max(0.0, seconds)
            return self._now

    def advance_to(self, t: float) -> float:
        """Move forward to `t` (never backwards): sequential calls then do not overlap."""
        with self._lock:
            self._now = max(self._now, t)
            return self._now

    def datetime_at(self, t: float) -> datetime:
        return self.epoch + timedelta(seconds=t)

    def rfc2822(self, t: float) -> str:
        """Twilio's `Timestamp` and JSON date format, e.g. 'Mon, 15 Jan 2024 09:00:00 +0000'."""
        return format_datetime(self.datetime_at(t))
