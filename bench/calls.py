"""Whole call flows as Twilio drives them: signed form POSTs, following the TwiML we get back.

A caller dials in, presses 1, an agent's leg answers the whisper, talks, hangs up; the Dial
action and the status callback follow; no agent free → voicemail: Record action and the
recording callback. asyncio + aiohttp so one process offers hundreds of concurrent calls at a
fixed rate (open loop: latency counts from the moment a request was due, not sent).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import statistics
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from servers import ACCOUNT_SID, AUTH_TOKEN, HOTLINE_NUMBER
from twilio.request_validator import RequestValidator


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


START_LEAD_SECONDS = 0.1


class Pacer:
    """Hands out send times `1/rate` apart; None rate = as fast as the server answers.

    The first send time is `START_LEAD_SECONDS` after the first request is ready. A phase
    starts hundreds of calls at once, and each does its first step (ids, form, signature)
    before the event loop sends anything: ~30 ms of the driver's CPU for 400 calls. With the
    schedule starting at once, the requests due in that time went out 10-33 ms late (measured: the
    time from a request's due time to its coroutine running again), and open-loop latency
    counted the driver's own start-up as the server's. The lead lets the driver set up first."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next: float | None = None

    async def slot(self) -> float:
        now = time.perf_counter()
        if not self.interval:
            return now
        if self.next is None:
            self.next = now + START_LEAD_SECONDS
        due, self.next = self.next, self.next + self.interval
        if due > now:
            await asyncio.sleep(due - now)
        return due


@dataclass
class Hit:
    path: str
    latency: float  # from the moment it was due (open loop) to the full response
    status: int


@dataclass
class Booking:
    agent: str
    claimed_seen: float  # we got the Dial naming the agent (the claim happened before)
    released_sent: float  # we sent the Dial action (the release happens after)


@dataclass
class Run:
    hits: list[Hit] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    accepted: dict[str, float] = field(default_factory=dict)  # status key → time 2xx received

    @property
    def throughput(self) -> float:
        return len(self.hits) / self.wall if self.wall else 0.0

    def latencies(self) -> list[float]:
        return [h.latency for h in self.hits]

    def errors(self) -> int:
        return sum(1 for h in self.hits if h.status >= 400)

    def summary(self) -> str:
        lat = self.latencies()
        return (f"{len(self.hits)} webhooks in {self.wall:.2f} s = {self.throughput:.0f}/s, "
                f"p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms, "
                f"mean {statistics.fmean(lat) * 1000:.1f} ms, errors {self.errors()}")


def double_bookings(bookings: list[Booking]) -> int:
    """Overlapping holds of one agent, as the caller side saw them (an overlap proves one)."""
    found = 0
    by_agent: dict[str, list[Booking]] = {}
    for booking in bookings:
        by_agent.setdefault(booking.agent, []).append(booking)
    for holds in by_agent.values():
        holds.sort(key=lambda b: b.claimed_seen)
        for before, after in itertools.pairwise(holds):
            found += after.claimed_seen < before.released_sent
    return found


class Caller:
    def __init__(self, base: str, session: aiohttp.ClientSession, pacer: Pacer, run: Run, *,
                 talk: tuple[float, float] = (0.0, 0.0)) -> None:
        self.base = base
        self.session = session
        self.pacer = pacer
        self.run = run
        self.talk = talk
        self.validator = RequestValidator(AUTH_TOKEN)

    async def post(self, url: str, params: dict[str, str]) -> tuple[int, bytes]:
        if url.startswith("/"):
            url = self.base + url
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params),
                   "I-Twilio-Idempotency-Token": uuid.uuid4().hex}  # Twilio sends one with every request
        due = await self.pacer.slot()
        async with self.session.post(url, data=params, headers=headers) as response:
            body = await response.read()
        self.run.hits.append(Hit(urlsplit(url).path, time.perf_counter() - due, response.status))
        return response.status, body

    def outcome(self, name: str) -> None:
        self.run.outcomes[name] = self.run.outcomes.get(name, 0) + 1

    async def call(self, n: int) -> None:
        sid = "CA" + uuid.uuid4().hex
        caller = f"+37255{n % 1_000_000:06d}"
        base = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": caller, "To": HOTLINE_NUMBER,
                "Caller": caller, "Called": HOTLINE_NUMBER, "CallStatus": "ringing",
                "Direction": "inbound", "ApiVersion": "2010-04-01"}
        _, body = await self.post("/voice/incoming", base)
        gather = ET.fromstring(body).find("Gather")
        if gather is None:
            self.outcome("no_menu")
            return
        live = {**base, "CallStatus": "in-progress"}
        _, body = await self.post(gather.attrib["action"], {**live, "Digits": "1"})
        doc = ET.fromstring(body)
        dial, record = doc.find("Dial"), doc.find("Record")
        talk = random.uniform(*self.talk)
        if dial is not None:
            target = dial.find("Client")
            assert target is not None, body
            seen = time.perf_counter()
            child = "CA" + uuid.uuid4().hex
            agent = (target.text or "").strip()
            await self.post(target.attrib["url"], {**live, "CallSid": child, "ParentCallSid": sid,
                                                    "Direction": "outbound-dial", "To": f"client:{agent}"})
            if talk:
                await asyncio.sleep(talk)
            released = time.perf_counter()
            await self.post(dial.attrib["action"], {**live, "DialCallStatus": "completed", "DialCallSid": child,
                                                    "DialCallDuration": str(round(talk)), "DialBridged": "true"})
            self.run.bookings.append(Booking(agent, seen, released))
            self.outcome("answered")
        elif record is not None:
            rec = "RE" + uuid.uuid4().hex
            url = f"{self.base}/rec/{rec}"
            await self.post(record.attrib["action"], {**live, "RecordingUrl": url, "RecordingDuration": "5",
                                                      "Digits": "hangup"})
            await self.post(record.attrib["recordingStatusCallback"], {
                "AccountSid": ACCOUNT_SID, "CallSid": sid, "RecordingSid": rec, "RecordingUrl": url,
                "RecordingStatus": "completed", "RecordingDuration": "5", "RecordingChannels": "1",
                "RecordingSource": "RecordVerb"})
            self.outcome("voicemail")
        else:
            self.outcome("other")
        status, _ = await self.post("/voice/status", {**base, "CallStatus": "completed", "SequenceNumber": "0",
                                                      "CallDuration": str(round(talk) + 20)})
        if status < 300:
            self.run.accepted[f"status:{sid}:0"] = time.time()


