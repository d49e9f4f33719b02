"""The dispatcher hands waiting work to free agents: oldest first, one call per free agent, a
callback not due yet keeps its place without blocking the line, and a callback whose agent leg
never reaches the client is settled (blocked at the bridge, or the agent did not answer)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from recordings import card, db
from recordings.models import Callback
from routing_rules.outbound import Verdict
from telephony import dispatch
from telephony.outbound import Dialler, dialler_for
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, always_open_rules

CLIENT = "+447911000001"  # GB: callable around the clock in these rules
CALL_PATH = re.compile(r"/Calls/(?P<sid>CA\w+)\.json$")


class RecordingTwilioHttp(HttpClient):
    """Answers the Calls API like Twilio does (201 for a new call, 200 for a redirect) and keeps
    each request: what the dispatcher asked of Twilio."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.twilio"), False)
        self.created: list[dict[str, Any]] = []
        self.redirected: list[str] = []

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = False) -> Response:
        updated = CALL_PATH.search(url)
        if updated:
            self.redirected.append(updated["sid"])
            return Response(200, json.dumps({"sid": updated["sid"], "status": "in-progress"}))
        sid = f"CA{len(self.created) + 1:032d}"
        self.created.append({"sid": sid, **dict(data or {})})
        return Response(201, json.dumps({"sid": sid, "status": "queued"}))


@pytest.fixture
def app(make_app, example_rules_text: str) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(always_open_rules(example_rules_text))
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    data["outbound"].setdefault("countries", {})["GB"] = {  # the test must not depend on the hour
        "hours": [{"days": every_day, "open": "00:00", "close": "24:00"}], "on_holiday": "open",
        "source": "test: callable around the clock"}
    app = make_app(yaml.safe_dump(data, allow_unicode=True))
    app.extensions["hotline"]._twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=RecordingTwilioHttp())
    with app.test_request_context("/"):  # the dispatcher builds absolute callback URLs
        yield app


def twilio(app: Any) -> RecordingTwilioHttp:
    return app.extensions["hotline"]._twilio.http_client  # type: ignore[no-any-return]


def only_free(app: Any, *free: str) -> None:
    """Every support agent but `free` steps away."""
    runtime = app.extensions["hotline"]
    for agent in runtime.rules.current().queues["support"].agents:
        if agent not in free:
            runtime.state.set_status(agent, "away", time.time(), by="test")


def caller_waits(app: Any, sid: str, since: float) -> None:
    state = app.extensions["hotline"].state
    state.save_call(sid, {"sid": sid, "queue": "support", "waiting_in": "support"}, since)
    state.join_line("support", dispatch.CALL_PREFIX + sid, since)


def callback_waits(since: float, *, not_before: datetime | None = None, retry_at: datetime | None = None) -> int:
    """A callback booked by a caller who joined the line at `since`, as register_callback stores it."""
    from telephony import context

    with db.session() as s:
        client, _ = card.find_or_create_client(s, CLIENT)
        callback, _ = card.request_callback(s, client.id, CLIENT, "support", language="en",
                                            first_queued_at=datetime.fromtimestamp(since, UTC),
                                            not_before=not_before)
        if retry_at is not None:  # a failed attempt earlier: the next waits for the spacing
            card.schedule_callback_retry(s, callback.id, "client busy", retry_at, max_attempts=3)
        callback_id = callback.id
    context.current().state.join_line("support", dispatch.CALLBACK_PREFIX + str(callback_id), since)
    return callback_id


def callback_row(callback_id: int) -> tuple[str, int, datetime | None]:
    with db.session() as s:
        cb = card.get_callback(s, callback_id)
        assert cb is not None
        due = cb.next_attempt_at.replace(tzinfo=UTC) if cb.next_attempt_at and not cb.next_attempt_at.tzinfo \
            else cb.next_attempt_at
        return cb.status, cb.attempts, due


def agent_status(app: Any, agent: str) -> str:
    return app.extensions["hotline"].state.agent(agent, time.time())["status"]  # type: ignore[no-any-return]


