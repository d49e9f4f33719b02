"""Named call queues (`<Enqueue>`), shared across call threads.

The only place where calls meet: a `<Dial><Queue>` on one thread takes the front member
that another thread is holding in its wait loop, so everything here is locked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .calls import CallLeg, new_sid

DEFAULT_MAX_SIZE = 1000  # Twilio's current default queue length


@dataclass
class Member:
    leg: CallLeg
    joined_t: float


@dataclass
class Bridge:
    """A dequeued member's connection to the dialling leg; the member waits on `done`."""

    dialer: CallLeg
    member: CallLeg
    done: threading.Event = field(default_factory=threading.Event)
    end_t: float = 0.0
    member_hung_up: bool = False


class SimQueue:
    def __init__(self, name: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.name = name
        self.sid = new_sid("QU")
        self.max_size = max_size
        self.members: list[Member] = []
        self._cond = threading.Condition()

    def join(self, leg: CallLeg) -> Member | None:
        with self._cond:
            if len(self.members) >= self.max_size:
                return None
            member = Member(leg, leg.t)
            self.members.append(member)
            self._cond.notify_all()
            return member

    def leave(self, leg: CallLeg) -> bool:
        with self._cond:
            before = len(self.members)
            self.members = [m for m in self.members if m.leg is not leg]
            return len(self.members) != before

    def position(self, leg: CallLeg) -> int:
        with self._cond:
            for i, m in enumerate(self.members):
                if m.leg is leg:
                    return i + 1
            return 0

    def size(self) -> int:
        with self._cond:
            return len(self.members)

    def average_wait(self, now: float) -> int:
        """AvgQueueTime: mean time the current members have waited."""
        with self._cond:
            if not self.members:
                return 0
            return int(sum(max(0.0, now - m.joined_t) for m in self.members) / len(self.members))

    def pop_front(self, real_timeout: float) -> Member | None:
        """Take the longest-waiting member, waiting up to `real_timeout` wall seconds for one."""
        with self._cond:
            if not self.members:
                self._cond.wait_for(lambda: bool(self.members), timeout=real_timeout)
            return self.members.pop(0) if self.members else None


class QueueRegistry:
    def __init__(self) -> None:
        self._queues: dict[str, SimQueue] = {}
        self._lock = threading.Lock()

    def get_or_create(self, name: str) -> SimQueue:
        with self._lock:
            if name not in self._queues:
                self._queues[name] = SimQueue(name)
            return self._queues[name]

    def get(self, name: str) -> SimQueue | None:
        with self._lock:
            return self._queues.get(name)

    def all(self) -> list[SimQueue]:
        with self._lock:
            return list(self._queues.values())
