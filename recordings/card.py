"""The client card: the single writer of card events, and the card's workflows.

Every state change here (opt-outs, voicemails, callbacks, complaints, notes) writes its event
through `append_event`, so the timeline is the complete history of a client. Functions take an
open session from `db.session()` and never commit: the caller owns the unit of work.
Idempotency keys are `{entity}:{id}:{what}` (see docs/card.md); a repeated key adds nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from routing_rules.outbound import ConvenientWindow

from . import db
from .models import (
    CALLBACK_OPEN_STATUSES,
    OPT_OUT_SOURCES,
    Callback,
    CardEvent,
    Client,
    Complaint,
    OptOut,
    PhoneNumber,
    Recording,
    Voicemail,
    utcnow,
)

COMPLAINT_ACK_WITHIN = timedelta(hours=24)  # a supervisor acknowledges within a working day
COMPLAINT_RESOLVE_WITHIN = timedelta(days=7)  # and resolves within a week
TIMELINE_MAX_LIMIT = 500  # one page; keeps a card request cheap
LAST_RESULT_LENGTH = 40  # callbacks.last_result's width: PostgreSQL refuses a longer value
_TEXT_ARRAY = postgresql.ARRAY(sa.String)  # a batch's numbers as one PostgreSQL parameter

EVENT_KINDS = frozenset(
    {
        "call_arrived",
        "menu_choice",
        "agent_rung",
        "call_answered",
        "call_status",
        "call_completed",
        "call_abandoned",
        "recording_linked",
        "voicemail_left",
        "voicemail_handled",
        "callback_requested",
        "callback_attempt",
        "callback_completed",
        "callback_given_up",
        "callback_cancelled",
        "complaint_opened",
        "complaint_escalated",
        "complaint_acknowledged",
        "complaint_resolved",
        "note",
        "agreement",
        "opted_out",
        "opt_out_withdrawn",
        "outbound_blocked",
        "outbound_placed",
        "survey_score",
        "language_changed",
        "client_updated",
        "call_handled",
        "closed",
        "routed_to_voicemail",
        "high_volume_offer",
        "offer_choice",
        "queued",
        "dequeued",
    }
)

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")  # \Z: `$` would take "09:30\n"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
T = TypeVar("T")


class NumberInUse(ValueError):
    """The number already belongs to another card (one card per number)."""

    def __init__(self, e164: str, client_id: int) -> None:
        super().__init__(f"{e164} already belongs to client {client_id}")
        self.e164 = e164
        self.client_id = client_id


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


def _insert_or_find(s: Session, obj: T, find: Callable[[], T | None]) -> tuple[T, bool]:
    """Insert `obj` inside a SAVEPOINT; on a unique clash return what `find` sees instead.

    The savepoint keeps the caller's transaction alive when a concurrent writer won the race.
    """
    try:
        with s.begin_nested():
            s.add(obj)
            s.flush()
        return obj, True
    except IntegrityError:
        existing = find()
        if existing is None:
            raise  # not a uniqueness race (e.g. a missing client): a real error
        return existing, False


def _first_of_each(rows: Sequence[dict[str, Any]], unique: str) -> list[dict[str, Any]]:
    """The first row of each `unique` value, in order: a callback repeated in one batch is the
    first one's (its row and its event alike), as if the repeat came later."""
    firsts: dict[Any, dict[str, Any]] = {}
    for row in rows:
        firsts.setdefault(row[unique], row)
    return list(firsts.values())


def _insert_once_many(s: Session, model: type[Any], rows: Sequence[dict[str, Any]],
                      unique: str) -> dict[Any, tuple[int, bool]]:
    """Insert each row unless one with the same `unique` value exists (even written concurrently,
    or earlier in `rows`): {unique value: (id, whether this call created it)}. On PostgreSQL and
    SQLite one `INSERT … ON CONFLICT DO NOTHING RETURNING` for all the rows (and one SELECT for
    those already there): a batch of recording callbacks costs two statements, not two each.
    Another backend inserts row by row, each in a savepoint."""
    table = cast(sa.Table, model.__table__)
    first = {row[unique]: row for row in _first_of_each(rows, unique)}
    if not first:
        return {}
    key, ident = table.c[unique], table.c.id
    insert = _upsert_insert(s)
    if insert is None:
        found: dict[Any, tuple[int, bool]] = {}
        for value, row in first.items():
            def find(value: Any = value) -> Any:
                return s.scalar(sa.select(model).where(getattr(model, unique) == value))
            existing = find()
            stored, created = (existing, False) if existing is not None else _insert_or_find(s, model(**row), find)
            found[value] = (stored.id, created)
        return found
    # an executemany: SQLAlchemy sends the rows as one multi-row INSERT ("insertmanyvalues"),
    # and the statement's text is compiled once whatever the count. Rows go in key order, so two
    # writers inserting some of the same keys wait for each other in one order, never in a cycle.
    stmt = insert(table).on_conflict_do_nothing(index_elements=[unique]).returning(key, ident)
    ordered = [first[value] for value in sorted(first)]
    found = {value: (new_id, True) for value, new_id in s.execute(stmt, ordered).all()}
    earlier = [value for value in first if value not in found]
    if earlier:
        found.update((value, (old_id, False))
                     for value, old_id in s.execute(sa.select(key, ident).where(key.in_(earlier))).all())
    if len(found) < len(first):  # cannot be: every conflict was on `unique`
        raise RuntimeError(f"{model.__name__}: conflict on {unique} but no row found")
    return found


# --- events -----------------------------------------------------------------------------------


