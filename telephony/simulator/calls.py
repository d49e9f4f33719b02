"""Call legs, recordings and the record a finished call leaves behind.

A leg is what Twilio calls a Call resource (one SID). An inbound call and the legs its
`<Dial>` creates share one `CallRecord`, so a test reads everything about a call in one place.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from .transcript import Line, Transcript

API_VERSION = "2010-04-01"
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}


def new_sid(prefix: str) -> str:
    """Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


@dataclass
class WebhookHit:
    """One HTTP request the simulator made to the app, with how it went."""

    kind: str  # voice, action, fallback, whisper, wait, status, recording
    url: str
    method: str
    params: dict[str, str]
    status: int | None  # None: no HTTP response (connection failed)
    latency: float  # wall-clock seconds
    t: float  # virtual time
    call_sid: str
    error_code: int | None = None


@dataclass
class Notification:
    """A Twilio debugger event (11200, 12100, ...) raised on a call."""

    code: int
    message: str
    url: str
    t: float
    call_sid: str


@dataclass
class Recording:
    sid: str
    account_sid: str
    call_sid: str
    start_t: float
    duration: int
    channels: int
    source: str  # RecordVerb, DialVerb, OutboundAPI
    track: str = "both"
    status: str = "completed"


@dataclass
class Interrupt:
    """A change forced on a live leg from outside its thread (REST update, queue bridge)."""

    kind: str  # redirect, twiml, hangup, bridge
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    payload: Any = None


@dataclass
class CallRecord:
    """Everything a call did: its legs, what was heard and pressed, webhooks, recordings."""

    transcript: Transcript = field(default_factory=Transcript)
    legs: list[CallLeg] = field(default_factory=list)
    webhooks: list[WebhookHit] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def call(self) -> CallLeg:
        return self.legs[0]

    @property
    def sid(self) -> str:
        return self.call.sid

    @property
    def status(self) -> str:
        return self.call.status

    def hits(self, kind: str | None = None, path: str | None = None) -> list[WebhookHit]:
        with self.lock:
            hits = list(self.webhooks)
        return [
            h for h in hits
            if (kind is None or h.kind == kind) and (path is None or path in h.url)
        ]

    def add_hit(self, hit: WebhookHit) -> None:
        with self.lock:
            self.webhooks.append(hit)

    def children(self) -> list[CallLeg]:
        return [leg for leg in self.legs if leg.parent_sid]

    def __str__(self) -> str:
        return str(self.transcript)


class CallLeg:
    """One Call resource; its own virtual time `t` moves as its TwiML runs."""

    def __init__(
        self,
        record: CallRecord,
        account_sid: str,
        from_: str,
        to: str,
        direction: str,
        t: float,
        parent_sid: str | None = None,
        label: str | None = None,
    ) -> None:
        self.sid = new_sid("CA")
        self.record = record
        self.account_sid = account_sid
        self.from_ = from_
        self.to = to
        self.direction = direction
        self.parent_sid = parent_sid
        self.label = label or (f"caller {from_}" if direction == "inbound" else f"callee {to}")
        self.created_t = t
        self.t = t
        self.answered_t: float | None = None
        self.end_t: float | None = None
        self.status = "queued" if direction == "outbound-api" else "ringing"
        self.deadline: float | None = None  # virtual time the caller will hang up
        self.status_callback: str | None = None
        self.status_events: set[str] = {"completed"}
        self.status_method = "POST"
        self.fallback_url: str | None = None
        self.fallback_method = "POST"
        self.sequence = 0
        self.queue_time = 0
        self.done = threading.Event()
        self._interrupt: Interrupt | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()
        record.legs.append(self)

    # ---- control from other threads ---------------------------------------------------

    def interrupt(self, change: Interrupt) -> None:
        with self._lock:
            self._interrupt = change
            self._wake.set()

    def take_interrupt(self) -> Interrupt | None:
        with self._lock:
            change, self._interrupt = self._interrupt, None
            self._wake.clear()
            return change

    def wait_for_interrupt(self, real_seconds: float) -> bool:
        """Sleep up to `real_seconds` of wall time; True if an interrupt arrived."""
        return self._wake.wait(real_seconds)

    # ---- state ------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> int:
        """Seconds from answer to end (Twilio's CallDuration); 0 if never answered."""
        if self.answered_t is None:
            return 0
        end = self.end_t if self.end_t is not None else self.t
        return round(end - self.answered_t)

    def params(self) -> dict[str, str]:
        """The parameters Twilio sends with every request about this call."""
        p = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": self.direction,
            "From": self.from_,
            "To": self.to,
        }
        if self.parent_sid:
            p["ParentCallSid"] = self.parent_sid
        return p

    def say(self, kind: str, text: str, /, t: float | None = None, who: str | None = None,
            **data: Any) -> None:
        """Add a transcript line about this leg."""
        self.record.transcript.add(
            Line(self.t if t is None else t, self.sid, kind, who or self.label, text, data)
        )
