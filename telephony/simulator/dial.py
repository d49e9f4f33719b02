"""`<Dial>`: ring nouns in parallel (or in order), screen with the whisper URL, bridge.

Timing follows Twilio: ringing lasts at most `timeout` plus a buffer (about 5 s), the first
callee to answer wins and the others are canceled, and the action URL hears the outcome.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin

from .calls import CallLeg
from .interpreter import CallerGone, Goto, Next, Session
from .parties import AgentBehaviour, RingResult, ring
from .twiml import attr_bool, attr_int, text_of

RECORD_MODES = {
    "do-not-record", "record-from-answer", "record-from-ringing", "record-from-answer-dual",
    "record-from-ringing-dual",
}


@dataclass
class Noun:
    kind: str  # Number, Client, Sip, Queue
    target: str  # endpoint, or queue name
    url: str | None
    method: str
    status_callback: str | None
    status_events: set[str]
    status_method: str


@dataclass
class Candidate:
    noun: Noun
    leg: CallLeg
    behaviour: AgentBehaviour
    result: RingResult
    cadence: float
    answered: bool = False
    screened_out: bool = False


def parse_nouns(el: ET.Element, base: str) -> list[Noun]:
    nouns: list[Noun] = []
    if not len(el) and text_of(el):
        return [Noun("Number", text_of(el), None, "POST", None, {"completed"}, "POST")]
    for child in el:
        target = text_of(child)
        if child.tag == "Client":
            identity = child.find("Identity")
            name = text_of(identity) if identity is not None else target
            target = name if name.startswith("client:") else f"client:{name}"
        url = urljoin(base, child.get("url")) if child.get("url") else None
        callback = child.get("statusCallback")
        nouns.append(Noun(
            child.tag, target, url, child.get("method", "POST").upper(),
            urljoin(base, callback) if callback else None,
            set((child.get("statusCallbackEvent") or "completed").split()),
            child.get("statusCallbackMethod", "POST").upper(),
        ))
    return nouns


def run_dial(s: Session, el: ET.Element, base: str) -> Next | None:
    sim, leg = s.sim, s.leg
    timeout = min(600, max(5, attr_int(el, "timeout", 30)))
    limit = float(timeout + sim.dial_buffer_seconds)
    action = urljoin(base, el.get("action")) if el.get("action") else None
    method = el.get("method", "POST").upper()
    record = el.get("record", "do-not-record")
    if record == "true":
        record = "record-from-answer"
    if record not in RECORD_MODES:
        record = "do-not-record"
    nouns = parse_nouns(el, base)
    if not nouns:
        s.notify(13201, "Dial: no nouns to dial", base)
        return _after(s, action, method, {"DialCallStatus": "failed"})
    if nouns[0].kind == "Queue":
        from .queueing import dial_queue

        return dial_queue(s, el, nouns[0], limit, action, method, record, base)
    unsupported = [n for n in nouns if n.kind not in ("Number", "Client", "Sip")]
    if unsupported:
        s.leg.say("note", f"<Dial><{unsupported[0].kind}> is not simulated", who="twilio")
        return _after(s, action, method, {"DialCallStatus": "failed"})

    t0 = leg.t
    caller_id = el.get("callerId") or leg.from_
    cands = [_start_child(s, n, caller_id, limit, t0) for n in nouns[:10]]
    labels = ", ".join(c.leg.label.split(" ", 1)[-1] for c in cands)
    leg.say("dial", f"dials {labels} (timeout {timeout} s + {sim.dial_buffer_seconds} s buffer"
            + (", in order)" if attr_bool(el, "sequential") else ")"),
            who=leg.label)
    if attr_bool(el, "sequential"):
        winner, end_ringing, caller_gone = _ring_in_order(s, cands, limit)
    else:
        winner, end_ringing, caller_gone = _ring_all(s, cands, t0, limit)
    leg.t = end_ringing

    if winner is None:
        statuses = [c.result.status for c in cands]
        if caller_gone:
            status = "canceled"
        elif "no-answer" in statuses or any(c.screened_out for c in cands):
            status = "no-answer"
        elif "busy" in statuses:
            status = "busy"
        else:
            status = "failed"
        params = {"DialCallStatus": status, "DialCallSid": cands[0].leg.sid,
                  "DialCallDuration": "0", "DialBridged": "false"}
        if caller_gone:
            leg.say("hangup", "hangs up while it rings")
            s.action_after_hangup(action or "", method, params)
            raise CallerGone()
        leg.say("dial", f"dial ends: {status}", who="twilio")
        return _after(s, action, method, params)
    return _bridge(s, el, winner, t0, record, action, method, base)


def _start_child(s: Session, noun: Noun, caller_id: str, limit: float, t0: float) -> Candidate:
    sim = s.sim
    behaviour = sim.behaviour_for(noun.target)
    child = sim.new_leg(s.leg.record, caller_id, noun.target, "outbound-dial", t0,
                        parent_sid=s.leg.sid, label=sim.label_for(noun.target))
    child.status = "queued"
    child.status_callback = noun.status_callback
    child.status_events = noun.status_events
    child.status_method = noun.status_method
    cadence = behaviour.ring_seconds or sim.ring_seconds
    return Candidate(noun, child, behaviour, ring(behaviour, cadence, limit), cadence)


def _ringing(s: Session, c: Candidate, at: float) -> None:
    c.leg.t = at
    s.sim.set_status(c.leg, "initiated")
    s.sim.set_status(c.leg, "ringing")


def _answer(s: Session, c: Candidate, at: float) -> bool:
    """The callee picks up; screening decides if it is bridged. False: screened out."""
    c.leg.t = at
    s.sim.answer(c.leg)
    rings = c.result.rings
    c.leg.say("answer", f"answers after {rings} ring{'s' if rings != 1 else ''}")
    c.answered = True
    if c.noun.url:
        whisper = Session(s.sim, c.leg, c.behaviour.callee_script(), mode="whisper")
        c.leg.deadline = None  # the agent's hang_up_after counts from the bridge
        if not whisper.run_whisper(Goto(c.noun.url, c.noun.method, kind="whisper")):
            c.screened_out = True
            s.sim.finish(c.leg, "completed")
            return False
    return True


def _ring_all(s: Session, cands: list[Candidate], t0: float, limit: float
              ) -> tuple[Candidate | None, float, bool]:
    for c in cands:
        _ringing(s, c, t0)
    deadline = s.leg.deadline
    winner: Candidate | None = None
    cursor = t0
    caller_gone = False
    for c in sorted((c for c in cands if c.result.status == "answered"),
                    key=lambda c: c.result.seconds):
        at = max(t0 + c.result.seconds, cursor)
        if at > t0 + limit:
            break
        if deadline is not None and deadline <= at:
            caller_gone = True
            break
        if _answer(s, c, at):
            winner = c
            break
        cursor = c.leg.t
    rang_out = [c for c in cands if c.result.status in ("no-answer",) or
                (c.result.status == "answered" and not c.answered)]
    if winner is not None:
        end = winner.leg.t
    elif caller_gone or (deadline is not None and deadline <= t0 + limit and rang_out):
        caller_gone = True
        end = max(cursor, deadline or cursor)
    elif rang_out:
        end = max(cursor, t0 + limit)
    else:
        end = max([cursor] + [t0 + c.result.seconds for c in cands])
    for c in cands:
        if c is winner or c.screened_out:
            continue
        _settle_loser(s, c, t0, end, winner is not None or caller_gone)
    return winner, end, caller_gone


def _ring_in_order(s: Session, cands: list[Candidate], limit: float
                   ) -> tuple[Candidate | None, float, bool]:
    deadline = s.leg.deadline
    for c in cands:
        t0 = s.leg.t
        _ringing(s, c, t0)
        c.leg.created_t = t0
        if c.result.status == "answered":
            at = t0 + c.result.seconds
            if deadline is not None and deadline <= at:
                _settle_loser(s, c, t0, deadline, True)
                return None, deadline, True
            if _answer(s, c, at):
                return c, c.leg.t, False
            s.leg.t = c.leg.t
            continue
        end = t0 + c.result.seconds
        if deadline is not None and deadline <= end:
            _settle_loser(s, c, t0, deadline, True)
            return None, deadline, True
        _settle_loser(s, c, t0, end, False)
        s.leg.t = end
    return None, s.leg.t, False


def _settle_loser(s: Session, c: Candidate, t0: float, end: float, canceled: bool) -> None:
    who = c.leg.label
    if c.result.status in ("busy", "failed"):
        c.leg.t = t0 + c.result.seconds
        c.leg.say("ring", f"{who} — {c.result.status}", who="ringing")
        s.sim.finish(c.leg, c.result.status, sip_code=c.result.sip_code)
        return
    rings = max(1, math.ceil((end - t0) / c.cadence - 1e-9))
    c.leg.t = end
    if canceled:
        c.leg.say("ring", f"{who} — canceled after {rings} ring{'s' if rings != 1 else ''}",
                  who="ringing")
        s.sim.finish(c.leg, "canceled", sip_code=487)
    else:
        c.leg.say("ring", f"{who} — no answer after {rings} rings ({int(end - t0)} s)",
                  who="ringing")
        s.sim.finish(c.leg, "no-answer", sip_code=480)


def _bridge(s: Session, el: ET.Element, c: Candidate, t0: float, record: str,
            action: str | None, method: str, base: str) -> Next | None:
    sim, leg = s.sim, s.leg
    ta = c.leg.t
    leg.t = ta
    if leg.answered_t is None:
        sim.answer(leg)  # answerOnBridge: the caller's leg is answered now
    rings = c.result.rings
    leg.say("ring", f"{c.leg.label} — answered after {rings} ring{'s' if rings != 1 else ''}",
            t=t0 + c.result.seconds, who="ringing")
    leg.say("dial", f"is connected to {c.leg.label}")
    talk = c.behaviour.hang_up_after
    talk = sim.default_talk_seconds if talk is None else float(talk)
    time_limit = attr_int(el, "timeLimit", 14400)
    talk = min(talk, float(time_limit))
    ended_by = c.leg.label
    caller_left = leg.deadline is not None and leg.deadline < ta + talk
    if caller_left:
        talk = max(0.0, (leg.deadline or ta) - ta)
        ended_by = leg.label
    end = ta + talk
    params = {"DialCallStatus": "completed", "DialCallSid": c.leg.sid,
              "DialCallDuration": str(round(talk)), "DialBridged": "true"}
    rec = None
    if record != "do-not-record":
        rec_start = ta if "answer" in record else t0
        rec = sim.start_dial_recording(leg, el, rec_start, "dual" in record, base)
    passed = s.pace(talk)  # only paced calls wait here; a REST update may cut the talk
    interrupted = passed < talk
    if interrupted:
        talk, end, caller_left, ended_by = passed, ta + passed, False, "twilio (REST update)"
    leg.t = end
    c.leg.t = end
    leg.say("hangup", f"hangs up after {round(talk)} s of talk", who=ended_by)
    sim.finish(c.leg, "completed")
    if rec is not None:
        sim.complete_dial_recording(leg, el, rec, end, base)
        params["RecordingUrl"] = sim.recording_url(rec.sid)
    if interrupted:
        s.check()  # raises: the REST update takes over the parent call
    if caller_left:
        s.action_after_hangup(action or "", method, params)
        raise CallerGone()
    return _after(s, action, method, params)


def _after(s: Session, action: str | None, method: str, params: dict[str, str]) -> Next | None:
    """With an action the document ends here; without one the next verb runs."""
    if action:
        return Goto(action, method, params)
    return None
