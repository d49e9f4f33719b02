"""The simulator plays Twilio's documented call semantics against a small app served for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from telephony.simulator import Simulator
from telephony.simulator.testing import served

ACCOUNT = "AC" + "a" * 32
TOKEN = "sim-test-token"
HOTLINE = "+3726000000"
CALLER = "+3725123456"

Route = str | Callable[[dict[str, str]], str | tuple[str, int, dict[str, str]]]


@dataclass
class App:
    """A test-only TwiML app: fixed answers per path, every request kept for asserts."""

    routes: dict[str, Route]
    token: str = TOKEN
    requests: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    base: str = ""

    def wsgi(self) -> Flask:
        app = Flask("sim-test-app")
        validator = RequestValidator(self.token)

        @app.route("/<path:path>", methods=["GET", "POST"])
        def handle(path: str) -> Any:
            params = dict(request.form) if request.method == "POST" else {}
            valid = validator.validate(request.url, params,
                                       request.headers.get("X-Twilio-Signature", ""))
            self.requests.append(("/" + path, dict(request.values), valid))
            answer = self.routes.get("/" + path, "")
            if callable(answer):
                answer = answer(dict(request.values))
            if isinstance(answer, tuple):
                return answer
            return Response(answer or "<Response/>", mimetype="text/xml")

        return app

    def seen(self, path: str) -> list[dict[str, str]]:
        return [params for p, params, _ in self.requests if p == path]


@pytest.fixture
def run() -> Iterator[Callable[..., tuple[Simulator, App]]]:
    """Serve an app with the given routes and build a simulator with the hotline number."""
    stack: list[Any] = []

    def start(routes: dict[str, Route], fallback: bool = False,
              **sim_kwargs: Any) -> tuple[Simulator, App]:
        app = App(routes)
        ctx = served(app.wsgi())
        app.base = ctx.__enter__()
        stack.append(ctx)
        sim = Simulator(ACCOUNT, TOKEN, **sim_kwargs)
        sim.add_number(HOTLINE, app.base + "/voice", status_callback=app.base + "/status",
                       fallback_url=app.base + "/fallback" if fallback else None)
        return sim, app

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def dial_twiml(*endpoints: str, timeout: int = 10, **kwargs: Any) -> str:
    r = VoiceResponse()
    dial = r.dial(timeout=timeout, action="/dialed", answer_on_bridge=True, **kwargs)
    for endpoint in endpoints:
        if endpoint.startswith("client:"):
            dial.client(endpoint[len("client:"):])
        else:
            dial.number(endpoint)
    r.say("after dial")
    return str(r)


def test_agent_who_does_not_answer_within_timeout_gives_no_answer_to_the_action(run):
    sim, app = run({"/voice": dial_twiml("+3725550001", timeout=10)})
    sim.add_agent("+3725550001", {"answer_after_rings": 4})  # 20 s > 10 s + 5 s buffer

    record = sim.place_inbound(CALLER, HOTLINE)

    (action,) = app.seen("/dialed")
    assert action["DialCallStatus"] == "no-answer"
    assert action["DialBridged"] == "false"
    assert action["DialCallSid"] == record.children()[0].sid
    assert record.children()[0].status == "no-answer"
    assert "after dial" not in str(record)  # with an action, verbs after <Dial> never run
    assert "no answer after 3 rings (15 s)" in str(record)


def test_agent_answering_after_two_rings_within_a_three_ring_target_is_connected(run):
    timeout = max(5, 3 * 5 - 5)  # three rings of 5 s, minus Twilio's ~5 s buffer
    sim, app = run({"/voice": dial_twiml("client:anna", timeout=timeout)})
    sim.add_agent("client:anna", {"name": "anna", "answer_after_rings": 2, "hang_up_after": 42})

    record = sim.place_inbound(CALLER, HOTLINE)

    (action,) = app.seen("/dialed")
    assert action["DialCallStatus"] == "completed"
    assert action["DialCallDuration"] == "42"
    assert action["DialBridged"] == "true"
    child = record.children()[0]
    assert child.to == "client:anna" and child.direction == "outbound-dial"
    assert child.answered_t - child.created_t == 10  # two rings of five seconds
    assert "agent anna (client:anna) — answered after 2 rings" in str(record)


def test_ring_all_connects_the_second_number_when_it_answers_first(run):
    sim, app = run({"/voice": dial_twiml("+3725550001", "+3725550002", timeout=20)})
    sim.add_agent("+3725550001", {"answer_after_rings": 3})
    sim.add_agent("+3725550002", {"answer_after_rings": 1})

    record = sim.place_inbound(CALLER, HOTLINE)

    first, second = record.children()
    (action,) = app.seen("/dialed")
    assert action["DialCallStatus"] == "completed"
    assert action["DialCallSid"] == second.sid
    assert second.status == "completed"
    assert first.status == "canceled"
    assert all(leg.parent_sid == record.sid for leg in (first, second))


def test_busy_agent_gives_busy(run):
    sim, app = run({"/voice": dial_twiml("+3725550001")})
    sim.add_agent("+3725550001", "busy")
    sim.place_inbound(CALLER, HOTLINE)
    assert app.seen("/dialed")[0]["DialCallStatus"] == "busy"


def test_whisper_runs_on_the_agent_leg_and_a_hangup_there_screens_the_call_out(run):
    r = VoiceResponse()
    r.dial(timeout=10, action="/dialed").number("+3725550001", url="/whisper")
    whisper = VoiceResponse()
    whisper.gather(num_digits=1, action="/accept").say("Call from a client, press 1")
    whisper.hangup()
    sim, app = run({"/voice": str(r), "/whisper": str(whisper)})
    sim.add_agent("+3725550001", {"answer_after_rings": 1})  # never presses 1

    sim.place_inbound(CALLER, HOTLINE)

    (w,) = app.seen("/whisper")
    assert w["Direction"] == "outbound-dial" and w["ParentCallSid"]
    assert app.seen("/accept") == []
    assert app.seen("/dialed")[0]["DialCallStatus"] == "no-answer"


def test_gather_timeout_without_digits_falls_through_to_the_next_verb(run):
    r = VoiceResponse()
    r.gather(num_digits=1, action="/menu", timeout=4).say("Press 1 for sales")
    r.say("We did not get your choice")
    sim, app = run({"/voice": str(r)})

    record = sim.place_inbound(CALLER, HOTLINE, [{"wait": 30}])

    assert app.seen("/menu") == []
    assert 'hears: "We did not get your choice"' in str(record)


def test_gather_digits_go_to_the_action_without_the_finish_key(run):
    r = VoiceResponse()
    r.gather(action="/menu", timeout=5).say("Enter your customer number, then hash")
    sim, app = run({"/voice": str(r), "/menu": "<Response><Say>Thanks</Say></Response>"})

    record = sim.place_inbound(CALLER, HOTLINE, [{"press": "1234#"}])

    (menu,) = app.seen("/menu")
    assert menu["Digits"] == "1234"
    assert menu["CallStatus"] == "in-progress"
    assert {"CallSid", "AccountSid", "From", "To", "Caller", "Called", "Direction",
            "ApiVersion"} <= set(menu)
    assert menu["Direction"] == "inbound" and menu["ApiVersion"] == "2010-04-01"
    assert "presses 1234#" in str(record)


def test_record_posts_the_action_and_the_recording_status_callback(run):
    r = VoiceResponse()
    r.record(action="/recorded", max_length=60, recording_status_callback="/rec-status")
    sim, app = run({"/voice": str(r)})

    record = sim.place_inbound(CALLER, HOTLINE, [{"record": 12}, {"press": "#"}])

    (action,) = app.seen("/recorded")
    assert action["RecordingDuration"] == "12" and action["Digits"] == "#"
    assert "RecordingSid" not in action  # Twilio gives the SID only in the status callback
    (status,) = app.seen("/rec-status")
    assert status["RecordingSid"] == record.recordings[0].sid
    assert status["RecordingUrl"] == action["RecordingUrl"]
    assert status["RecordingStatus"] == "completed"
    assert status["RecordingSource"] == "RecordVerb"
    assert status["CallSid"] == record.sid


def test_caller_hanging_up_during_record_gives_digits_hangup(run):
    r = VoiceResponse()
    r.record(action="/recorded", max_length=60)
    sim, app = run({"/voice": str(r)})
    sim.place_inbound(CALLER, HOTLINE, [{"record": 8}, {"hang_up": True}])
    assert app.seen("/recorded")[0]["Digits"] == "hangup"


def test_every_request_is_signed_for_the_apps_own_token_and_not_another(run):
    sim, app = run({"/voice": "<Response><Say>Hello</Say></Response>"})
    sim.place_inbound(CALLER, HOTLINE)
    assert app.requests and all(valid for _, _, valid in app.requests)

    other = App({}, token="someone-elses-token")
    path, params, _ = app.requests[0]
    url = app.base + path
    signature = sim.http.signed_url_and_headers(url, "POST", params)[1]["X-Twilio-Signature"]
    assert RequestValidator(TOKEN).validate(url, params, signature)
    assert not RequestValidator(other.token).validate(url, params, signature)


def test_status_callbacks_come_with_sequence_numbers(run):
    sim, app = run({"/voice": "<Response><Say>Hi</Say></Response>"})
    sim.add_number(HOTLINE, app.base + "/voice", status_callback=app.base + "/status",
                   status_callback_events=("ringing", "answered", "completed"))
    record = sim.place_inbound(CALLER, HOTLINE)

    statuses = [p for p in app.seen("/status") if p["CallSid"] == record.sid]
    assert [p["CallStatus"] for p in statuses] == ["ringing", "in-progress", "completed"]
    assert [p["SequenceNumber"] for p in statuses] == ["0", "1", "2"]
    assert all(p["CallbackSource"] == "call-progress-events" for p in statuses)
    assert statuses[-1]["CallDuration"] == "1"
    assert statuses[-1]["Timestamp"].endswith("+0000")


def test_invalid_twiml_raises_12100_and_requests_the_fallback_url(run):
    fallback = "<Response><Say>Sorry, please call later</Say></Response>"
    sim, app = run({"/voice": "<Response><Say>unescaped & ampersand</Say></Response>",
                    "/fallback": fallback}, fallback=True)

    record = sim.place_inbound(CALLER, HOTLINE)

    assert [n.code for n in record.notifications] == [12100]
    (fb,) = app.seen("/fallback")
    assert fb["ErrorCode"] == "12100"
    assert fb["ErrorUrl"] == app.base + "/voice"
    assert "Sorry, please call later" in str(record)


def test_wrong_root_and_http_errors_without_fallback_end_with_the_application_error(run):
    sim, app = run({"/voice": "<Reply><Say>Hi</Say></Reply>",
                    "/broken": lambda p: ("oops", 500, {"Content-Type": "text/plain"})})
    record = sim.place_inbound(CALLER, HOTLINE)
    assert [n.code for n in record.notifications] == [12102]
    assert "an application error has occurred" in str(record)

    sim.add_number(HOTLINE, app.base + "/broken")
    record = sim.place_inbound(CALLER, HOTLINE)
    assert [n.code for n in record.notifications] == [11200]


def test_redirect_and_gather_loop_with_relative_urls(run):
    sim, app = run({
        "/voice": "<Response><Redirect>/menu</Redirect></Response>",
        "/menu": "<Response><Gather numDigits='1' action='choice'><Say>Menu</Say></Gather>"
                 "</Response>",
        "/choice": "<Response><Hangup/></Response>",
    })
    record = sim.place_inbound(CALLER, HOTLINE, [{"press": "2"}])
    assert app.seen("/choice")[0]["Digits"] == "2"
    assert record.status == "completed"


def test_reject_busy_ends_the_call_unanswered(run):
    sim, _ = run({"/voice": "<Response><Reject reason='busy'/></Response>"})
    record = sim.place_inbound(CALLER, HOTLINE)
    assert record.status == "busy" and record.call.answered_t is None