def line(app: Any) -> list[tuple[str, float]]:
    return app.extensions["hotline"].state.line("support")  # type: ignore[no-any-return]


def card_events(kind: str) -> list[Any]:
    with db.session() as s:
        client = card.find_client_by_phone(s, CLIENT)
        assert client is not None
        events, _ = card.timeline(s, client.id, limit=100)
        return [e for e in events if e.kind == kind]


# --- the line: who is served, and how many --------------------------------------------------------


@pytest.mark.parametrize("not_due", ["chosen time", "retry spacing"])
def test_a_callback_not_due_yet_keeps_its_place_and_the_caller_behind_it_is_connected(app: Any,
                                                                                     not_due: str) -> None:
    only_free(app, "anna")
    now = time.time()
    later = datetime.now(UTC) + timedelta(hours=2)
    callback_id = callback_waits(now - 600, not_before=later if not_due == "chosen time" else None,
                                 retry_at=later if not_due == "retry spacing" else None)
    caller_waits(app, "CA" + "1" * 32, now - 60)

    served = dispatch.agent_freed("support")

    assert served == 1  # the caller; the callback that is not due is not counted
    assert twilio(app).redirected == ["CA" + "1" * 32]
    assert twilio(app).created == []  # nobody dialled for the callback
    assert line(app) == [(f"callback:{callback_id}", now - 600)]  # first in line still
    assert callback_row(callback_id)[:2] == ("pending", 1 if not_due == "retry spacing" else 0)


def test_callbacks_not_due_fill_more_than_a_page_and_the_caller_behind_them_is_still_reached(app: Any) -> None:
    only_free(app, "anna")
    now = time.time()
    later = datetime.now(UTC) + timedelta(hours=2)
    state = app.extensions["hotline"].state
    with db.session() as s:  # one per client: a client has one open callback per queue
        for n in range(dispatch.LINE_PAGE + 5):
            client, _ = card.find_or_create_client(s, f"+44791120{n:04d}")
            cb, _ = card.request_callback(s, client.id, f"+44791120{n:04d}", "support", not_before=later)
            state.join_line("support", dispatch.CALLBACK_PREFIX + str(cb.id), now - 1000 + n)
    caller_waits(app, "CA" + "2" * 32, now - 60)

    assert dispatch.agent_freed("support") == 1
    assert twilio(app).redirected == ["CA" + "2" * 32]
    assert len(line(app)) == dispatch.LINE_PAGE + 5


def test_one_free_agent_is_offered_one_waiting_caller_per_run(app: Any) -> None:
    only_free(app, "anna")
    now = time.time()
    sids = [f"CA{n:032d}" for n in (1, 2, 3)]
    for n, sid in enumerate(sids):
        caller_waits(app, sid, now - 100 + n)

    assert dispatch.agent_freed("support") == 1

    # the agent is claimed only when the redirected call reaches line-connect: until then she
    # still looks free, and a second redirect would only tell its caller "connecting", then hold
    assert twilio(app).redirected == sids[:1]
    assert [m for m, _ in line(app)] == [f"call:{sid}" for sid in sids[1:]]


def test_two_free_agents_are_offered_the_two_longest_waiting(app: Any) -> None:
    only_free(app, "anna", "mart")
    now = time.time()
    sids = [f"CA{n:032d}" for n in (1, 2, 3)]
    for n, sid in enumerate(sids):
        caller_waits(app, sid, now - 100 + n)

    assert dispatch.agent_freed(None) == 2  # every queue (anna and mart serve billing too)

    assert twilio(app).redirected == sids[:2]
    assert [m for m, _ in line(app)] == [f"call:{sids[2]}"]


def test_a_caller_who_hung_up_in_line_does_not_use_up_the_free_agent(app: Any) -> None:
    only_free(app, "anna")
    now = time.time()
    gone, waiting = "CA" + "3" * 32, "CA" + "4" * 32
    caller_waits(app, gone, now - 100)
    app.extensions["hotline"].state.end_call(gone)  # its line entry outlived the hang-up
    caller_waits(app, waiting, now - 50)

    assert dispatch.agent_freed("support") == 1
    assert twilio(app).redirected == [waiting]
    assert line(app) == []


