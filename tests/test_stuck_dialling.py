"""A callback never stays `dialling` for good: the dispatcher marks it dialling before it places
the call (a refusal or a stop in between leaves a dial that can be settled), an agent leg that
ends before the dispatcher saved it is still settled, and the dispatch tick's sweep settles
dials that will never report back as unanswered attempts, once, whoever sweeps, while a call
still live is left alone. Calls are placed through the local Twilio (its REST API)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from twilio.rest import Client

from recordings import card
from recordings import db as card_db
from recordings.models import Callback, CardEvent
from routing_rules import engine
from telephony import dispatch
from telephony.outbound import AGENT_RING_TIMEOUT_SECONDS, BRIDGE_MARGIN
from telephony.simulator import Simulator
from telephony.twilio_client import RewritingHttpClient
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, always_open_rules
from tests.test_card_store import in_threads
from tests.test_dispatch_line import (
    CLIENT,
    agent_status,
    callback_row,
    callback_waits,
    card_events,
    line,
    only_free,
)

TWILIO_LONGEST_DIAL_TIMEOUT = 600  # seconds: Twilio's cap on <Dial timeout>


def rules_text(example_rules_text: str) -> str:
    data = yaml.safe_load(always_open_rules(example_rules_text))
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    data["outbound"].setdefault("countries", {})["GB"] = {  # the test must not depend on the hour
        "hours": [{"days": every_day, "open": "00:00", "close": "24:00"}], "on_holiday": "open",
        "source": "test: callable around the clock"}
    return yaml.safe_dump(data, allow_unicode=True)


@pytest.fixture
def app(make_app, twilio: Simulator, example_rules_text: str) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    app = make_app(rules_text(example_rules_text), twilio_api_base=twilio.api_base)
    with app.test_request_context("/"):  # the dispatcher builds absolute callback URLs
        yield app


class TwilioAnswersFirst(RewritingHttpClient):
    """The real REST client on the local Twilio, with `before` run as a call is asked for and
    `after` (given the new CallSid) as soon as Twilio has created it: what Twilio may do while
    the dispatcher has not taken its next step yet."""

    def __init__(self, api_base: str, before: Callable[[], None] = lambda: None,
                 after: Callable[[str], None] = lambda sid: None) -> None:
        super().__init__(api_base)
        self.before, self.after = before, after

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def,override]
        creating = method.upper() == "POST" and url.endswith("/Calls.json")
        if creating:
            self.before()
        response = super().request(method, url, *args, **kwargs)
        if creating and response.status_code == 201:
            self.after(json.loads(response.text)["sid"])
        return response


def use_twilio(app: Any, http: RewritingHttpClient) -> None:
    app.extensions["hotline"]._twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)


def dispatched(app: Any, twilio: Simulator, since: float) -> tuple[int, str]:
    """A due callback dispatched to anna, the only free agent: (callback id, agent leg's CallSid)."""
    only_free(app, "anna")
    callback_id = callback_waits(since)
    assert dispatch.agent_freed("support") == 1
    (leg,) = twilio.legs
    assert twilio.legs[leg].to == app.extensions["hotline"].rules.current().agents["anna"].endpoint
    return callback_id, leg


def since_now() -> float:
    return float(int(time.time()) - 600)  # whole seconds: the card keeps microseconds


def dial_of(callback_id: int) -> tuple[str | None, datetime | None]:
    with card_db.session() as s:
        cb = card.get_callback(s, callback_id)
        assert cb is not None
        return cb.dial_sid, cb.dialled_at


def dialled_ago(callback_id: int, seconds: float) -> None:
    """The callback's dial began `seconds` ago."""
    with card_db.session() as s:
        s.execute(sa.update(Callback).where(Callback.id == callback_id)
                  .values(dialled_at=datetime.now(UTC) - timedelta(seconds=seconds)))


def stuck_for_good() -> float:
    return dispatch.STUCK_DIALLING_SECONDS + 60


def attempts_on_card() -> list[tuple[str | None, str | None, str]]:
    """(key, call_sid, result) of every callback_attempt event, newest first."""
    return [(e.key, e.call_sid, e.data["result"]) for e in card_events("callback_attempt")]


def retry_in_spacing(app: Any, retry_at: datetime | None) -> bool:
    spacing = app.extensions["hotline"].rules.current().queues["support"].callback.retry_spacing_minutes
    return retry_at is not None and abs(retry_at - datetime.now(UTC) - timedelta(minutes=spacing)) < timedelta(minutes=1)


# --- the dispatcher: dialling before the call exists -----------------------------------------------


def test_a_callback_is_dialling_before_its_call_is_placed(app: Any, twilio: Simulator) -> None:
    seen: list[tuple[str, str | None]] = []
    callback_id = 0

    def look() -> None:
        seen.append((callback_row(callback_id)[0], dial_of(callback_id)[0]))

    use_twilio(app, TwilioAnswersFirst(twilio.api_base, before=look))
    only_free(app, "anna")
    callback_id = callback_waits(since_now())

    assert dispatch.agent_freed("support") == 1

    ((status, dial_then),) = seen
    assert status == "dialling" and dial_then is not None and dial_then.startswith(f"CB{callback_id}-")
    (leg,) = twilio.legs
    dial_sid, dialled_at = dial_of(callback_id)
    assert dial_sid == leg  # the placed call now names the dial
    assert dialled_at is not None and datetime.now(UTC) - dialled_at < timedelta(minutes=1)
    assert callback_row(callback_id)[:2] == ("dialling", 0)


def test_a_dial_twilio_refuses_is_one_attempt_keyed_by_the_dial_and_frees_the_agent(
        make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    app = make_app(rules_text(example_rules_text), twilio_api_base="http://127.0.0.1:9")  # nothing answers
    with app.test_request_context("/"):
        since = since_now()
        only_free(app, "anna")
        callback_id = callback_waits(since)

        assert dispatch.agent_freed("support") == 0

        status, attempts, retry_at = callback_row(callback_id)
        assert (status, attempts) == ("pending", 1) and retry_in_spacing(app, retry_at)
        dial_sid, _ = dial_of(callback_id)
        assert dial_sid is not None and dial_sid.startswith(f"CB{callback_id}-")
        ((key, call_sid, result),) = attempts_on_card()
        assert (key, call_sid) == (f"callback:{callback_id}:attempt:{dial_sid}", None)  # no call to name
        assert "Connection refused" in result  # Twilio's whole answer, wider than the callback's last_result
        assert agent_status(app, "anna") == "available"
        assert line(app) == [(f"callback:{callback_id}", since)]


def test_an_agent_leg_ending_before_the_dispatcher_saved_it_is_still_retried(app: Any, twilio: Simulator) -> None:
    """Twilio reports the agent's phone busy before the dispatcher has saved the leg's state:
    the status callback's job (`agent_leg_ended`) runs in between."""
    use_twilio(app, TwilioAnswersFirst(twilio.api_base, after=lambda sid: dispatch.agent_leg_ended(sid, "busy")))
    since = since_now()
    only_free(app, "anna")
    callback_id = callback_waits(since)

    dispatch.agent_freed("support")

    (leg,) = twilio.legs
    status, attempts, retry_at = callback_row(callback_id)
    assert (status, attempts) == ("pending", 1) and retry_in_spacing(app, retry_at)
    assert attempts_on_card() == [(f"callback:{callback_id}:attempt:{leg}", leg, "agent busy")]
    assert line(app) == [(f"callback:{callback_id}", since)]
    assert agent_status(app, "anna") == "available"
    assert int(app.extensions["hotline"].state.agent("anna", time.time())["misses"]) == 1  # type: ignore[index]

    dispatch.agent_leg_ended(leg, "busy")  # Twilio repeats the status callback
    assert callback_row(callback_id)[:2] == ("pending", 1)


def test_a_leg_that_is_no_callback_s_is_only_noted(app: Any) -> None:
    state = app.extensions["hotline"].state
    sid = "CA" + "7" * 32  # an agent's click-to-call, say: nothing of ours is saved for it

    dispatch.agent_leg_ended(sid, "no-answer")

    call = state.get_call(sid)
    assert call is not None and set(call) == {"leg_ended", "created_at"} and call["leg_ended"] == "no-answer"
    with card_db.session() as s:
        assert s.scalar(sa.select(sa.func.count(CardEvent.id))) == 0


# --- the sweep -----------------------------------------------------------------------------------


def test_a_callback_stuck_in_dialling_whose_call_ended_is_retried_by_the_tick(app: Any, twilio: Simulator) -> None:
    """The leg's end was seen (its live state ended) but the job settling the callback failed
    for good: the tick's sweep counts the attempt and puts the callback back in its place."""
    since = since_now()
    callback_id, leg = dispatched(app, twilio, since)
    app.extensions["hotline"].state.end_call(leg)
    dialled_ago(callback_id, stuck_for_good())

    dispatch.tick()

    status, attempts, retry_at = callback_row(callback_id)
    assert (status, attempts) == ("pending", 1) and retry_in_spacing(app, retry_at)
    assert attempts_on_card() == [(f"callback:{callback_id}:attempt:{leg}", leg, dispatch.STUCK_RESULT)]
    assert line(app) == [(f"callback:{callback_id}", since)]


def test_a_dial_that_stopped_before_its_call_was_placed_is_retried_by_the_sweep(app: Any) -> None:
    """The dispatcher marked the callback dialling and stopped (a crash, a deploy) before
    Twilio was asked: no call, no live state, only the dial's own id."""
    since = since_now()
    callback_id = callback_waits(since)
    line_member = (f"callback:{callback_id}", since)
    app.extensions["hotline"].state.leave_line("support", line_member[0])  # the dispatcher took it
    dial_sid = f"CB{callback_id}-1765000000000"
    with card_db.session() as s:
        assert card.claim_callback(s, callback_id, "anna", dial_sid=dial_sid)
    dialled_ago(callback_id, stuck_for_good())

    assert dispatch.sweep_stuck_dialling() == 1

    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert attempts_on_card() == [(f"callback:{callback_id}:attempt:{dial_sid}", None, dispatch.STUCK_RESULT)]
    assert line(app) == [line_member]


def test_a_stuck_callback_whose_attempts_are_used_up_is_failed(app: Any, twilio: Simulator) -> None:
    callback_id, leg = dispatched(app, twilio, since_now())
    max_attempts = app.extensions["hotline"].rules.current().queues["support"].callback.max_attempts
    with card_db.session() as s:  # earlier dials were counted
        s.execute(sa.update(Callback).where(Callback.id == callback_id).values(attempts=max_attempts - 1))
    app.extensions["hotline"].state.redis.delete(app.extensions["hotline"].state.keys.call(leg))  # Redis lost it
    dialled_ago(callback_id, stuck_for_good())

    assert dispatch.sweep_stuck_dialling() == 1

    assert callback_row(callback_id)[:2] == ("failed", max_attempts)
    (given_up,) = card_events("callback_given_up")
    assert given_up.data == {"callback_id": callback_id, "attempts": max_attempts, "result": dispatch.STUCK_RESULT}
    assert line(app) == []


def test_a_dial_whose_call_is_still_live_is_left_alone(app: Any, twilio: Simulator) -> None:
    """An hour-long talk with the client: the callback is dialling until the bridge's Dial
    action settles it, and its call's live state says it has not ended."""
    callback_id, leg = dispatched(app, twilio, since_now())
    dialled_ago(callback_id, 3600)

    assert dispatch.sweep_stuck_dialling() == 0

    assert callback_row(callback_id)[:2] == ("dialling", 0)
    assert dial_of(callback_id)[0] == leg
    assert attempts_on_card() == []


def test_a_recent_dial_is_left_alone_even_before_its_live_state_is_saved(app: Any, twilio: Simulator) -> None:
    callback_id, leg = dispatched(app, twilio, since_now())
    state = app.extensions["hotline"].state
    state.redis.delete(state.keys.call(leg))  # as if the dispatcher had yet to save it
    dialled_ago(callback_id, dispatch.STUCK_DIALLING_SECONDS - 60)

    assert dispatch.sweep_stuck_dialling() == 0
    assert callback_row(callback_id)[:2] == ("dialling", 0)


def test_a_dial_older_than_twilio_s_longest_call_is_over_whatever_redis_says(app: Any, twilio: Simulator) -> None:
    callback_id, leg = dispatched(app, twilio, since_now())
    dialled_ago(callback_id, dispatch.LONGEST_CALL_SECONDS + 60)  # its Dial action was lost

    assert dispatch.sweep_stuck_dialling() == 1
    assert callback_row(callback_id)[:2] == ("pending", 1)


def test_sweeping_twice_or_from_four_workers_at_once_counts_the_dial_once(app: Any, twilio: Simulator) -> None:
    since = since_now()
    callback_id, leg = dispatched(app, twilio, since)
    app.extensions["hotline"].state.end_call(leg)
    dialled_ago(callback_id, stuck_for_good())

    settled = in_threads(4, lambda _: dispatch.sweep_stuck_dialling())
    assert dispatch.sweep_stuck_dialling() == 0  # and once more, later

    assert sum(settled) == 1
    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert [key for key, _, _ in attempts_on_card()] == [f"callback:{callback_id}:attempt:{leg}"]
    assert line(app) == [(f"callback:{callback_id}", since)]

    dispatch.outbound_finished(leg, CLIENT, "anna", "no-answer", 0, callback_id)  # the lost result, late
    assert callback_row(callback_id)[:2] == ("pending", 1)


def test_a_late_result_of_the_swept_call_does_not_count_against_the_next_dial(app: Any, twilio: Simulator) -> None:
    since = since_now()
    callback_id, first = dispatched(app, twilio, since)
    app.extensions["hotline"].state.end_call(first)
    dialled_ago(callback_id, stuck_for_good())
    assert dispatch.sweep_stuck_dialling() == 1
    with card_db.session() as s:  # the retry spacing has passed
        s.execute(sa.update(Callback).where(Callback.id == callback_id)
                  .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1)))
    app.extensions["hotline"].state.agent("anna", time.time() + dispatch.CALLBACK_HOLD_SECONDS + 1)  # her hold lapsed
    assert dispatch.agent_freed("support") == 1
    assert callback_row(callback_id)[:2] == ("dialling", 1)

    dispatch.outbound_finished(first, CLIENT, "anna", "completed", 30, callback_id)  # the first call's, late

    assert callback_row(callback_id)[:2] == ("dialling", 1)  # the second call is still ringing


