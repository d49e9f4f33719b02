"""RQ jobs that apply webhook events and Twilio callbacks to the card.

Plain module-level functions with JSON-able arguments, run by a worker that has already called
`db.configure(url)`. Each job is one transaction and idempotent by key, so RQ may retry it and
Twilio may send a callback twice. Faults raise: RQ's Retry handles the transient ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import structlog

from . import card, db

log = structlog.get_logger("hotline.cards")

TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
VOICEMAIL_RESPOND_WITHIN_MINUTES = 240  # the rules' default when a queue sets none
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def is_client_number(value: str | None) -> bool:
    """E.164 only: `anonymous`, `unknown`, `client:…` and `sip:…` never get a card."""
    return bool(value) and bool(_E164.match(value or ""))


def _parse_iso(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def twilio_timestamp(value: str | None) -> datetime:
    """Twilio's RFC 2822 `Timestamp`; the time we apply it if missing or unreadable."""
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def record_event(
    e164: str,
    kind: str,
    data: dict[str, Any],
    at_iso: str,
    call_sid: str | None = None,
    agent_id: str | None = None,
    queue: str | None = None,
    key: str | None = None,
) -> int | None:
    """Append a webhook's event to the caller's card (created on first contact).

    Returns the event id, or None when the key was seen before or the caller is anonymous.
    """
    if not is_client_number(e164):
        log.info(
            "card_event_skipped",
            reason="no client number",
            number=e164,
            kind=kind,
            call_sid=call_sid,
        )
        return None
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164)
        event = card.append_event(
            s, client.id, kind, data, _parse_iso(at_iso), call_sid, agent_id, queue, key
        )
        return event.id if event else None


def _call_status_event(
    params: dict[str, Any], client_e164: str | None = None
) -> tuple[str, bool, dict[str, Any]] | None:
    """(number, may create its card, event row without client_id) for a status callback, or
    None when the call has no client number. Keyed by CallSid + SequenceNumber."""
    call_sid = params.get("CallSid") or ""
    status = params.get("CallStatus") or ""
    if not call_sid or not status:
        raise ValueError(f"status callback without CallSid/CallStatus: {params!r}")
    direction = params.get("Direction") or "inbound"
    inbound = direction == "inbound"
    number = client_e164 or (params.get("From") if inbound else params.get("To"))
    if not is_client_number(number):
        log.info("call_status_skipped", reason="no client number", number=number,
                 call_sid=call_sid, call_status=status)
        return None
    seq = params.get("SequenceNumber") or status
    terminal = status in TERMINAL_CALL_STATUSES
    data: dict[str, Any] = {
        "status": status,
        "direction": direction,
        "from": params.get("From"),
        "to": params.get("To"),
    }
    if terminal:
        data["duration"] = _int(params.get("CallDuration"))
        if params.get("SipResponseCode"):
            data["sip_response_code"] = params.get("SipResponseCode")
    row = {
        "kind": "call_completed" if terminal else "call_status",
        "data": data,
        "at": twilio_timestamp(params.get("Timestamp")),
        "call_sid": call_sid,
        "key": f"status:{call_sid}:{seq}",
    }
    return str(number), bool(inbound or client_e164), row


def apply_call_status(params: dict[str, Any], client_e164: str | None = None) -> int | None:
    """Apply a Twilio call status callback once, keyed by CallSid + SequenceNumber.

    The client is `From` on inbound calls. On outbound legs `To` may be an agent (agent-first
    callbacks ring the agent with an API call), so an outbound number is only matched to an
    existing card, never creates one; pass `client_e164` when the caller knows the client.
    """
    spec = _call_status_event(params, client_e164)
    if spec is None:
        return None
    number, may_create, row = spec
    with db.session() as s:
        if may_create:
            client, _ = card.find_or_create_client(s, number)
        else:
            found = card.find_client_by_phone(s, number)
            if found is None:
                log.info("call_status_skipped", reason="outbound number has no card", number=number,
                         call_sid=row["call_sid"])
                return None
            client = found
        event = card.append_event(
            s, client.id, row["kind"], row["data"], row["at"], row["call_sid"], key=row["key"]
        )
        return event.id if event else None


# --- the batched writer: webhook card events drained from a Redis list ------------------------


def auto_key(*parts: object) -> str:
    """The key of an event its recorder names none for: `auto:` + SHA-1 of what identifies it."""
    return "auto:" + hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


