"""`Simulator`: the local Twilio account — numbers, parties, calls, queues, recordings.

Inbound calls run synchronously in the calling thread (`place_inbound`) or in their own
thread (`start_inbound`); REST-created calls run in a background thread, or on demand with
`run_pending()` when `autorun=False`. Webhooks and status callbacks are sent synchronously
from the call's thread, so the order a test sees is the order the call produced.
"""

from __future__ import annotations

import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from . import twiml as twiml_mod
from .calls import API_VERSION, CallLeg, CallRecord, Interrupt, Recording, WebhookHit, new_sid
from .clock import SimClock
from .interpreter import PLAY_SECONDS, Goto, Inline, Session
from .parties import (
    DEFAULT_RING_SECONDS,
    DEFAULT_TALK_SECONDS,
    AgentBehaviour,
    CallerScript,
    ring,
)
from .queues import QueueRegistry
from .webhook import WebhookClient

STATUS_EVENTS = {"initiated", "ringing", "answered", "completed"}
REST_TIMEOUT_DEFAULT = 60  # Calls.create `Timeout`


@dataclass
class NumberConfig:
    """A hotline number as configured in the Twilio console."""

    number: str
    voice_url: str
    voice_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: tuple[str, ...] = ("completed",)
    fallback_url: str | None = None
    fallback_method: str = "POST"