def append_event(
    s: Session,
    client_id: int,
    kind: str,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    call_sid: str | None = None,
    agent_id: str | None = None,
    queue: str | None = None,
    key: str | None = None,
) -> CardEvent | None:
    """Append one event to the card; None when `key` was already written (even concurrently)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown card event kind {kind!r}: add it to EVENT_KINDS, docs/card.md")

    values = {"client_id": client_id, "kind": kind, "data": dict(data or {}), "at": _now(at),
              "call_sid": call_sid, "agent_id": agent_id, "queue": queue, "key": key}
    insert = _upsert_insert(s)
    if key is not None and insert is not None:
        # one statement: a key already stored (even by a concurrent writer) returns no row
        stmt = insert(CardEvent).values(**values).on_conflict_do_nothing(index_elements=["key"])
        return s.scalar(stmt.returning(CardEvent))
    event = CardEvent(**values)
    if key is None:
        s.add(event)
        s.flush()
        return event

    def find() -> CardEvent | None:
        return s.scalar(sa.select(CardEvent).where(CardEvent.key == key))

    if find() is not None:
        return None
    stored, created = _insert_or_find(s, event, find)
    return stored if created else None


def _upsert_insert(s: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL, SQLite), or None for another backend."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    return None


def append_events(s: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Append many events with one statement (the batched writer); returns how many were new.

    Each row has `client_id`, `kind`, `at` (aware) and optionally `data`, `call_sid`,
    `agent_id`, `queue`, `key`. Rows go in by `at` (stable), so ids follow time within a client.
    A key already stored, or repeated in the batch, adds nothing: `ON CONFLICT (key) DO NOTHING`
    on both PostgreSQL and SQLite (only a key conflict is ignored); rows without a key never
    conflict.
    """
    seen: set[str] = set()
    values: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: r["at"]):
        kind = row["kind"]
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown card event kind {kind!r}: add it to EVENT_KINDS, docs/card.md")
        key = row.get("key")
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        values.append({
            "client_id": row["client_id"],
            "kind": kind,
            "data": dict(row.get("data") or {}),
            "at": row["at"],
            "call_sid": row.get("call_sid"),
            "agent_id": row.get("agent_id"),
            "queue": row.get("queue"),
            "key": key,
        })
    if not values:
        return 0
    insert = _upsert_insert(s)
    if insert is not None:
        # A Core executemany of one short statement, rows in order: psycopg sends them in one
        # pipeline, sqlite3 in one call. The ORM's bulk insert began a new statement wherever the
        # next row's empty columns differed, and a RETURNING batch is one long statement whose
        # placeholders the driver parses afresh each time; the row count is all we need.
        stmt = insert(CardEvent.__table__).on_conflict_do_nothing(index_elements=["key"])
        done = s.execute(stmt, values, execution_options={"preserve_rowcount": True})
        return int(done.rowcount)  # type: ignore[attr-defined]
    # another backend: one at a time, each idempotent by its savepoint
    return sum(
        append_event(s, v["client_id"], v["kind"], v["data"], v["at"], v["call_sid"],
                     v["agent_id"], v["queue"], v["key"]) is not None
        for v in values
    )


def event_dict(event: CardEvent) -> dict[str, Any]:
    """A JSON-able view of an event for the API and pages."""
    return {
        "id": event.id,
        "kind": event.kind,
        "at": event.at.isoformat(),
        "call_sid": event.call_sid,
        "agent_id": event.agent_id,
        "queue": event.queue,
        "data": event.data,
    }


event_json = event_dict  # the name webhooks/api.py uses


