"""`/api` for complaints, voicemails, callbacks, overdue counts and prompt recordings."""

from __future__ import annotations

import io
import re
import wave
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recordings import card, db

CALLER = "+37255512345"
ADMIN = {"Authorization": "Bearer admin-token"}
SUPER = {"Authorization": "Bearer super-token"}
ANNA = {"Authorization": "Bearer anna-token"}


@pytest.fixture
def app(make_app):  # type: ignore[no-untyped-def]
    return make_app()


@pytest.fixture
def api(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def new_client(e164: str = CALLER) -> int:
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164)
        return client.id


def timeline_kinds(client_id: int) -> list[str]:
    with db.session() as s:
        return [e.kind for e in card.timeline(s, client_id)[0]]


# --- complaints -----------------------------------------------------------------------------


def test_agent_opens_a_complaint_and_a_supervisor_acknowledges_and_resolves_it(api) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    response = api.post("/api/complaints", json={"client_id": client_id, "summary": " Rude agent "}, headers=ANNA)
    assert response.status_code == 201, response.json
    opened = response.json
    assert opened["summary"] == "Rude agent" and opened["opened_by"] == "anna"
    assert opened["queue"] == "complaints" and opened["status"] == "open" and opened["overdue"] is False
    at = datetime.fromisoformat(opened["opened_at"])
    assert datetime.fromisoformat(opened["ack_due_at"]) - at == timedelta(minutes=60)
    assert datetime.fromisoformat(opened["resolve_due_at"]) - at == timedelta(hours=72)

    listed = api.get("/api/complaints?status=open", headers=SUPER).json["complaints"]
    assert [c["id"] for c in listed] == [opened["id"]]
    assert api.get("/api/complaints", headers=ANNA).status_code == 403
    assert api.post(f"/api/complaints/{opened['id']}/acknowledge", headers=ANNA).status_code == 403

    acked = api.post(f"/api/complaints/{opened['id']}/acknowledge", headers=SUPER).json
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "supervisor"
    assert api.get("/api/complaints?status=open", headers=SUPER).json["complaints"] == []
    resolved = api.post(f"/api/complaints/{opened['id']}/resolve", json={"resolution": "apologised"},
                        headers=SUPER).json
    assert resolved["status"] == "resolved" and resolved["resolution"] == "apologised"
    assert [c["id"] for c in api.get("/api/complaints?status=resolved", headers=SUPER).json["complaints"]] == [
        opened["id"]]
    assert timeline_kinds(client_id)[:3] == ["complaint_resolved", "complaint_acknowledged", "complaint_opened"]


def test_overdue_complaints_are_listed(api) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    with db.session() as s:
        late, _ = card.open_complaint(s, client_id, summary="late", at=datetime.now(UTC) - timedelta(hours=2),
                                      ack_within=timedelta(minutes=60))
        card.open_complaint(s, client_id, summary="fresh", call_sid="CA-fresh", at=datetime.now(UTC))
    overdue = api.get("/api/complaints?status=overdue", headers=SUPER).json["complaints"]
    assert [(c["id"], c["overdue"]) for c in overdue] == [(late.id, True)]


@pytest.mark.parametrize(("payload", "field", "status"), [
    ({"summary": "x"}, "client_id", 400),
    ({"client_id": "1", "summary": "x"}, "client_id", 400),
    ({"client_id": 1, "summary": "  "}, "summary", 400),
    ({"client_id": 999, "summary": "x"}, "client_id", 404),
])
def test_bad_complaint_input_names_the_field(api, payload: dict[str, Any], field: str, status: int) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/complaints", json=payload, headers=ANNA)
    assert response.status_code == status and response.json["field"] == field


def test_unknown_complaint_or_filter_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/api/complaints/999/resolve", headers=SUPER).status_code == 404
    bad = api.get("/api/complaints?status=late", headers=SUPER)
    assert bad.status_code == 400 and bad.json["field"] == "status"


# --- voicemails and callbacks ---------------------------------------------------------------


def voicemail(client_id: int | None, sid: str, created: datetime, due: datetime) -> int:
    with db.session() as s:
        vm, _ = card.create_voicemail(s, recording_sid=sid, url=f"https://api.twilio.com/r/{sid}", due_at=due,
                                      client_id=client_id, queue="support", created_at=created)
        return vm.id


def test_voicemails_list_by_status_and_handled_goes_on_the_card(api) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    client_id = new_client()
    overdue_id = voicemail(client_id, "RE-late", now - timedelta(hours=5), now - timedelta(hours=1))
    open_id = voicemail(None, "RE-fresh", now, now + timedelta(hours=4))  # anonymous caller
    assert [v["id"] for v in api.get("/api/voicemails", headers=ANNA).json["voicemails"]] == [overdue_id, open_id]
    overdue = api.get("/api/voicemails?status=overdue", headers=ANNA).json["voicemails"]
    assert [(v["id"], v["overdue"]) for v in overdue] == [(overdue_id, True)]

    handled = api.post(f"/api/voicemails/{overdue_id}/handled", json={"note": "called back"}, headers=ANNA)
    assert handled.status_code == 200
    assert handled.json["status"] == "handled" and handled.json["handled_by"] == "anna"
    assert [v["id"] for v in api.get("/api/voicemails?status=handled", headers=ANNA).json["voicemails"]] == [
        overdue_id]
    assert api.get("/api/voicemails?status=overdue", headers=ANNA).json["voicemails"] == []
    with db.session() as s:
        (event,) = [e for e in card.timeline(s, client_id)[0] if e.kind == "voicemail_handled"]
        assert event.data["by"] == "anna" and event.data["late"] is True and event.data["note"] == "called back"
    assert api.post(f"/api/voicemails/{open_id}/handled", headers=ANNA).status_code == 200  # no body needed
    assert api.post("/api/voicemails/999/handled", headers=ANNA).status_code == 404
    assert api.get("/api/voicemails").status_code == 401
    assert api.get("/api/voicemails?status=all", headers=ANNA).json["field"] == "status"