def test_a_due_callback_is_dialled_and_counts_as_the_free_agents_call(app: Any) -> None:
    only_free(app, "anna")
    now = time.time()
    callback_id = callback_waits(now - 600)
    caller_waits(app, "CA" + "5" * 32, now - 60)

    assert dispatch.agent_freed("support") == 1

    (placed,) = twilio(app).created
    assert placed["To"] == app.extensions["hotline"].rules.current().agents["anna"].endpoint
    assert twilio(app).redirected == []  # anna is ringing for the callback
    assert callback_row(callback_id)[0] == "dialling"
    assert [m for m, _ in line(app)] == ["call:" + "CA" + "5" * 32]


# --- the callback's agent leg ends without reaching the client --------------------------------------


def dialled_callback(app: Any, since: float) -> tuple[int, str]:
    """A due callback dispatched to anna, the only free agent: (callback id, agent leg's CallSid)."""
    only_free(app, "anna")
    callback_id = callback_waits(since)
    assert dispatch.agent_freed("support") == 1
    (placed,) = twilio(app).created
    assert agent_status(app, "anna") == "ringing"
    return callback_id, placed["sid"]


def the_dialler(app: Any) -> Dialler:
    return dialler_for(app.extensions["hotline"])


def test_a_callback_blocked_at_the_bridge_waits_for_the_window_in_its_place_and_frees_the_agent(app: Any) -> None:
    since = float(int(time.time()) - 600)  # whole seconds: the card keeps microseconds
    callback_id, leg = dialled_callback(app, since)
    opens = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    closed = Verdict(False, "outside_hours", opens, zones=("Europe/London",))

    for _ in range(2):  # the second: a repeated bridge request
        client_id = the_dialler(app).log_blocked_at_bridge(CLIENT, closed, purpose="requested_callback",
                                                           agent_id="anna", callback_id=callback_id, call_sid=leg)
    dispatch.callback_blocked_at_bridge(callback_id, "anna", leg, closed.reason, closed.next_allowed_at)

    (blocked,) = card_events("outbound_blocked")
    assert blocked.client_id == client_id
    assert (blocked.data["reason"], blocked.data["by"], blocked.data["callback_id"], blocked.agent_id) == (
        "outside_hours", "bridge", callback_id, "anna")
    assert blocked.data["next_allowed_at"] == opens.isoformat()
    assert callback_row(callback_id) == ("pending", 0, opens)  # not an attempt: it waits for the window
    assert line(app) == [(f"callback:{callback_id}", since)]
    assert agent_status(app, "anna") == "available"

    dispatch.callback_blocked_at_bridge(callback_id, "anna", leg, closed.reason, closed.next_allowed_at)  # a repeat
    assert callback_row(callback_id) == ("pending", 0, opens)
    assert line(app) == [(f"callback:{callback_id}", since)]


def test_a_callback_whose_client_opted_out_while_the_agent_answered_closes_and_frees_the_agent(app: Any) -> None:
    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))
    with db.session() as s:
        client = card.find_client_by_phone(s, CLIENT)
        assert client is not None
        card.opt_out_client(s, client.id, "ivr")
    dialler = the_dialler(app)
    verdict = dialler.check(CLIENT, datetime.now(UTC), purpose="requested_callback")
    assert (verdict.allowed, verdict.reason) == (False, "opted_out_client")

    dialler.log_blocked_at_bridge(CLIENT, verdict, purpose="requested_callback", agent_id="anna",
                                  callback_id=callback_id)
    dispatch.callback_blocked_at_bridge(callback_id, "anna", leg, verdict.reason, verdict.next_allowed_at)

    assert [e.data["reason"] for e in card_events("outbound_blocked")] == ["opted_out_client"]
    assert callback_row(callback_id)[0] == "blocked"
    assert line(app) == []
    assert agent_status(app, "anna") == "available"


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed"])
def test_a_callback_whose_agent_did_not_answer_is_retried_after_the_spacing(app: Any, status: str) -> None:
    since = float(int(time.time()) - 600)  # whole seconds: the card keeps microseconds
    callback_id, leg = dialled_callback(app, since)
    spacing = app.extensions["hotline"].rules.current().queues["support"].callback.retry_spacing_minutes

    dispatch.agent_leg_ended(leg, status)

    state, attempts, retry_at = callback_row(callback_id)
    assert (state, attempts) == ("pending", 1)
    assert retry_at is not None
    assert abs((retry_at - datetime.now(UTC)) - timedelta(minutes=spacing)) < timedelta(minutes=1)
    assert line(app) == [(f"callback:{callback_id}", since)]
    assert agent_status(app, "anna") == "available"
    assert int(app.extensions["hotline"].state.agent("anna", time.time())["misses"]) == 1  # type: ignore[index]

    dispatch.agent_leg_ended(leg, status)  # Twilio repeats the status callback
    assert callback_row(callback_id)[:2] == ("pending", 1)