def test_a_callback_dialling_from_before_the_upgrade_waits_out_the_longest_call(app: Any) -> None:
    """Migration 0005 found it dialling: its call is not named, so it may be live until
    Twilio's time limit; after that the sweep settles it, keyed once for that old dial."""
    callback_id = callback_waits(since_now())
    with card_db.session() as s:
        s.execute(sa.update(Callback).where(Callback.id == callback_id)
                  .values(status="dialling", agent_id="anna", dial_sid=None,
                          dialled_at=datetime.now(UTC) - timedelta(hours=1)))

    assert dispatch.sweep_stuck_dialling() == 0
    assert callback_row(callback_id)[0] == "dialling"

    dialled_ago(callback_id, dispatch.LONGEST_CALL_SECONDS + 60)
    assert dispatch.sweep_stuck_dialling() == 1
    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert [key for key, _, _ in attempts_on_card()] == [f"callback:{callback_id}:attempt:CB{callback_id}-before-0005"]


def test_the_sweep_waits_longer_than_any_dial_can_ring(app: Any) -> None:
    rules = app.extensions["hotline"].rules.current()
    bridge_dial = engine.ring_timeout_seconds(rules, rules.default_queue()) + 20  # the bridge's Dial timeout
    assert bridge_dial <= TWILIO_LONGEST_DIAL_TIMEOUT
    longest_dial = AGENT_RING_TIMEOUT_SECONDS + BRIDGE_MARGIN.total_seconds() + TWILIO_LONGEST_DIAL_TIMEOUT
    assert dispatch.STUCK_DIALLING_SECONDS > longest_dial
    assert dispatch.STUCK_DIALLING_SECONDS > dispatch.CALLBACK_HOLD_SECONDS  # the agent's hold has lapsed


