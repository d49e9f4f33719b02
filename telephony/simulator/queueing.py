"""`<Enqueue>` with its wait loop, and `<Dial><Queue>` that takes a waiting call.

Waiting is the one place calls interact, so a waiting call really waits: each virtual second
of the wait document costs `Simulator.time_scale` wall seconds, during which a REST update or
a `<Dial><Queue>` on another thread can interrupt it.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urljoin

from .calls import CallLeg, Interrupt
from .interpreter import (
    BridgedOut,
    CallEnded,
    CallerGone,
    Goto,
    Inline,
    LeftQueue,
    Next,
    Redirected,
    Session,
)
from .queues import SimQueue
from .twiml import text_of

HOLD_MUSIC_SECONDS = 30.0  # Twilio's default classical playlist, one track
BRIDGE_WAIT_SECONDS = 30.0  # wall seconds a member waits for the dialler to finish


@dataclass
class QueueBridge:
    dialer: CallLeg
    member: CallLeg
    url: str | None
    method: str
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    connected_t: float = 0.0
    end_t: float = 0.0
    member_hung_up: bool = False


def _queue_params(q: SimQueue, leg: CallLeg, joined: float) -> dict[str, str]:
    return {
        "QueuePosition": str(q.position(leg)),
        "QueueSid": q.sid,
        "QueueTime": str(int(leg.t - joined)),
        "AvgQueueTime": str(q.average_wait(leg.t)),
        "CurrentQueueSize": str(q.size()),
        "MaxQueueSize": str(q.max_size),
    }


def run_enqueue(s: Session, el: ET.Element, base: str) -> Next | None:
    sim, leg = s.sim, s.leg
    name = text_of(el)
    action = urljoin(base, el.get("action")) if el.get("action") else None
    method = el.get("method", "POST").upper()
    wait_url = urljoin(base, el.get("waitUrl")) if el.get("waitUrl") else None
    wait_method = el.get("waitUrlMethod", "POST").upper()
    q = sim.queues.get_or_create(name)
    member = q.join(leg)
    if member is None:
        leg.say("queue", f"cannot join queue {name}: full")
        return _result(s, action, method, q, "queue-full", leg.t)
    joined = member.joined_t
    leg.say("queue", f"joins queue {name} (position {q.position(leg)})")
    own_deadline = leg.deadline
    if own_deadline is None:  # nobody waits forever: the simulated caller gives up eventually
        leg.deadline = leg.t + sim.max_queue_wait_seconds
    s.real_time = True
    try:
        _wait_loop(s, q, joined, wait_url, wait_method)
        outcome = "leave"
    except BridgedOut as b:
        s.real_time = False
        leg.deadline = own_deadline
        q.leave(leg)
        return _bridged(s, b.bridge, q, joined, action, method)  # type: ignore[arg-type]
    except CallerGone:
        q.leave(leg)
        leg.say("queue", f"leaves queue {name}: hangup after {int(leg.t - joined)} s")
        s.action_after_hangup(action or "", method, {
            "QueueResult": "hangup", "QueueSid": q.sid, "QueueTime": str(int(leg.t - joined))})
        raise
    except Redirected:
        q.leave(leg)
        leg.say("queue", f"leaves queue {name}: redirected after {int(leg.t - joined)} s")
        raise
    except CallEnded:
        q.leave(leg)
        raise
    finally:
        s.real_time = False
        leg.deadline = own_deadline
        q.leave(leg)
    leg.say("queue", f"leaves queue {name}: {outcome} after {int(leg.t - joined)} s")
    return _result(s, action, method, q, outcome, joined)


def _wait_loop(s: Session, q: SimQueue, joined: float, wait_url: str | None,
               wait_method: str) -> None:
    """Play the wait document again and again until something takes the call out."""
    nxt: Next | None = None
    while True:
        started = s.leg.t
        if nxt is None:
            if wait_url:
                nxt = Goto(wait_url, wait_method, _queue_params(q, s.leg, joined), kind="wait")
            else:
                s.spend(HOLD_MUSIC_SECONDS)
                continue
        root: ET.Element
        if isinstance(nxt, Goto):
            if nxt.kind != "wait":
                nxt.params = {**_queue_params(q, s.leg, joined), **nxt.params}
            fetched = s.fetch(nxt.url, nxt.method, nxt.params, nxt.kind)
            if isinstance(fetched, Inline):  # the fallback's document
                root, base = fetched.root, fetched.base
            else:
                root, base = fetched, nxt.url
        else:
            root, base = nxt.root, nxt.base
        try:
            nxt = s.execute(list(root), base, mode="wait")
        except LeftQueue:
            return
        if s.leg.t - started < 1.0:
            s.spend(1.0)  # an empty wait document must not spin


def _bridged(s: Session, bridge: QueueBridge, q: SimQueue, joined: float,
             action: str | None, method: str) -> Next | None:
    leg = s.leg
    if bridge.url:
        announce = Session(s.sim, leg, s.party, mode="announce")
        announce.run_whisper(Goto(bridge.url, bridge.method,
                                  {"QueueSid": q.sid, "QueueTime": str(int(leg.t - joined))},
                                  kind="announce"))
    bridge.connected_t = leg.t
    bridge.ready.set()
    bridge.done.wait(BRIDGE_WAIT_SECONDS)
    queue_time = int(bridge.connected_t - joined)
    leg.say("queue", f"leaves queue {q.name}: bridged to {bridge.dialer.label} after "
            f"{queue_time} s", t=bridge.connected_t)
    leg.t = max(leg.t, bridge.end_t)
    params = {"QueueResult": "bridged", "QueueSid": q.sid, "QueueTime": str(queue_time)}
    if bridge.member_hung_up:
        s.action_after_hangup(action or "", method, params)
        raise CallerGone()
    return Goto(action, method, params) if action else None


def _result(s: Session, action: str | None, method: str, q: SimQueue, result: str,
            joined: float) -> Next | None:
    params = {"QueueResult": result, "QueueSid": q.sid, "QueueTime": str(int(s.leg.t - joined))}
    return Goto(action, method, params) if action else None


def dial_queue(s: Session, el: ET.Element, noun: object, limit: float, action: str | None,
               method: str, record: str, base: str) -> Next | None:
    """`<Dial><Queue>`: connect to the longest-waiting member, waiting for one if empty."""
    sim, leg = s.sim, s.leg
    name = noun.target  # type: ignore[attr-defined]
    q = sim.queues.get(name)
    if q is None:
        s.notify(13225, f"Dial: queue {name!r} does not exist", "")
        return Goto(action, method, {"DialCallStatus": "failed"}) if action else None
    t0 = leg.t
    leg.say("dial", f"dials queue {name} ({q.size()} waiting)")
    member = q.pop_front(real_timeout=max(0.05, limit * sim.time_scale))
    if member is None:
        leg.t = t0 + limit
        leg.say("dial", f"queue {name} stayed empty: no-answer", who="twilio")
        params = {"DialCallStatus": "no-answer", "DialCallDuration": "0", "DialBridged": "false"}
        return Goto(action, method, params) if action else None
    bridge = QueueBridge(leg, member.leg, noun.url, noun.method)  # type: ignore[attr-defined]
    member.leg.interrupt(_bridge_interrupt(bridge))
    if not bridge.ready.wait(BRIDGE_WAIT_SECONDS) or member.leg.ended:
        params = {"DialCallStatus": "failed", "DialBridged": "false"}
        return Goto(action, method, params) if action else None
    ta = max(leg.t, bridge.connected_t)
    if leg.answered_t is None:
        leg.t = ta
        sim.answer(leg)
    leg.t = ta
    leg.say("dial", f"is connected to {member.leg.label} from queue {name}")
    limits = [d - ta for d in (leg.deadline, member.leg.deadline) if d is not None]
    talk = max(0.0, min(limits)) if limits else sim.default_talk_seconds
    member_left = member.leg.deadline is not None and member.leg.deadline - ta <= talk and (
        leg.deadline is None or member.leg.deadline <= leg.deadline)
    end = ta + talk
    rec = None
    if record != "do-not-record":
        rec = sim.start_dial_recording(leg, el, ta if "answer" in record else t0,
                                       "dual" in record, base)
    leg.t = end
    bridge.end_t = end
    bridge.member_hung_up = member_left
    who = member.leg.label if member_left else leg.label
    leg.say("hangup", f"hangs up after {round(talk)} s of talk", who=who)
    params = {"DialCallStatus": "completed", "DialCallSid": member.leg.sid,
              "DialCallDuration": str(round(talk)), "DialBridged": "true",
              "QueueSid": q.sid}
    if rec is not None:
        sim.complete_dial_recording(leg, el, rec, end, base)
        params["RecordingUrl"] = sim.recording_url(rec.sid)
    bridge.done.set()
    if not member_left:
        s.action_after_hangup(action or "", method, params)
        raise CallerGone()
    return Goto(action, method, params) if action else None


def _bridge_interrupt(bridge: QueueBridge) -> Interrupt:
    return Interrupt("bridge", payload=bridge)
