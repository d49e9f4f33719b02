"""The TwiML interpreter: one `Session` runs one leg's documents, verb by verb.

Verbs take virtual time (speech at ~150 words a minute, audio a fixed length, pauses as
written) on the leg's own timeline. Between verbs, and while time passes in a queue, the
session checks for interrupts from other threads (REST update, queue bridge), as Twilio
would act on them at once.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from . import twiml
from .calls import CallLeg, Notification
from .parties import KEY_SECONDS, CallerScript
from .twiml import attr_bool, attr_int, text_of
from .webhook import XML_TYPES

if TYPE_CHECKING:
    from .core import Simulator

SECONDS_PER_WORD = 0.4
PLAY_SECONDS = 5.0  # the simulator cannot know an audio file's length
BEEP_SECONDS = 0.5
LOOP_FOREVER = 20  # loop="0" plays "forever": until input, hang-up, or this many times
MAX_DOCUMENTS = 300  # a call that fetches more documents is stuck in a loop
APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
RECORD_FINISH_KEYS = "1234567890*#"

MODE_VERBS = {
    "call": twiml.VERBS,
    "whisper": {"Play", "Say", "Pause", "Gather", "Hangup"},  # <Number url> screening
    "wait": {"Play", "Say", "Pause", "Hangup", "Redirect", "Leave", "Gather"},  # waitUrl
    "announce": {"Play", "Say", "Pause", "Redirect"},  # <Queue url> before the bridge
}


@dataclass
class Goto:
    """Fetch a URL next (action, redirect, fallback, ...)."""

    url: str
    method: str = "POST"
    params: dict[str, str] = field(default_factory=dict)
    kind: str = "action"


@dataclass
class Inline:
    """Run TwiML given in place (REST `Twiml`, a fallback's answer)."""

    root: ET.Element
    base: str = ""


Next = Goto | Inline


class CallEnded(Exception):
    """The call ends on our side: `<Hangup>`, `<Reject>`, REST Status=completed, errors."""

    def __init__(self, status: str = "completed") -> None:
        super().__init__(status)
        self.status = status


class CallerGone(Exception):
    """The party on this leg hung up (script deadline or `hang_up` action)."""


class Redirected(Exception):
    """REST update: drop what runs and continue with `next`."""

    def __init__(self, next_: Next) -> None:
        super().__init__(next_)
        self.next = next_


class LeftQueue(Exception):
    """`<Leave>` inside a wait document."""


class BridgedOut(Exception):
    """A `<Dial><Queue>` on another call took this waiting call."""

    def __init__(self, bridge: object) -> None:
        super().__init__(bridge)
        self.bridge = bridge


class Session:
    """Runs TwiML for one leg with one scripted party listening on it."""

    def __init__(self, sim: Simulator, leg: CallLeg, party: CallerScript, mode: str = "call",
                 fallback: Goto | None = None) -> None:
        self.sim = sim
        self.leg = leg
        self.party = party
        self.mode = mode
        self.fallback = fallback
        self.documents = 0
        self.real_time = False  # set while waiting in a queue

    # ---- running ----------------------------------------------------------------------

    def run(self, first: Next) -> str:
        """Run until the call ends; returns the final status (the caller finishes the leg)."""
        nxt: Next | None = first
        try:
            while nxt is not None:
                try:
                    nxt = self.step(nxt)
                except Redirected as r:
                    self.leg.say("note", "is redirected by the REST API")
                    nxt = r.next
            self.leg.say("hangup", "call ends: no more TwiML", who="twilio")
            return "completed"
        except CallerGone:
            self.leg.say("hangup", "hangs up")
            return "completed"
        except CallEnded as e:
            return e.status

    def run_whisper(self, first: Next) -> bool:
        """Run screening TwiML on a callee leg; True if it ended without a hang-up."""
        nxt: Next | None = first
        try:
            while nxt is not None:
                nxt = self.step(nxt)
            return True
        except CallerGone:
            self.leg.say("hangup", "hangs up during the whisper")
            return False
        except (CallEnded, Redirected):
            return False

    def step(self, nxt: Next) -> Next | None:
        if isinstance(nxt, Inline):
            return self.execute(list(nxt.root), nxt.base)
        root = self.fetch(nxt.url, nxt.method, nxt.params, nxt.kind)
        if isinstance(root, Inline):  # the fallback's document
            return self.execute(list(root.root), root.base)
        return self.execute(list(root), nxt.url)

    def execute(self, verbs: list[ET.Element], base: str, mode: str | None = None) -> Next | None:
        mode = mode or self.mode
        allowed = MODE_VERBS[mode]
        for el in verbs:
            self.check()
            if el.tag in twiml.UNSUPPORTED_VERBS:
                self.leg.say("note", f"<{el.tag}> is not simulated; skipped", who="twilio")
                continue
            if el.tag not in allowed:
                self.notify(12200, f"<{el.tag}> is not allowed here ({mode})", base)
                continue
            if self.leg.answered_t is None and not self._keeps_ringing(el):
                self.sim.answer(self.leg)
            nxt = getattr(self, "verb_" + el.tag.lower())(el, base)
            if nxt is not None:
                return nxt
        return None

    def _keeps_ringing(self, el: ET.Element) -> bool:
        """`<Reject>`, and `<Dial answerOnBridge>` as the first verb, do not answer the call."""
        return el.tag == "Reject" or (el.tag == "Dial" and attr_bool(el, "answerOnBridge"))

    # ---- time, interrupts, HTTP -------------------------------------------------------

    def check(self) -> None:
        change = self.leg.take_interrupt()
        if change is None:
            return
        if change.kind == "hangup":
            self.leg.say("hangup", "is hung up by the REST API", who="twilio")
            raise CallEnded(change.method if change.method in ("canceled",) else "completed")
        if change.kind == "bridge":
            raise BridgedOut(change.payload)
        if change.kind == "twiml" and change.twiml is not None:
            parsed = twiml.parse(change.twiml)
            if isinstance(parsed, twiml.TwimlError):
                self.notify(parsed.code, parsed.message, "")
                self.application_error()
                raise AssertionError("unreachable")
            raise Redirected(Inline(parsed))
        raise Redirected(Goto(change.url or "", change.method, kind="redirect"))

    def pace(self, seconds: float) -> float:
        """Pass real time for `seconds` of virtual time when this call is paced (waiting in a
        queue, or `Simulator(pace="all")`); returns the virtual seconds that passed before an
        interrupt arrived (all of them if none did)."""
        scale = self.sim.time_scale
        if seconds <= 0 or scale <= 0 or not (self.real_time or self.sim.pace == "all"):
            return seconds
        started = time.monotonic()
        if self.leg.wait_for_interrupt(seconds * scale):
            return min(seconds, (time.monotonic() - started) / scale)
        return seconds

    def spend(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass; the party may hang up meanwhile."""
        self.check()
        leg = self.leg
        seconds = max(0.0, seconds)
        if leg.deadline is not None and leg.deadline <= leg.t + seconds:
            leg.t += self.pace(max(0.0, leg.deadline - leg.t))
            self.check()
            leg.t = max(leg.t, leg.deadline)
            raise CallerGone()
        target = leg.t + seconds
        passed = self.pace(seconds)
        if passed < seconds:
            leg.t += passed
            self.check()
        leg.t = target

    def request(self, url: str, method: str, params: dict[str, str], kind: str,
                leg: CallLeg | None = None) -> tuple[int | None, str, str]:
        """One signed webhook; logged on the call record. Returns (status, body, type)."""
        leg = leg or self.leg
        return self.sim.send_webhook(leg, url, method, params, kind)

    def fetch(self, url: str, method: str, extra: dict[str, str], kind: str
              ) -> ET.Element | Inline:
        """Request TwiML; on any error follow Twilio: fallback URL once, else hang up."""
        self.documents += 1
        if self.documents > MAX_DOCUMENTS:
            self.notify(11200, f"more than {MAX_DOCUMENTS} documents: TwiML loop", url)
            raise CallEnded("completed")
        if not url:
            raise CallEnded("completed")
        params = {**self.leg.params(), **extra}
        status, body, content_type = self.request(url, method, params, kind)
        if status is None:
            return self.fail(11205, f"HTTP connection failure: {body}", url)
        if status >= 400:
            return self.fail(11200, f"HTTP retrieval failure: status {status}", url)
        if content_type.startswith("audio/"):
            return ET.fromstring(f"<Response><Play>{url}</Play></Response>")
        if content_type not in XML_TYPES:
            return self.fail(11200, f"HTTP retrieval failure: Content-Type {content_type!r}", url)
        parsed = twiml.parse(body)
        if isinstance(parsed, twiml.TwimlError):
            return self.fail(parsed.code, parsed.message, url)
        return parsed

    def action_after_hangup(self, url: str, method: str, params: dict[str, str]) -> None:
        """Twilio still requests an action URL after the caller hung up; the TwiML is ignored."""
        if url:
            self.request(url, method, {**self.leg.params(), "CallStatus": "completed", **params},
                         "action")

    def fail(self, code: int, message: str, url: str) -> Inline:
        self.notify(code, message, url)
        if self.fallback is not None:
            fallback, self.fallback = self.fallback, None  # once per call
            params = {**self.leg.params(), "ErrorCode": str(code), "ErrorUrl": url}
            status, body, content_type = self.request(fallback.url, fallback.method, params,
                                                      "fallback")
            if status is not None and status < 400 and content_type in XML_TYPES:
                parsed = twiml.parse(body)
                if not isinstance(parsed, twiml.TwimlError):
                    return Inline(parsed, fallback.url)
                self.notify(parsed.code, parsed.message, fallback.url)
            else:
                self.notify(11200, f"fallback failed: status {status}", fallback.url)
        self.application_error()
        raise AssertionError("unreachable")

    def application_error(self) -> None:
        self.leg.say("hears", f'"{APPLICATION_ERROR}"')
        raise CallEnded("completed")

    def notify(self, code: int, message: str, url: str) -> None:
        n = Notification(code, message, url, self.leg.t, self.leg.sid)
        with self.leg.record.lock:
            self.leg.record.notifications.append(n)
        self.leg.say("error", f"error {code}: {message}" + (f" ({url})" if url else ""),
                     who="twilio")

    # ---- simple verbs -----------------------------------------------------------------

    def _loops(self, el: ET.Element) -> int:
        n = attr_int(el, "loop", 1)
        return LOOP_FOREVER if n <= 0 else n

    def verb_say(self, el: ET.Element, base: str) -> None:
        text = text_of(el)
        loops = self._loops(el)
        how = ", ".join(v for v in (el.get("language"), el.get("voice")) if v)
        times = f" (×{loops})" if loops > 1 else ""
        self.leg.say("hears", f'hears{f" ({how})" if how else ""}: "{text}"{times}',
                     language=el.get("language"), voice=el.get("voice"), text=text)
        for _ in range(loops):
            self.spend(max(1.0, len(text.split()) * SECONDS_PER_WORD))

    def verb_play(self, el: ET.Element, base: str) -> None:
        url = urljoin(base, text_of(el)) if text_of(el) else ""
        loops = self._loops(el)
        digits = el.get("digits")
        if digits:
            self.leg.say("hears", f"hears DTMF tones {digits}")
            self.spend(len(digits) * KEY_SECONDS)
            return
        self.leg.say("hears", f"hears audio {url}" + (f" (×{loops})" if loops > 1 else ""),
                     url=url)
        for _ in range(loops):
            self.spend(self.sim.audio_seconds(url))

    def verb_pause(self, el: ET.Element, base: str) -> None:
        self.spend(attr_int(el, "length", 1))

    def verb_hangup(self, el: ET.Element, base: str) -> None:
        self.leg.say("hangup", "is hung up by <Hangup>", who="twilio")
        raise CallEnded("completed")

    def verb_reject(self, el: ET.Element, base: str) -> None:
        reason = el.get("reason", "rejected")
        self.leg.say("hangup", f"is rejected ({reason})", who="twilio")
        raise CallEnded("busy" if reason == "busy" else "no-answer")

    def verb_redirect(self, el: ET.Element, base: str) -> Next:
        return Goto(urljoin(base, text_of(el)), el.get("method", "POST").upper(), kind="redirect")

    def verb_leave(self, el: ET.Element, base: str) -> None:
        if self.mode == "wait" or self.real_time:
            raise LeftQueue()
        # Outside a queue <Leave> does nothing.

    # ---- Gather -----------------------------------------------------------------------

    def verb_gather(self, el: ET.Element, base: str) -> Next | None:
        inputs = set((el.get("input") or "dtmf").split())
        timeout = attr_int(el, "timeout", 5)
        num_digits = attr_int(el, "numDigits", 0)
        finish = el.get("finishOnKey", "#")
        action = urljoin(base, el.get("action") or "") if el.get("action") else base
        method = el.get("method", "POST").upper()
        for child in el:
            getattr(self, "verb_" + child.tag.lower())(child, base)
        digits, finished_on, speech = "", "", None
        while True:
            act = self.party.peek()
            if act is None:
                self.spend(timeout)
                break
            if act.kind == "wait":
                self.party.pop()
                if float(act.value) >= timeout:
                    self.spend(timeout)
                    break
                self.spend(float(act.value))
                continue
            if act.kind == "hang_up":
                self.party.pop()
                raise CallerGone()
            if act.kind == "press" and "dtmf" in inputs:
                self.party.pop()
                digits, finished_on = self._keys(str(act.value), finish, num_digits, timeout)
                break
            if act.kind == "speak" and "speech" in inputs:
                self.party.pop()
                speech = str(act.value)
                self.leg.say("says", f'says "{speech}"')
                self.spend(len(speech.split()) * SECONDS_PER_WORD + 1.0)
                break
            self.spend(timeout)  # the next action is for a later verb
            break
        if not digits and speech is None and not attr_bool(el, "actionOnEmptyResult"):
            self.leg.say("note", f"gather timed out after {timeout} s with no input")
            return None
        params = {"Digits": digits, "FinishedOnKey": finished_on} if speech is None else {
            "SpeechResult": speech, "Confidence": "0.9"}
        if speech is not None and digits:
            params["Digits"] = digits
        return Goto(action, method, params)

    def _keys(self, keys: str, finish: str, num_digits: int, timeout: int) -> tuple[str, str]:
        digits = ""
        for key in keys:
            self.spend(KEY_SECONDS)
            if finish and key in finish:
                self.leg.say("presses", f"presses {digits + key}", digits=digits, key=key)
                return digits, key
            digits += key
            if num_digits and len(digits) >= num_digits:
                self.leg.say("presses", f"presses {digits}", digits=digits)
                return digits, ""
        self.leg.say("presses", f"presses {digits}", digits=digits)
        self.spend(timeout)  # Twilio submits partial input after `timeout` seconds
        return digits, ""

    # ---- Record -----------------------------------------------------------------------

    def verb_record(self, el: ET.Element, base: str) -> Next | None:
        max_length = attr_int(el, "maxLength", 3600) or 3600
        timeout = attr_int(el, "timeout", 5)
        finish = el.get("finishOnKey", RECORD_FINISH_KEYS)
        action = urljoin(base, el.get("action") or "") if el.get("action") else base
        method = el.get("method", "POST").upper()
        if attr_bool(el, "playBeep", True):
            self.leg.say("hears", "hears a beep")
            self.spend(BEEP_SECONDS)
        start = self.leg.t
        spoken = 0.0
        act = self.party.peek()
        if act is not None and act.kind in ("record", "speak"):
            self.party.pop()
            if isinstance(act.value, (int, float)) and not isinstance(act.value, bool):
                spoken = float(act.value)
                self.leg.say("says", f"speaks for {int(spoken)} s")
            else:
                spoken = max(1.0, len(str(act.value).split()) * SECONDS_PER_WORD)
                self.leg.say("says", f'says "{act.value}"')
        digits: str | None = None
        hung_up = False
        try:
            self.spend(min(spoken, max_length))
            after = self.party.peek()
            if spoken >= max_length:
                pass
            elif after is not None and after.kind == "press" and str(after.value)[:1] in finish:
                self.party.pop()
                digits = str(after.value)[:1]
                self.leg.say("presses", f"presses {digits}")
                self.spend(KEY_SECONDS)
            elif after is not None and after.kind == "hang_up":
                self.party.pop()
                raise CallerGone()
            elif spoken > 0:
                self.spend(timeout)  # silence ends the recording
        except CallerGone:
            hung_up, digits = True, "hangup"
        duration = round(min(spoken, max_length, self.leg.t - start))
        if duration <= 0 and not hung_up:
            self.leg.say("note", "record: no audio, moving on")
            return None
        rec = self.sim.add_recording(self.leg, start, max(duration, 0), 1, "RecordVerb")
        self.leg.say("recording", f"recording {rec.sid} made ({duration} s)")
        callback = el.get("recordingStatusCallback")
        if callback:
            self.sim.send_recording_callback(
                self.leg, rec, urljoin(base, callback),
                el.get("recordingStatusCallbackMethod", "POST"),
                (el.get("recordingStatusCallbackEvent") or "completed").split())
        params = {"RecordingUrl": self.sim.recording_url(rec.sid),
                  "RecordingDuration": str(duration)}
        if digits is not None:
            params["Digits"] = digits
        if hung_up:
            self.action_after_hangup(action, method, params)
            raise CallerGone()
        return Goto(action, method, params)

    # ---- Dial and Enqueue live in their own modules -----------------------------------

    def verb_dial(self, el: ET.Element, base: str) -> Next | None:
        from .dial import run_dial

        return run_dial(self, el, base)

    def verb_enqueue(self, el: ET.Element, base: str) -> Next | None:
        from .queueing import run_enqueue

        return run_enqueue(self, el, base)
