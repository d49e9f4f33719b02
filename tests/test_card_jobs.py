"""RQ jobs that apply Twilio callbacks to the card: called directly, and through a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa
from rq import Queue, SimpleWorker

from recordings import card, jobs
from recordings import db as card_db
from recordings.models import CardEvent, Client, Recording, Voicemail

CALLER = "+3725123456"
HOTLINE = "+3726000000"
RECEIVED = "2025-03-10T09:30:00+00:00"


def status_callback(status: str, seq: int, *, sid: str = "CA100", **extra: str) -> dict[str, str]:
    params = {
        "AccountSid": "AC1",
        "CallSid": sid,
        "From": CALLER,
        "To": HOTLINE,
        "Direction": "inbound",
        "CallStatus": status,
        "SequenceNumber": str(seq),
        "CallbackSource": "call-progress-events",
        "Timestamp": "Mon, 10 Mar 2025 09:31:00 +0000",
        "ApiVersion": "2010-04-01",
    }
    if status == "completed":
        params["CallDuration"] = "95"
    params.update(extra)
    return params


def recording_callback(sid: str = "RE100", status: str = "completed") -> dict[str, str]:
    return {
        "AccountSid": "AC1",
        "CallSid": "CA100",
        "RecordingSid": sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{sid}",
        "RecordingStatus": status,
        "RecordingDuration": "37",
        "RecordingChannels": "1",
        "RecordingStartTime": "Mon, 10 Mar 2025 09:29:00 +0000",
        "RecordingSource": "RecordVerb",
    }


def card_kinds(e164: str = CALLER) -> list[str]:
    with card_db.session() as s:
        client = card.find_client_by_phone(s, e164)
        if client is None:
            return []
        events, _ = card.timeline(s, client.id, limit=500)
        return [e.kind for e in events]


def count(model: Any) -> int:
    with card_db.session() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model)) or 0


# --- call status ------------------------------------------------------------------------------


def test_a_repeated_status_callback_makes_one_card_entry(db: str) -> None:
    first = jobs.apply_call_status(status_callback("completed", 3))
    again = jobs.apply_call_status(status_callback("completed", 3))
    assert first is not None and again is None
    assert card_kinds() == ["call_completed"]
    with card_db.session() as s:
        event = s.scalars(sa.select(CardEvent)).one()
    assert event.key == "status:CA100:3"
    assert event.data["duration"] == 95 and event.data["status"] == "completed"
    assert event.at == datetime(2025, 3, 10, 9, 31, tzinfo=UTC)  # Twilio's Timestamp


def test_progress_statuses_are_call_status_events_and_terminal_ones_complete(db: str) -> None:
    jobs.apply_call_status(status_callback("ringing", 1))
    jobs.apply_call_status(status_callback("in-progress", 2))
    jobs.apply_call_status(status_callback("no-answer", 3, sid="CA101"))
    assert sorted(card_kinds()) == ["call_completed", "call_status", "call_status"]


def test_without_sequence_number_the_status_is_the_key(db: str) -> None:
    params = status_callback("busy", 0)
    del params["SequenceNumber"]
    assert jobs.apply_call_status(params) is not None
    assert jobs.apply_call_status(params) is None


def test_anonymous_callers_and_agent_legs_get_no_card(db: str) -> None:
    assert jobs.apply_call_status(status_callback("completed", 1, From="anonymous")) is None
    agent_leg = status_callback(
        "completed", 1, sid="CA200", Direction="outbound-dial", To="client:anna"
    )
    assert jobs.apply_call_status(agent_leg) is None
    unknown_outbound = status_callback(
        "completed", 1, sid="CA201", Direction="outbound-api", To="+3725999999"
    )
    assert jobs.apply_call_status(unknown_outbound) is None
    assert count(Client) == 0


def test_outbound_call_to_a_known_client_lands_on_their_card(db: str) -> None:
    with card_db.session() as s:
        card.find_or_create_client(s, "+3725999999")
    params = status_callback(
        "completed", 4, sid="CA300", Direction="outbound-api", From=HOTLINE, To="+3725999999"
    )
    assert jobs.apply_call_status(params) is not None
    assert card_kinds("+3725999999") == ["call_completed"]


# --- recordings and voicemail -----------------------------------------------------------------


def test_a_repeated_recording_callback_links_one_recording(db: str) -> None:
    first = jobs.apply_recording(
        recording_callback(), "call", caller=CALLER, received_at_iso=RECEIVED
    )
    again = jobs.apply_recording(recording_callback(), "call", caller=CALLER)
    assert first is not None and again is not None
    assert first["created"] is True and again["created"] is False
    assert first["recording_id"] == again["recording_id"]
    assert count(Recording) == 1 and count(Voicemail) == 0
    assert card_kinds() == ["recording_linked"]


def test_voicemail_is_due_within_the_queues_minutes_and_stored_once(db: str) -> None:
    for _ in range(2):
        jobs.apply_recording(
            recording_callback("RE200"), "voicemail", "support", 90, "ru", CALLER, RECEIVED
        )
    assert count(Recording) == 1 and count(Voicemail) == 1
    received = datetime.fromisoformat(RECEIVED)
    with card_db.session() as s:
        (vm,) = card.list_voicemails(s, "open")
        assert vm.due_at == received + timedelta(minutes=90)
        assert (vm.queue, vm.language, vm.duration, vm.call_sid) == ("support", "ru", 37, "CA100")
        assert card.list_voicemails(s, "overdue", now=received + timedelta(minutes=89)) == []
        assert len(card.list_voicemails(s, "overdue", now=received + timedelta(minutes=91))) == 1
    assert sorted(card_kinds()) == ["recording_linked", "voicemail_left"]


def test_anonymous_voicemail_still_waits_to_be_handled(db: str) -> None:
    result = jobs.apply_recording(
        recording_callback("RE300"), "voicemail", "support", None, None, "anonymous", RECEIVED
    )
    assert result is not None and result["client_id"] is None
    with card_db.session() as s:
        (vm,) = card.list_voicemails(s, "open")
        default = timedelta(minutes=jobs.VOICEMAIL_RESPOND_WITHIN_MINUTES)
        assert vm.due_at == datetime.fromisoformat(RECEIVED) + default
    assert count(Client) == 0


def test_a_batch_stores_its_recordings_once_each_with_the_events_beside_them(db: str) -> None:
    """The drainer's batch: recordings (one repeated in it, one stored before, one anonymous, one
    not finished) with ordinary events, in one transaction of a few statements."""
    other = "+3725777777"  # no card yet: created in the language of the voicemail
    before = jobs.apply_recording(recording_callback("RE-old"), "call", caller=CALLER, received_at_iso=RECEIVED)
    assert before is not None
    vm = recording_callback("RE-vm")
    payloads = [
        jobs.event_payload(CALLER, "call_arrived", {"to": HOTLINE}, RECEIVED, "CA100", key="arrived:CA100"),
        jobs.recording_payload(recording_callback("RE-old"), "call", None, None, None, CALLER, RECEIVED),
        jobs.recording_payload(vm, "voicemail", "support", 30, "ru", other, RECEIVED),
        jobs.recording_payload(vm, "voicemail", "support", 30, "ru", other, RECEIVED),
        jobs.recording_payload(recording_callback("RE-anon"), "voicemail", "support", None, None, "anonymous",
                               RECEIVED),
        jobs.recording_payload(recording_callback("RE-live", status="in-progress"), "call", None, None, None,
                               CALLER, RECEIVED),
        jobs.recording_payload(recording_callback("RE-new"), "call", "support", None, None, CALLER, RECEIVED),
    ]
    new, results = jobs._apply_batch(payloads)
    assert new == 1  # the call_arrived event
    assert [r["created"] for r in results] == [False, True, False, True, True]
    assert results[0]["recording_id"] == before["recording_id"]
    assert results[1] == results[2] | {"created": True}
    assert results[1]["voicemail_id"] == results[2]["voicemail_id"] is not None
    assert results[3]["client_id"] is None and "voicemail_id" in results[3]
    assert count(Recording) == 4 and count(Voicemail) == 2
    assert sorted(card_kinds()) == ["call_arrived", "recording_linked", "recording_linked"]
    assert sorted(card_kinds(other)) == ["recording_linked", "voicemail_left"]
    with card_db.session() as s:
        assert card.find_client_by_phone(s, other).language == "ru"  # type: ignore[union-attr]
        (left,) = s.scalars(sa.select(CardEvent).where(CardEvent.kind == "voicemail_left")).all()
        assert left.data["voicemail_id"] == results[1]["voicemail_id"] and left.queue == "support"
        assert left.data["due_at"] == (datetime.fromisoformat(RECEIVED) + timedelta(minutes=30)).isoformat()
        linked = s.scalars(sa.select(CardEvent).where(CardEvent.key == "recording:RE-new:linked")).one()
        assert (linked.call_sid, linked.queue, linked.data["kind"], linked.data["duration"]) == ("CA100", "support",
                                                                                                 "call", 37)
    assert jobs._apply_batch(payloads)[0] == 0  # again: nothing new
    assert count(Recording) == 4 and count(Voicemail) == 2 and len(card_kinds(other)) == 2


def test_a_callback_repeated_in_one_batch_is_the_first_ones_row_and_event_alike(db: str) -> None:
    """Twilio's retry lands in the same batch, stamped by another web worker: the first copy
    wins whole (its times, its caller, its language), as when the retry came in a later batch."""
    later, earlier = "2025-03-10T10:00:05+00:00", "2025-03-10T10:00:00+00:00"
    newcomer = "+3725888888"
    payloads = [
        jobs.recording_payload(recording_callback("RE-a"), "voicemail", "support", 30, "ru", newcomer, later),
        jobs.recording_payload(recording_callback("RE-a"), "voicemail", "support", 30, None, newcomer, earlier),
        jobs.recording_payload(recording_callback("RE-b"), "call", "support", None, None, "anonymous", later),
        jobs.recording_payload(recording_callback("RE-b"), "call", "support", None, None, CALLER, earlier),
    ]
    jobs.apply_event_batch(payloads)
    with card_db.session() as s:
        rec_a = s.scalars(sa.select(Recording).where(Recording.sid == "RE-a")).one()
        (vm,) = card.list_voicemails(s, "open")
        assert rec_a.created_at == vm.created_at == datetime.fromisoformat(later)
        assert vm.due_at == datetime.fromisoformat(later) + timedelta(minutes=30)
        (left,) = s.scalars(sa.select(CardEvent).where(CardEvent.kind == "voicemail_left")).all()
        assert left.at == datetime.fromisoformat(later)
        assert left.data["due_at"] == vm.due_at.isoformat()
        assert card.find_client_by_phone(s, newcomer).language == "ru"  # type: ignore[union-attr]
        rec_b = s.scalars(sa.select(Recording).where(Recording.sid == "RE-b")).one()
        assert rec_b.client_id is None  # the first copy's caller was anonymous: no card, no event
    assert card_kinds(CALLER) == []


def test_an_unfinished_recording_adds_nothing(db: str) -> None:
    assert jobs.apply_recording(recording_callback(status="in-progress"), caller=CALLER) is None
    assert jobs.apply_recording(recording_callback(status="absent"), caller=CALLER) is None
    assert count(Recording) == 0


# --- webhook events ---------------------------------------------------------------------------


def test_record_event_creates_the_card_on_first_contact_and_honours_the_key(db: str) -> None:
    data = {"to": HOTLINE, "language": "et"}
    first = jobs.record_event(CALLER, "call_arrived", data, RECEIVED, "CA100", key="arrived:CA100")
    again = jobs.record_event(CALLER, "call_arrived", data, RECEIVED, "CA100", key="arrived:CA100")
    assert first is not None and again is None
    assert jobs.record_event("anonymous", "call_arrived", {}, RECEIVED) is None
    assert card_kinds() == ["call_arrived"]


def test_menu_jobs_open_one_complaint_and_opt_the_caller_out(db: str) -> None:
    a = jobs.open_complaint_for_call(CALLER, "CA100", "supervisors", RECEIVED)
    b = jobs.open_complaint_for_call(CALLER, "CA100", "supervisors", RECEIVED)
    assert a == b is not None
    jobs.opt_out_from_call(CALLER, "CA100", RECEIVED)
    jobs.opt_out_from_call(CALLER, "CA100", RECEIVED)
    jobs.set_client_language(CALLER, "pl")
    with card_db.session() as s:
        assert card.is_opted_out(s, CALLER)[0] is True
        assert card.find_client_by_phone(s, CALLER).language == "pl"  # type: ignore[union-attr]
    assert sorted(card_kinds()) == ["complaint_opened", "opted_out"]


# --- through a real RQ worker -----------------------------------------------------------------


@pytest.fixture
def queue(redis_url: str, redis_prefix: str) -> Iterator[Queue]:
    conn = redis_lib.Redis.from_url(redis_url)
    q = Queue(f"{redis_prefix}cards-{uuid.uuid4().hex[:6]}", connection=conn)
    yield q
    for job_id in q.finished_job_registry.get_job_ids() + q.failed_job_registry.get_job_ids():
        job = q.fetch_job(job_id)
        if job is not None:
            job.delete()
    q.delete(delete_jobs=True)
    conn.close()


def test_a_burst_worker_applies_duplicate_callbacks_once(db: str, queue: Queue) -> None:
    jobs_enqueued = [
        queue.enqueue(
            jobs.record_event,
            CALLER,
            "call_arrived",
            {"to": HOTLINE},
            RECEIVED,
            "CA100",
            None,
            None,
            "arrived:CA100",
        ),
        queue.enqueue(jobs.apply_call_status, status_callback("completed", 3)),
        queue.enqueue(jobs.apply_call_status, status_callback("completed", 3)),
        queue.enqueue(
            jobs.apply_recording,
            recording_callback("RE400"),
            "voicemail",
            "support",
            60,
            "et",
            CALLER,
            RECEIVED,
        ),
        queue.enqueue(
            jobs.apply_recording,
            recording_callback("RE400"),
            "voicemail",
            "support",
            60,
            "et",
            CALLER,
            RECEIVED,
        ),
    ]
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert [job.get_status() for job in jobs_enqueued] == ["finished"] * 5
    assert jobs_enqueued[1].return_value() is not None and jobs_enqueued[2].return_value() is None
    assert count(Recording) == 1 and count(Voicemail) == 1
    assert sorted(card_kinds()) == [
        "call_arrived",
        "call_completed",
        "recording_linked",
        "voicemail_left",
    ]


def test_a_bad_callback_fails_the_job_loudly(db: str, queue: Queue) -> None:
    job = queue.enqueue(jobs.apply_call_status, {"From": CALLER})
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert job.get_status() == "failed"
