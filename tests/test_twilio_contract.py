"""The REST requests the product sends to Twilio, validated against Twilio's own OpenAPI spec.

The spec (shared/ref/twilio_api_v2010.json, beside the repository) is Twilio's description of
the 2010 API; a request it rejects would be rejected by Twilio's cloud too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from recordings import card, db
from telephony import dispatch
from telephony.simulator import Simulator
from telephony.twilio_client import RewritingHttpClient
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, always_open_rules

SPEC = Path(__file__).resolve().parents[2] / "shared" / "ref" / "twilio_api_v2010.json"


@pytest.fixture(scope="module")
def twilio_spec() -> Any:
    if not SPEC.exists():
        pytest.skip(f"Twilio's OpenAPI spec is not beside the repository ({SPEC})")
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(json.loads(SPEC.read_text(encoding="utf-8")))


class RecordingHttpClient(RewritingHttpClient):
    """Keeps every request as twilio-python built it for api.twilio.com, then sends it on."""

    def __init__(self, api_base: str) -> None:
        super().__init__(api_base)
        self.sent: list[requests.PreparedRequest] = []

    def request(self, method: str, url: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, *args: Any, **kwargs: Any):  # type: ignore[override]
        self.sent.append(requests.Request(method, url, params=params, data=data, headers=headers,
                                          auth=auth).prepare())
        return super().request(method, url, params, data, headers, auth, *args, **kwargs)


def assert_valid(spec: Any, request: requests.PreparedRequest) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    spec.validate_request(RequestsOpenAPIRequest(request))  # raises with the failing field


def test_the_guarded_call_and_the_queue_redirect_match_twilios_spec(make_app, example_rules_text: str,  # type: ignore[no-untyped-def]
                                                                   twilio_spec: Any) -> None:
    from twilio.rest import Client

    sim = Simulator(ACCOUNT_SID, AUTH_TOKEN, autorun=False)
    server = sim.serve()
    try:
        data = yaml.safe_load(always_open_rules(example_rules_text))
        every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        data["outbound"].setdefault("countries", {})["EE"] = {
            "hours": [{"days": every_day, "open": "00:00", "close": "24:00"}], "on_holiday": "open",
            "source": "test"}
        app = make_app(yaml.safe_dump(data, allow_unicode=True), twilio_api_base=sim.api_base)
        runtime = app.extensions["hotline"]
        http = RecordingHttpClient(sim.api_base)
        runtime._twilio = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
        with db.session() as s:
            client, _ = card.find_or_create_client(s, "+37255512345")
            card.update_client(s, client.id, zone="Europe/Tallinn", by="test")
        api = app.test_client()
        placed = api.post("/api/calls", json={"phone": "+37255512345"},
                          headers={"Authorization": "Bearer anna-token"})
        assert placed.status_code == 201, placed.json
        sid = placed.json["call_sid"]
        runtime.state.save_call(sid, {"sid": sid}, time.time())
        with app.test_request_context("/"):
            assert dispatch.connect_waiting_call("support", sid, time.time())
        assert [r.method for r in http.sent] == ["POST", "POST"]
        create, update = http.sent
        assert create.url.endswith(f"/Accounts/{ACCOUNT_SID}/Calls.json")
        assert update.url.endswith(f"/Calls/{sid}.json")
        for request in http.sent:
            assert_valid(twilio_spec, request)
    finally:
        server.shutdown()


def test_the_spec_check_catches_a_request_twilio_would_refuse(twilio_spec: Any) -> None:
    from openapi_core.exceptions import OpenAPIError

    bad = requests.Request("POST", f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
                           data={"From": "+3726140000", "Url": "https://example.com/voice"},
                           auth=(ACCOUNT_SID, AUTH_TOKEN)).prepare()
    with pytest.raises(OpenAPIError, match="To"):
        assert_valid(twilio_spec, bad)