async def run_calls(base: str, count: int, inflight: int, *, rate: float | None = None,
                    talk: tuple[float, float] = (0.0, 0.0), connections: int = 128, first: int = 0) -> Run:
    """`count` calls, at most `inflight` at once; every request waits for its slot at `rate`/s.
    The same flow drives the app and the baseline (bench/twiml_baseline.py answers in kind)."""
    run = Run()
    pacer = Pacer(rate)
    gate = asyncio.Semaphore(inflight)
    connector = aiohttp.TCPConnector(limit=connections, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        caller = Caller(base, session, pacer, run, talk=talk)

        async def one(n: int) -> None:
            async with gate:
                await caller.call(n)

        started = time.perf_counter() + (START_LEAD_SECONDS if rate else 0.0)  # the schedule's start
        await asyncio.gather(*(one(first + n) for n in range(count)))
        run.wall = time.perf_counter() - started
    return run


async def post_status_callbacks(base: str, count: int, rate: float, run: Run, first: int = 0) -> None:
    """Status callbacks alone (one card event each) at `rate`/s: the card bench's load."""
    pacer = Pacer(rate)
    connector = aiohttp.TCPConnector(limit=128, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        caller = Caller(base, session, pacer, run)

        async def one(n: int) -> None:
            sid = "CA" + uuid.uuid4().hex
            number = f"+37256{(first + n) % 1_000_000:06d}"
            params = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": number, "To": HOTLINE_NUMBER,
                      "CallStatus": "completed", "Direction": "inbound", "SequenceNumber": "0",
                      "CallDuration": "30", "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events"}
            status, _ = await caller.post("/voice/status", params)
            if status < 300:
                run.accepted[f"status:{sid}:0"] = time.time()

        started = time.perf_counter() + START_LEAD_SECONDS  # the schedule's start
        await asyncio.gather(*(one(n) for n in range(count)))
        run.wall = time.perf_counter() - started


def sync(coro: Any) -> Any:
    """Run one phase of load. The driver's own garbage collector is off while it runs: a full
    collection of the driver's heap (every object of the earlier phases) paused the event loop
    for ~80 ms, and every request in flight then counted the pause as server latency (the p99
    excursions of the fixed-rate phase). Its objects are freed by reference counting as they
    go; what is cyclic is collected between phases."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(coro)
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
