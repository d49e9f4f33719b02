"""Jobs that connect waiting work to free agents: callers in line and callbacks, oldest first.

Callers who stay on the line and callers who asked for a callback share one waiting line per
queue, ordered by the time each first joined it, so a callback keeps its place (anchors #1).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, cast

from recordings import card, db
from recordings.models import Callback
from routing_rules import engine
from routing_rules.schema import Lang

from . import context
from .outbound import dialler_for
from .state import LiveState

log = logging.getLogger("hotline.dispatch")

CALL_PREFIX = "call:"
CALLBACK_PREFIX = "callback:"
DIAL_PREFIX = "CB"  # a callback's dial is `CB{callback id}-{ms}` until its call has a CallSid
CALLBACK_HOLD_SECONDS = 120  # an agent claimed for a callback is held this long for its leg to be answered
MAX_CONNECTS_PER_RUN = 50  # bounds one job; the next freed agent schedules another
LINE_PAGE = 100  # line members read at a time while looking for work an agent can take now
LINE_WALK_LIMIT = 1000  # members one queue's run looks at: bounds a walk past callbacks not due yet
PERMANENT_BLOCKS = ("opted_out_client", "opted_out_number", "invalid_number")  # no later time to wait for
RESTORE_PAGE = 500  # pending callbacks read at a time when the tick checks their places in line

# What became of one line member handed to the dispatcher: "handed" (an agent takes it: one fewer
# free), "skipped" (gone, not due, blocked by the guard: no agent used, the walk goes on) or
# "stop" (no agent could be claimed, Twilio refused: the member keeps its place, the run ends).
Outcome = Literal["handed", "skipped", "stop"]


def _free_agents(queue: str, now: float) -> list[str]:
    ctx = context.current()
    rules = ctx.current_rules()
    snapshot = ctx.state.snapshot(rules.queues[queue].agents, now)
    return [a.id for a in snapshot if a.status == "available"]


def agent_freed(queue: str | None = None) -> int:
    """An agent became free (wrap-up over, status set available): serve the longest waiting.

    Returns how many waiting calls/callbacks were handed to an agent.
    """
    ctx = context.current()
    rules = ctx.current_rules()
    queues = [queue] if queue else list(rules.queues)
    promised: set[str] = set()  # agents counted as taken by this run (an agent may serve several queues)
    served = 0
    for name in queues:
        if name in rules.queues and served < MAX_CONNECTS_PER_RUN:
            served += _serve_line(name, promised, MAX_CONNECTS_PER_RUN - served)
    return served


def _serve_line(queue: str, promised: set[str], limit: int) -> int:
    """Hand the queue's waiting calls and due callbacks, oldest first, to its free agents.

    The free agents are counted once, before the walk: a redirected caller claims an agent only
    when its call reaches line-connect, so until then the agent still looks free, and a second
    redirect would only tell its caller "connecting" before putting them back on hold. A
    callback not due yet (a chosen time, retry spacing) keeps its place and is stepped over, so
    it never holds up the callers behind it.
    """
    ctx = context.current()
    free = [a for a in _free_agents(queue, time.time()) if a not in promised]
    budget = min(len(free), limit)
    handed = 0
    start = 0  # where the next page begins: the members stepped over stay ahead of it
    seen: set[str] = set()
    while handed < budget and len(seen) < LINE_WALK_LIMIT:
        page = ctx.state.line_page(queue, start, LINE_PAGE)
        if not page:
            break
        fresh = [(member, since) for member, since in page if member not in seen]
        if not fresh:  # members re-joined ahead of the page (blocked callbacks): read past them
            start += len(page)
            continue
        not_due = _callbacks_not_due(member for member, _ in fresh)
        for member, since in fresh:
            if handed >= budget:
                break
            seen.add(member)
            if member in not_due:
                start += 1
                continue
            if not ctx.state.leave_line(queue, member):
                continue  # another worker took it
            if member.startswith(CALL_PREFIX):
                outcome = connect_waiting_call(queue, member[len(CALL_PREFIX):], since)
            else:
                outcome = dispatch_callback(int(member[len(CALLBACK_PREFIX):]), queue, since)
            if outcome == "stop":
                return handed
            if outcome == "handed":
                promised.add(free[handed])  # which one line-connect rings is its choice; one fewer is free
                handed += 1
    return handed


def _callbacks_not_due(members: Iterable[str]) -> set[str]:
    """The line members that are pending callbacks whose time has not come (one read for a page)."""
    ids = {member: int(member[len(CALLBACK_PREFIX):]) for member in members if member.startswith(CALLBACK_PREFIX)}
    if not ids:
        return set()
    now = datetime.now(UTC)
    with db.session(readonly=True) as s:
        return {member for member, callback_id in ids.items()
                if (callback := card.get_callback(s, callback_id)) is not None and callback.status == "pending"
                and not _due(callback, now)}


def _due(callback: Callback, now: datetime) -> bool:
    """A callback may be dialled once its chosen time and its retry spacing have passed."""
    wait_until = max(filter(None, (callback.not_before, callback.next_attempt_at)), default=None)
    return wait_until is None or _aware(wait_until) <= now


def connect_waiting_call(queue: str, call_sid: str, since: float) -> Outcome:
    """Move a caller from the hold loop into the ring-target dial step (REST redirect)."""
    ctx = context.current()
    call = ctx.state.get_call(call_sid)
    if not call or call.get("ended"):
        return "skipped"  # gone already: nothing to connect, line entry dropped
    try:
        ctx.twilio.calls(call_sid).update(url=ctx.url("voice.line_connect", queue=queue), method="POST")
    except Exception:
        log.exception("could not redirect waiting call %s; it keeps its place", call_sid)
        ctx.state.join_line(queue, CALL_PREFIX + call_sid, since)
        return "stop"
    return "handed"


def dispatch_callback(callback_id: int, queue: str, since: float) -> Outcome:
    """Claim a free agent and ring them first; the bridge then dials the client (guarded).

    The callback is `dialling` before the call is placed, under the dial's own id: whatever
    stops the dispatcher from then on leaves a dial the sweep can find and settle
    (`sweep_stuck_dialling`), never a call nobody waits for on a callback still `pending`.
    """
    ctx = context.current()
    rules = ctx.current_rules()
    now = time.time()
    with db.session() as s:
        callback = card.get_callback(s, callback_id)
        if callback is None or callback.status != "pending":
            return "skipped"
        if not _due(callback, datetime.now(UTC)):
            # not yet (a chosen time, or retry spacing): keep the place, come back when due
            ctx.state.join_line(queue, CALLBACK_PREFIX + str(callback_id), since)
            return "skipped"
        e164, language = callback.e164, callback.language
    snapshot = ctx.state.snapshot(rules.queues[queue].agents, now)
    lang = language if language in rules.languages else rules.hotline.default_language
    caller = engine.CallerContext(e164=e164, language=cast(Lang, lang),
                                  last_agent=ctx.state.last_agent(e164))
    ranked = engine.rank_agents(rules, queue, snapshot, caller, set())
    dial_sid = f"{DIAL_PREFIX}{callback_id}-{int(now * 1000)}"
    claimed = ctx.state.claim_agents(ranked, dial_sid, 1, now, now + CALLBACK_HOLD_SECONDS)
    if not claimed:
        ctx.state.join_line(queue, CALLBACK_PREFIX + str(callback_id), since)
        return "stop"
    agent_id = claimed[0]
    with db.session() as s:
        dialling = card.claim_callback(s, callback_id, agent_id, dial_sid=dial_sid,
                                       at=datetime.fromtimestamp(now, UTC))
    if not dialling:  # cancelled meanwhile (or dialled by another run): the agent is not needed
        ctx.state.release_unanswered(dial_sid, None, now)
        return "skipped"
    result = dialler_for(ctx).place_call(e164, agent_id=agent_id, purpose="requested_callback",
                                         requested_by="callback", callback_id=callback_id)
    if result.placed and result.call_sid:
        _call_placed(callback_id, dial_sid, result.call_sid, agent_id, queue, now)
        return "handed"
    ctx.state.release_unanswered(dial_sid, None, now)
    with db.session() as s:
        if result.verdict.allowed:  # Twilio refused: retry later with spacing; the rest wait for the next run
            place = _retry_or_give_up(s, callback_id, queue, since, result.error or "twilio error",
                                      dial_sid=dial_sid)
        else:
            place = _settle_blocked(s, callback_id, queue, since, result.verdict.reason,
                                    result.verdict.next_allowed_at)
    _back_in_line(place)
    return "stop" if result.verdict.allowed else "skipped"


def _call_placed(callback_id: int, dial_sid: str, call_sid: str, agent_id: str, queue: str, now: float) -> None:
    """The dial's call exists: name it on the callback, save its live state for the leg's
    callbacks, and settle it at once if its agent leg has ended already (Twilio's status
    callback came before this state was saved: `agent_leg_ended` left a note for us)."""
    ctx = context.current()
    with db.session() as s:
        if not card.callback_call_placed(s, callback_id, dial_sid, call_sid):
            log.warning("callback %s stopped waiting for dial %s before its call %s was placed",
                        callback_id, dial_sid, call_sid)
    ctx.state.save_call(call_sid, {"callback": callback_id, "agent": agent_id, "pseudo": dial_sid,
                                   "queue": queue}, now)
    ended = (ctx.state.get_call(call_sid) or {}).get("leg_ended")
    if ended:
        agent_leg_ended(call_sid, ended)


class LinePlace(NamedTuple):
    """A callback's place in its queue's line: scored by when its caller first queued."""

    queue: str
    callback_id: int
    since: float


def _back_in_line(place: LinePlace | None) -> None:
    """Put a callback that is `pending` again back at its place in line. Only once the
    transaction that made it pending has committed: a dispatcher that took it off the line
    before then would read it still `dialling`, drop it, and nothing would put it back."""
    if place is not None:
        context.current().state.join_line(place.queue, CALLBACK_PREFIX + str(place.callback_id), place.since)


def _settle_blocked(s: Any, callback_id: int, queue: str, since: float, reason: str | None,
                    next_allowed_at: datetime | None) -> LinePlace | None:
    """The guard refused the client: not an attempt. The callback waits for the next allowed
    time at its place in line (returned: join it after the commit, `_back_in_line`), or closes
    when there is none (an opt-out, an invalid number)."""
    card.block_callback(s, callback_id, reason or "blocked", next_allowed_at)
    if next_allowed_at and reason not in PERMANENT_BLOCKS:
        return LinePlace(queue, callback_id, since)
    return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _retry_or_give_up(s, callback_id: int, queue: str, since: float, why: str, call_sid: str | None = None,
                      *, dial_sid: str | None = None) -> LinePlace | None:
    """Count a failed attempt; the callback waits out its spacing at its place in line
    (returned: join it after the commit, `_back_in_line`), or is given up after the queue's
    `max_attempts`. `call_sid` (the dialled call), or `dial_sid` for a dial that placed none,
    keys the attempt, so a repeated result counts once."""
    rules = context.current().current_rules()
    spacing = timedelta(minutes=rules.queues[queue].callback.retry_spacing_minutes)
    still_open = card.schedule_callback_retry(s, callback_id, why, datetime.now(UTC) + spacing,
                                              rules.queues[queue].callback.max_attempts, call_sid=call_sid,
                                              dial_sid=dial_sid)
    return LinePlace(queue, callback_id, since) if still_open else None


def outbound_finished(call_sid: str, client: str, agent_id: str, dial_status: str, duration: int,
                      callback_id: int | None) -> None:
    """The client leg of an outbound call ended: free the agent and settle the callback.

    Once per call (`call_sid`, the agent's leg that ran the bridge): a repeat (an RQ retry after
    the commit, a repeated Dial action) finds the callback settled, or dialling again for a later
    call with this call's attempt already on the card, and changes nothing.
    """
    ctx = context.current()
    rules = ctx.current_rules()
    now = time.time()
    call = ctx.state.get_call(call_sid) or {}
    pseudo = (callback_hold(ctx.state, agent_id, callback_id, call, now) if callback_id is not None
              else call.get("pseudo"))
    agent = rules.agents.get(agent_id)
    wrap = agent.wrap_up_seconds if agent else 0
    for sid in filter(None, (pseudo, call_sid)):
        ctx.state.mark_on_call(agent_id, sid, now)
        ctx.state.release_after_call(agent_id, sid, now, wrap)
    queue = call.get("queue")
    place = None
    if callback_id is not None:
        with db.session() as s:
            cb = card.get_callback(s, callback_id)
            if cb is not None and cb.status == "dialling":
                queue = queue or cb.queue  # the leg's state may be lost: the callback knows its queue
                if dial_status in ("completed", "answered"):
                    card.complete_callback(s, callback_id, agent_id=agent_id, call_sid=call_sid,
                                           duration=duration)
                elif queue in rules.queues:
                    since = _aware(cb.first_queued_at).timestamp() if cb.first_queued_at else now
                    place = _retry_or_give_up(s, callback_id, queue, since, f"client {dial_status}", call_sid)
    _back_in_line(place)
    ctx.enqueue(agent_freed, queue)


def callback_blocked_at_bridge(callback_id: int, agent_id: str, call_sid: str, reason: str | None,
                               next_allowed_at: datetime | None) -> None:
    """The bridge's second guard check refused the client (an opt-out, or the window closed, in
    the seconds the agent's phone rang): settle the callback as one blocked before dialling, and
    free the agent, who answered for nobody. `call_sid`: the agent's leg (the bridge's CallSid).

    Once per leg: a repeat finds the leg ended and changes nothing, so it cannot undo a later
    dispatch of the same callback.
    """
    ctx = context.current()
    now = time.time()
    call = ctx.state.get_call(call_sid)
    if call is not None and ctx.state.end_call(call_sid) is None:
        return  # settled already
    call = call or {}
    pseudo = callback_hold(ctx.state, agent_id, callback_id, call, now)
    if pseudo:
        ctx.state.release_unanswered(pseudo, None, now)  # not a miss: the agent answered
    queue = call.get("queue")
    place = None
    with db.session() as s:
        callback = card.get_callback(s, callback_id)
        if callback is not None and callback.is_open:
            queue = queue or callback.queue
            since = _aware(callback.first_queued_at).timestamp() if callback.first_queued_at else now
            place = _settle_blocked(s, callback_id, queue, since, reason, next_allowed_at)
    _back_in_line(place)
    ctx.enqueue(agent_freed, queue)  # after the commit: the agent is free again


def callback_hold(state: LiveState, agent_id: str, callback_id: int, leg: Mapping[str, str], now: float) -> str | None:
    """The id an agent is held under for a callback's dial: the one its agent leg's state names
    (`pseudo`), else the agent's own hold when it is this callback's dial (the leg's state is
    not saved yet when Twilio is faster than the dispatcher's last step)."""
    if leg.get("pseudo"):
        return leg["pseudo"]
    held = (state.agent(agent_id, now) or {}).get("call_sid", "")
    return held if held.startswith(f"{DIAL_PREFIX}{callback_id}-") else None


AGENT_LEG_MISSED = frozenset({"no-answer", "busy", "failed"})  # the agent's phone: a miss, as on a routed call
AGENT_LEG_UNBRIDGED = AGENT_LEG_MISSED | {"canceled"}  # the leg ended before its bridge ran


def agent_leg_ended(call_sid: str, status: str) -> None:
    """A callback's agent leg ended before the agent answered (the status callback of an
    outbound-api call: no-answer, busy, failed, canceled): free the agent (a miss, unless
    canceled) and retry the callback after its spacing, since no bridge will ever settle it.

    Other statuses, and legs that are not a callback's, change nothing: an answered leg is
    settled by its bridge (`outbound_finished`, `callback_blocked_at_bridge`). Once per leg,
    whatever Twilio repeats.

    Twilio may be faster than the dispatcher: a leg that fails at once can report before the
    dispatcher has saved its state. The end is then noted on the leg (`leg_ended`) and read
    back: whichever of the two writes second sees the other's, and settles it
    (`_call_placed`); `end_call` lets one of them do it. (A leg that is no callback's keeps
    the note, one small hash, for the call state's 24 h.)
    """
    if status not in AGENT_LEG_UNBRIDGED:
        return
    ctx = context.current()
    call = ctx.state.get_call(call_sid)
    if not call or not call.get("callback"):
        ctx.state.save_call(call_sid, {"leg_ended": status}, time.time())
        call = ctx.state.get_call(call_sid)
        if not call or not call.get("callback"):
            return  # not a callback's leg, or its dispatcher settles it when it saves the leg
    ended = ctx.state.end_call(call_sid)
    if ended is None:
        return  # settled already
    fields, _ = ended
    rules = ctx.current_rules()
    now = time.time()
    callback_id, agent_id, pseudo = int(fields["callback"]), fields.get("agent", ""), fields.get("pseudo")
    if pseudo and status == "canceled":
        ctx.state.release_unanswered(pseudo, None, now)
    elif pseudo and agent_id:
        agent = rules.agents.get(agent_id)
        ctx.state.release_missed(agent_id, pseudo, now, agent.miss_limit if agent else 3)
    queue = fields.get("queue")
    place = None
    with db.session() as s:
        callback = card.get_callback(s, callback_id)
        if callback is not None and callback.status == "dialling" and queue in rules.queues:
            since = _aware(callback.first_queued_at).timestamp() if callback.first_queued_at else now
            place = _retry_or_give_up(s, callback_id, queue, since, f"agent {status}", call_sid)
    _back_in_line(place)
    ctx.enqueue(agent_freed, queue)  # after the commit; the retry itself waits for its spacing


STUCK_DIALLING_SECONDS = 15 * 60
"""How long a callback may stay `dialling` with no live call before the sweep settles it.

Longer than any dial takes to reach its client and report: the agent's phone rings up to
`outbound.AGENT_RING_TIMEOUT_SECONDS` (30 s), the bridge's check and whisper fit in
`outbound.BRIDGE_MARGIN` (30 s), and the client's phone rings up to the bridge's Dial timeout
(a queue's ring target + 20 s; Twilio allows 600 s at most): 660 s in all, plus room for a
worker's backlog. The dispatcher saves the call's live state seconds after placing it, so past
this a dial with no live call in Redis (never saved: the dispatcher stopped; or its end seen and
its result lost) will not report any more. It also outlasts `CALLBACK_HOLD_SECONDS`: the
agent's hold for the dial has lapsed by then."""

LONGEST_CALL_SECONDS = 4 * 3600 + STUCK_DIALLING_SECONDS
"""Twilio ends a call at its TimeLimit, 4 hours unless set (the dialler sets none). A dial that
began longer ago than that plus its ring has no live call, whatever Redis still says (a talk
whose Dial action was lost); a dial from before migration 0005, whose call the row does not
name, is settled then."""

STUCK_RESULT = "no result"  # the attempt's result when the sweep settles a dial that never reported


def sweep_stuck_dialling(now: datetime | None = None) -> int:
    """Periodic (the dispatch tick): settle callbacks left `dialling` by a dial that will never
    report back, the way an unanswered attempt is settled: counted, then retried after the
    queue's spacing at the callback's place in line, or given up after `max_attempts`.

    A dial is stuck when it began more than `STUCK_DIALLING_SECONDS` ago and its call is not
    live (`_dial_may_be_live`): the dispatcher stopped between marking it and saving the call's
    state, a job that applied its result failed for good, or Redis lost the call. The attempt
    is keyed by the dial (its CallSid, or its own id when no call was placed), so two workers
    sweeping at once, or a late result of the same call, count it once. Returns how many
    callbacks were settled.
    """
    now = now or datetime.now(UTC)
    with db.session(readonly=True) as s:
        stuck = [(cb.id, cb.dial_sid, cb.dialled_at)
                 for cb in card.stuck_dialling_callbacks(s, now - timedelta(seconds=STUCK_DIALLING_SECONDS))]
    settled = 0
    for callback_id, dial_sid, dialled_at in stuck:
        if not _dial_may_be_live(dial_sid, dialled_at, now) and _settle_lost_dial(callback_id, dial_sid):
            settled += 1
    return settled


def _dial_may_be_live(dial_sid: str | None, dialled_at: datetime | None, now: datetime) -> bool:
    """Whether the dial's call may still be ringing or talking: its live state is kept and has
    not ended (a pseudo id never has any: no call was placed), within the longest call."""
    if dialled_at is None or now - _aware(dialled_at) >= timedelta(seconds=LONGEST_CALL_SECONDS):
        return False
    if dial_sid is None:
        return True  # dialled before the row named its call: wait out the longest call
    call = context.current().state.get_call(dial_sid)
    return call is not None and not call.get("ended") and not call.get("leg_ended")


def _settle_lost_dial(callback_id: int, dial_sid: str | None) -> bool:
    """Count the lost dial as an unanswered attempt, unless the callback moved on meanwhile
    (its result came, it was cancelled or dialled again). True if it was settled here."""
    rules = context.current().current_rules()
    place = None
    with db.session() as s:
        cb = card.get_callback(s, callback_id)
        if cb is None or cb.status != "dialling" or cb.dial_sid != dial_sid:
            return False
        attempts = cb.attempts
        placed = dial_sid is not None and _is_call_sid(dial_sid)
        call_sid, own_id = (dial_sid, None) if placed else (None, dial_sid or f"{DIAL_PREFIX}{callback_id}-before-0005")
        if cb.queue in rules.queues:
            since = _aware(cb.first_queued_at).timestamp() if cb.first_queued_at else time.time()
            place = _retry_or_give_up(s, callback_id, cb.queue, since, STUCK_RESULT, call_sid, dial_sid=own_id)
        else:  # its queue left the rules: no spacing or attempts to go by, and no line to wait in
            card.record_callback_attempt(s, callback_id, STUCK_RESULT, call_sid=call_sid, dial_sid=own_id)
        if cb.attempts == attempts:
            return False  # another worker counted this dial first (its attempt's key was taken)
        log.warning("callback %s was dialling since %s with no live call (dial %s): settled as %s",
                    callback_id, cb.dialled_at, dial_sid, cb.status)
    _back_in_line(place)
    return True


def _is_call_sid(dial_sid: str) -> bool:
    """A Twilio CallSid (`CA` + 32 hex digits), not a dial's own id (`CB{id}-{ms}`)."""
    return dial_sid.startswith("CA")


STRANDED_AFTER_SECONDS = 60  # after the caller's leg ended, how long a Dial action may still come


def release_stranded_agent(agent_id: str, call_sid: str) -> bool:
    """The caller's leg ended while the agent who answered was still on the call and no Dial
    action had freed them (it normally comes first). Run a minute later: if the action came
    meanwhile this changes nothing; if it never will (its request failed and Twilio used the
    fallback URL), the agent is freed, with their wrap-up, instead of staying on_call until a
    person notices. True if they were freed."""
    ctx = context.current()
    rules = ctx.current_rules()
    agent = rules.agents.get(agent_id)
    freed = ctx.state.release_after_call(agent_id, call_sid, time.time(), agent.wrap_up_seconds if agent else 0)
    if freed:
        log.warning("agent %s freed %d s after call %s ended: its Dial action never came",
                    agent_id, STRANDED_AFTER_SECONDS, call_sid)
        ctx.enqueue(agent_freed, None)
    return freed


def restore_callback_places(page_size: int = RESTORE_PAGE) -> int:
    """Periodic (the dispatch tick): put every pending callback that is missing from its
    queue's line back at its place, the time its caller first queued (as `join_line` first
    placed it). A line goes with Redis's data (a restart without persistence, a failover to an
    empty replica), and a callback's member with a job that stopped between its commit and its
    join; nothing else would bring them back, and a pending callback out of every line is never
    dialled.

    Cheap enough for every tick: the pending callbacks are read in keyset pages of `page_size`
    on the (status, first_queued_at) index, and each page is one `ZADD NX` per queue, so a
    member in line keeps its place. Callbacks whose queue left the rules wait where they are,
    out of every line (one log line a run). Returns how many were put back.
    """
    ctx = context.current()
    rules = ctx.current_rules()
    restored: Counter[str] = Counter()
    queueless: Counter[str] = Counter()
    after: tuple[datetime, int] | None = None
    while True:
        with db.session(readonly=True) as s:
            page = card.pending_callback_places(s, after, page_size)
        places: dict[str, dict[str, float]] = {}
        for callback_id, queue, first_queued_at in page:
            if queue in rules.queues:
                places.setdefault(queue, {})[CALLBACK_PREFIX + str(callback_id)] = _aware(first_queued_at).timestamp()
            else:
                queueless[queue] += 1
        for queue, members in places.items():
            if added := ctx.state.restore_places(queue, members):
                restored[queue] += added
        if len(page) < page_size:
            break
        after = (page[-1][2], page[-1][0])
    if restored:
        log.warning("pending callbacks missing from their lines were put back at their places: %s",
                    ", ".join(f"{queue} {n}" for queue, n in sorted(restored.items())))
    if queueless:
        log.warning("pending callbacks of queues no longer in the rules wait out of every line: %s",
                    ", ".join(f"{queue} {n}" for queue, n in sorted(queueless.items())))
    return sum(restored.values())


TICK_EVERY_SECONDS = 10  # a due callback or an ended wrap-up waits at most this long


def tick(now: datetime | None = None) -> int:
    """Periodic: bring back agents the live state lacks, start a new day's call counters after
    local midnight, put pending callbacks missing from their lines back at their places
    (`restore_callback_places`; before serving, so a later caller is not served ahead of them),
    serve lines whose agents are free (wrap-ups that ended, due callbacks), then settle
    callbacks stuck in `dialling` (`sweep_stuck_dialling`; after serving, so a fault there
    never holds up a line). Returns how many waiting calls/callbacks were served.

    Agents and lines go missing when Redis loses its data (a restart without persistence, a
    failover to an empty replica); agents also when the rules file gains one by hand. Until
    they are back, no call reaches them. Existing agents and members keep what they have.
    """
    ctx = context.current()
    rules = ctx.current_rules()
    created = ctx.state.sync_agents(rules.agents_available_by_default(), time.time())
    if created:
        log.warning("agents missing from the live state were added from the rules: %s", ", ".join(created))
    today = (now or datetime.now(UTC)).astimezone(engine.zone(rules)).date().isoformat()
    if ctx.state.start_day(today, ctx.state.agent_ids()):
        log.info("new day %s: agents' calls_today counters reset", today)
    try:
        restore_callback_places()
    except Exception:  # the card store is down: the callers in line are served all the same
        log.exception("could not check the pending callbacks' places in line")
    served = agent_freed(None)
    sweep_stuck_dialling(now)
    return served


TICK_CHAIN = "dispatch-tick"
CHAIN_GRACE_SECONDS = 30  # a chain's mark outlives 3 intervals and this: the scheduler's lag


def chain_alive_seconds(every: float) -> float:
    """How long one run or start keeps a periodic chain's mark: a chain whose mark is gone has
    stopped (its job lost with Redis's data, or a worker killed between run and reschedule)."""
    return 3 * every + CHAIN_GRACE_SECONDS


def _tick_job_id(queue_name: str, at: float) -> str:
    """One job id per interval: chains started by several workers converge on one job."""
    return context.job_id(queue_name, f"dispatch-tick-{int(at // TICK_EVERY_SECONDS)}")


def tick_and_reschedule(queue_name: str) -> int:
    """The periodic job: serve the lines, then schedule the next tick (needs the RQ scheduler)."""
    from rq import Queue, get_current_job

    try:
        context.current().state.note_periodic(TICK_CHAIN, chain_alive_seconds(TICK_EVERY_SECONDS))
        return tick()
    finally:
        job = get_current_job()
        if job is not None:
            Queue(queue_name, connection=job.connection).enqueue_in(
                timedelta(seconds=TICK_EVERY_SECONDS), tick_and_reschedule, queue_name,
                job_id=_tick_job_id(queue_name, time.time() + TICK_EVERY_SECONDS))


def start_ticks(queue: Any) -> bool:
    """Start the periodic chain unless it is alive; True if started. A worker calls this when it
    starts and then every few seconds (`webhooks.worker.keep_chains`), so a chain lost with
    Redis's data comes back; of several workers asking at once, one starts it."""
    if not context.current().state.start_periodic(TICK_CHAIN, chain_alive_seconds(TICK_EVERY_SECONDS)):
        return False
    queue.enqueue(tick_and_reschedule, queue.name, job_id=_tick_job_id(queue.name, time.time()))
    return True


def register_callback(e164: str, queue: str, language: str, since: float, not_before_iso: str | None,
                      call_sid: str | None) -> int:
    """Store the callback durably (one open per client and queue) and give it the caller's place."""
    ctx = context.current()
    rules = ctx.current_rules()
    due_minutes = rules.queues[queue].callback.respond_within_minutes
    first_queued = datetime.fromtimestamp(since, UTC)
    not_before = datetime.fromisoformat(not_before_iso) if not_before_iso else None
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164, language=language)
        callback, _ = card.request_callback(
            s, client.id, e164, queue, language=language, first_queued_at=first_queued,
            not_before=not_before,
            due_at=max(first_queued, not_before or first_queued) + timedelta(minutes=due_minutes),
            call_sid=call_sid,
        )
        callback_id, first = callback.id, _aware(callback.first_queued_at) if callback.first_queued_at else None
    ctx.state.join_line(queue, CALLBACK_PREFIX + str(callback_id), first.timestamp() if first else since)
    ctx.enqueue(agent_freed, queue)
    return callback_id