# --- the migration -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_database(tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own, on the backend the suite runs on."""
    from tests.conftest import own_database

    with own_database(tmp_path / "fresh.sqlite3") as url:
        yield url


def test_the_upgrade_gives_callbacks_already_dialling_its_own_time_and_no_dial(fresh_database: str) -> None:
    card_db.upgrade(fresh_database, "0004")
    engine_ = sa.create_engine(fresh_database)
    queued = datetime(2026, 12, 1, 9, 0)
    try:
        with engine_.begin() as conn:
            conn.execute(sa.text("INSERT INTO clients (id, created_at, updated_at) VALUES (1, :t, :t)"),
                         {"t": queued})
            for callback_id, queue, status in ((1, "support", "dialling"), (2, "billing", "pending")):
                conn.execute(sa.text(
                    "INSERT INTO callbacks (id, client_id, e164, queue, first_queued_at, requested_at, status, attempts)"
                    " VALUES (:id, 1, :e164, :queue, :t, :t, :status, 0)"),
                    {"id": callback_id, "e164": CLIENT, "queue": queue, "t": queued, "status": status})
        before = datetime.now(UTC)
        card_db.upgrade(fresh_database)
        with engine_.connect() as conn:
            rows = dict(conn.execute(sa.text("SELECT id, dialled_at FROM callbacks")).all())
            dial_sids = conn.execute(sa.text("SELECT dial_sid FROM callbacks")).scalars().all()
    finally:
        engine_.dispose()
    assert rows[2] is None and dial_sids == [None, None]
    upgraded = rows[1] if isinstance(rows[1], datetime) else datetime.fromisoformat(rows[1])
    upgraded = upgraded if upgraded.tzinfo else upgraded.replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= upgraded <= datetime.now(UTC)