def encode_cursor(event: CardEvent) -> str:
    """An opaque, URL-safe position in a timeline: `{microseconds since epoch}-{id}`."""
    micros = int(event.at.timestamp()) * 1_000_000 + event.at.microsecond
    return f"{micros}-{event.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(at, event id) of a cursor `encode_cursor` made; ValueError for anything else, a time or
    an id no row can have included (the database would refuse the comparison)."""
    try:
        micros, event_id = (int(part) for part in cursor.split("-", 1))
        if not 0 <= event_id < 2**63:
            raise ValueError("event id out of range")
        at = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"bad timeline cursor {cursor[:60]!r}") from exc
    return at, event_id


def timeline(
    s: Session, client_id: int, limit: int = 50, before: str | None = None
) -> tuple[list[CardEvent], str | None]:
    """Newest first, keyset-paginated on (at, id): pass the returned cursor as `before`."""
    limit = max(1, min(limit, TIMELINE_MAX_LIMIT))
    query = sa.select(CardEvent).where(CardEvent.client_id == client_id)
    if before is not None:
        at, event_id = decode_cursor(before)
        # A row comparison is an index condition on both backends (an OR would be a filter).
        query = query.where(sa.tuple_(CardEvent.at, CardEvent.id) < sa.tuple_(at, event_id))
    query = query.order_by(CardEvent.at.desc(), CardEvent.id.desc()).limit(limit + 1)
    events = list(s.scalars(query))
    if len(events) > limit:
        events = events[:limit]
        return events, encode_cursor(events[-1])
    return events, None


# --- clients ----------------------------------------------------------------------------------


def find_client_by_phone(s: Session, e164: str) -> Client | None:
    return s.scalar(sa.select(Client).join(PhoneNumber).where(PhoneNumber.e164 == e164))


_CALLER_FACTS = (
    sa.select(Client.id, Client.name, Client.language)
    .join(PhoneNumber)
    .where(PhoneNumber.e164 == sa.bindparam("e164"))
)


def caller_facts(e164: str) -> tuple[int, str | None, str | None] | None:
    """(client id, name, language) of the card holding this number: what a greeting needs,
    read without loading the card (the hot path of every inbound call)."""
    row = db.read_first(_CALLER_FACTS, {"e164": e164})
    return (row[0], row[1], row[2]) if row else None


def get_client(s: Session, client_id: int) -> Client | None:
    return s.get(Client, client_id)


def find_or_create_client(
    s: Session, e164: str, language: str | None = None, name: str | None = None
) -> tuple[Client, bool]:
    """The card for this number, created on first contact. Safe against concurrent callers."""
    client = find_client_by_phone(s, e164)
    if client is not None:
        return client, False
    new = Client(name=name, language=language, numbers=[PhoneNumber(e164=e164)])
    return _insert_or_find(s, new, lambda: find_client_by_phone(s, e164))


def client_ids_by_phone(
    s: Session, create: Iterable[str] = (), find: Iterable[str] = (), languages: dict[str, str] | None = None
) -> dict[str, int]:
    """Client ids for many numbers at once: one SELECT, then the `create` numbers that have no
    card yet get one (one flush), in its number's language from `languages` if it has one there.
    `find` numbers are only looked up. Missing `find` numbers are absent from the result. Safe
    against a concurrent creator (falls back to one at a time)."""
    languages = languages or {}
    create, find = set(create), set(find)
    wanted = create | find
    if not wanted:
        return {}
    postgres = s.get_bind().dialect.name == "postgresql"
    # On PostgreSQL the batch's numbers go as one array: the statement's text is the same for
    # every batch, so the driver converts it once and the server runs it prepared (an IN list
    # is a new text for each count of numbers).
    where = (PhoneNumber.e164 == sa.any_(sa.bindparam("numbers", sorted(wanted), type_=_TEXT_ARRAY))
             if postgres else PhoneNumber.e164.in_(wanted))
    found: dict[str, int] = dict(
        s.execute(sa.select(PhoneNumber.e164, PhoneNumber.client_id).where(where)).all()  # type: ignore[arg-type]
    )
    missing = sorted(create - found.keys())
    if missing:
        # Core inserts, not the unit of work: a busy hour brings many first-time callers per
        # batch. The new cards are blank, so which id goes with which number does not matter.
        clients, numbers = cast(sa.Table, Client.__table__), cast(sa.Table, PhoneNumber.__table__)
        try:
            with s.begin_nested():
                if postgres:  # one statement of the same text whatever the count
                    now = sa.bindparam("now", utcnow(), type_=clients.c.created_at.type)
                    blank = sa.select(now, now).select_from(  # created_at, updated_at
                        sa.func.generate_series(1, sa.bindparam("count", len(missing), type_=sa.Integer)))
                    new_ids = s.execute(sa.insert(clients).from_select(["created_at", "updated_at"], blank)
                                        .returning(clients.c.id)).scalars().all()
                else:
                    new_ids = s.execute(sa.insert(clients).returning(clients.c.id), [{} for _ in missing]).scalars().all()
                new = dict(zip(missing, new_ids, strict=True))
                s.execute(sa.insert(numbers), [{"client_id": cid, "e164": e164} for e164, cid in new.items()])
                spoken = [{"cid": cid, "spoken": languages[e164]} for e164, cid in new.items() if languages.get(e164)]
                if spoken:
                    s.execute(sa.update(clients).where(clients.c.id == sa.bindparam("cid"))
                              .values(language=sa.bindparam("spoken")), spoken)
            found.update(new)
        except IntegrityError:  # another writer created one of them meanwhile
            for e164 in missing:
                found[e164] = find_or_create_client(s, e164, language=languages.get(e164))[0].id
    return found


def create_client(
    s: Session,
    *,
    numbers: Iterable[str] = (),
    name: str | None = None,
    language: str | None = None,
    zone: str | None = None,
    convenient_from: str | None = None,
    convenient_to: str | None = None,
    convenient_days: Sequence[str] | None = None,
) -> Client:
    """A new card (admin/API). Raises NumberInUse if a number belongs to another card."""
    fields = _checked_fields(
        zone=zone,
        convenient_from=convenient_from,
        convenient_to=convenient_to,
        convenient_days=convenient_days,
    )
    client = Client(name=name, language=language, **fields)
    s.add(client)
    s.flush()
    for e164 in numbers:
        add_number(s, client.id, e164)
    return client


def add_number(s: Session, client_id: int, e164: str, label: str | None = None) -> PhoneNumber:
    owner = find_client_by_phone(s, e164)
    if owner is not None and owner.id != client_id:
        raise NumberInUse(e164, owner.id)
    if owner is not None:
        return s.scalars(sa.select(PhoneNumber).where(PhoneNumber.e164 == e164)).one()
    number = PhoneNumber(client_id=client_id, e164=e164, label=label)
    stored, created = _insert_or_find(
        s, number, lambda: s.scalar(sa.select(PhoneNumber).where(PhoneNumber.e164 == e164))
    )
    if not created and stored.client_id != client_id:
        raise NumberInUse(e164, stored.client_id)
    return stored


_UNSET: Any = object()


def update_client(
    s: Session,
    client_id: int,
    *,
    by: str | None = None,
    at: datetime | None = None,
    name: str | None = _UNSET,
    language: str | None = _UNSET,
    zone: str | None = _UNSET,
    convenient_from: str | None = _UNSET,
    convenient_to: str | None = _UNSET,
    convenient_days: Sequence[str] | None = _UNSET,
    record_language_change: bool = True,
) -> Client:
    """Change card fields; a language change is a `language_changed` event, the rest one
    `client_updated` event listing what changed."""
    client = _get_or_raise(s, Client, client_id)
    changes = {
        k: v
        for k, v in _checked_fields(
            name=name,
            zone=zone,
            convenient_from=convenient_from,
            convenient_to=convenient_to,
            convenient_days=convenient_days,
        ).items()
        if v is not _UNSET and getattr(client, k) != v
    }
    for field, value in changes.items():
        setattr(client, field, value)
    if language is not _UNSET and language != client.language:
        old, client.language = client.language, language
        if record_language_change:
            data = {"from": old, "to": language, "by": by}
            append_event(s, client_id, "language_changed", data, at)
    if changes:
        append_event(s, client_id, "client_updated", {"changes": changes, "by": by}, at)
    s.flush()
    return client


def _checked_fields(**fields: Any) -> dict[str, Any]:
    """Validate the card's zone and convenient window; ValueError names the field."""
    zone = fields.get("zone")
    if zone not in (None, _UNSET):
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"zone: unknown IANA zone {zone!r}") from exc
    for name in ("convenient_from", "convenient_to"):
        value = fields.get(name)
        if value not in (None, _UNSET) and not _HHMM.match(value):
            raise ValueError(f"{name}: expected local time HH:MM, got {value!r}")
    days = fields.get("convenient_days")
    if days not in (None, _UNSET):
        days = [d.lower()[:3] for d in days]
        bad = [d for d in days if d not in DAYS]
        if bad:
            raise ValueError(f"convenient_days: unknown days {bad}")
        fields["convenient_days"] = days
    return fields


def _get_or_raise(s: Session, model: type[T], ident: int) -> T:
    obj = s.get(model, ident)
    if obj is None:
        raise LookupError(f"{model.__name__} {ident} not found")
    return obj


def card(s: Session, client_id: int) -> dict[str, Any] | None:
    """The card's header as JSON-able values: identity, numbers, window, opt-outs, counts."""
    client = s.scalar(
        sa.select(Client).options(selectinload(Client.numbers)).where(Client.id == client_id)
    )
    if client is None:
        return None
    numbers = [n.e164 for n in client.numbers]
    active = list(
        s.scalars(
            sa.select(OptOut)
            .where(
                OptOut.withdrawn_at.is_(None),
                sa.or_(OptOut.client_id == client_id, OptOut.e164.in_(numbers)),
            )
            .order_by(OptOut.id)
        )
    )

    def count(model: Any, *where: Any) -> int:
        return s.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0

    return {
        "id": client.id,
        "name": client.name,
        "language": client.language,
        "zone": client.zone,
        "created_at": client.created_at.isoformat(),
        "numbers": [{"e164": n.e164, "label": n.label} for n in client.numbers],
        "window": {
            "from": client.convenient_from,
            "to": client.convenient_to,
            "days": client.convenient_days,
        },
        "opted_out": _client_opted_out(s, client_id),
        "opted_out_numbers": sorted({o.e164 for o in active if o.e164}),
        "opt_outs": [opt_out_dict(o) for o in active],
        "counts": {
            "events": count(CardEvent, CardEvent.client_id == client_id),
            "calls": count(
                CardEvent, CardEvent.client_id == client_id, CardEvent.kind == "call_arrived"
            ),
            "open_voicemails": count(
                Voicemail, Voicemail.client_id == client_id, Voicemail.status == "open"
            ),
            "open_callbacks": count(
                Callback,
                Callback.client_id == client_id,
                Callback.status.in_(CALLBACK_OPEN_STATUSES),
            ),
            "open_complaints": count(
                Complaint, Complaint.client_id == client_id, Complaint.status != "resolved"
            ),
        },
    }