def test_the_agent_leg_completing_after_the_bridge_changes_nothing_here(app: Any) -> None:
    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))

    dispatch.agent_leg_ended(leg, "completed")  # the bridge ran: outbound_finished settles it

    assert callback_row(callback_id)[:2] == ("dialling", 0)
    assert agent_status(app, "anna") == "ringing"


def test_a_canceled_agent_leg_frees_the_agent_without_a_miss(app: Any) -> None:
    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))

    dispatch.agent_leg_ended(leg, "canceled")

    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert agent_status(app, "anna") == "available"
    assert int(app.extensions["hotline"].state.agent("anna", time.time())["misses"] or 0) == 0  # type: ignore[index]


def test_a_bridge_faster_than_the_dispatcher_still_frees_the_agent_held_for_the_callback(app: Any) -> None:
    """Twilio may reach the bridge before the dispatcher has saved the leg's state: the agent
    held for this callback is found on the agent herself."""
    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))
    state = app.extensions["hotline"].state
    state.redis.delete(state.keys.call(leg))  # as if not saved yet

    dispatch.callback_blocked_at_bridge(callback_id, "anna", leg, "outside_hours",
                                        datetime.now(UTC) + timedelta(hours=1))

    assert agent_status(app, "anna") == "available"
    assert callback_row(callback_id)[0] == "pending"


# --- the same, through Twilio's requests to our webhooks ----------------------------------------


def test_the_bridge_s_second_check_blocks_logs_on_the_card_and_settles_the_callback(app: Any) -> None:
    """The webhook path end to end: the agent answers, the client opted out meanwhile, so the
    bridge hangs up instead of dialling, writes the blocked attempt with its reason and frees
    the agent; a repeated request changes nothing more."""
    from urllib.parse import urlsplit

    from tests.conftest import Voice

    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))
    with db.session() as s:
        client = card.find_client_by_phone(s, CLIENT)
        assert client is not None
        card.opt_out_client(s, client.id, "ivr")
    bridge = urlsplit(twilio(app).created[0]["Url"])
    voice = Voice(app)
    params = {"CallSid": leg, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "Direction": "outbound-api"}
    for _ in range(2):
        answer = voice.post(f"{bridge.path}?{bridge.query}", params)
        assert answer.status_code == 200
        body = answer.get_data(as_text=True)
        assert "<Hangup" in body and "<Dial" not in body
        voice.run_jobs()
    (blocked,) = card_events("outbound_blocked")
    assert (blocked.data["reason"], blocked.data["by"], blocked.call_sid) == ("opted_out_client", "bridge", leg)
    assert callback_row(callback_id)[0] == "blocked"
    assert agent_status(app, "anna") == "available"


