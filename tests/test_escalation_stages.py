"""A complaint is escalated, and the supervisor told, once per missed deadline: acknowledge, then
resolve. Escalations stored before stages (one `escalated_at`, one `complaint:{id}:escalated`
event, one `complaint:{id}:overdue` alert) are not repeated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from recordings import card, overdue
from recordings import db as card_db
from recordings.models import Alert, Complaint
from telephony import alerts
from tests.test_overdue_alerts import CALLER, NOW, Receiver, rules_with_alerts

ACK_WITHIN, RESOLVE_WITHIN = timedelta(minutes=60), timedelta(hours=72)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app(make_app, example_rules_text: str, receiver: Receiver):  # type: ignore[no-untyped-def]
    return make_app(rules_with_alerts(example_rules_text, webhook_url=receiver.url))


def complaint_opened(at: datetime, caller: str = CALLER) -> int:
    with card_db.session() as s:
        client, _ = card.find_or_create_client(s, caller)
        complaint, _ = card.open_complaint(s, client.id, summary="wrong bill", queue="complaints", at=at,
                                           ack_within=ACK_WITHIN, resolve_within=RESOLVE_WITHIN)
        return complaint.id


def check(app: Any, at: datetime) -> dict[str, int]:
    with app.app_context():
        return alerts.check_overdue(at.isoformat())


def missed(complaint_id: int) -> list[str]:
    """The stages escalated on the card, oldest first."""
    with card_db.session() as s:
        complaint = s.get(Complaint, complaint_id)
        assert complaint is not None
        events, _ = card.timeline(s, complaint.client_id)
        return [e.data["missed"] for e in reversed(events)
                if e.kind == "complaint_escalated" and e.data["complaint_id"] == complaint_id]


def test_a_complaint_acknowledged_late_is_escalated_again_when_it_misses_its_resolve_deadline(
        app: Any, receiver: Receiver) -> None:
    complaint_id = complaint_opened(NOW)
    first = NOW + ACK_WITHIN + timedelta(minutes=1)
    assert check(app, first) == {"escalated": 1, "alerts": 1, "sent": 1}
    with card_db.session() as s:
        card.acknowledge_complaint(s, complaint_id, by="liis", at=NOW + timedelta(hours=2))
    assert check(app, NOW + RESOLVE_WITHIN - timedelta(minutes=1)) == {"escalated": 0, "alerts": 0, "sent": 0}

    second = NOW + RESOLVE_WITHIN + timedelta(minutes=1)
    assert check(app, second) == {"escalated": 1, "alerts": 1, "sent": 1}
    assert check(app, second + timedelta(minutes=5)) == {"escalated": 0, "alerts": 0, "sent": 0}

    assert missed(complaint_id) == ["acknowledge", "resolve"]
    assert [r["key"] for r in receiver.received] == [f"complaint:{complaint_id}:overdue",
                                                     f"complaint:{complaint_id}:resolve:overdue"]
    told = receiver.received[1]["json"]
    assert (told["kind"], told["id"], told["stage"]) == ("complaint", complaint_id, "resolve")
    assert told["due_at"] == (NOW + RESOLVE_WITHIN).isoformat() and told["overdue_minutes"] == 1
    with card_db.session() as s:
        complaint = s.get(Complaint, complaint_id)
        assert complaint is not None and complaint.escalated_at == first  # the first escalation
        assert overdue.overdue_counts(s, second)["complaints"] == 1


def test_a_complaint_past_both_deadlines_at_its_first_check_is_escalated_for_each(
        app: Any, receiver: Receiver) -> None:
    complaint_id = complaint_opened(NOW)
    late = NOW + RESOLVE_WITHIN + timedelta(minutes=1)  # the check did not run for three days

    assert check(app, late) == {"escalated": 1, "alerts": 2, "sent": 2}
    assert check(app, late + timedelta(minutes=5)) == {"escalated": 0, "alerts": 0, "sent": 0}

    assert missed(complaint_id) == ["acknowledge", "resolve"]
    assert sorted((r["key"], r["json"]["stage"]) for r in receiver.received) == [
        (f"complaint:{complaint_id}:overdue", "acknowledge"),
        (f"complaint:{complaint_id}:resolve:overdue", "resolve")]


def escalated_before_stages(complaint_id: int, at: datetime, stage: str) -> None:
    """What the check stored before stages: `escalated_at`, one unstaged event, one sent alert."""
    with card_db.session() as s:
        complaint = s.get(Complaint, complaint_id)
        assert complaint is not None
        complaint.escalated_at = at
        card.append_event(s, complaint.client_id, "complaint_escalated",
                          {"complaint_id": complaint_id, "missed": stage}, at, complaint.call_sid,
                          queue=complaint.queue, key=f"complaint:{complaint_id}:escalated")
        due = complaint.ack_due_at if stage == "acknowledge" else complaint.resolve_due_at
        s.add(Alert(key=f"complaint:{complaint_id}:overdue", kind="complaint", item_id=complaint_id,
                    client_id=complaint.client_id, queue=complaint.queue, due_at=due, created_at=at,
                    sent_at=at, attempts=1))


def test_an_escalation_stored_before_stages_is_not_repeated_and_the_next_deadline_still_is(
        app: Any, receiver: Receiver) -> None:
    unacknowledged = complaint_opened(NOW)
    escalated_before_stages(unacknowledged, NOW + ACK_WITHIN + timedelta(minutes=1), "acknowledge")
    acknowledged = complaint_opened(NOW, caller="+37255512399")
    with card_db.session() as s:
        card.acknowledge_complaint(s, acknowledged, by="liis", at=NOW + timedelta(minutes=10))
    escalated_before_stages(acknowledged, NOW + RESOLVE_WITHIN + timedelta(minutes=1), "resolve")

    assert check(app, NOW + timedelta(hours=2)) == {"escalated": 0, "alerts": 0, "sent": 0}
    assert receiver.received == []

    late = NOW + RESOLVE_WITHIN + timedelta(minutes=2)
    assert check(app, late) == {"escalated": 1, "alerts": 1, "sent": 1}
    assert missed(unacknowledged) == ["acknowledge", "resolve"]
    assert missed(acknowledged) == ["resolve"]
    assert [r["key"] for r in receiver.received] == [f"complaint:{unacknowledged}:resolve:overdue"]
