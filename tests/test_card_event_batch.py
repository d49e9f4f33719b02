"""The batched writer: payloads pushed by webhooks, applied in one transaction per batch,
idempotent by key, replayed after a drainer died mid-batch."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from recordings import card, jobs
from recordings import db as card_db
from recordings.models import CardEvent, Client
from tests.conftest import ACCOUNT_SID, Voice
from webhooks.card_events import CardEventDrainer
from webhooks.worker import run_burst, worker_connection

CALLER = "+3725123456"
OTHER = "+3725123457"


def rows(call_sid: str | None = None) -> list[tuple[Any, ...]]:
    query = sa.select(CardEvent.kind, CardEvent.key, CardEvent.at).order_by(CardEvent.id)
    if call_sid:
        query = query.where(CardEvent.call_sid == call_sid)
    with card_db.session(readonly=True) as s:
        return [tuple(r) for r in s.execute(query).all()]  # type: ignore[misc]


def status(sid: str, seq: int, status_: str = "ringing", **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "From": CALLER, "To": "+3726000000", "Direction": "inbound",
            "CallStatus": status_, "SequenceNumber": str(seq), **extra}


def test_a_batch_creates_each_card_once_keeps_time_order_and_skips_seen_keys(db: str) -> None:
    batch: list[dict[str, Any]] = [
        jobs.event_payload(CALLER, "menu_choice", {"digits": "1"}, "2026-11-24T10:00:02+00:00", "CA1"),
        jobs.event_payload(CALLER, "call_arrived", {}, "2026-11-24T10:00:01+00:00", "CA1", key="arrived:CA1"),
        jobs.event_payload(OTHER, "call_arrived", {}, "2026-11-24T10:00:03+00:00", "CA2", key="arrived:CA2"),
        jobs.event_payload(CALLER, "call_arrived", {}, "2026-11-24T10:00:01+00:00", "CA1", key="arrived:CA1"),
        jobs.event_payload("anonymous", "call_arrived", {}, "2026-11-24T10:00:01+00:00", "CA3"),
        jobs.call_status_payload(status("CA1", 3, "completed", CallDuration="12")),
        jobs.call_status_payload(status("CA9", 1, Direction="outbound-api", To="+3725999999")),  # no card
    ]
    assert jobs.apply_event_batch(batch) == 4
    assert jobs.apply_event_batch(batch) == 0  # a replay adds nothing
    with card_db.session(readonly=True) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Client)) == 2
        client = card.find_client_by_phone(s, CALLER)
        assert client is not None
        events, _ = card.timeline(s, client.id)
    assert [e.kind for e in reversed(events)] == ["call_arrived", "menu_choice", "call_completed"]
    ids = [e.id for e in reversed(events) if e.kind != "call_completed"]
    assert ids == sorted(ids)  # inserted in time order
    assert all(e.key for e in events)  # an event without a key got a deterministic one


def test_a_batch_of_events_with_different_empty_fields_is_one_insert(db: str) -> None:
    """Rows in time order alternate kinds whose empty columns differ (no agent, no queue, no
    call): all of them still go in one INSERT, not one per run of like rows."""
    batch = []
    for n in range(20):
        at = f"2026-11-24T10:{n:02d}:00+00:00"
        batch.append(jobs.event_payload(CALLER, "call_arrived", {}, at, f"CA{n}", key=f"arrived:CA{n}"))
        batch.append(jobs.event_payload(CALLER, "menu_choice", {"digits": "1"}, at, f"CA{n}", queue="support"))
        batch.append(jobs.event_payload(CALLER, "call_handled", {"duration": 5}, at, None, agent_id="a1"))
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CARD_EVENTS"):
            inserts.append(statement)

    engine = card_db.engine()
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert jobs.apply_event_batch(batch) == 60
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(inserts) == 1
    with card_db.session(readonly=True) as s:
        stored = s.execute(sa.select(CardEvent.kind, CardEvent.agent_id, CardEvent.queue, CardEvent.call_sid)
                           .where(CardEvent.call_sid == "CA7")).all()
    assert sorted(tuple(r) for r in stored) == [("call_arrived", None, None, "CA7"), ("menu_choice", None, "support", "CA7")]


def test_first_time_callers_get_a_card_each_with_statements_of_one_text_whatever_the_batch(db: str) -> None:
    """Batches of 1, 3 and 7 new numbers (with known ones and outbound numbers that are only
    matched): each new number gets its own card. On PostgreSQL the lookup and the new cards'
    insert are the same text for every batch (the numbers go as one array), so the driver
    converts them once and the server runs them prepared."""
    texts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "phone_numbers" in statement and statement.lstrip().upper().startswith("SELECT") \
                or statement.lstrip().upper().startswith("INSERT INTO CLIENTS"):
            texts.append(statement)

    engine = card_db.engine()
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        first = 0
        for count in (1, 3, 7):
            numbers = [f"+37256{first + n:06d}" for n in range(count)]
            first += count
            with card_db.session() as s:
                ids = card.client_ids_by_phone(s, create=[*numbers, CALLER], find=["+3725999999"])
            assert set(ids) == {*numbers, CALLER} and len(set(ids.values())) == count + 1
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    with card_db.session(readonly=True) as s:
        for number, client_id in ids.items():
            found = card.find_client_by_phone(s, number)
            assert found is not None and found.id == client_id
        assert s.scalar(sa.select(sa.func.count()).select_from(Client)) == 1 + 3 + 7 + 1
    if card_db.engine().dialect.name == "postgresql":
        assert len(texts) == 6 and len(set(texts)) == 2  # a lookup and an insert, each one text


def test_a_number_another_writer_creates_meanwhile_keeps_that_writers_card(db: str) -> None:
    """Between the batch's lookup and its insert another writer (a second worker, the API)
    gives one of the new numbers a card: the batch falls back to one number at a time and
    uses that card, and the other new numbers still get theirs."""
    if card_db.engine().dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer at a time: nobody can write between the batch's steps")
    raced = "+37256999001"
    other_card: list[int] = []

    def meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CLIENTS") and not other_card:
            other = sa.create_engine(db)
            try:
                with other.begin() as conn:
                    cid = conn.execute(sa.insert(Client).values(name="Created elsewhere").returning(Client.id)).scalar_one()
                    conn.execute(sa.text("INSERT INTO phone_numbers (client_id, e164, created_at) "
                                         "VALUES (:c, :e, CURRENT_TIMESTAMP)"), {"c": cid, "e": raced})
            finally:
                other.dispose()
            other_card.append(cid)

    engine = card_db.engine()
    sa.event.listen(engine, "before_cursor_execute", meanwhile)
    try:
        with card_db.session() as s:
            ids = card.client_ids_by_phone(s, create=[raced, "+37256999002", "+37256999003"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", meanwhile)
    assert ids[raced] == other_card[0]
    assert len({ids[raced], ids["+37256999002"], ids["+37256999003"]}) == 3
    with card_db.session(readonly=True) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Client)) == 3  # nothing left half-made


def test_a_batch_refuses_an_unknown_kind(db: str) -> None:
    with pytest.raises(ValueError, match="unknown card event kind"):
        jobs.apply_event_batch([jobs.event_payload(CALLER, "no_such_kind", {}, "2026-11-24T10:00:00+00:00")])
    assert rows() == []


def call_params(sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": "+3726140000",
            "CallStatus": "ringing", "Direction": "inbound", **extra}


def test_webhook_events_wait_in_the_list_and_a_dead_drainers_batch_is_replayed_once(voice: Voice) -> None:
    app = voice.app
    runtime = app.extensions["hotline"]
    pending = runtime.state.keys.card_events("pending")
    processing = runtime.state.keys.card_events("processing")
    voice.twiml("/voice/incoming", call_params("CAb1"))
    assert voice.post("/voice/status", call_params("CAb1", CallStatus="completed", SequenceNumber="3")
                      ).status_code == 204
    conn = worker_connection(app)
    waiting = [json.loads(item) for item in conn.lrange(pending, 0, -1)]
    assert rows("CAb1") == []
    assert "arrived:CAb1" in {p.get("y") for p in waiting} and any("s" in p for p in waiting)

    # a drainer moves the batch to `processing` and dies before acknowledging it
    drainer = CardEventDrainer(runtime, conn)
    moved = drainer._move(keys=[pending, processing], args=[200])
    assert len(moved) == len(waiting) and conn.llen(pending) == 0 and conn.llen(processing) == len(waiting)
    jobs.apply_event_batch([json.loads(m) for m in moved[:1]])  # it had applied part of it

    run_burst(app)  # the next start re-applies what was left in `processing`
    assert conn.llen(processing) == 0
    landed = rows("CAb1")
    assert {"call_arrived", "call_completed"} <= {kind for kind, _, _ in landed}
    assert len(landed) == len(waiting) == len({key for _, key, _ in landed})  # every one, once
    run_burst(app)
    assert rows("CAb1") == landed


def test_a_running_drainer_applies_a_dead_drainers_batch_once_it_has_sat_there(voice: Voice) -> None:
    """Several workers: one is killed mid-batch while the others keep running (none restarts).
    A running drainer finds the same payloads still at the head of `processing` after
    ORPHAN_SECONDS and applies them; a batch merely in flight is left alone."""
    from webhooks.card_events import ORPHAN_SECONDS

    runtime = voice.app.extensions["hotline"]
    pending = runtime.state.keys.card_events("pending")
    processing = runtime.state.keys.card_events("processing")
    voice.twiml("/voice/incoming", call_params("CAb9"))
    conn = worker_connection(voice.app)
    dead, alive = CardEventDrainer(runtime, conn), CardEventDrainer(runtime, conn)
    moved = dead._move(keys=[pending, processing], args=[200])  # then the worker is killed
    assert moved

    assert alive.check_orphans(1000.0) == 0  # first sight: could be a batch in flight
    assert alive.check_orphans(1000.0 + ORPHAN_SECONDS / 2) == 0
    assert conn.llen(processing) == len(moved) and rows("CAb9") == []
    assert alive.check_orphans(1000.0 + ORPHAN_SECONDS) == len(moved)
    assert conn.llen(processing) == 0
    assert "call_arrived" in {kind for kind, _, _ in rows("CAb9")}
    assert alive.check_orphans(2000.0) == 0  # nothing left


def test_a_batch_that_cannot_be_applied_goes_to_rq_one_payload_per_job(voice: Voice, db: str) -> None:
    from rq.registry import ScheduledJobRegistry

    runtime = voice.app.extensions["hotline"]
    runtime.push_card_payloads([
        jobs.event_payload(CALLER, "call_arrived", {}, "2026-11-24T10:00:00+00:00", "CAbad", key="arrived:CAbad"),
        jobs.event_payload(CALLER, "no_such_kind", {}, "2026-11-24T10:00:01+00:00", "CAbad"),
    ])
    voice.run_jobs()
    assert [kind for kind, _, _ in rows("CAbad")] == ["call_arrived"]  # the good one still lands
    retried = ScheduledJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection)
    assert retried.count == 1  # the bad one alone waits for RQ's retry (then the failed registry)


def test_a_waiting_drainer_lingers_so_a_burst_lands_in_one_transaction(
    voice: Voice, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from webhooks import card_events

    app = voice.app
    runtime = app.extensions["hotline"]
    conn = worker_connection(app)
    drainer = CardEventDrainer(runtime, conn)
    applied: list[int] = []
    real_apply = jobs.apply_event_batch

    def counting(payloads: list[dict[str, Any]]) -> int:
        applied.append(len(payloads))
        return real_apply(payloads)

    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(drainer.drain_once(block=5)))
    monkeypatch.setattr(jobs, "apply_event_batch", counting)  # counts the transactions, applies for real
    waiter.start()
    for n in range(6):  # a burst: the first wakes the drainer, the rest arrive while it lingers
        runtime.push_card_payloads([jobs.event_payload(
            CALLER, "menu_choice", {"digits": str(n)}, f"2026-11-24T10:00:0{n}+00:00", "CAburst", None, None, f"burst:{n}")])
    waiter.join(5 + card_events.LINGER_SECONDS + 5)
    assert result == [6] and applied == [6]
    assert len(rows("CAburst")) == 6


def test_recording_callbacks_travel_in_the_batch_and_link_once(db: str) -> None:
    from recordings.models import Recording, Voicemail

    recording = {"AccountSid": ACCOUNT_SID, "CallSid": "CAr1", "RecordingSid": "RE-batch-1",
                 "RecordingUrl": "https://api.twilio.com/rec/RE-batch-1", "RecordingStatus": "completed",
                 "RecordingDuration": "7", "RecordingChannels": "1", "RecordingSource": "RecordVerb"}
    batch = [
        jobs.event_payload(CALLER, "call_arrived", {}, "2026-11-24T10:00:01+00:00", "CAr1", key="arrived:CAr1"),
        jobs.recording_payload(recording, "voicemail", "support", 60, "et", CALLER, "2026-11-24T10:01:00+00:00"),
    ]
    assert jobs.apply_event_batch(batch) == 1
    jobs.apply_event_batch(batch)  # the drainer died before acknowledging: replayed
    with card_db.session(readonly=True) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Recording)) == 1
        voicemail = s.scalars(sa.select(Voicemail)).one()
        assert (voicemail.recording_sid, voicemail.queue, voicemail.language) == ("RE-batch-1", "support", "et")
    assert [kind for kind, _, _ in rows("CAr1")] == ["call_arrived", "recording_linked", "voicemail_left"]
    with pytest.raises(ValueError, match="without RecordingSid"):  # the drainer hands it to RQ, one job each
        jobs.apply_event_batch([jobs.recording_payload({"CallSid": "CAr2"}, "call", None, None, None, CALLER,
                                                       "2026-11-24T10:02:00+00:00")])


def test_a_webhooks_card_events_reach_the_list_together_in_the_order_they_were_made(voice: Voice, db: str) -> None:
    runtime = voice.app.extensions["hotline"]
    pending = runtime.state.keys.card_events()
    call = {"AccountSid": ACCOUNT_SID, "CallSid": "CAorder", "From": CALLER, "To": "+3726000000",
            "CallStatus": "ringing", "Direction": "inbound"}
    voice.twiml("/voice/incoming", call)
    # the caller hangs up in the menu: the status callback's own event, then the abandonment
    assert voice.post("/voice/status", {**call, "CallStatus": "completed", "SequenceNumber": "2"}).status_code == 204
    sent = [json.loads(raw) for raw in runtime.redis.lrange(pending, 0, -1)]
    assert [p.get("k") or "status" for p in sent] == ["call_arrived", "status", "call_abandoned"]
    assert sent[2]["d"]["while"] == "menu"
    voice.run_jobs()
    assert {kind for kind, _, _ in rows("CAorder")} == {"call_arrived", "call_completed", "call_abandoned"}
    assert runtime.redis.llen(pending) == 0