def test_a_callback_s_agent_leg_that_was_not_answered_is_retried_from_its_status_callback(app: Any) -> None:
    from tests.conftest import Voice

    since = float(int(time.time()) - 600)
    callback_id, leg = dialled_callback(app, since)
    voice = Voice(app)
    status = {"CallSid": leg, "AccountSid": ACCOUNT_SID, "CallStatus": "no-answer", "Direction": "outbound-api",
              "From": "+3726140000", "To": "client:anna", "SequenceNumber": "3"}
    assert voice.post("/voice/status", status).status_code == 204
    voice.run_jobs()
    assert callback_row(callback_id)[:2] == ("pending", 1)
    assert line(app) == [(f"callback:{callback_id}", since)]
    assert agent_status(app, "anna") == "available"


def test_an_outbound_call_s_recording_lands_on_the_client_s_card(app: Any) -> None:
    """Twilio's recording callback names the call but not the client, and the agent leg's state
    does not either: the bridge's Dial names the client in its recording callback URL."""
    from urllib.parse import urlsplit
    from xml.etree import ElementTree as ET

    from tests.conftest import Voice

    _, leg = dialled_callback(app, float(int(time.time()) - 600))
    bridge = urlsplit(twilio(app).created[0]["Url"])
    voice = Voice(app)
    params = {"CallSid": leg, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "Direction": "outbound-api"}
    dial = ET.fromstring(voice.post(f"{bridge.path}?{bridge.query}", params).get_data()).find("Dial")
    assert dial is not None
    callback = urlsplit(dial.get("recordingStatusCallback") or "")
    recording = {"AccountSid": ACCOUNT_SID, "CallSid": leg, "RecordingSid": "RE" + "1" * 32,
                 "RecordingUrl": "https://api.twilio.com/rec/RE1", "RecordingStatus": "completed",
                 "RecordingDuration": "42", "RecordingChannels": "2", "RecordingSource": "DialVerb"}
    assert voice.post(f"{callback.path}?{callback.query}", recording).status_code == 204
    voice.run_jobs()
    (linked,) = card_events("recording_linked")
    with db.session() as s:
        client = card.find_client_by_phone(s, CLIENT)
        assert client is not None and linked.client_id == client.id


def test_the_bridge_takes_a_window_closing_within_its_margin_as_closed(app: Any) -> None:
    """The bridge checks before its whisper; the client's phone rings seconds later. A client
    window that closes inside BRIDGE_MARGIN blocks, with the next allowed time."""
    from zoneinfo import ZoneInfo

    from telephony.outbound import BRIDGE_MARGIN

    with db.session() as s:
        client, _ = card.find_or_create_client(s, CLIENT)
        card.update_client(s, client.id, zone="Europe/London", convenient_from="09:00", convenient_to="18:00")
    london = ZoneInfo("Europe/London")
    dialler = the_dialler(app)
    early = datetime(2026, 12, 8, 17, 58, tzinfo=london)  # a Tuesday
    late = datetime(2026, 12, 8, 18, 0, tzinfo=london) - BRIDGE_MARGIN / 2
    assert dialler.check(CLIENT, late).allowed  # the plain check still says yes at that instant
    assert dialler.check_at_bridge(CLIENT, early).allowed
    blocked = dialler.check_at_bridge(CLIENT, late)
    assert (blocked.allowed, blocked.reason) == (False, "outside_hours")
    assert blocked.next_allowed_at == datetime(2026, 12, 9, 9, 0, tzinfo=london)


def test_a_callback_s_agent_is_on_the_call_from_the_bridge_until_its_result_however_long_the_talk(app: Any) -> None:
    """The dispatcher holds the agent for the ring (CALLBACK_HOLD_SECONDS); once they answer and
    the bridge dials the client they are on the call, so the lapsed hold never offers them
    another call mid-talk. The bridge's result frees them."""
    from urllib.parse import urlsplit

    from tests.conftest import Voice

    callback_id, leg = dialled_callback(app, float(int(time.time()) - 600))
    state = app.extensions["hotline"].state
    bridge = urlsplit(twilio(app).created[0]["Url"])
    voice = Voice(app)
    params = {"CallSid": leg, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "Direction": "outbound-api"}
    for _ in range(2):  # the second: a repeated bridge request
        assert "<Dial" in voice.post(f"{bridge.path}?{bridge.query}", params).get_data(as_text=True)
    later = time.time() + dispatch.CALLBACK_HOLD_SECONDS + 60  # the talk outlasts the ring's hold
    assert state.agent("anna", later)["status"] == "on_call"
    assert "anna" not in {a.id for a in state.snapshot(["anna"], later) if a.status == "available"}

    result = {**params, "DialCallStatus": "completed", "DialCallDuration": "300"}
    assert voice.post(f"/voice/outbound-result?client=%2B447911000001&agent=anna&callback={callback_id}",
                      result).status_code == 200
    voice.run_jobs()
    assert callback_row(callback_id)[0] == "completed"
    assert agent_status(app, "anna") in ("available", "wrap_up")