def add_note(
    s: Session,
    client_id: int,
    text: str,
    by: str | None,
    kind: Literal["note", "agreement"] = "note",
    at: datetime | None = None,
    call_sid: str | None = None,
) -> CardEvent:
    """A note or an agreement with the client ("call me after 18:00"), written by an agent."""
    if kind not in ("note", "agreement"):
        raise ValueError(f"kind must be note or agreement, not {kind!r}")
    event = append_event(s, client_id, kind, {"text": text, "by": by}, at, call_sid, agent_id=by)
    assert event is not None  # no key, so always written
    return event


# --- opt-outs ---------------------------------------------------------------------------------


def opt_out_dict(o: OptOut) -> dict[str, Any]:
    return {
        "id": o.id,
        "scope": "number" if o.e164 else "client",
        "client_id": o.client_id,
        "e164": o.e164,
        "source": o.source,
        "reason": o.reason,
        "created_at": o.created_at.isoformat(),
        "created_by": o.created_by,
        "withdrawn_at": o.withdrawn_at.isoformat() if o.withdrawn_at else None,
        "withdrawn_by": o.withdrawn_by,
        "withdrawn_reason": o.withdrawn_reason,
    }


def _check_source(source: str) -> None:
    if source not in OPT_OUT_SOURCES:
        raise ValueError(f"source must be one of {OPT_OUT_SOURCES}, not {source!r}")


def _opted_out_event(s: Session, o: OptOut, client_id: int | None, call_sid: str | None) -> None:
    if client_id is not None:
        data = {
            "scope": "number" if o.e164 else "client",
            "e164": o.e164,
            "source": o.source,
            "reason": o.reason,
            "by": o.created_by,
            "opt_out_id": o.id,
        }
        append_event(
            s, client_id, "opted_out", data, o.created_at, call_sid, key=f"optout:{o.id}:created"
        )


def opt_out_client(
    s: Session,
    client_id: int,
    source: str,
    reason: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
    call_sid: str | None = None,
) -> OptOut:
    """Opt the whole card out ("don't call me again"). Repeating it changes nothing."""
    _check_source(source)
    _get_or_raise(s, Client, client_id)

    def find() -> OptOut | None:
        return s.scalar(
            sa.select(OptOut).where(
                OptOut.client_id == client_id, OptOut.e164.is_(None), OptOut.withdrawn_at.is_(None)
            )
        )

    existing = find()
    if existing is not None:
        return existing
    row = OptOut(
        client_id=client_id, source=source, reason=reason, created_by=by, created_at=_now(at)
    )
    stored, created = _insert_or_find(s, row, find)
    if created:
        _refresh_opted_out(s, client_id)
        _opted_out_event(s, stored, client_id, call_sid)
    return stored


def opt_out_number(
    s: Session,
    e164: str,
    source: str,
    reason: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
    call_sid: str | None = None,
) -> OptOut:
    """Block one number (with or without a card); the card, if any, gets the event."""
    _check_source(source)

    def find() -> OptOut | None:
        return s.scalar(sa.select(OptOut).where(OptOut.e164 == e164, OptOut.withdrawn_at.is_(None)))

    existing = find()
    if existing is not None:
        return existing
    owner = find_client_by_phone(s, e164)
    owner_id = owner.id if owner else None
    row = OptOut(
        client_id=owner_id,
        e164=e164,
        source=source,
        reason=reason,
        created_by=by,
        created_at=_now(at),
    )
    stored, created = _insert_or_find(s, row, find)
    if created:
        _opted_out_event(s, stored, owner_id, call_sid)
    return stored


def withdraw_opt_out(
    s: Session,
    optout_id: int,
    by: str | None,
    reason: str | None = None,
    at: datetime | None = None,
) -> OptOut | None:
    """Lift an opt-out, keeping the record of who asked and who lifted it; None if unknown."""
    row = s.get(OptOut, optout_id)
    if row is None:
        return None
    if row.withdrawn_at is not None:
        return row
    row.withdrawn_at, row.withdrawn_by, row.withdrawn_reason = _now(at), by, reason
    s.flush()
    _refresh_opted_out(s, row.client_id)
    client_id = row.client_id
    if client_id is None and row.e164:
        owner = find_client_by_phone(s, row.e164)
        client_id = owner.id if owner else None
    if client_id is not None:
        data = {
            "scope": "number" if row.e164 else "client",
            "e164": row.e164,
            "by": by,
            "reason": reason,
            "opt_out_id": row.id,
        }
        append_event(
            s,
            client_id,
            "opt_out_withdrawn",
            data,
            row.withdrawn_at,
            key=f"optout:{row.id}:withdrawn",
        )
    return row


def is_opted_out(s: Session, e164: str) -> tuple[bool, bool, int | None]:
    """(client opted out, number opted out, client id) — what the outbound guard needs."""
    client = find_client_by_phone(s, e164)
    number_out = s.scalar(
        sa.select(sa.exists().where(OptOut.e164 == e164, OptOut.withdrawn_at.is_(None)))
    )
    if client is None:
        return False, bool(number_out), None
    return _client_opted_out(s, client.id), bool(number_out), client.id


def _client_opted_out(s: Session, client_id: int) -> bool:
    """Asked of the database, not the (possibly stale) loaded `Client.opted_out`."""
    return bool(
        s.scalar(
            sa.select(
                sa.exists().where(
                    OptOut.client_id == client_id,
                    OptOut.e164.is_(None),
                    OptOut.withdrawn_at.is_(None),
                )
            )
        )
    )


def _refresh_opted_out(s: Session, client_id: int | None) -> None:
    client = s.get(Client, client_id) if client_id is not None else None
    if client is not None:
        s.expire(client, ["opted_out"])


def opted_out_sets(s: Session) -> tuple[set[str], set[str]]:
    """(numbers opted out themselves, numbers of opted-out clients) for bulk screening."""
    numbers = set(
        s.scalars(
            sa.select(OptOut.e164).where(OptOut.e164.is_not(None), OptOut.withdrawn_at.is_(None))
        )
    )
    of_clients = set(
        s.scalars(
            sa.select(PhoneNumber.e164)
            .join(OptOut, OptOut.client_id == PhoneNumber.client_id)
            .where(OptOut.e164.is_(None), OptOut.withdrawn_at.is_(None))
        )
    )
    return {n for n in numbers if n}, of_clients


