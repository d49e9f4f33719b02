"""The REST subset through twilio-python's own Client, and queues that calls share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from telephony.simulator import Simulator
from telephony.simulator.testing import served

ACCOUNT = "AC" + "b" * 32
TOKEN = "rest-test-token"
HOTLINE = "+3726000000"
AGENT_LINE = "+3726000001"


class RewritingHttpClient(TwilioHttpClient):
    """What the product's factory does: send api.twilio.com requests to the simulator."""

    def __init__(self, base: str) -> None:
        super().__init__(timeout=10)
        self.base = base

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = url.replace("https://api.twilio.com", self.base, 1)
        return super().request(method, url, *args, **kwargs)


def twiml_app(routes: dict[str, str | Callable[[dict[str, str]], str]]
              ) -> tuple[Flask, list[tuple[str, dict[str, str]]]]:
    app = Flask("sim-rest-test-app")
    seen: list[tuple[str, dict[str, str]]] = []

    @app.route("/<path:path>", methods=["GET", "POST"])
    def handle(path: str) -> Response:
        seen.append(("/" + path, dict(request.values)))
        answer = routes.get("/" + path, "<Response/>")
        if callable(answer):
            answer = answer(dict(request.values))
        return Response(answer, mimetype="text/xml")

    return app, seen


def of(seen: list[tuple[str, dict[str, str]]], path: str) -> list[dict[str, str]]:
    return [params for p, params in seen if p == path]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(ACCOUNT, TOKEN, time_scale=0.01, pace="all")
    server = simulator.serve()
    yield simulator
    server.shutdown()


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["http_client", "base_url"])
def test_real_twilio_client_creates_updates_and_fetches_calls(sim: Simulator, how: str):
    app, seen = twiml_app({"/outbound": "<Response><Pause length='30'/><Say>late</Say>"
                                        "</Response>",
                           "/moved": "<Response><Say>Moved</Say></Response>"})
    sim.add_agent("+3725550001", {"answer_after_rings": 1})
    with served(app) as base:
        if how == "http_client":
            client = Client(ACCOUNT, TOKEN, http_client=RewritingHttpClient(sim.api_base))
        else:
            client = Client(ACCOUNT, TOKEN)
            client.api.base_url = sim.api_base
        call = client.calls.create(
            to="+3725550001", from_=HOTLINE, url=base + "/outbound",
            status_callback=base + "/status",
            status_callback_event=["initiated", "ringing", "answered", "completed"])
        assert call.sid.startswith("CA") and call.direction == "outbound-api"
        wait_until(lambda: bool(of(seen, "/outbound")))
        client.calls(call.sid).update(url=base + "/moved", method="POST")
        sim.wait_all(10)
        fetched = client.calls(call.sid).fetch()

    assert fetched.status == "completed"
    assert fetched.to == "+3725550001" and fetched._from == HOTLINE
    assert fetched.parent_call_sid is None and fetched.duration is not None
    assert of(seen, "/moved")[0]["CallSid"] == call.sid
    statuses = [p["CallStatus"] for p in of(seen, "/status")]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert [p["SequenceNumber"] for p in of(seen, "/status")] == ["0", "1", "2", "3"]


def test_rest_validates_like_twilio(sim: Simulator):
    client = Client(ACCOUNT, TOKEN, http_client=RewritingHttpClient(sim.api_base))
    with pytest.raises(TwilioRestException) as missing:
        client.calls.create(to="+3725550001", from_=HOTLINE)
    assert missing.value.code == 21205 and missing.value.status == 400
    with pytest.raises(TwilioRestException) as bad_to:
        client.calls.create(to="5550001", from_=HOTLINE, url="http://127.0.0.1:9/x")
    assert bad_to.value.code == 21211
    with pytest.raises(TwilioRestException) as unknown:
        client.calls("CA" + "0" * 32).fetch()
    assert unknown.value.status == 404

    wrong = Client(ACCOUNT, "not-the-token", http_client=RewritingHttpClient(sim.api_base))
    with pytest.raises(TwilioRestException) as auth:
        wrong.calls.create(to="+3725550001", from_=HOTLINE, url="http://127.0.0.1:9/x")
    assert auth.value.status == 401 and auth.value.code == 20003

    raw = requests.post(f"{sim.api_base}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
                        data={"From": HOTLINE, "Url": "http://x/y"}, auth=(ACCOUNT, TOKEN))
    assert raw.status_code == 400
    assert raw.json() == {"code": 21201, "message": "No 'To' number is specified",
                          "more_info": "https://www.twilio.com/docs/errors/21201",
                          "status": 400}


