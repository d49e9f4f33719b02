"""`/api` answers odd input with a 4xx and a reason, never a 500, and hands agents no raw Twilio media URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recordings import card, db
from telephony.simulator import Simulator
from tests.conftest import ACCOUNT_SID

ADMIN = {"Authorization": "Bearer admin-token"}
SUPER = {"Authorization": "Bearer super-token"}
ANNA = {"Authorization": "Bearer anna-token"}
PHONE = "+3725123456"
TWILIO_MEDIA = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings"


@pytest.fixture
def app(make_app, twilio: Simulator):  # type: ignore[no-untyped-def]
    app = make_app(twilio_api_base=twilio.api_base)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a bug answers 500 here instead of raising into the test
    return app


@pytest.fixture
def api(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def kept_card(**fields: str | None) -> int:
    """A card for PHONE with Kadri's name, Tallinn's zone and a 10-16 window, plus `fields`."""
    values = {"zone": "Europe/Tallinn", "convenient_from": "10:00", "convenient_to": "16:00", **fields}
    with db.session() as s:
        client, _ = card.find_or_create_client(s, PHONE, language="et", name="Kadri")
        card.update_client(s, client.id, by="test", zone=values["zone"],
                           convenient_from=values["convenient_from"], convenient_to=values["convenient_to"])
        return client.id


def header(client_id: int) -> dict[str, object]:
    with db.session() as s:
        found = card.card(s, client_id)
        assert found is not None
        return {"name": found["name"], "language": found["language"], "zone": found["zone"],
                "window": (found["window"]["from"], found["window"]["to"])}


# --- 1. recordings: the sid and the console's player, never Twilio's URL ------------------------


def recorded_client() -> tuple[int, str, str]:
    client_id = kept_card()
    at = datetime.now(UTC)
    with db.session() as s:
        card.link_recording(s, sid="RE0000000000000000000000000000call", url=f"{TWILIO_MEDIA}/REcall",
                            call_sid="CAcall", client_id=client_id, at=at)
        card.create_voicemail(s, recording_sid="RE000000000000000000000000000voice", url=f"{TWILIO_MEDIA}/REvoice",
                              due_at=at + timedelta(hours=1), client_id=client_id, call_sid="CAvoice",
                              created_at=at)
    return client_id, "RE0000000000000000000000000000call", "RE000000000000000000000000000voice"


@pytest.mark.parametrize("who", [ANNA, SUPER, ADMIN], ids=["agent", "supervisor", "admin"])
def test_voicemails_name_the_recording_by_sid_and_console_path_not_twilio_url(api, who) -> None:  # type: ignore[no-untyped-def]
    _, _, voice_sid = recorded_client()
    response = api.get("/api/voicemails", headers=who)
    assert response.status_code == 200
    assert b"api.twilio.com" not in response.data
    (voicemail,) = response.json["voicemails"]
    assert "url" not in voicemail
    assert voicemail["recording_sid"] == voice_sid
    assert voicemail["recording_path"] == f"/console/recordings/{voice_sid}"


@pytest.mark.parametrize("who", [ANNA, ADMIN], ids=["agent", "admin"])
def test_timeline_names_recordings_by_sid_and_console_path_not_twilio_url(api, who) -> None:  # type: ignore[no-untyped-def]
    client_id, call_sid, voice_sid = recorded_client()
    response = api.get(f"/api/clients/{client_id}", headers=who)
    assert response.status_code == 200
    assert b"api.twilio.com" not in response.data
    by_kind = {e["kind"]: e["data"] for e in response.json["timeline"]}
    assert by_kind["recording_linked"]["sid"] == call_sid
    assert by_kind["recording_linked"]["recording_path"] == f"/console/recordings/{call_sid}"
    assert by_kind["voicemail_left"]["recording_sid"] == voice_sid
    assert by_kind["voicemail_left"]["recording_path"] == f"/console/recordings/{voice_sid}"
    with db.session() as s:  # the card itself keeps the URL: the console's player fetches from it
        events, _ = card.timeline(s, client_id)
        assert {e.kind: e.data["url"] for e in events if "url" in e.data} == {
            "recording_linked": f"{TWILIO_MEDIA}/REcall", "voicemail_left": f"{TWILIO_MEDIA}/REvoice"}


# --- 2. POST /api/clients for a number that has a card: only the named fields change ------------


def test_posting_a_known_number_keeps_the_fields_the_body_leaves_out(api) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card()
    response = api.post("/api/clients", json={"phone": PHONE}, headers=ANNA)
    assert response.status_code == 200 and response.json["id"] == client_id
    assert header(client_id) == {"name": "Kadri", "language": "et", "zone": "Europe/Tallinn",
                                 "window": ("10:00", "16:00")}


def test_posting_a_known_number_applies_name_and_language_too(api) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card()
    response = api.post("/api/clients", json={"phone": PHONE, "name": "Kadri Kask", "language": "ru",
                                              "convenient_to": "17:30"}, headers=ANNA)
    assert response.status_code == 200, response.json
    assert header(client_id) == {"name": "Kadri Kask", "language": "ru", "zone": "Europe/Tallinn",
                                 "window": ("10:00", "17:30")}
    with db.session() as s:
        kinds = [e.kind for e in card.timeline(s, client_id)[0]]
    assert kinds[:2] == ["client_updated", "language_changed"]  # on the card, by whom: like the console


def test_null_or_empty_clears_a_field_and_the_window_is_cleared_whole(api) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card()
    half = api.post("/api/clients", json={"phone": PHONE, "convenient_from": ""}, headers=ANNA)
    assert half.status_code == 400 and half.json["field"] == "convenient_from", half.json
    assert header(client_id)["window"] == ("10:00", "16:00")  # a refused body changes nothing
    cleared = api.post("/api/clients", json={"phone": PHONE, "convenient_from": "", "convenient_to": None,
                                             "zone": None}, headers=ANNA)
    assert cleared.status_code == 200, cleared.json
    assert header(client_id) == {"name": "Kadri", "language": "et", "zone": None, "window": (None, None)}


def test_a_new_card_with_half_a_window_is_refused_and_not_created(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/clients", json={"phone": PHONE, "convenient_from": "09:00"}, headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == "convenient_to"
    assert api.get("/api/clients", query_string={"phone": PHONE}, headers=ANNA).json["clients"] == []


def test_a_card_s_old_half_window_does_not_block_changing_other_fields(api) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card(convenient_to=None)
    response = api.post("/api/clients", json={"phone": PHONE, "name": "Kadri Kask"}, headers=ANNA)
    assert response.status_code == 200, response.json
    assert header(client_id)["name"] == "Kadri Kask" and header(client_id)["window"] == ("10:00", None)


def test_a_name_longer_than_the_column_is_a_400(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/clients", json={"phone": PHONE, "name": "K" * 201}, headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == "name"
    assert api.post("/api/clients", json={"phone": PHONE, "name": "K" * 200}, headers=ANNA).status_code == 201


# --- 3. purposes: /api/calls places agent calls only ----------------------------------------------


@pytest.mark.parametrize("who", [ANNA, ADMIN], ids=["agent", "admin"])
@pytest.mark.parametrize("purpose", ["requested_callback", "anything"])
def test_calls_refuse_a_purpose_other_than_agent_call(api, twilio: Simulator, who, purpose: str) -> None:  # type: ignore[no-untyped-def]
    kept_card(convenient_from="00:00", convenient_to="23:59")
    response = api.post("/api/calls", json={"phone": PHONE, "agent_id": "anna", "purpose": purpose}, headers=who)
    assert response.status_code == 400 and response.json["field"] == "purpose", response.json
    assert twilio.run_pending() == [] and not twilio.legs  # nothing reached Twilio


def test_outbound_check_takes_the_rules_purposes_only(api) -> None:  # type: ignore[no-untyped-def]
    kept_card()
    for purpose in ("requested_callback", "agent_call"):
        response = api.post("/api/outbound/check", json={"phone": PHONE, "purpose": purpose}, headers=ANNA)
        assert response.status_code == 200, (purpose, response.json)
    for path, payload in [("/api/outbound/check", {"phone": PHONE, "purpose": "vip"}),
                          ("/api/outbound/screen", {"phones": [PHONE], "purpose": "vip"})]:
        response = api.post(path, json=payload, headers=ADMIN)
        assert response.status_code == 400 and response.json["field"] == "purpose", response.json
        assert "requested_callback" in response.json["reason"]


# --- 4. HH:MM means exactly that -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["convenient_from", "convenient_to"])
def test_a_time_with_a_trailing_newline_is_refused_and_the_guard_keeps_working(api, field: str) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card()
    response = api.post("/api/clients", json={"phone": PHONE, field: "09:30\n"}, headers=ANNA)
    assert response.status_code == 400 and response.json["field"] == field
    assert header(client_id)["window"] == ("10:00", "16:00")
    assert api.post("/api/outbound/check", json={"phone": PHONE}, headers=ANNA).status_code == 200


def test_the_card_writer_refuses_a_time_with_a_trailing_newline(make_app) -> None:  # type: ignore[no-untyped-def]
    make_app()
    client_id = kept_card()
    with pytest.raises(ValueError, match="convenient_from"), db.session() as s:
        card.update_client(s, client_id, convenient_from="09:30\n", by="test")
    assert header(client_id)["window"] == ("10:00", "16:00")


# --- 5. ids, cursors and rules text out of range ---------------------------------------------------


@pytest.mark.parametrize(("method", "path", "payload", "field"), [
    ("post", "/api/voicemails/9223372036854775808/handled", None, "voicemail_id"),
    ("post", "/api/complaints/9223372036854775808/acknowledge", None, "complaint_id"),
    ("post", "/api/complaints/99999999999999999999/resolve", {"resolution": "x"}, "complaint_id"),
    ("post", "/api/complaints", {"client_id": 100000000000000000000, "summary": "rude"}, "client_id"),
    ("post", "/api/complaints", {"client_id": -100000000000000000000, "summary": "rude"}, "client_id"),
    ("get", "/api/clients/9223372036854775808", None, "client_id"),
])
def test_an_id_no_row_can_have_is_a_404_naming_it(api, method: str, path: str, payload, field: str) -> None:  # type: ignore[no-untyped-def]
    response = getattr(api, method)(path, json=payload, headers=ADMIN)
    assert response.status_code == 404, (response.status_code, response.data[:200])
    assert response.json["field"] == field


@pytest.mark.parametrize("cursor", ["100000000000000000000000-1", "-1", "99999999999999999999-1",
                                    "1-100000000000000000000", "x-1"])
def test_a_cursor_out_of_range_is_a_400(api, cursor: str) -> None:  # type: ignore[no-untyped-def]
    client_id = kept_card()
    response = api.get(f"/api/clients/{client_id}", query_string={"before": cursor}, headers=ANNA)
    assert response.status_code == 400, (response.status_code, response.data[:200])
    assert response.json["field"] == "before"


@pytest.mark.parametrize("text", ["\x00", "[" * 5000, "{" * 5000, "- " * 3000, "a: \x07"])
def test_rules_text_the_yaml_parser_cannot_take_is_a_422_with_a_reason(api, text: str) -> None:  # type: ignore[no-untyped-def]
    for method, path in [("post", "/api/rules/check"), ("put", "/api/rules")]:
        response = getattr(api, method)(path, data=text, headers=ADMIN)
        assert response.status_code == 422, (path, response.status_code, response.data[:200])
        (error,) = response.json["errors"]
        assert error["path"] == "<yaml>" and error["message"]
    assert api.get("/api/rules", headers=ADMIN).json["company"] == "Northwind Energy"  # nothing replaced


# --- 6. optional bodies: empty, or a JSON object ---------------------------------------------------


def open_voicemail_and_complaint() -> tuple[int, int]:
    client_id = kept_card()
    now = datetime.now(UTC)
    with db.session() as s:
        vm, _ = card.create_voicemail(s, recording_sid="RE" + "1" * 32, url=f"{TWILIO_MEDIA}/RE1",
                                      due_at=now + timedelta(hours=1), client_id=client_id, created_at=now)
        complaint, _ = card.open_complaint(s, client_id, summary="late", at=now)
        return vm.id, complaint.id


@pytest.mark.parametrize("raw", ['{"note": "called back"', '["called back"]', '"called back"', "note=called"])
def test_a_body_that_is_not_a_json_object_is_a_400_and_nothing_changes(api, raw: str) -> None:  # type: ignore[no-untyped-def]
    voicemail_id, complaint_id = open_voicemail_and_complaint()
    for path in (f"/api/voicemails/{voicemail_id}/handled", f"/api/complaints/{complaint_id}/resolve"):
        response = api.post(path, data=raw, content_type="application/json", headers=ADMIN)
        assert response.status_code == 400 and response.json["field"] == "body", (path, response.json)
    assert api.get("/api/voicemails?status=open", headers=ADMIN).json["voicemails"][0]["id"] == voicemail_id
    assert api.get("/api/complaints?status=open", headers=ADMIN).json["complaints"][0]["id"] == complaint_id


def test_an_empty_body_is_no_note_and_an_object_keeps_it(api) -> None:  # type: ignore[no-untyped-def]
    voicemail_id, complaint_id = open_voicemail_and_complaint()
    handled = api.post(f"/api/voicemails/{voicemail_id}/handled", headers=ANNA)
    assert handled.status_code == 200 and handled.json["note"] is None
    resolved = api.post(f"/api/complaints/{complaint_id}/resolve", json={"resolution": "apologised"},
                        headers=SUPER)
    assert resolved.status_code == 200 and resolved.json["resolution"] == "apologised"


# --- 7. the OpenAPI document says what the API does ----------------------------------------------


def test_a_card_response_matches_the_documented_card_schema(api) -> None:  # type: ignore[no-untyped-def]
    from jsonschema import Draft202012Validator  # schemathesis' own dependency

    from webhooks.openapi import OPENAPI

    response = api.post("/api/clients", json={"phone": PHONE, "name": "Kadri"}, headers=ANNA)
    assert response.status_code == 201 and response.json["numbers"] == [{"e164": PHONE, "label": None}]
    card_schema = Draft202012Validator({**OPENAPI, "$ref": "#/components/schemas/Card"})
    assert list(card_schema.iter_errors(response.json)) == []
    assert not Draft202012Validator({**OPENAPI, "$ref": "#/components/schemas/Card"}).is_valid(
        {**response.json, "numbers": [PHONE]})  # the old declaration (strings) is now refused: the check bites


def test_every_api_operation_documents_the_rate_limit_429(make_app) -> None:  # type: ignore[no-untyped-def]
    from webhooks.openapi import OPENAPI

    operations = [(path, method, op) for path, item in OPENAPI["paths"].items()
                  for method, op in item.items() if method != "parameters"]
    assert len(operations) >= 15
    for path, method, op in operations:
        assert op["responses"]["429"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}, (method, path)
    client = make_app(api_rate_limit="1/60").test_client()
    client.get("/api/agents", headers=ANNA)
    limited = client.get("/api/agents", headers=ANNA)
    assert limited.status_code == 429 and set(limited.json) <= set(OPENAPI["components"]["schemas"]["Error"][
        "properties"])