def event_payload(
    e164: str,
    kind: str,
    data: dict[str, Any],
    at_iso: str,
    call_sid: str | None = None,
    agent_id: str | None = None,
    queue: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The compact, JSON-able form of `record_event`'s arguments, applied by `apply_event_batch`.

    An event without a key gets one from (call_sid, kind, at, agent), so a replayed batch (a
    drainer that died mid-way) adds nothing twice.
    """
    if key is None:
        key = auto_key(call_sid, kind, at_iso, agent_id)
    payload: dict[str, Any] = {"e": e164, "k": kind, "t": at_iso, "y": key}
    if data:
        payload["d"] = data
    if call_sid:
        payload["c"] = call_sid
    if agent_id:
        payload["a"] = agent_id
    if queue:
        payload["q"] = queue
    return payload


def call_status_payload(params: dict[str, Any], client_e164: str | None = None) -> dict[str, Any]:
    """`apply_call_status`'s arguments as a batch payload."""
    payload: dict[str, Any] = {"s": params}
    if client_e164:
        payload["n"] = client_e164
    return payload


def recording_payload(
    params: dict[str, Any],
    kind: str,
    queue: str | None,
    respond_within_minutes: int | None,
    language: str | None,
    caller: str | None,
    received_at_iso: str,
) -> dict[str, Any]:
    """`apply_recording`'s arguments as a batch payload: a recording callback comes with every
    recorded call, so it travels with the card events rather than as an RQ job of its own."""
    return {"r": [params, kind, queue, respond_within_minutes, language, caller, received_at_iso]}


def apply_event_batch(payloads: list[dict[str, Any]]) -> int:
    """Apply many payloads (`event_payload`, `call_status_payload`, `recording_payload`) in ONE
    transaction; returns how many of its event payloads made a new card event.

    Clients are resolved once per number in the batch (created on first contact; outbound status
    numbers are only matched), events are inserted idempotently by key through
    `card.append_events`, and the batch's recordings (and voicemails) are stored once per
    RecordingSid, a few statements for all of them (`card.link_recordings`): every recorded call
    brings one, so a recording must cost about what an event costs. Raises on a fault: the
    caller retries the batch, or its payloads one by one as RQ jobs.
    """
    return _apply_batch(payloads)[0]


def _apply_batch(payloads: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(new events, a result per completed recording callback, in order): `apply_event_batch`."""
    specs: list[tuple[str, bool, dict[str, Any]]] = []
    recordings: list[_RecordingCallback] = []
    for p in payloads:
        if "r" in p:
            rec = _read_recording(*p["r"])
            if rec is not None:
                recordings.append(rec)
            continue
        if "s" in p:
            spec = _call_status_event(p["s"], p.get("n"))
            if spec is not None:
                specs.append(spec)
            continue
        e164, kind = p["e"], p["k"]
        if not is_client_number(e164):
            log.info("card_event_skipped", reason="no client number", number=e164, kind=kind,
                     call_sid=p.get("c"))
            continue
        specs.append((e164, True, {
            "kind": kind, "data": p.get("d") or {}, "at": _parse_iso(p.get("t")),
            "call_sid": p.get("c"), "agent_id": p.get("a"), "queue": p.get("q"), "key": p.get("y"),
        }))
    if not specs and not recordings:
        return 0, []
    spoken: dict[str, str] = {}  # a new card's language: the first one its recordings name
    for r in recordings:
        if r.caller is not None and r.language:
            spoken.setdefault(r.caller, r.language)
    with db.session() as s:
        ids = card.client_ids_by_phone(
            s,
            create={number for number, may_create, _ in specs if may_create}
            | {r.caller for r in recordings if r.caller is not None},
            find={number for number, may_create, _ in specs if not may_create},
            languages=spoken,
        )
        rows = []
        for number, _, row in specs:
            client_id = ids.get(number)
            if client_id is None:
                log.info("call_status_skipped", reason="outbound number has no card", number=number,
                         call_sid=row["call_sid"])
                continue
            rows.append({**row, "client_id": client_id})
        applied = card.append_events(s, rows)
        results = _store_recordings(s, recordings, ids) if recordings else []
    return applied, results


@dataclass(frozen=True)
class _RecordingCallback:
    """A completed recording callback, read and checked (`_read_recording`)."""

    sid: str
    kind: str
    url: str
    call_sid: str | None
    caller: str | None  # a client number, else None: an anonymous caller's recording has no card
    queue: str | None
    language: str | None
    duration: int | None
    channels: int | None
    source: str | None
    started_at: datetime | None
    received: datetime
    respond_within_minutes: int | None


def _read_recording(
    params: dict[str, Any],
    kind: str = "call",
    queue: str | None = None,
    respond_within_minutes: int | None = None,
    language: str | None = None,
    caller: str | None = None,
    received_at_iso: str | None = None,
) -> _RecordingCallback | None:
    """A recording callback's arguments (`recording_payload`) checked; None unless `completed`."""
    sid = params.get("RecordingSid") or ""
    status = params.get("RecordingStatus") or ""
    call_sid = params.get("CallSid") or None
    if not sid:
        raise ValueError(f"recording callback without RecordingSid: {params!r}")
    if status != "completed":
        log.info("recording_not_completed", call_sid=call_sid, recording_sid=sid, recording_status=status)
        return None
    if kind not in ("call", "voicemail"):
        raise ValueError(f"recording kind must be call or voicemail, not {kind!r}")
    started = params.get("RecordingStartTime")
    return _RecordingCallback(
        sid=sid, kind=kind, url=params.get("RecordingUrl") or "", call_sid=call_sid,
        caller=caller if is_client_number(caller) else None, queue=queue, language=language,
        duration=_int(params.get("RecordingDuration")), channels=_int(params.get("RecordingChannels")),
        source=params.get("RecordingSource"), started_at=twilio_timestamp(started) if started else None,
        received=_parse_iso(received_at_iso), respond_within_minutes=respond_within_minutes,
    )


def _store_recordings(s: Any, recordings: list[_RecordingCallback], client_ids: dict[str, int]) -> list[dict[str, Any]]:
    """Recordings, and the voicemails among them, stored and put on their cards in a few
    statements for the whole list; a result per recording, in order."""
    linked = card.link_recordings(s, [{
        "sid": r.sid, "url": r.url, "call_sid": r.call_sid, "client_id": client_ids.get(r.caller or ""),
        "duration": r.duration, "channels": r.channels, "source": r.source, "kind": r.kind, "status": "completed",
        "started_at": r.started_at, "created_at": r.received, "queue": r.queue,
    } for r in recordings])
    voicemails = card.create_voicemails(s, [{
        "recording_sid": r.sid, "url": r.url,
        "due_at": r.received + timedelta(minutes=r.respond_within_minutes or VOICEMAIL_RESPOND_WITHIN_MINUTES),
        "client_id": client_ids.get(r.caller or ""), "call_sid": r.call_sid, "duration": r.duration,
        "queue": r.queue, "language": r.language, "created_at": r.received,
    } for r in recordings if r.kind == "voicemail"])
    results = []
    seen: set[str] = set()
    for r in recordings:
        recording_id, created = linked[r.sid]
        created = created and r.sid not in seen  # a callback repeated in the batch: the first made it
        seen.add(r.sid)
        result: dict[str, Any] = {"recording_id": recording_id, "created": created,
                                  "client_id": client_ids.get(r.caller or "")}
        if r.kind == "voicemail":
            result["voicemail_id"] = voicemails[r.sid][0]
        log.info("recording_applied", call_sid=r.call_sid, recording_sid=r.sid, kind=r.kind, created=created,
                 client_id=result["client_id"])
        results.append(result)
    return results


def apply_recording(
    params: dict[str, Any],
    kind: str = "call",
    queue: str | None = None,
    respond_within_minutes: int | None = None,
    language: str | None = None,
    caller: str | None = None,
    received_at_iso: str | None = None,
) -> dict[str, Any] | None:
    """Apply a Twilio recording status callback once per RecordingSid (as a batch of one).

    `completed` → a Recording and a `recording_linked` event; for voicemail also a Voicemail
    due `respond_within_minutes` after `received_at_iso` (the webhook's clock, so time spent in
    the queue does not stretch the deadline) and a `voicemail_left` event. The callback has no
    From, so the webhook passes the `caller`; an anonymous caller's voicemail has no card.
    """
    results = _apply_batch([recording_payload(params, kind, queue, respond_within_minutes, language, caller,
                                              received_at_iso or datetime.now(UTC).isoformat())])[1]
    return results[0] if results else None


ComplaintDeadlines = Callable[[], tuple[timedelta, timedelta]]
_complaint_deadlines: ComplaintDeadlines | None = None


def use_complaint_deadlines(deadlines: ComplaintDeadlines | None) -> None:
    """The composition root hands in (acknowledge within, resolve within) from the current rules,
    read when a job runs: the webhook that enqueues the complaint does not pass them."""
    global _complaint_deadlines
    _complaint_deadlines = deadlines


def open_complaint_for_call(
    e164: str, call_sid: str, queue: str | None, at_iso: str, summary: str | None = None
) -> int | None:
    """The caller chose "complaint" in the menu: one complaint per call."""
    if not is_client_number(e164):
        log.info("complaint_skipped", reason="no client number", number=e164, call_sid=call_sid)
        return None
    ack_within, resolve_within = (
        _complaint_deadlines() if _complaint_deadlines is not None
        else (card.COMPLAINT_ACK_WITHIN, card.COMPLAINT_RESOLVE_WITHIN)
    )
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164)
        complaint, _ = card.open_complaint(
            s,
            client.id,
            summary=summary,
            call_sid=call_sid,
            queue=queue,
            by="ivr",
            at=_parse_iso(at_iso),
            ack_within=ack_within,
            resolve_within=resolve_within,
        )
        return complaint.id


def opt_out_from_call(e164: str, call_sid: str, at_iso: str) -> int | None:
    """The caller pressed "don't call me again": the whole card is opted out."""
    if not is_client_number(e164):
        log.info("opt_out_skipped", reason="no client number", number=e164, call_sid=call_sid)
        return None
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164)
        row = card.opt_out_client(
            s,
            client.id,
            "ivr",
            reason="caller asked in the menu",
            by="ivr",
            at=_parse_iso(at_iso),
            call_sid=call_sid,
        )
        return row.id


def set_client_language(e164: str, language: str) -> None:
    """Remember the caller's chosen language. The webhook writes the `language_changed` event
    itself (with the call), so this only updates the card."""
    if not is_client_number(e164):
        return
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164, language=language)
        card.update_client(s, client.id, language=language, record_language_change=False)
