"""The card store on real SQL (SQLite by default, PostgreSQL with HOTLINE_TEST_DATABASE_URL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from recordings import card
from recordings import db as card_db
from recordings.models import Base, Callback, CardEvent, Client, PhoneNumber, Voicemail

NOW = datetime(2025, 3, 10, 9, 30, tzinfo=UTC)
ANNA = "+3725123456"


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in n threads released together, to make them race for real."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def new_client(e164: str = ANNA, **kwargs: Any) -> int:
    with card_db.session() as s:
        client, _ = card.find_or_create_client(s, e164, **kwargs)
        return client.id


def kinds(client_id: int) -> list[str]:
    with card_db.session() as s:
        events, _ = card.timeline(s, client_id, limit=500)
        return [e.kind for e in events]


# --- schema -----------------------------------------------------------------------------------


def test_migration_creates_exactly_the_models_schema(db: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with card_db.engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_twice_is_a_no_op(db: str) -> None:
    card_db.upgrade(db)
    with card_db.engine().connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0005"  # 0005_callback_dial


def test_ping_says_the_database_answers(db: str) -> None:
    assert card_db.ping() is True


def test_the_webhooks_card_read_survives_a_dropped_database_connection(db: str) -> None:
    from webhooks.caller_cards import CallerCard, lookup

    client_id = new_client(ANNA, name="Anna", language="ru")
    expected = CallerCard(client_id, "Anna", "ru")
    assert lookup(ANNA) == expected and lookup("+3725999999") is None
    if card_db.engine().dialect.name != "postgresql":
        return  # SQLite has no connection to lose
    with card_db.engine().connect() as conn:  # the server drops every other connection (a restart)
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    first, second = lookup(ANNA), lookup(ANNA)
    assert first in (None, expected)  # at most the one read on the dead connection degrades
    assert second == expected  # and the pool has replaced it


def test_times_come_back_as_aware_utc_and_naive_ones_are_refused(db: str) -> None:
    client_id = new_client()
    local = datetime(2025, 3, 10, 12, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Tallinn"))
    with card_db.session() as s:
        card.append_event(s, client_id, "note", {"text": "x"}, at=local)
    with card_db.session() as s:
        (event,), _ = card.timeline(s, client_id)
        assert event.at == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
        assert event.at.tzinfo is not None and event.at.utcoffset() == timedelta(0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), card_db.session() as s:
        card.append_event(s, client_id, "note", {}, at=datetime(2025, 3, 10, 12, 0))


# --- clients ----------------------------------------------------------------------------------


def test_client_is_found_by_any_of_its_numbers(db: str) -> None:
    with card_db.session() as s:
        client = card.create_client(s, numbers=[ANNA, "+48601234567"], name="Anna", language="et")
        client_id = client.id
    with card_db.session() as s:
        assert card.find_client_by_phone(s, "+48601234567").id == client_id  # type: ignore[union-attr]
        assert card.find_client_by_phone(s, ANNA).name == "Anna"  # type: ignore[union-attr]
        assert card.find_client_by_phone(s, "+3725000000") is None


def test_one_card_per_number(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        client, created = card.find_or_create_client(s, ANNA)
        assert (client.id, created) == (client_id, False)
        other = card.create_client(s, name="Other")
        with pytest.raises(card.NumberInUse):
            card.add_number(s, other.id, ANNA)


def test_first_contact_from_many_workers_at_once_makes_one_card(db: str) -> None:
    def work(_: int) -> tuple[int, bool]:
        with card_db.session() as s:
            client, created = card.find_or_create_client(s, ANNA)
            return client.id, created

    results = in_threads(8, work)
    assert len({cid for cid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with card_db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Client)) == 1


def test_card_window_and_zone_are_validated(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        with pytest.raises(ValueError, match="zone"):
            card.update_client(s, client_id, zone="Mars/Olympus")
        with pytest.raises(ValueError, match="convenient_from"):
            card.update_client(s, client_id, convenient_from="25:00")
        card.update_client(
            s,
            client_id,
            zone="Europe/Tallinn",
            convenient_from="09:00",
            convenient_to="18:00",
            convenient_days=["Mon", "tue"],
            by="admin",
        )
    with card_db.session() as s:
        header = card.card(s, client_id)
        assert header is not None
        assert header["zone"] == "Europe/Tallinn"
        assert header["window"] == {"from": "09:00", "to": "18:00", "days": ["mon", "tue"]}
    assert kinds(client_id) == ["client_updated"]


def test_language_change_is_on_the_card(db: str) -> None:
    client_id = new_client(language="en")
    with card_db.session() as s:
        card.update_client(s, client_id, language="ru", by="anna", at=NOW)
    with card_db.session() as s:
        (event,), _ = card.timeline(s, client_id)
        assert event.kind == "language_changed"
        assert event.data == {"from": "en", "to": "ru", "by": "anna"}
        assert card.get_client(s, client_id).language == "ru"  # type: ignore[union-attr]


# --- events -----------------------------------------------------------------------------------


def test_an_event_key_is_written_once(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        first = card.append_event(
            s, client_id, "call_arrived", {"to": "+3726000000"}, NOW, "CA1", key="arrived:CA1"
        )
        again = card.append_event(s, client_id, "call_arrived", {}, NOW, "CA1", key="arrived:CA1")
    assert first is not None and again is None
    assert kinds(client_id) == ["call_arrived"]


def test_same_key_from_many_threads_gives_one_row_and_keeps_each_transaction(db: str) -> None:
    client_id = new_client()

    def work(i: int) -> bool:
        with card_db.session() as s:
            # Other work in the same transaction must survive losing the race on the key.
            card.append_event(s, client_id, "note", {"text": f"worker {i}"}, NOW)
            event = card.append_event(
                s,
                client_id,
                "call_completed",
                {"status": "completed"},
                NOW,
                "CA9",
                key="status:CA9:3",
            )
            return event is not None

    written = in_threads(12, work)
    assert sum(written) == 1
    with card_db.session() as s:
        count = s.scalar(
            sa.select(sa.func.count()).select_from(CardEvent).where(CardEvent.key == "status:CA9:3")
        )
    assert count == 1
    assert sorted(kinds(client_id)) == ["call_completed"] + ["note"] * 12


def test_unknown_event_kind_is_a_bug(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s, pytest.raises(ValueError, match="unknown card event kind"):
        card.append_event(s, client_id, "call_arived", {})


def test_timeline_is_newest_first_in_keyset_pages(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        for minute in range(7):
            card.append_event(s, client_id, "note", {"n": minute}, NOW + timedelta(minutes=minute))
        # Two events at the same instant: the later id is newer.
        card.append_event(s, client_id, "note", {"n": 7}, NOW + timedelta(minutes=6))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        with card_db.session() as s:
            events, cursor = card.timeline(s, client_id, limit=3, before=cursor)
        seen.extend(e.data["n"] for e in events)
        pages += 1
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1, 0]
    assert pages == 3
    with pytest.raises(ValueError):
        card.decode_cursor("not-a-cursor")


def test_notes_and_agreements_are_events(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        card.add_note(s, client_id, "prefers Russian", by="anna", at=NOW)
        card.add_note(
            s,
            client_id,
            "call after 18:00",
            by="anna",
            kind="agreement",
            at=NOW + timedelta(seconds=1),
        )
    with card_db.session() as s:
        events, _ = card.timeline(s, client_id)
    assert [(e.kind, e.data["text"], e.agent_id) for e in events] == [
        ("agreement", "call after 18:00", "anna"),
        ("note", "prefers Russian", "anna"),
    ]


# --- opt-outs ---------------------------------------------------------------------------------


def test_client_opt_out_is_on_the_card_and_blocks_every_number(db: str) -> None:
    with card_db.session() as s:
        client_id = card.create_client(s, numbers=[ANNA, "+3725999999"]).id
    with card_db.session() as s:
        row = card.opt_out_client(s, client_id, "ivr", reason="asked", by="ivr", at=NOW)
        again = card.opt_out_client(s, client_id, "agent", by="anna")
        assert again.id == row.id
        assert card.get_client(s, client_id).opted_out is True  # type: ignore[union-attr]
    with card_db.session() as s:
        assert card.is_opted_out(s, "+3725999999") == (True, False, client_id)
        assert card.card(s, client_id)["opted_out"] is True  # type: ignore[index]
    assert kinds(client_id) == ["opted_out"]

    with card_db.session() as s:
        card.withdraw_opt_out(
            s, row.id, by="admin", reason="client called back", at=NOW + timedelta(days=1)
        )
        assert card.is_opted_out(s, ANNA) == (False, False, client_id)
        assert card.get_client(s, client_id).opted_out is False  # type: ignore[union-attr]
    assert kinds(client_id) == ["opt_out_withdrawn", "opted_out"]
    with card_db.session() as s:
        (kept,) = card.list_opt_outs(s, active=False)
        assert (kept.withdrawn_by, kept.created_by) == ("admin", "ivr")


def test_number_opt_out_works_with_and_without_a_card(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        card.opt_out_number(s, ANNA, "agent", by="anna", at=NOW)
        card.opt_out_number(s, "+3725000001", "import")
    with card_db.session() as s:
        assert card.is_opted_out(s, ANNA) == (False, True, client_id)
        assert card.is_opted_out(s, "+3725000001") == (False, True, None)
        assert card.is_opted_out(s, "+3725000002") == (False, False, None)
        header = card.card(s, client_id)
        assert header is not None and header["opted_out_numbers"] == [ANNA]
        (event,), _ = card.timeline(s, client_id)
        assert (event.kind, event.data["scope"]) == ("opted_out", "number")
        assert event.data["e164"] == ANNA
    with card_db.session() as s, pytest.raises(ValueError, match="source"):
        card.opt_out_number(s, ANNA, "telepathy")


# --- voicemails -------------------------------------------------------------------------------


def test_voicemail_is_due_and_then_overdue_until_handled(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        vm, created = card.create_voicemail(
            s,
            recording_sid="RE1",
            url="https://x/RE1",
            due_at=NOW + timedelta(hours=4),
            client_id=client_id,
            call_sid="CA1",
            duration=30,
            queue="support",
            created_at=NOW,
        )
        again, created_again = card.create_voicemail(
            s, recording_sid="RE1", url="https://x/RE1", due_at=NOW, client_id=client_id
        )
        assert created and not created_again and again.id == vm.id
    with card_db.session() as s:
        assert [v.id for v in card.list_voicemails(s, "open")] == [vm.id]
        assert card.list_voicemails(s, "overdue", now=NOW + timedelta(hours=3)) == []
        later = NOW + timedelta(hours=4, minutes=1)
        (overdue,) = card.list_voicemails(s, "overdue", now=later)
        assert overdue.is_overdue(later)
        card.mark_voicemail_handled(s, vm.id, by="anna", note="called back", at=later)
        card.mark_voicemail_handled(s, vm.id, by="boris")  # second click changes nothing
    with card_db.session() as s:
        assert card.list_voicemails(s, "overdue", now=NOW + timedelta(days=1)) == []
        (handled,) = card.list_voicemails(s, "handled")
        assert (handled.handled_by, handled.note) == ("anna", "called back")
        events, _ = card.timeline(s, client_id)
    assert [(e.kind, e.data.get("late")) for e in events] == [
        ("voicemail_handled", True),
        ("voicemail_left", None),
    ]


# --- callbacks --------------------------------------------------------------------------------


def test_one_open_callback_per_client_and_queue(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        first, created = card.request_callback(s, client_id, ANNA, "support", at=NOW)
        dup, dup_created = card.request_callback(
            s, client_id, ANNA, "support", at=NOW + timedelta(minutes=5)
        )
        sales, _ = card.request_callback(s, client_id, ANNA, "sales", at=NOW)
    assert created and not dup_created and dup.id == first.id and sales.id != first.id
    assert kinds(client_id).count("callback_requested") == 2

    with card_db.session() as s:
        card.record_callback_attempt(s, first.id, "completed", at=NOW + timedelta(hours=1))
    with card_db.session() as s:
        renewed, created = card.request_callback(
            s, client_id, ANNA, "support", at=NOW + timedelta(hours=2)
        )
    assert created and renewed.id != first.id


def test_the_database_refuses_a_second_open_callback(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        card.request_callback(s, client_id, ANNA, "support", at=NOW)
    with pytest.raises(IntegrityError), card_db.session() as s:
        s.add(
            Callback(
                client_id=client_id,
                e164=ANNA,
                queue="support",
                first_queued_at=NOW,
                requested_at=NOW,
                status="dialling",
                attempts=0,
            )
        )
        s.flush()


def test_concurrent_callback_requests_make_one(db: str) -> None:
    client_id = new_client()

    def work(_: int) -> int:
        with card_db.session() as s:
            cb, _ = card.request_callback(s, client_id, ANNA, "support", at=NOW)
            return cb.id

    assert len(set(in_threads(8, work))) == 1


def test_due_callbacks_keep_the_callers_place_in_line(db: str) -> None:
    early, late, later = (
        new_client("+3725000001"),
        new_client("+3725000002"),
        new_client("+3725000003"),
    )
    with card_db.session() as s:
        # Requested in one order, but `late` joined the line first.
        a, _ = card.request_callback(
            s, early, "+3725000001", "support", at=NOW, first_queued_at=NOW - timedelta(minutes=5)
        )
        b, _ = card.request_callback(
            s, late, "+3725000002", "support", at=NOW, first_queued_at=NOW - timedelta(minutes=9)
        )
        c, _ = card.request_callback(
            s, later, "+3725000003", "support", at=NOW, not_before=NOW + timedelta(hours=1)
        )
    with card_db.session() as s:
        assert [cb.id for cb in card.due_callbacks(s, NOW)] == [b.id, a.id]
        assert card.claim_callback(s, b.id, "anna") is True
    with card_db.session() as s:
        assert card.claim_callback(s, b.id, "boris") is False  # someone else has it
        card.record_callback_attempt(
            s, b.id, "no-answer", at=NOW, agent_id="anna", retry_at=NOW + timedelta(minutes=15)
        )
    with card_db.session() as s:
        assert [cb.id for cb in card.due_callbacks(s, NOW + timedelta(minutes=1))] == [a.id]
        later_ids = [cb.id for cb in card.due_callbacks(s, NOW + timedelta(hours=2))]
        assert later_ids == [b.id, a.id, c.id]
        card.record_callback_attempt(s, b.id, "blocked", at=NOW + timedelta(hours=2))
    with card_db.session() as s:
        gone = s.get(Callback, b.id)
        assert gone is not None and (gone.status, gone.attempts) == ("blocked", 2)
    assert kinds(late) == [
        "callback_given_up",
        "callback_attempt",
        "callback_attempt",
        "callback_requested",
    ]


# --- complaints -------------------------------------------------------------------------------


def test_complaint_deadlines_escalation_and_resolution(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        complaint, created = card.open_complaint(
            s, client_id, summary="rude", call_sid="CA7", queue="supervisors", at=NOW
        )
        again, created_again = card.open_complaint(s, client_id, call_sid="CA7")
        assert created and not created_again and again.id == complaint.id
        assert complaint.ack_due_at == NOW + card.COMPLAINT_ACK_WITHIN
    with card_db.session() as s:
        assert card.escalate_overdue_complaints(s, NOW + timedelta(hours=1)) == []
        late = NOW + timedelta(hours=25)
        assert [c.id for c in card.list_complaints(s, "overdue", now=late)] == [complaint.id]
        assert [c.id for c in card.escalate_overdue_complaints(s, late)] == [complaint.id]
        assert card.escalate_overdue_complaints(s, late) == []  # once
        card.acknowledge_complaint(s, complaint.id, by="sue", at=late)
        card.resolve_complaint(
            s, complaint.id, by="sue", resolution="apologised", at=late + timedelta(hours=1)
        )
    with card_db.session() as s:
        assert card.list_complaints(s, "unresolved") == []
        (done,) = card.list_complaints(s, "resolved")
        assert (done.acknowledged_by, done.resolved_by) == ("sue", "sue")
    assert kinds(client_id) == [
        "complaint_resolved",
        "complaint_acknowledged",
        "complaint_escalated",
        "complaint_opened",
    ]


# --- the card ---------------------------------------------------------------------------------


def test_card_header_counts_what_is_open(db: str) -> None:
    client_id = new_client(language="ru", name="Boris")
    with card_db.session() as s:
        card.append_event(s, client_id, "call_arrived", {}, NOW, "CA1")
        card.create_voicemail(s, recording_sid="RE1", url="u", due_at=NOW, client_id=client_id)
        card.request_callback(s, client_id, ANNA, "support", at=NOW)
        card.open_complaint(s, client_id, at=NOW)
    with card_db.session() as s:
        header = card.card(s, client_id)
        assert card.card(s, client_id + 1000) is None
    assert header is not None
    assert header["name"] == "Boris" and header["language"] == "ru"
    assert header["numbers"] == [{"e164": ANNA, "label": None}]
    assert header["opted_out"] is False
    assert header["counts"] == {
        "events": 4,
        "calls": 1,
        "open_voicemails": 1,
        "open_callbacks": 1,
        "open_complaints": 1,
    }


def test_truncate_all_empties_every_table(db: str) -> None:
    new_client()
    card_db.truncate_all()
    with card_db.session() as s:
        for model in (Client, PhoneNumber, CardEvent, Voicemail):
            assert s.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_readers_do_not_wait_for_a_writer(db: str) -> None:
    client_id = new_client()
    seen: list[str | None] = []

    def read() -> None:
        with card_db.session(readonly=True) as s:
            seen.append(card.get_client(s, client_id).name)  # type: ignore[union-attr]

    with card_db.session() as s:
        card.update_client(s, client_id, name="Anna")  # holds SQLite's write lock
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive()
    assert seen == [None]  # the committed state, not the writer's unfinished change


def test_dispatch_helpers_retry_block_and_complete_callbacks(db: str) -> None:
    client_id = new_client()
    with card_db.session() as s:
        cb, _ = card.request_callback(s, client_id, ANNA, "support", at=NOW)
        # The guard says "not now": no attempt is spent, the callback waits for the window.
        card.block_callback(s, cb.id, "outside_hours", NOW + timedelta(hours=10), at=NOW)
        assert (cb.status, cb.attempts, cb.next_attempt_at) == (
            "pending",
            0,
            NOW + timedelta(hours=10),
        )
        assert card.schedule_callback_retry(s, cb.id, "client busy", NOW, max_attempts=2)
        assert not card.schedule_callback_retry(s, cb.id, "client busy", NOW, max_attempts=2)
        assert card.get_callback(s, cb.id).status == "failed"  # type: ignore[union-attr]
        again, _ = card.request_callback(s, client_id, ANNA, "support", at=NOW)
        card.complete_callback(s, again.id, agent_id="anna", call_sid="CA5", duration=40)
        assert again.status == "completed"
        third, _ = card.request_callback(s, client_id, ANNA, "support", at=NOW)
        card.block_callback(s, third.id, "opted_out_client", None, at=NOW)
        assert third.status == "blocked"


def test_outbound_facts_and_opted_out_sets_feed_the_guard(db: str) -> None:
    with card_db.session() as s:
        client = card.create_client(
            s,
            numbers=[ANNA, "+3725999999"],
            zone="Europe/Tallinn",
            convenient_from="09:00",
            convenient_to="17:00",
            convenient_days=["mon", "fri"],
        )
        facts, client_id = card.outbound_facts(s, ANNA)
        assert client_id == client.id
        assert (facts.stored_zone, facts.opted_out, facts.number_opted_out) == (
            "Europe/Tallinn",
            False,
            False,
        )
        assert facts.window is not None and facts.window.days == ("mon", "fri")
        card.opt_out_client(s, client.id, "admin")
        card.opt_out_number(s, "+48601234567", "import")
        assert card.outbound_facts(s, "+3725999999")[0].opted_out is True
        assert card.opted_out_sets(s) == ({"+48601234567"}, {ANNA, "+3725999999"})
        assert card.withdraw_opt_out(s, 999_999, by="admin") is None


def test_caller_facts_read_what_is_stored_now_and_survive_a_dropped_connection(db: str) -> None:
    """The hot read keeps a cursor per PostgreSQL connection: every read sees the latest card,
    and a connection the server dropped costs one failed read, then a new one is used."""
    assert card.caller_facts("+37255001234") is None
    with card_db.session() as s:
        client, _ = card.find_or_create_client(s, "+37255001234", language="et", name="Mari")
        s.commit()
        client_id = client.id
    assert card.caller_facts("+37255001234") == (client_id, "Mari", "et")
    with card_db.session() as s:
        s.get(Client, client_id).language = "ru"
        s.commit()
    assert card.caller_facts("+37255001234") == (client_id, "Mari", "ru")
    if card_db.engine().dialect.name != "postgresql":
        return
    admin = sa.create_engine(db, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # every other session of this database: the reader's included
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    admin.dispose()
    outcomes = []
    for _ in range(4):  # the pool may hold two dropped connections: each fails once
        try:
            outcomes.append(card.caller_facts("+37255001234"))
        except Exception:  # noqa: BLE001 — the driver's own error: the raw cursor is not wrapped
            outcomes.append("failed")
    assert outcomes[-1] == (client_id, "Mari", "ru")
    assert outcomes.count("failed") <= 2