def test_a_callback_s_agent_whose_bridge_result_never_comes_is_freed_after_the_leg_ends(app: Any) -> None:
    """The agent leg's completed status schedules the stranded-agent check, as for an inbound
    caller: the bridge's result normally frees the agent first; if it never comes, the check does."""
    from urllib.parse import urlsplit

    from rq.registry import ScheduledJobRegistry

    from tests.conftest import Voice

    _, leg = dialled_callback(app, float(int(time.time()) - 600))
    runtime = app.extensions["hotline"]
    bridge = urlsplit(twilio(app).created[0]["Url"])
    voice = Voice(app)
    params = {"CallSid": leg, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress", "Direction": "outbound-api"}
    voice.post(f"{bridge.path}?{bridge.query}", params)
    assert agent_status(app, "anna") == "on_call"
    status = {**params, "CallStatus": "completed", "From": "+3726140000", "To": "client:anna", "SequenceNumber": "4"}
    assert voice.post("/voice/status", status).status_code == 204
    scheduled = ScheduledJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection)
    (job,) = [runtime.jobs.fetch_job(j) for j in scheduled.get_job_ids()]
    assert job.func_name.endswith("release_stranded_agent") and job.args[0] == "anna"
    job.perform()  # its minute is up and no result came
    assert agent_status(app, "anna") in ("available", "wrap_up")


# --- a callback's place in line: joined after its commit, restored by the tick -------------------


def everyone_away(app: Any) -> None:
    """No agent is free: the tick serves nobody, so the lines stay as it leaves them."""
    runtime = app.extensions["hotline"]
    for agent in runtime.rules.current().agents:
        runtime.state.set_status(agent, "away", time.time(), by="test")


def pending_callback(e164: str, since: float, queue: str = "support", *, not_before: datetime | None = None) -> int:
    """A pending callback on the card whose caller first queued at `since`, in no line yet."""
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164)
        callback, _ = card.request_callback(s, client.id, e164, queue, language="en",
                                            first_queued_at=datetime.fromtimestamp(since, UTC), not_before=not_before)
        return callback.id


def lose_lines(app: Any, *queues: str) -> None:
    """What Redis keeps of the lines after losing its data: nothing."""
    state = app.extensions["hotline"].state
    state.redis.delete(*(state.keys.line(queue) for queue in queues))


def test_the_tick_puts_a_pending_callback_missing_from_its_line_back_at_its_place(app: Any) -> None:
    everyone_away(app)
    state = app.extensions["hotline"].state
    now = float(int(time.time()))  # whole seconds: the card keeps microseconds
    missing = callback_waits(now - 900)
    state.leave_line("support", f"callback:{missing}")  # its job stopped between its commit and its join
    caller_waits(app, "CA" + "6" * 32, now - 300)
    kept = pending_callback("+447911000002", now - 600)
    state.join_line("support", f"callback:{kept}", now - 100)  # a member in line keeps its place, whatever the card says

    dispatch.tick()

    assert line(app) == [(f"callback:{missing}", now - 900), ("call:CA" + "6" * 32, now - 300),
                         (f"callback:{kept}", now - 100)]