@dataclass(frozen=True, slots=True)
class OutboundFacts:
    """What the card says about calling a number (same fields as telephony's CardFacts)."""

    stored_zone: str | None = None
    opted_out: bool = False
    number_opted_out: bool = False
    window: ConvenientWindow | None = None


def convenient_window(start: str | None, end: str | None, days: Sequence[str] | None) -> ConvenientWindow | None:
    """The client's own calling window from the card's columns (None unless both ends are set)."""
    if not (start and end):
        return None
    return ConvenientWindow(start=start, end=end, days=tuple(days) if days else None)  # type: ignore[arg-type]


def outbound_facts(s: Session, e164: str) -> tuple[OutboundFacts, int | None]:
    """The guard's inputs from the card, read at the moment of dialling."""
    client_out, number_out, client_id = is_opted_out(s, e164)
    client = s.get(Client, client_id) if client_id is not None else None
    window = convenient_window(client.convenient_from, client.convenient_to, client.convenient_days) if client else None
    facts = OutboundFacts(
        stored_zone=client.zone if client else None,
        opted_out=client_out,
        number_opted_out=number_out,
        window=window,
    )
    return facts, client_id


def zones_and_windows(s: Session, e164s: Collection[str]) -> dict[str, tuple[str | None, ConvenientWindow | None]]:
    """The stored zone and calling window of the cards holding these numbers, in one query (a
    bound parameter a number: the caller keeps the list short); numbers without a card are
    left out. Bulk screening's card facts; it takes the opt-outs as sets."""
    rows = s.execute(
        sa.select(PhoneNumber.e164, Client.zone, Client.convenient_from, Client.convenient_to, Client.convenient_days)
        .join(Client, Client.id == PhoneNumber.client_id)
        .where(PhoneNumber.e164.in_(list(e164s)))
    )
    return {e164: (zone, convenient_window(start, end, days)) for e164, zone, start, end, days in rows}


def list_opt_outs(
    s: Session, active: bool = True, client_id: int | None = None, limit: int = 500
) -> list[OptOut]:
    query = sa.select(OptOut).order_by(OptOut.created_at.desc(), OptOut.id.desc()).limit(limit)
    if active:
        query = query.where(OptOut.withdrawn_at.is_(None))
    if client_id is not None:
        query = query.where(OptOut.client_id == client_id)
    return list(s.scalars(query))


# --- recordings -------------------------------------------------------------------------------


RECORDING_COLUMNS = ("sid", "url", "call_sid", "client_id", "duration", "channels", "source", "kind", "status",
                     "started_at", "created_at")


def link_recordings(s: Session, recordings: Sequence[dict[str, Any]]) -> dict[str, tuple[int, bool]]:
    """Store finished recordings once per RecordingSid and link each new one on its card (a
    `recording_linked` event): {sid: (recording id, created)}. Each dict holds the
    `RECORDING_COLUMNS` and the event's `queue`; a repeated sid keeps the first."""
    firsts = _first_of_each(recordings, "sid")
    stored = _insert_once_many(s, Recording, [{c: r[c] for c in RECORDING_COLUMNS} for r in firsts], "sid")
    append_events(s, [
        {"client_id": r["client_id"], "kind": "recording_linked", "at": r["created_at"], "call_sid": r["call_sid"],
         "queue": r["queue"], "key": f"recording:{r['sid']}:linked",
         "data": {"sid": r["sid"], "url": r["url"], "duration": r["duration"], "kind": r["kind"],
                  "channels": r["channels"], "source": r["source"]}}
        for r in firsts if stored[r["sid"]][1] and r["client_id"] is not None
    ])
    return stored


def link_recording(
    s: Session,
    *,
    sid: str,
    url: str,
    call_sid: str | None = None,
    client_id: int | None = None,
    duration: int | None = None,
    channels: int | None = None,
    source: str | None = None,
    kind: str = "call",
    status: str = "completed",
    started_at: datetime | None = None,
    at: datetime | None = None,
    queue: str | None = None,
) -> tuple[Recording, bool]:
    """Store a finished recording once per RecordingSid and link it on the card (`link_recordings`)."""
    stored = link_recordings(s, [{
        "sid": sid, "url": url, "call_sid": call_sid, "client_id": client_id, "duration": duration,
        "channels": channels, "source": source, "kind": kind, "status": status, "started_at": started_at,
        "created_at": _now(at), "queue": queue,
    }])
    recording_id, created = stored[sid]
    return cast(Recording, s.get(Recording, recording_id)), created


# --- voicemails -------------------------------------------------------------------------------

VOICEMAIL_COLUMNS = ("recording_sid", "url", "due_at", "client_id", "call_sid", "duration", "queue", "language",
                     "created_at")


def create_voicemails(s: Session, voicemails: Sequence[dict[str, Any]]) -> dict[str, tuple[int, bool]]:
    """Voicemails to answer by their `due_at`, once per recording (a repeated recording callback
    finds the first), each new one on its card (a `voicemail_left` event): {recording sid:
    (voicemail id, created)}. Each dict holds the `VOICEMAIL_COLUMNS`."""
    firsts = _first_of_each(voicemails, "recording_sid")
    stored = _insert_once_many(
        s, Voicemail, [{**{c: v[c] for c in VOICEMAIL_COLUMNS}, "status": "open"} for v in firsts], "recording_sid")
    append_events(s, [
        {"client_id": v["client_id"], "kind": "voicemail_left", "at": v["created_at"], "call_sid": v["call_sid"],
         "queue": v["queue"], "key": f"voicemail:{v['recording_sid']}:left",
         "data": {"voicemail_id": stored[v["recording_sid"]][0], "recording_sid": v["recording_sid"], "url": v["url"],
                  "duration": v["duration"], "due_at": v["due_at"].isoformat(), "language": v["language"]}}
        for v in firsts if stored[v["recording_sid"]][1] and v["client_id"] is not None
    ])
    return stored


def create_voicemail(
    s: Session,
    *,
    recording_sid: str,
    url: str,
    due_at: datetime,
    client_id: int | None = None,
    call_sid: str | None = None,
    duration: int | None = None,
    queue: str | None = None,
    language: str | None = None,
    created_at: datetime | None = None,
) -> tuple[Voicemail, bool]:
    """A voicemail to answer by `due_at`; a repeated recording callback returns the first
    (`create_voicemails`)."""
    stored = create_voicemails(s, [{
        "recording_sid": recording_sid, "url": url, "due_at": due_at, "client_id": client_id,
        "call_sid": call_sid, "duration": duration, "queue": queue, "language": language,
        "created_at": _now(created_at),
    }])
    voicemail_id, created = stored[recording_sid]
    return cast(Voicemail, s.get(Voicemail, voicemail_id)), created


