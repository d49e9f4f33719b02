"""What happened on a call, in order, as readable lines: who heard, pressed, rang, recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Line:
    """One event; `t` is virtual seconds since the clock's epoch."""

    t: float
    call_sid: str
    kind: str  # hears, presses, says, ring, answer, dial, recording, webhook, error, queue, hangup, status
    who: str
    text: str
    data: dict[str, object] = field(default_factory=dict, compare=False)

    def format(self, origin: float = 0.0) -> str:
        s = max(0, round(self.t - origin))
        return f"[{s // 60:02d}:{s % 60:02d}] {self.who} {self.text}".rstrip()


class Transcript:
    """An append-only, thread-safe list of lines; printing sorts them by virtual time."""

    def __init__(self, lines: Iterable[Line] = ()) -> None:
        self._lines: list[Line] = list(lines)
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Line], None]] = []  # live output (softphone)

    def add(self, line: Line) -> None:
        with self._lock:
            self._lines.append(line)
        for listener in self.listeners:
            listener(line)

    @property
    def lines(self) -> list[Line]:
        with self._lock:
            return sorted(self._lines, key=lambda line: line.t)  # stable: same-t keeps order

    def __iter__(self) -> Iterator[Line]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self._lines)

    def of_kind(self, kind: str) -> list[Line]:
        return [line for line in self.lines if line.kind == kind]

    def texts(self, kind: str | None = None) -> list[str]:
        return [line.text for line in self.lines if kind is None or line.kind == kind]

    def format(self, origin: float | None = None, kinds: set[str] | None = None) -> str:
        """The printable transcript; times relative to `origin` (default: first line)."""
        lines = [line for line in self.lines if kinds is None or line.kind in kinds]
        if origin is None:
            origin = lines[0].t if lines else 0.0
        return "\n".join(line.format(origin) for line in lines)

    def __str__(self) -> str:
        return self.format(kinds=READABLE)


# Webhook lines are kept for tests and load stats but left out of the default printout.
READABLE = {
    "hears", "presses", "says", "ring", "answer", "dial", "recording", "error", "queue",
    "hangup", "status", "note",
}


def merge(transcripts: Iterable[Transcript]) -> Transcript:
    out = Transcript()
    for transcript in transcripts:
        for line in transcript.lines:
            out.add(line)
    return out