def test_after_redis_lost_the_lines_the_tick_puts_every_pending_callback_back_in_order(app: Any) -> None:
    everyone_away(app)
    state = app.extensions["hotline"].state
    now = float(int(time.time()))
    later = datetime.now(UTC) + timedelta(hours=2)
    support = [pending_callback("+447911000011", now - 500),
               pending_callback("+447911000012", now - 400, not_before=later),  # not due: keeps its place all the same
               pending_callback("+447911000013", now - 300)]
    with db.session() as s:  # an attempt failed: it waits for the spacing in its place
        card.schedule_callback_retry(s, support[1], "client busy", later, max_attempts=3)
    billing = pending_callback("+447911000011", now - 200, "billing")
    for n, callback_id in enumerate(support):
        state.join_line("support", f"callback:{callback_id}", now - 500 + 100 * n)
    state.join_line("billing", f"callback:{billing}", now - 200)
    lose_lines(app, "support", "billing")

    dispatch.tick()

    assert line(app) == [(f"callback:{callback_id}", now - 500 + 100 * n) for n, callback_id in enumerate(support)]
    assert state.line("billing") == [(f"callback:{billing}", now - 200)]


def test_a_restored_callback_is_served_in_the_same_tick_ahead_of_a_later_caller(app: Any) -> None:
    only_free(app, "anna")
    now = float(int(time.time()))
    callback_id = callback_waits(now - 900)
    lose_lines(app, "support")
    caller_waits(app, "CA" + "8" * 32, now - 60)  # called in after Redis lost the line

    assert dispatch.tick() == 1

    assert callback_row(callback_id)[0] == "dialling"  # anna rings for the callback, not the caller
    assert twilio(app).redirected == []
    assert line(app) == [("call:CA" + "8" * 32, now - 60)]


def test_closed_and_dialling_callbacks_are_not_put_back_in_line(app: Any) -> None:
    everyone_away(app)
    now = float(int(time.time()))
    waiting = pending_callback("+447911000021", now - 100)
    closed = [pending_callback(f"+44791100002{n}", now - 900 + n) for n in range(2, 7)]
    with db.session() as s:
        card.claim_callback(s, closed[0], "anna", dial_sid=f"CB{closed[0]}-1")  # dialling
        card.complete_callback(s, closed[1], agent_id="anna")
        card.cancel_callback(s, closed[2], by="liis")
        card.block_callback(s, closed[3], "opted_out_client", None)
        card.schedule_callback_retry(s, closed[4], "client busy", datetime.now(UTC), max_attempts=1)  # failed
    assert [callback_row(c)[0] for c in closed] == ["dialling", "completed", "cancelled", "blocked", "failed"]

    dispatch.tick()

    assert line(app) == [(f"callback:{waiting}", now - 100)]


def test_callbacks_are_put_back_a_page_at_a_time_without_missing_callers_who_queued_together(app: Any) -> None:
    now = float(int(time.time()))
    ids = [pending_callback(f"+44791100003{n}", now - 600 + (0 if n < 3 else 60 * n)) for n in range(5)]
    expected = sorted((f"callback:{callback_id}", now - 600 + (0 if n < 3 else 60 * n))
                      for n, callback_id in enumerate(ids))

    assert dispatch.restore_callback_places(page_size=2) == 5

    assert sorted(line(app)) == expected
    assert dispatch.restore_callback_places(page_size=2) == 0  # every one in line already


def test_callbacks_of_a_queue_that_left_the_rules_are_left_out_and_logged_once_a_run(
        app: Any, caplog: pytest.LogCaptureFixture) -> None:
    everyone_away(app)
    state = app.extensions["hotline"].state
    now = float(int(time.time()))
    waiting = pending_callback("+447911000041", now - 300)
    for n in (2, 3):
        pending_callback(f"+44791100004{n}", now - 600, "old-desk")

    with caplog.at_level(logging.WARNING, logger="hotline.dispatch"):
        dispatch.tick()

    assert line(app) == [(f"callback:{waiting}", now - 300)]
    assert state.line("old-desk") == []
    (left_out,) = [r.getMessage() for r in caplog.records if "no longer in the rules" in r.getMessage()]
    assert "old-desk 2" in left_out