def list_voicemails(
    s: Session,
    status: Literal["open", "overdue", "handled"] = "open",
    now: datetime | None = None,
    limit: int = 200,
) -> list[Voicemail]:
    """Open ones soonest-due first; overdue = open and past due_at; handled newest first."""
    query = sa.select(Voicemail).limit(limit)
    if status == "handled":
        return list(
            s.scalars(
                query.where(Voicemail.status == "handled").order_by(
                    Voicemail.handled_at.desc(), Voicemail.id.desc()
                )
            )
        )
    query = query.where(Voicemail.status == "open").order_by(Voicemail.due_at, Voicemail.id)
    if status == "overdue":
        query = query.where(Voicemail.due_at < _now(now))
    elif status != "open":
        raise ValueError(f"status must be open, overdue or handled, not {status!r}")
    return list(s.scalars(query))


def mark_voicemail_handled(
    s: Session,
    voicemail_id: int,
    by: str | None,
    note: str | None = None,
    at: datetime | None = None,
) -> Voicemail:
    vm = _get_or_raise(s, Voicemail, voicemail_id)
    if vm.status == "handled":
        return vm
    vm.status, vm.handled_at, vm.handled_by, vm.note = "handled", _now(at), by, note
    s.flush()
    if vm.client_id is not None:
        due = vm.due_at
        data = {
            "voicemail_id": vm.id,
            "by": by,
            "note": note,
            "late": vm.handled_at > due if vm.handled_at else False,
        }
        append_event(
            s,
            vm.client_id,
            "voicemail_handled",
            data,
            vm.handled_at,
            vm.call_sid,
            agent_id=by,
            queue=vm.queue,
            key=f"voicemail:{vm.recording_sid}:handled",
        )
    return vm


# --- callbacks --------------------------------------------------------------------------------


def _open_callback(s: Session, client_id: int, queue: str) -> Callback | None:
    return s.scalar(
        sa.select(Callback).where(
            Callback.client_id == client_id,
            Callback.queue == queue,
            Callback.status.in_(CALLBACK_OPEN_STATUSES),
        )
    )


def request_callback(
    s: Session,
    client_id: int,
    e164: str,
    queue: str,
    *,
    at: datetime | None = None,
    first_queued_at: datetime | None = None,
    language: str | None = None,
    not_before: datetime | None = None,
    due_at: datetime | None = None,
    call_sid: str | None = None,
) -> tuple[Callback, bool]:
    """Promise a call back. One open callback per client and queue: a repeat returns it.

    `first_queued_at` is when the caller joined the line, so the callback keeps that place.
    """
    existing = _open_callback(s, client_id, queue)
    if existing is not None:
        return existing, False
    at = _now(at)
    cb = Callback(
        client_id=client_id,
        e164=e164,
        queue=queue,
        language=language,
        call_sid=call_sid,
        first_queued_at=first_queued_at or at,
        requested_at=at,
        not_before=not_before,
        due_at=due_at,
        status="pending",
        attempts=0,
    )
    stored, created = _insert_or_find(s, cb, lambda: _open_callback(s, client_id, queue))
    if created:
        data = {
            "callback_id": stored.id,
            "e164": e164,
            "not_before": _iso(not_before),
            "due_at": _iso(due_at),
            "first_queued_at": stored.first_queued_at.isoformat(),
        }
        append_event(
            s,
            client_id,
            "callback_requested",
            data,
            at,
            call_sid,
            queue=queue,
            key=f"callback:{stored.id}:requested",
        )
    return stored, created


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def due_callbacks(s: Session, now: datetime, limit: int = 50) -> list[Callback]:
    """Pending callbacks that may be tried now, in the order the callers first queued."""
    return list(
        s.scalars(
            sa.select(Callback)
            .where(
                Callback.status == "pending",
                sa.or_(Callback.not_before.is_(None), Callback.not_before <= now),
                sa.or_(Callback.next_attempt_at.is_(None), Callback.next_attempt_at <= now),
            )
            .order_by(Callback.first_queued_at, Callback.id)
            .limit(limit)
        )
    )


def pending_callback_places(
    s: Session, after: tuple[datetime, int] | None = None, limit: int = 500
) -> list[tuple[int, str, datetime]]:
    """Pending callbacks as (id, queue, first_queued_at), in the order their callers first
    queued, due or not: the places the dispatch tick keeps in the waiting lines. One page of
    `limit` after `after`, the (first_queued_at, id) of the previous page's last row: keyset
    pages on the (status, first_queued_at) index, so a page costs the same however far in."""
    query = (
        sa.select(Callback.id, Callback.queue, Callback.first_queued_at)
        .where(Callback.status == "pending")
        .order_by(Callback.first_queued_at, Callback.id)
        .limit(limit)
    )
    if after is not None:
        queued, last_id = after
        query = query.where(
            Callback.first_queued_at >= queued,
            sa.or_(Callback.first_queued_at > queued, Callback.id > last_id),
        )
    return [(row.id, row.queue, row.first_queued_at) for row in s.execute(query)]