class Simulator:
    """A small Twilio: drive it from tests, the demo, scenarios and the load mode."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        clock: SimClock | None = None,
        dial_buffer_seconds: int = 5,
        ring_seconds: float = DEFAULT_RING_SECONDS,
        time_scale: float = 0.01,
        default_talk_seconds: float = DEFAULT_TALK_SECONDS,
        max_queue_wait_seconds: float = 3600.0,
        api_base: str = "http://127.0.0.1",
        autorun: bool = True,
        pace: str = "queue",
        default_callee: AgentBehaviour | Mapping[str, Any] | str | int | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock or SimClock()
        self.dial_buffer_seconds = dial_buffer_seconds
        self.ring_seconds = ring_seconds
        self.time_scale = time_scale
        self.default_talk_seconds = default_talk_seconds
        self.max_queue_wait_seconds = max_queue_wait_seconds
        self.api_base = api_base.rstrip("/")
        self.autorun = autorun
        if pace not in ("queue", "all", "none"):
            raise ValueError("pace is 'queue', 'all' or 'none'")
        self.pace = pace  # which waits also pass real time (× time_scale); see docs
        self.default_callee = AgentBehaviour.parse(default_callee)
        self.http = WebhookClient(auth_token)
        self.numbers: dict[str, NumberConfig] = {}
        self.agents: dict[str, AgentBehaviour] = {}
        self.legs: dict[str, CallLeg] = {}
        self.records: list[CallRecord] = []
        self.recordings: dict[str, Recording] = {}
        self.queues = QueueRegistry()
        self._pending: list[CallLeg] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._outbound_specs: dict[str, dict[str, Any]] = {}

    # ---- configuration ----------------------------------------------------------------

    def add_number(self, e164: str, voice_url: str, status_callback: str | None = None,
                   fallback_url: str | None = None, *, voice_method: str = "POST",
                   status_callback_events: Iterable[str] = ("completed",)) -> NumberConfig:
        config = NumberConfig(e164, voice_url, voice_method.upper(), status_callback,
                              status_callback_events=tuple(status_callback_events),
                              fallback_url=fallback_url)
        self.numbers[e164] = config
        return config

    def add_agent(self, endpoint: str, behaviour: AgentBehaviour | Mapping[str, Any] | str | int
                  ) -> AgentBehaviour:
        parsed = AgentBehaviour.parse(behaviour)
        self.agents[endpoint] = parsed
        return parsed

    def behaviour_for(self, endpoint: str) -> AgentBehaviour:
        return self.agents.get(endpoint, self.default_callee)

    def label_for(self, endpoint: str) -> str:
        behaviour = self.agents.get(endpoint)
        if behaviour is None:
            return f"callee {endpoint}"
        return f"agent {behaviour.name} ({endpoint})" if behaviour.name else f"agent {endpoint}"

    def audio_seconds(self, url: str) -> float:
        """Length of a `<Play>`: our own recordings are known, other audio is assumed."""
        sid = url.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
        rec = self.recordings.get(sid)
        return float(rec.duration) if rec else PLAY_SECONDS

    # ---- legs and status --------------------------------------------------------------

    def new_leg(self, record: CallRecord, from_: str, to: str, direction: str, t: float,
                parent_sid: str | None = None, label: str | None = None) -> CallLeg:
        leg = CallLeg(record, self.account_sid, from_, to, direction, t, parent_sid, label)
        with self._lock:
            self.legs[leg.sid] = leg
        return leg

    def set_status(self, leg: CallLeg, status: str) -> None:
        event = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
        leg.status = status
        self._status_callback(leg, event.get(status, "completed"))

    def answer(self, leg: CallLeg) -> None:
        leg.answered_t = leg.t
        self.set_status(leg, "in-progress")

    def finish(self, leg: CallLeg, status: str, sip_code: int | None = None) -> None:
        """End a leg once: terminal status, `completed` callback, waiters released."""
        if leg.ended:
            return
        leg.end_t = leg.t
        leg.status = status
        for q in self.queues.all():
            q.leave(leg)
        self._status_callback(leg, "completed", sip_code)
        leg.done.set()

    def _status_callback(self, leg: CallLeg, event: str, sip_code: int | None = None) -> None:
        if not leg.status_callback or event not in leg.status_events:
            return
        params = leg.params()
        params.update({
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(leg.sequence),
            "Timestamp": self.clock.rfc2822(leg.t),
        })
        leg.sequence += 1
        if event == "completed":
            params["CallDuration"] = str(leg.duration)
            params["Duration"] = str(math.ceil(leg.duration / 60)) if leg.duration else "0"
        if sip_code is not None or event == "completed":
            params["SipResponseCode"] = str(sip_code or (200 if leg.answered_t is not None else 487))
        self.send_webhook(leg, leg.status_callback, leg.status_method, params, "status")

    def send_webhook(self, leg: CallLeg, url: str, method: str, params: dict[str, str],
                     kind: str) -> tuple[int | None, str, str]:
        result = self.http.send(url, method, params)
        code = None
        if result.status is None:
            code = 11205
        elif result.status >= 400:
            code = 11200
        leg.record.add_hit(WebhookHit(kind, url, method.upper(), dict(params), result.status,
                                      result.latency, leg.t, leg.sid, code))
        leg.say("webhook", f"{method.upper()} {url} → {result.status or result.error}",
                who="twilio", hook=kind)
        if result.status is None:
            return None, result.error or "", ""
        return result.status, result.body, result.content_type

    # ---- recordings -------------------------------------------------------------------

    def recording_url(self, sid: str) -> str:
        return f"{self.api_base}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}"

    def add_recording(self, leg: CallLeg, start: float, duration: int, channels: int,
                      source: str) -> Recording:
        rec = Recording(new_sid("RE"), self.account_sid, leg.sid, start, duration, channels,
                        source)
        with self._lock:
            self.recordings[rec.sid] = rec
        with leg.record.lock:
            leg.record.recordings.append(rec)
        return rec

    def send_recording_callback(self, leg: CallLeg, rec: Recording, url: str, method: str,
                                events: Sequence[str]) -> None:
        if rec.status not in events:
            return
        params = {
            "AccountSid": self.account_sid,
            "CallSid": rec.call_sid,
            "RecordingSid": rec.sid,
            "RecordingUrl": self.recording_url(rec.sid),
            "RecordingStatus": rec.status,
            "RecordingDuration": str(rec.duration) if rec.status == "completed" else "0",
            "RecordingChannels": str(rec.channels),
            "RecordingStartTime": self.clock.rfc2822(rec.start_t),
            "RecordingSource": rec.source,
            "RecordingTrack": rec.track,
            "ErrorCode": "0",
        }
        self.send_webhook(leg, url, method.upper(), params, "recording")

    def start_dial_recording(self, leg: CallLeg, el: ET.Element, start: float,
                             dual: bool, base: str = "") -> Recording:
        rec = self.add_recording(leg, start, 0, 2 if dual else 1, "DialVerb")
        rec.status = "in-progress"
        leg.say("recording", f"recording {rec.sid} started", t=start)
        self._dial_recording_callback(leg, el, rec, base)
        return rec

    def complete_dial_recording(self, leg: CallLeg, el: ET.Element, rec: Recording,
                                end: float, base: str = "") -> None:
        rec.duration = round(end - rec.start_t)
        rec.status = "completed"
        leg.say("recording", f"recording {rec.sid} completed ({rec.duration} s)", t=end)
        self._dial_recording_callback(leg, el, rec, base)

    def _dial_recording_callback(self, leg: CallLeg, el: ET.Element, rec: Recording,
                                 base: str) -> None:
        url = el.get("recordingStatusCallback")
        if url:
            url = urljoin(base, url)
            events = (el.get("recordingStatusCallbackEvent") or "completed").split()
            self.send_recording_callback(leg, rec, url,
                                         el.get("recordingStatusCallbackMethod", "POST"), events)

    # ---- inbound calls ----------------------------------------------------------------

    def _inbound(self, from_: str, to: str, script: Any, at: float | None
                 ) -> tuple[CallLeg, CallerScript, NumberConfig]:
        config = self.numbers.get(to)
        if config is None:
            raise ValueError(f"{to} is not a number of this account; add_number() it first")
        party = script if isinstance(script, CallerScript) else CallerScript(script)
        record = CallRecord()
        with self._lock:
            self.records.append(record)
        start = self.clock.now() if at is None else float(at)
        leg = self.new_leg(record, from_, to, "inbound", start)
        leg.status_callback = config.status_callback
        leg.status_method = config.status_callback_method
        leg.status_events = set(config.status_callback_events)
        if party.hang_up_after is not None:
            leg.deadline = start + party.hang_up_after
        return leg, party, config

    def _run_inbound(self, leg: CallLeg, party: CallerScript, config: NumberConfig) -> None:
        leg.say("status", f"calls {leg.to}")
        self.set_status(leg, "ringing")
        fallback = Goto(config.fallback_url, config.fallback_method, kind="fallback") \
            if config.fallback_url else None
        session = Session(self, leg, party, fallback=fallback)
        status = "failed"  # kept if the simulator itself breaks: the call must still end
        try:
            status = session.run(Goto(config.voice_url, config.voice_method, kind="voice"))
        finally:
            self.finish(leg, status)

    def place_inbound(self, from_: str, to: str, script: Any = None, at: float | None = None
                      ) -> CallRecord:
        """Call `to` from `from_` and run the whole call now; returns what happened."""
        leg, party, config = self._inbound(from_, to, script, at)
        self._run_inbound(leg, party, config)
        if at is None:
            self.clock.advance_to(leg.end_t or leg.t)
        return leg.record

    def start_inbound(self, from_: str, to: str, script: Any = None, at: float | None = None
                      ) -> CallRecord:
        """Like `place_inbound` on its own thread; wait with `record.call.done.wait()`."""
        leg, party, config = self._inbound(from_, to, script, at)
        self._spawn(self._run_inbound, leg, party, config)
        return leg.record

    def _spawn(self, target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"sim-{args[0].sid[:10]}")
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def wait_all(self, timeout: float = 30.0) -> bool:
        """Join every call thread started so far; False if some are still running."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    # ---- REST-created calls -----------------------------------------------------------

    def create_call(self, to: str, from_: str, url: str | None = None, twiml: str | None = None,
                    method: str = "POST", status_callback: str | None = None,
                    status_callback_events: Iterable[str] = ("completed",),
                    status_callback_method: str = "POST", timeout: int = REST_TIMEOUT_DEFAULT,
                    record: bool = False, recording_status_callback: str | None = None,
                    recording_status_callback_method: str = "POST",
                    recording_status_callback_events: Iterable[str] = ("completed",),
                    fallback_url: str | None = None, fallback_method: str = "POST") -> CallLeg:
        """Calls.create: the call is queued and runs on its own thread (or `run_pending`)."""
        record_ = CallRecord()
        with self._lock:
            self.records.append(record_)
        leg = self.new_leg(record_, from_, to, "outbound-api", self.clock.now(),
                           label=self.label_for(to))
        leg.status_callback = status_callback
        leg.status_method = status_callback_method.upper()
        leg.status_events = set(status_callback_events) or {"completed"}
        self._outbound_specs[leg.sid] = {
            "url": url, "twiml": twiml, "method": method.upper(), "timeout": timeout,
            "record": record,
            "recording_status_callback": recording_status_callback,
            "recording_status_callback_method": recording_status_callback_method,
            "recording_status_callback_events": list(recording_status_callback_events),
            "fallback": Goto(fallback_url, fallback_method.upper(), kind="fallback")
            if fallback_url else None,
        }
        if self.autorun:
            self._spawn(self._run_outbound, leg)
        else:
            with self._lock:
                self._pending.append(leg)
        return leg

    def run_pending(self) -> list[CallRecord]:
        """Run queued REST-created calls in this thread (when `autorun=False`)."""
        done: list[CallRecord] = []
        while True:
            with self._lock:
                if not self._pending:
                    return done
                leg = self._pending.pop(0)
            self._run_outbound(leg)
            done.append(leg.record)

    def _run_outbound(self, leg: CallLeg) -> None:
        spec = self._outbound_specs[leg.sid]
        if leg.ended:  # canceled before it started
            return
        self.set_status(leg, "initiated")
        self.set_status(leg, "ringing")
        behaviour = self.behaviour_for(leg.to)
        cadence = behaviour.ring_seconds or self.ring_seconds
        result = ring(behaviour, cadence, float(spec["timeout"]))
        leg.say("dial", f"Twilio calls {leg.label} from {leg.from_}", who="twilio")
        if result.status != "answered":
            leg.t += result.seconds
            leg.say("ring", f"{leg.label} — {result.status} after {result.rings} rings",
                    who="ringing")
            self.finish(leg, result.status, sip_code=result.sip_code)
            return
        leg.t += result.seconds
        leg.say("answer", f"answers after {result.rings} ring{'s' if result.rings != 1 else ''}")
        party = behaviour.callee_script()
        if party.hang_up_after is not None:
            leg.deadline = leg.t + party.hang_up_after
        session = Session(self, leg, party, fallback=spec["fallback"])
        first: Goto | Inline
        if spec["url"]:
            first = Goto(spec["url"], spec["method"], kind="voice")
        else:
            parsed = twiml_mod.parse(spec["twiml"] or "")
            first = Inline(parsed) if isinstance(parsed, ET.Element) else Inline(
                ET.fromstring("<Response><Hangup/></Response>"))
        self.answer(leg)
        status = "failed"
        try:
            status = session.run(first)
        finally:
            if spec["record"] and leg.answered_t is not None:
                rec = self.add_recording(leg, leg.answered_t, round(leg.t - leg.answered_t),
                                         1, "OutboundAPI")
                leg.say("recording", f"recording {rec.sid} completed ({rec.duration} s)")
                if spec["recording_status_callback"]:
                    self.send_recording_callback(
                        leg, rec, spec["recording_status_callback"],
                        spec["recording_status_callback_method"],
                        spec["recording_status_callback_events"])
            self.finish(leg, status)

    def update_call(self, sid: str, url: str | None = None, method: str = "POST",
                    twiml: str | None = None, status: str | None = None) -> CallLeg:
        """Calls(sid).update: redirect a live call, or hang it up (completed / canceled)."""
        leg = self.legs[sid]
        if status in ("completed", "canceled"):
            if leg.status in ("queued",) and leg in self._pending:
                with self._lock:
                    self._pending.remove(leg)
                self.finish(leg, "canceled")
            elif not leg.ended:
                leg.interrupt(Interrupt("hangup", method=status))
            return leg
        if url:
            leg.interrupt(Interrupt("redirect", url=url, method=method.upper()))
        elif twiml:
            leg.interrupt(Interrupt("twiml", twiml=twiml))
        return leg

    def call(self, sid: str) -> CallLeg | None:
        return self.legs.get(sid)

    # ---- serving ----------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Any:
        """Serve the REST subset in a thread; sets `api_base`. Returns the server handle."""
        from .rest import serve

        return serve(self, host, port)