@pytest.fixture
def before_commit() -> Iterator[list[Callable[[Session], None]]]:
    """Hooks run as any card-store session is about to commit: what another worker may do
    between a job's change and its commit."""
    hooks: list[Callable[[Session], None]] = []

    def run(session: Session) -> None:
        for hook in list(hooks):
            hook(session)

    sa.event.listen(Session, "before_commit", run)
    yield hooks
    sa.event.remove(Session, "before_commit", run)


@pytest.mark.parametrize("settled_by", ["agent did not answer", "blocked at the bridge"])
def test_a_dispatcher_run_before_the_callback_is_pending_again_does_not_drop_it_from_the_line(
        app: Any, before_commit: list[Callable[[Session], None]], settled_by: str) -> None:
    """The job that makes a dialled callback `pending` again (a retry after its spacing, a
    window that opens later) joins the line only after its commit. Before it, a dispatcher
    reads the callback still `dialling`: had it found it in line, it would drop it for good.
    The dispatcher runs right before the job's commit; on SQLite a second writer cannot read
    there (it waits for the commit), so there the line it would read is checked instead."""
    since = float(int(time.time()) - 600)
    callback_id, leg = dialled_callback(app, since)
    readers_wait = db.engine().dialect.name == "sqlite"  # for the write lock, i.e. for the commit
    seen: list[list[tuple[str, float]]] = []
    served: list[int] = []

    def dispatcher_runs(session: Session) -> None:
        changed = any(isinstance(o, Callback) and o.id == callback_id and o.status == "pending"
                      for o in session.identity_map.values())
        if not changed or seen:
            return  # not the job's session (the dispatcher's own, say)
        seen.append(line(app))
        if not readers_wait:
            served.append(dispatch.agent_freed("support"))  # anna is free again by now
    before_commit.append(dispatcher_runs)

    if settled_by == "agent did not answer":
        dispatch.agent_leg_ended(leg, "no-answer")
    else:
        dispatch.callback_blocked_at_bridge(callback_id, "anna", leg, "outside_hours",
                                            datetime.now(UTC) + timedelta(hours=1))

    assert callback_row(callback_id)[0] == "pending"
    assert line(app) == [(f"callback:{callback_id}", since)]
    assert seen == [[]]  # nobody could take it off the line before the commit
    assert served == ([] if readers_wait else [0])


def test_an_agent_s_own_call_puts_them_on_the_call_from_its_bridge_until_its_result(app: Any) -> None:
    """Click-to-call: once the agent has answered their leg and the bridge dials the client, no
    caller is offered to them; the bridge's result frees them. An agent who was not available
    (away) is left as they were."""
    from urllib.parse import urlsplit

    from tests.conftest import Voice

    runtime = app.extensions["hotline"]
    voice = Voice(app)

    def bridged_call(agent: str) -> tuple[str, dict[str, str]]:
        result = the_dialler(app).place_call(CLIENT, agent_id=agent, purpose="agent_call", requested_by=agent)
        assert result.placed and result.call_sid
        bridge = urlsplit(twilio(app).created[-1]["Url"])
        params = {"CallSid": result.call_sid, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress",
                  "Direction": "outbound-api"}
        for _ in range(2):  # the second: a repeated bridge request
            assert "<Dial" in voice.post(f"{bridge.path}?{bridge.query}", params).get_data(as_text=True)
        return result.call_sid, params

    leg, params = bridged_call("anna")
    assert agent_status(app, "anna") == "on_call"
    later = time.time() + 600  # a long talk: no hold lapses
    assert runtime.state.agent("anna", later)["status"] == "on_call"
    assert voice.post("/voice/outbound-result?client=%2B447911000001&agent=anna&callback=",
                      {**params, "DialCallStatus": "completed", "DialCallDuration": "600"}).status_code == 200
    voice.run_jobs()
    assert agent_status(app, "anna") in ("available", "wrap_up")

    runtime.state.set_status("mart", "away", time.time(), by="test")
    bridged_call("mart")
    assert agent_status(app, "mart") == "away"