def claim_callback(
    s: Session,
    callback_id: int,
    agent_id: str | None,
    *,
    dial_sid: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Move one pending callback to dialling; False if another worker got it first (or it was
    cancelled). The dispatcher claims before it places the call, so a dial that dies in between
    is still `dialling`, with its id and start for the sweep (`stuck_dialling_callbacks`).
    `dial_sid`: the dial's own id until the call is placed (`callback_call_placed`)."""
    result = s.execute(
        sa.update(Callback)
        .where(Callback.id == callback_id, Callback.status == "pending")
        .values(status="dialling", agent_id=agent_id, dial_sid=dial_sid or f"dial-{uuid.uuid4().hex}",
                dialled_at=_now(at))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def callback_call_placed(s: Session, callback_id: int, dial_sid: str, call_sid: str) -> bool:
    """The dial `dial_sid` placed its call: from now on it is known by the agent leg's CallSid,
    which keys its attempt, so the call's own result and the sweep count it once between them.
    False when the callback is no longer waiting for that dial (cancelled, or settled by the
    sweep while Twilio took its time)."""
    result = s.execute(
        sa.update(Callback)
        .where(Callback.id == callback_id, Callback.status == "dialling", Callback.dial_sid == dial_sid)
        .values(dial_sid=call_sid)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stuck_dialling_callbacks(s: Session, dialled_before: datetime, limit: int = 500) -> list[Callback]:
    """Callbacks dialling since before `dialled_before` (or since an unknown time), oldest dial
    first: the candidates of the sweep that settles dials whose result never came."""
    return list(
        s.scalars(
            sa.select(Callback)
            .where(
                Callback.status == "dialling",
                sa.or_(Callback.dialled_at.is_(None), Callback.dialled_at < dialled_before),
            )
            .order_by(Callback.dialled_at.asc().nulls_first(), Callback.id)
            .limit(limit)
        )
    )


def callback_attempt_key(callback_id: int, call_sid: str) -> str:
    """The key of the attempt one dial made (its CallSid, or its own id when it placed no
    call): a dial is counted once, however often its result arrives (an RQ retry, a repeated
    Dial action, two workers sweeping it)."""
    return f"callback:{callback_id}:attempt:{call_sid}"


def record_callback_attempt(
    s: Session,
    callback_id: int,
    result: str,
    *,
    at: datetime | None = None,
    agent_id: str | None = None,
    call_sid: str | None = None,
    dial_sid: str | None = None,
    retry_at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> Callback:
    """Count one attempt. `completed` closes it; with `retry_at` it waits for the next try;
    otherwise it is given up (`blocked` when the guard refused, else `failed`).

    With `call_sid` (the call the result is about) the attempt is keyed by it and a repeat
    changes nothing, even from two workers at once; a dial that placed no call (Twilio refused,
    or the dispatcher stopped first) is keyed by its own id, `dial_sid`, and names no call.
    A closed callback is left as it is: a late result neither reopens nor recounts it. Callers
    that apply a dial's result check that the callback is still `dialling`.
    """
    cb = _get_or_raise(s, Callback, callback_id)
    if not cb.is_open:
        return cb
    at = _now(at)
    event = {
        "callback_id": cb.id,
        "attempt": cb.attempts + 1,
        "result": result,
        "retry_at": _iso(retry_at),
        **(data or {}),
    }
    attempt_id = call_sid or dial_sid
    key = callback_attempt_key(cb.id, attempt_id) if attempt_id else None
    added = append_event(s, cb.client_id, "callback_attempt", event, at, call_sid, agent_id, cb.queue, key=key)
    if added is None:
        return cb  # this dial's attempt is on the card already (even written concurrently)
    cb.attempts += 1
    cb.last_result = result[:LAST_RESULT_LENGTH]  # the event above keeps it whole (a Twilio error, say)
    cb.agent_id = agent_id or cb.agent_id
    if result == "completed":
        cb.status, cb.closed_at, cb.next_attempt_at = "completed", at, None
        append_event(
            s,
            cb.client_id,
            "callback_completed",
            {"callback_id": cb.id, "attempts": cb.attempts},
            at,
            call_sid,
            agent_id,
            cb.queue,
            key=f"callback:{cb.id}:completed",
        )
    elif retry_at is not None:
        cb.status, cb.next_attempt_at = "pending", retry_at
    else:
        cb.status = "blocked" if result == "blocked" else "failed"
        cb.closed_at, cb.next_attempt_at = at, None
        append_event(
            s,
            cb.client_id,
            "callback_given_up",
            {"callback_id": cb.id, "attempts": cb.attempts, "result": result},
            at,
            call_sid,
            agent_id,
            cb.queue,
            key=f"callback:{cb.id}:given_up",
        )
    s.flush()
    return cb


def cancel_callback(
    s: Session,
    callback_id: int,
    by: str | None,
    reason: str | None = None,
    at: datetime | None = None,
) -> Callback:
    cb = _get_or_raise(s, Callback, callback_id)
    if not cb.is_open:
        return cb
    cb.status, cb.closed_at = "cancelled", _now(at)
    s.flush()
    append_event(
        s,
        cb.client_id,
        "callback_cancelled",
        {"callback_id": cb.id, "by": by, "reason": reason},
        cb.closed_at,
        queue=cb.queue,
        key=f"callback:{cb.id}:cancelled",
    )
    return cb


def get_callback(s: Session, callback_id: int) -> Callback | None:
    return s.get(Callback, callback_id)


def complete_callback(
    s: Session,
    callback_id: int,
    *,
    agent_id: str | None = None,
    call_sid: str | None = None,
    duration: int | None = None,
    at: datetime | None = None,
) -> Callback:
    """The client was reached: the callback is done."""
    return record_callback_attempt(
        s,
        callback_id,
        "completed",
        at=at,
        agent_id=agent_id,
        call_sid=call_sid,
        data={"duration": duration},
    )


def schedule_callback_retry(
    s: Session,
    callback_id: int,
    why: str,
    retry_at: datetime,
    max_attempts: int,
    *,
    at: datetime | None = None,
    call_sid: str | None = None,
    dial_sid: str | None = None,
) -> bool:
    """Count a failed attempt; retry at `retry_at` unless `max_attempts` is used up.

    Returns True when the callback waits for its next try (False: given up or closed, or a
    repeat of `call_sid`'s result found it dialling again for a later call).
    """
    cb = _get_or_raise(s, Callback, callback_id)
    last = cb.attempts + 1 >= max_attempts
    cb = record_callback_attempt(
        s, callback_id, why, at=at, call_sid=call_sid, dial_sid=dial_sid, retry_at=None if last else retry_at
    )
    return cb.status == "pending"


def block_callback(
    s: Session,
    callback_id: int,
    reason: str,
    next_allowed_at: datetime | None,
    at: datetime | None = None,
) -> Callback:
    """The outbound guard refused. Not an attempt (the dialler already wrote outbound_blocked):
    wait until `next_allowed_at`, or close as blocked when there is no such time (opt-out)."""
    cb = _get_or_raise(s, Callback, callback_id)
    if not cb.is_open:
        return cb
    cb.last_result = f"blocked:{reason}"
    permanent = reason in ("opted_out_client", "opted_out_number", "invalid_number")
    if next_allowed_at is not None and not permanent:
        cb.status, cb.next_attempt_at = "pending", next_allowed_at
        s.flush()
        return cb
    at = _now(at)
    cb.status, cb.closed_at, cb.next_attempt_at = "blocked", at, None
    s.flush()
    append_event(
        s,
        cb.client_id,
        "callback_given_up",
        {"callback_id": cb.id, "attempts": cb.attempts, "result": cb.last_result},
        at,
        queue=cb.queue,
        key=f"callback:{cb.id}:given_up",
    )
    return cb


def list_callbacks(
    s: Session, status: str | None = "open", now: datetime | None = None, limit: int = 200
) -> list[Callback]:
    """`open` (pending/dialling), `overdue` (open and past due_at), an exact status, or None."""
    query = sa.select(Callback).order_by(Callback.first_queued_at, Callback.id).limit(limit)
    if status in ("open", "overdue"):
        query = query.where(Callback.status.in_(CALLBACK_OPEN_STATUSES))
    elif status is not None:
        query = query.where(Callback.status == status)
    if status == "overdue":
        query = query.where(Callback.due_at < _now(now))
    return list(s.scalars(query))


# --- complaints -------------------------------------------------------------------------------


def open_complaint(
    s: Session,
    client_id: int,
    *,
    summary: str | None = None,
    call_sid: str | None = None,
    queue: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
    ack_within: timedelta = COMPLAINT_ACK_WITHIN,
    resolve_within: timedelta = COMPLAINT_RESOLVE_WITHIN,
) -> tuple[Complaint, bool]:
    """Open a complaint with acknowledge/resolve deadlines; one per call (repeats return it)."""

    def find() -> Complaint | None:
        if call_sid is None:
            return None
        return s.scalar(sa.select(Complaint).where(Complaint.call_sid == call_sid))

    existing = find()
    if existing is not None:
        return existing, False
    at = _now(at)
    row = Complaint(
        client_id=client_id,
        call_sid=call_sid,
        queue=queue,
        summary=summary,
        status="open",
        opened_at=at,
        opened_by=by,
        ack_due_at=at + ack_within,
        resolve_due_at=at + resolve_within,
    )
    stored, created = _insert_or_find(s, row, find)
    if created:
        data = {
            "complaint_id": stored.id,
            "summary": summary,
            "by": by,
            "ack_due_at": stored.ack_due_at.isoformat(),
            "resolve_due_at": stored.resolve_due_at.isoformat(),
        }
        append_event(
            s,
            client_id,
            "complaint_opened",
            data,
            at,
            call_sid,
            queue=queue,
            key=f"complaint:{stored.id}:opened",
        )
    return stored, created


def acknowledge_complaint(
    s: Session, complaint_id: int, by: str | None, at: datetime | None = None
) -> Complaint:
    row = _get_or_raise(s, Complaint, complaint_id)
    if row.acknowledged_at is not None or row.status == "resolved":
        return row
    row.status, row.acknowledged_at, row.acknowledged_by = "acknowledged", _now(at), by
    s.flush()
    append_event(
        s,
        row.client_id,
        "complaint_acknowledged",
        {"complaint_id": row.id, "by": by, "late": row.acknowledged_at > row.ack_due_at},
        row.acknowledged_at,
        row.call_sid,
        queue=row.queue,
        key=f"complaint:{row.id}:acknowledged",
    )
    return row


def resolve_complaint(
    s: Session,
    complaint_id: int,
    by: str | None,
    resolution: str | None = None,
    at: datetime | None = None,
) -> Complaint:
    row = _get_or_raise(s, Complaint, complaint_id)
    if row.status == "resolved":
        return row
    at = _now(at)
    if row.acknowledged_at is None:  # resolving implies it was seen
        row.acknowledged_at, row.acknowledged_by = at, by
    row.status, row.resolved_at, row.resolved_by, row.resolution = "resolved", at, by, resolution
    s.flush()
    append_event(
        s,
        row.client_id,
        "complaint_resolved",
        {
            "complaint_id": row.id,
            "by": by,
            "resolution": resolution,
            "late": at > row.resolve_due_at,
        },
        at,
        row.call_sid,
        queue=row.queue,
        key=f"complaint:{row.id}:resolved",
    )
    return row


COMPLAINT_STAGES = ("acknowledge", "resolve")  # each deadline is escalated once, in this order


def complaint_overdue(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(*(complaint_stage_overdue(stage, now) for stage in COMPLAINT_STAGES))


def complaint_stage_overdue(stage: str, now: datetime) -> sa.ColumnElement[bool]:
    """The complaint missed this stage's deadline and the stage is still not done."""
    if stage == "acknowledge":
        return sa.and_(Complaint.status == "open", Complaint.ack_due_at < now)
    return sa.and_(Complaint.status != "resolved", Complaint.resolve_due_at < now)


def complaint_stage_due(stage: str) -> InstrumentedAttribute[datetime]:
    return Complaint.ack_due_at if stage == "acknowledge" else Complaint.resolve_due_at


def complaint_escalation_key(complaint_id: int, stage: str) -> str:
    return f"complaint:{complaint_id}:escalated:{stage}"


def _escalation_key(suffix: str = "") -> sa.ColumnElement[str]:
    """`complaint_escalation_key` in SQL, for the complaint of the enclosing query."""
    return sa.literal("complaint:") + sa.cast(Complaint.id, sa.String) + f":escalated{suffix}"


def complaint_stage_event(stage: str) -> sa.ColumnElement[bool]:
    """The stage's escalation event (keyed by the stage) is on the card."""
    return sa.exists().where(CardEvent.key == _escalation_key(f":{stage}"))


def complaint_stage_escalated(stage: str) -> sa.ColumnElement[bool]:
    """The stage was escalated: its event is on the card, or, from before stages, the one
    `complaint:{id}:escalated` event names it as `missed`."""
    return sa.or_(
        complaint_stage_event(stage),
        sa.exists().where(CardEvent.key == _escalation_key(), CardEvent.data["missed"].as_string() == stage),
    )


def escalate_overdue_complaints(s: Session, now: datetime) -> list[Complaint]:
    """Escalate each missed deadline (acknowledge, resolve) once: a `complaint_escalated` event
    per stage, keyed by it, so a complaint acknowledged late and then left unresolved is
    escalated twice. Returns the complaints escalated now; `escalated_at` is the first time."""
    escalated: dict[int, Complaint] = {}
    for stage in COMPLAINT_STAGES:
        rows = list(s.scalars(
            sa.select(Complaint)
            .where(complaint_stage_overdue(stage, now), ~complaint_stage_escalated(stage))
            .order_by(Complaint.opened_at, Complaint.id)
        ))
        for row in rows:
            added = append_event(
                s,
                row.client_id,
                "complaint_escalated",
                {"complaint_id": row.id, "missed": stage},
                now,
                row.call_sid,
                queue=row.queue,
                key=complaint_escalation_key(row.id, stage),
            )
            if added is None:
                continue  # a concurrent check escalated this stage
            row.escalated_at = row.escalated_at or now
            escalated.setdefault(row.id, row)
    s.flush()
    return sorted(escalated.values(), key=lambda row: (row.opened_at, row.id))


def list_complaints(
    s: Session, status: str | None = None, now: datetime | None = None, limit: int = 200
) -> list[Complaint]:
    """By exact status, `unresolved`, `overdue` (a deadline passed), or all when None."""
    query = sa.select(Complaint).order_by(Complaint.opened_at, Complaint.id).limit(limit)
    if status == "overdue":
        query = query.where(complaint_overdue(_now(now)))
    elif status == "unresolved":
        query = query.where(Complaint.status != "resolved")
    elif status is not None:
        query = query.where(Complaint.status == status)
    return list(s.scalars(query))


optout_json = opt_out_dict  # the name webhooks/api.py uses