def test_callbacks_list_open_overdue_and_by_status(api) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    first, second = new_client("+37255500001"), new_client("+37255500002")
    with db.session() as s:
        late, _ = card.request_callback(s, first, "+37255500001", "support", at=now - timedelta(hours=2),
                                        due_at=now - timedelta(hours=1))
        fresh, _ = card.request_callback(s, second, "+37255500002", "billing", at=now,
                                         due_at=now + timedelta(hours=1))
    assert [c["id"] for c in api.get("/api/callbacks", headers=ANNA).json["callbacks"]] == [late.id, fresh.id]
    assert [c["id"] for c in api.get("/api/callbacks?status=overdue", headers=ANNA).json["callbacks"]] == [late.id]
    with db.session() as s:
        card.complete_callback(s, late.id, agent_id="anna", at=now)
    assert [c["id"] for c in api.get("/api/callbacks?status=completed", headers=ANNA).json["callbacks"]] == [
        late.id]
    counts = api.get("/api/overdue", headers=SUPER).json
    assert counts == {"voicemails": 0, "callbacks": 0, "complaints": 0, "alerts_unsent": 0}


# --- prompt recordings ----------------------------------------------------------------------


def wav_bytes(rate: int = 8000, width: int = 2, channels: int = 1, seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x01\x00" * (width // 2 or 1) * channels * int(rate * seconds))
    return out.getvalue()


@pytest.mark.parametrize(("path", "data", "field", "reason"), [
    ("/api/audio/et/greeting_morning.wav", b"ID3\x03not audio at all", "body", "not a PCM WAV file"),
    ("/api/audio/et/greeting_morning.wav", b"", "body", "empty"),
    ("/api/audio/et/greeting_morning.wav", wav_bytes(width=3), "body", "24-bit samples"),
    ("/api/audio/et/greeting_morning.wav", wav_bytes(rate=96000), "body", "96000 Hz"),
    ("/api/audio/et/greeting_morning.wav", wav_bytes(channels=6), "body", "6 channels"),
    ("/api/audio/et/greeting_morning.wav", wav_bytes(seconds=0), "body", "no audio"),
    ("/api/audio/et/hello_world.wav", wav_bytes(), "key", "not a prompt key"),
    ("/api/audio/et/greeting_morning.mp3", wav_bytes(), "key", "a prompt file name"),
    ("/api/audio/fi/greeting_morning.wav", wav_bytes(), "lang", "one of en, ru, pl, et"),
])
def test_a_bad_upload_is_refused_with_the_reason(api, path: str, data: bytes, field: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    response = api.put(path, data=data, headers={**ADMIN, "Content-Type": "audio/wav"})
    assert response.status_code == 400
    assert response.json["field"] == field and reason in response.json["reason"]


def test_an_oversized_upload_is_refused_before_reading_it(api) -> None:  # type: ignore[no-untyped-def]
    response = api.put("/api/audio/et/greeting_morning.wav", data=b"\0" * (5 * 1024 * 1024 + 1), headers=ADMIN)
    assert response.status_code == 413 and "5 MB" in response.json["reason"]


def test_only_admins_upload(api) -> None:  # type: ignore[no-untyped-def]
    for headers in (SUPER, ANNA):
        assert api.put("/api/audio/et/menu.wav", data=wav_bytes(), headers=headers).status_code == 403


def test_an_uploaded_recording_is_served_before_the_shipped_one(api, app) -> None:  # type: ignore[no-untyped-def]
    shipped = api.get("/audio/et/greeting_morning.wav").data
    mine = wav_bytes(seconds=1.0)
    first = api.put("/api/audio/et/greeting_morning.wav", data=mine, headers=ADMIN)
    assert first.status_code == 201, first.json
    assert first.json == {"lang": "et", "key": "greeting_morning", "url": "/audio/et/greeting_morning.wav",
                          "seconds": 1.0, "sample_rate": 8000, "channels": 1}
    served = api.get("/audio/et/greeting_morning.wav")
    assert served.status_code == 200 and served.data == mine and served.data != shipped
    assert (app.extensions["hotline"].settings.data_dir / "audio" / "et" / "greeting_morning.wav").read_bytes() == mine
    assert api.put("/api/audio/et/greeting_morning.wav", data=wav_bytes(), headers=ADMIN).status_code == 200
    assert api.get("/audio/et/greeting_evening.wav").data[:4] == b"RIFF"  # others: still shipped
    listing = api.get("/api/audio/et", headers=ADMIN).json
    sources = {f["key"]: f["source"] for f in listing["files"]}
    assert sources["greeting_morning"] == "uploaded" and sources["menu_queue_option_1"] == "shipped"
    assert listing["missing"] == []


# --- the OpenAPI document stays true --------------------------------------------------------


def test_every_service_endpoint_is_in_the_openapi_document(app, api) -> None:  # type: ignore[no-untyped-def]
    paths = api.get("/api/openapi.json").json["paths"]
    routes = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("service_api.")]
    assert len(routes) >= 10
    for rule in routes:
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule).removeprefix("/api")
        path = path.replace("{filename}", "{file}")
        assert path in paths, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], (method, path)
