"""The REST API: tokens and roles, cards by any number format, and guarded outbound calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from recordings import card, db
from telephony.simulator import Simulator
from tests.conftest import always_open_rules

ADMIN = {"Authorization": "Bearer admin-token"}
ANNA = {"Authorization": "Bearer anna-token"}
MART = {"Authorization": "Bearer mart-token"}


@pytest.fixture
def api(make_app, twilio: Simulator):  # type: ignore[no-untyped-def]
    return make_app(twilio_api_base=twilio.api_base).test_client()


def test_no_token_is_401_and_a_wrong_one_too(api) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/api/agents").status_code == 401
    assert api.get("/api/agents", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_agent_sets_own_status_but_not_another_agents(api) -> None:  # type: ignore[no-untyped-def]
    response = api.put("/api/agents/anna/status", json={"status": "away"}, headers=ANNA)
    assert response.status_code == 200 and response.json["status"] == "away"
    assert response.json["previous"] == "available"
    assert api.put("/api/agents/anna/status", json={"status": "away"}, headers=MART).status_code == 403
    assert api.get("/api/agents/anna/status", headers=MART).json["status"] == "away"


def test_status_must_be_one_a_person_may_choose(api) -> None:  # type: ignore[no-untyped-def]
    response = api.put("/api/agents/anna/status", json={"status": "on_call"}, headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == "status"
    assert api.put("/api/agents/nobody/status", json={"status": "away"}, headers=ADMIN).status_code == 404


@pytest.mark.parametrize("written", ["+372 5551 2345", "+37255512345", "5551 2345", "(+372) 555-12-345"])
def test_client_is_found_by_any_number_format(api, written: str) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        card.find_or_create_client(s, "+37255512345", name="Kadri")
    response = api.get("/api/clients", query_string={"phone": written}, headers=ANNA)
    assert response.status_code == 200
    assert [c["name"] for c in response.json["clients"]] == ["Kadri"]


def test_bad_phone_is_a_400_naming_the_field(api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/api/clients", query_string={"phone": "hello"}, headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == "phone"


def test_card_timeline_is_newest_first_and_paginated(api) -> None:  # type: ignore[no-untyped-def]
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    with db.session() as s:
        client, _ = card.find_or_create_client(s, "+37255512345")
        for minute in range(5):
            card.add_note(s, client.id, f"note {minute}", by="test", at=start + timedelta(minutes=minute))
        client_id = client.id
    first = api.get(f"/api/clients/{client_id}", query_string={"limit": 2}, headers=ANNA).json
    assert [e["data"]["text"] for e in first["timeline"]] == ["note 4", "note 3"]
    second = api.get(f"/api/clients/{client_id}", query_string={"limit": 2, "before": first["next"]},
                     headers=ANNA).json
    assert [e["data"]["text"] for e in second["timeline"]] == ["note 2", "note 1"]
    assert api.get(f"/api/clients/{client_id}", query_string={"limit": 0}, headers=ANNA).status_code == 400


def test_call_to_an_opted_out_client_is_409_and_on_the_card(api, twilio: Simulator) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        client, _ = card.find_or_create_client(s, "+37255512345")
        card.opt_out_client(s, client.id, source="agent", reason="asked", by="test")
    response = api.post("/api/calls", json={"phone": "+37255512345"}, headers=ANNA)
    assert response.status_code == 409
    assert response.json["reason"] == "opted_out_client" and response.json["next_allowed_at"] is None
    with db.session() as s:
        events, _ = card.timeline(s, card.find_client_by_phone(s, "+37255512345").id)
        assert events[0].kind == "outbound_blocked"
    assert twilio.run_pending() == []  # nothing reached Twilio


def test_allowed_call_is_placed_through_twilio_agent_first(make_app, twilio: Simulator,  # type: ignore[no-untyped-def]
                                                          example_rules_text: str) -> None:
    data = yaml.safe_load(always_open_rules(example_rules_text))
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    data["outbound"].setdefault("countries", {})["EE"] = {
        "hours": [{"days": every_day, "open": "00:00", "close": "24:00"}], "on_holiday": "open",
        "source": "test: callable around the clock"}
    api = make_app(yaml.safe_dump(data, allow_unicode=True), twilio_api_base=twilio.api_base).test_client()
    with db.session() as s:
        client, _ = card.find_or_create_client(s, "+37255512345")
        card.update_client(s, client.id, zone="Europe/Tallinn", convenient_from="00:00", convenient_to="23:59",
                           by="test")
    check = api.post("/api/outbound/check", json={"phone": "+37255512345", "at": "2026-11-25T10:00:00+02:00"},
                     headers=ANNA)
    assert check.status_code == 200 and check.json["allowed"] is True
    response = api.post("/api/calls", json={"phone": "+37255512345"}, headers=ANNA)
    assert response.status_code == 201, response.json
    sid = response.json["call_sid"]
    assert sid.startswith("CA")
    assert twilio.legs[sid].to == "+37251234567"  # anna's phone rings first, then the bridge dials the client


def test_outbound_check_needs_an_offset_on_at(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/outbound/check", json={"phone": "+37255512345", "at": "2026-11-25T10:00:00"},
                        headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == "at"


def test_agents_cannot_replace_rules(api, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    assert api.put("/api/rules", data=example_rules_text, headers=ANNA).status_code == 403
    bad = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 99", 1)
    response = api.put("/api/rules", data=bad, headers=ADMIN)
    assert response.status_code == 422
    assert any(e["path"] == "queues.support.answer_within_rings" for e in response.json["errors"])


def documented(path: str, method: str, status: int, body: object) -> list[str]:
    """What is wrong with `body` as the OpenAPI document's answer of that operation and status."""
    from jsonschema import Draft202012Validator  # schemathesis' own dependency

    from webhooks.openapi import OPENAPI

    schema = OPENAPI["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return [error.message for error in Draft202012Validator({**OPENAPI, **schema}).iter_errors(body)]


def test_rules_check_names_a_ring_target_twilio_cannot_keep_and_still_accepts_it(  # type: ignore[no-untyped-def]
        api, example_rules_text: str) -> None:
    one_ring = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    response = api.post("/api/rules/check", data=one_ring, headers=ADMIN)
    assert response.status_code == 200, response.json
    assert response.json == {"ok": True, "errors": [], "warnings": [{
        "path": "queues.support.answer_within_rings",
        "message": "1 ring of 5 s (5 s) is shorter than Twilio's shortest dial (5 s timeout + 5 s buffer = "
                   "10 s): agents will ring about 10 s (2 rings)"}]}
    assert documented("/rules/check", "post", 200, response.json) == []
    normal = api.post("/api/rules/check", data=example_rules_text, headers=ADMIN)
    assert normal.status_code == 200 and normal.json == {"ok": True, "errors": [], "warnings": []}
    assert documented("/rules/check", "post", 200, normal.json) == []


def test_saving_rules_with_a_warning_saves_them_and_returns_the_warning(api, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    one_ring = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    saved = api.put("/api/rules", data=one_ring, headers=ADMIN)
    assert saved.status_code == 200, saved.json
    assert saved.json["ok"] is True and isinstance(saved.json["version"], int)
    assert [w["path"] for w in saved.json["warnings"]] == ["queues.support.answer_within_rings"]
    assert documented("/rules", "put", 200, saved.json) == []
    assert api.get("/api/rules", headers=ADMIN).json["queues"]["support"]["answer_within_rings"] == 1
    assert documented("/rules", "put", 200, {**saved.json, "warnings": "none"}) != []  # the check bites

    broken = one_ring.replace("strategy: round_robin", "strategy: fastest", 1)
    refused = api.put("/api/rules", data=broken, headers=ADMIN)
    assert refused.status_code == 422
    assert [e["path"] for e in refused.json["errors"]] == ["queues.billing.strategy"]
    assert refused.json["warnings"] == []  # a broken field: the rules are not judged further
    assert documented("/rules", "put", 422, refused.json) == []
    checked = api.post("/api/rules/check", data=broken, headers=ADMIN)
    assert checked.status_code == 422 and documented("/rules/check", "post", 422, checked.json) == []
    restored = api.put("/api/rules", data=example_rules_text, headers=ADMIN)
    assert restored.status_code == 200 and restored.json["warnings"] == []


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("get", "/api/voicemails?limit=%C2%B2", None, "limit"),
        ("post", "/api/clients", {"phone": "+37255512345", "language": ["en"]}, "language"),
        ("post", "/api/clients", {"phone": "+37255512345", "convenient_from": "garbage"}, "convenient_from"),
        ("post", "/api/clients", {"phone": "+37255512345", "name": ["x"]}, "name"),
        ("post", "/api/calls", {"phone": "+37255512345", "agent_id": ["anna"]}, "agent_id"),
        ("post", "/api/outbound/check", {"phone": "+37255512345", "purpose": 7}, "purpose"),
        ("post", "/api/outbound/check", {"phone": "+37255512345", "at": "0001-01-01T00:00:00+01:00"}, "at"),
        ("post", "/api/outbound/check", {"phone": "+37255512345", "at": "9999-12-31T23:00:00+00:00"}, "at"),
        ("post", "/api/opt-outs", {"phone": "+37255512345", "source": "web"}, "source"),
        ("post", "/api/opt-outs", {"phone": "+37255512345", "reason": {"a": 1}}, "reason"),
        ("post", "/api/clients/1/opt-out", ["not", "an", "object"], "body"),
        ("get", "/api/reports/service-level?from=0001-01-01&to=2026-11-25", None, "from"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, method: str, path: str, payload, field: str) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        card.find_or_create_client(s, "+37255512345")
    response = getattr(api, method)(path, json=payload, headers=ADMIN) if payload is not None else \
        getattr(api, method)(path, headers=ADMIN)
    assert response.status_code == 400, (response.status_code, response.json)
    assert response.json["field"] == field
