"""A callback's attempts are counted once per outbound call, whatever repeats its result (an RQ
retry of `outbound_finished` after its commit, a repeated Dial action), and only while the
callback is dialling: a late result neither reopens nor recounts it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from recordings import card
from recordings import db as card_db
from recordings.models import Callback, CardEvent
from telephony import dispatch
from tests import test_dispatch_line as line_tests
from tests.test_card_store import in_threads
from tests.test_dispatch_line import (
    CLIENT,
    callback_row,
    card_events,
    dialled_callback,
    line,
    twilio,
)

app = line_tests.app  # GB callable around the clock, Twilio's Calls API answered and recorded


def since_now() -> float:
    return float(int(time.time()) - 600)  # whole seconds: the card keeps microseconds


def finished(leg: str, callback_id: int, status: str, duration: int = 0) -> None:
    """The job the bridge's Dial action enqueues (`/voice/outbound-result`)."""
    dispatch.outbound_finished(leg, CLIENT, "anna", status, duration, callback_id)


def attempt_keys() -> list[str | None]:
    return [e.key for e in card_events("callback_attempt")]


def test_a_repeated_no_answer_for_one_call_counts_one_attempt(app: Any) -> None:
    since = since_now()
    callback_id, leg = dialled_callback(app, since)

    finished(leg, callback_id, "no-answer")
    finished(leg, callback_id, "no-answer")  # RQ ran the job again after its commit

    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert attempt_keys() == [f"callback:{callback_id}:attempt:{leg}"]
    assert line(app) == [(f"callback:{callback_id}", since)]


def test_a_repeated_completed_result_adds_nothing_to_the_closed_callback(app: Any) -> None:
    callback_id, leg = dialled_callback(app, since_now())

    finished(leg, callback_id, "completed", 42)
    finished(leg, callback_id, "completed", 42)  # Twilio repeated the Dial action

    assert callback_row(callback_id)[:2] == ("completed", 1)
    assert len(attempt_keys()) == 1 and len(card_events("callback_completed")) == 1
    assert line(app) == []


def test_an_earlier_call_s_repeated_result_does_not_settle_the_next_dial(app: Any) -> None:
    since = since_now()
    callback_id, first = dialled_callback(app, since)
    finished(first, callback_id, "busy")
    with card_db.session() as s:  # the retry spacing has passed
        s.execute(sa.update(Callback).where(Callback.id == callback_id)
                  .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    app.extensions["hotline"].state.set_status("anna", "available", time.time(), by="test")  # wrap-up over
    assert dispatch.agent_freed("support") == 1
    second = twilio(app).created[1]["sid"]
    assert callback_row(callback_id)[:2] == ("dialling", 1)

    finished(first, callback_id, "busy")  # the first call's job, retried late

    assert callback_row(callback_id)[:2] == ("dialling", 1)  # the second call is still ringing
    assert line(app) == []
    finished(second, callback_id, "no-answer")
    assert callback_row(callback_id)[:2] == ("pending", 2)
    assert attempt_keys() == [f"callback:{callback_id}:attempt:{sid}" for sid in (second, first)]


def test_a_result_for_a_callback_cancelled_while_dialling_changes_nothing(app: Any) -> None:
    callback_id, leg = dialled_callback(app, since_now())
    with card_db.session() as s:
        card.cancel_callback(s, callback_id, by="liis", reason="client called in")

    finished(leg, callback_id, "no-answer")

    assert callback_row(callback_id)[:2] == ("cancelled", 0)
    assert attempt_keys() == []
    assert line(app) == []


# --- the card's rules, without the telephony around them -----------------------------------------


def dialling_callback() -> int:
    with card_db.session() as s:
        client, _ = card.find_or_create_client(s, CLIENT)
        callback, _ = card.request_callback(s, client.id, CLIENT, "support")
        assert card.claim_callback(s, callback.id, "anna")
        return callback.id


def test_a_callback_is_given_up_after_max_attempts_real_calls_not_repeated_results(db: str) -> None:
    callback_id = dialling_callback()
    retry_at = datetime.now(UTC) + timedelta(minutes=10)
    with card_db.session() as s:
        assert card.schedule_callback_retry(s, callback_id, "client busy", retry_at, 2, call_sid="CA1")
    with card_db.session() as s:
        card.schedule_callback_retry(s, callback_id, "client busy", retry_at, 2, call_sid="CA1")  # a repeat
    assert callback_row(callback_id)[:2] == ("pending", 1)

    with card_db.session() as s:
        assert card.claim_callback(s, callback_id, "anna")
        assert not card.schedule_callback_retry(s, callback_id, "client busy", retry_at, 2, call_sid="CA2")
    assert callback_row(callback_id)[:2] == ("failed", 2)


def test_one_call_s_result_applied_by_two_workers_at_once_counts_once(db: str) -> None:
    callback_id = dialling_callback()
    retry_at = datetime.now(UTC) + timedelta(minutes=10)

    def apply(_: int) -> bool:
        with card_db.session() as s:
            return card.schedule_callback_retry(s, callback_id, "client busy", retry_at, 3, call_sid="CA1")

    in_threads(4, apply)

    assert callback_row(callback_id)[:2] == ("pending", 1)
    with card_db.session() as s:
        keys = s.scalars(sa.select(CardEvent.key).where(CardEvent.kind == "callback_attempt")).all()
    assert keys == [f"callback:{callback_id}:attempt:CA1"]


def test_a_closed_callback_is_neither_reopened_nor_recounted(db: str) -> None:
    callback_id = dialling_callback()
    with card_db.session() as s:
        card.complete_callback(s, callback_id, agent_id="anna", duration=30)
        card.record_callback_attempt(s, callback_id, "no-answer",
                                     retry_at=datetime.now(UTC) + timedelta(minutes=10))
    assert callback_row(callback_id)[:2] == ("completed", 1)