def test_recordings_are_fetchable_as_json_and_wav(sim: Simulator):
    app, seen = twiml_app({"/voice": "<Response><Record action='/done' maxLength='30'/>"
                                     "</Response>"})
    with served(app) as base:
        sim.add_number(HOTLINE, base + "/voice")
        record = sim.place_inbound("+3725123456", HOTLINE, [{"record": 4}, {"press": "#"}])
    url = of(seen, "/done")[0]["RecordingUrl"]
    rec = record.recordings[0]
    assert url.startswith(sim.api_base) and url.endswith(rec.sid)
    client = Client(ACCOUNT, TOKEN, http_client=RewritingHttpClient(sim.api_base))
    fetched = client.recordings(rec.sid).fetch()
    assert fetched.call_sid == record.sid and fetched.duration == "4"
    wav = requests.get(url + ".wav")
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF" and wav.content[8:12] == b"WAVE"


def test_enqueued_caller_hears_the_wait_url_and_is_redirected_out_by_rest(sim: Simulator):
    app, seen = twiml_app({
        "/voice": "<Response><Enqueue waitUrl='/wait' action='/queue-done'>support</Enqueue>"
                  "</Response>",
        "/wait": "<Response><Say>Please hold</Say><Pause length='10'/></Response>",
        "/agent-ready": "<Response><Say>Connecting you now</Say></Response>",
    })
    client = Client(ACCOUNT, TOKEN, http_client=RewritingHttpClient(sim.api_base))
    with served(app) as base:
        sim.add_number(HOTLINE, base + "/voice")
        record = sim.start_inbound("+3725123456", HOTLINE)
        wait_until(lambda: len(of(seen, "/wait")) >= 2)
        client.calls(record.sid).update(url=base + "/agent-ready", method="POST")
        assert record.call.done.wait(10)

    first, second = of(seen, "/wait")[:2]
    assert first["QueuePosition"] == "1" and first["CurrentQueueSize"] == "1"
    assert first["QueueSid"].startswith("QU") and first["MaxQueueSize"]
    assert first["QueueTime"] == "0" and int(second["QueueTime"]) >= 10
    assert "AvgQueueTime" in first
    assert of(seen, "/agent-ready")[0]["CallSid"] == record.sid
    assert of(seen, "/queue-done") == []  # a REST redirect replaces the TwiML; no action
    assert "leaves queue support: redirected" in str(record)
    assert sim.queues.get("support").size() == 0


def test_gather_and_leave_in_the_wait_document_fire_the_enqueue_action(sim: Simulator):
    app, seen = twiml_app({
        "/voice": "<Response><Enqueue waitUrl='/wait' action='/queue-done'>support</Enqueue>"
                  "</Response>",
        "/wait": "<Response><Gather numDigits='1' action='/wait-choice' timeout='5'>"
                 "<Say>Press 1 for voicemail</Say></Gather></Response>",
        "/wait-choice": "<Response><Leave/></Response>",
        "/queue-done": lambda p: f"<Response><Say>Result {p['QueueResult']}</Say></Response>",
    })
    with served(app) as base:
        sim.add_number(HOTLINE, base + "/voice")
        record = sim.place_inbound("+3725123456", HOTLINE, [{"wait": 5}, {"press": "1"}])
    assert of(seen, "/wait-choice")[0]["Digits"] == "1"
    assert of(seen, "/wait-choice")[0]["QueueSid"].startswith("QU")
    done = of(seen, "/queue-done")[0]
    assert done["QueueResult"] == "leave" and int(done["QueueTime"]) >= 5
    assert "Result leave" in str(record)


def test_dial_queue_bridges_the_longest_waiting_caller(sim: Simulator):
    app, seen = twiml_app({
        "/voice": "<Response><Enqueue waitUrl='/wait' action='/queue-done'>support</Enqueue>"
                  "</Response>",
        "/wait": "<Response><Pause length='5'/></Response>",
        "/agent": "<Response><Dial action='/agent-dialed'><Queue>support</Queue></Dial>"
                  "</Response>",
    })
    with served(app) as base:
        sim.add_number(HOTLINE, base + "/voice")
        sim.add_number(AGENT_LINE, base + "/agent")
        waiting = sim.start_inbound("+3725123456", HOTLINE, [{"hang_up_after": 600}])
        wait_until(lambda: bool(of(seen, "/wait")))
        agent = sim.place_inbound("+3725550001", AGENT_LINE, [{"hang_up_after": 200}])
        assert waiting.call.done.wait(10)

    dialed = of(seen, "/agent-dialed")[0]
    assert dialed["DialCallStatus"] == "completed" and dialed["DialCallSid"] == waiting.sid
    done = of(seen, "/queue-done")[0]
    assert done["QueueResult"] == "bridged"
    assert agent.status == "completed"
