"""The web console through Flask's test client: login, roles, CSRF, every page and its rule."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from recordings import card, db, rules_versions
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, Voice
from tests.console_support import USERS, add_users, csrf, login, post

EE_CALLER = "+37255512345"

SUPERVISOR_PAGES = ["/console/dashboard", "/console/dashboard/live", "/console/rules", "/console/rules/explain"]
ADMIN_PAGES = ["/console/rules/edit", "/console/admin/agents", "/console/admin/queues", "/console/admin/users"]
AGENT_PAGES = ["/console/cards", "/console/agent/anna", "/console/agent/anna/current"]


@pytest.fixture
def app(make_app):  # type: ignore[no-untyped-def]
    app = make_app()
    add_users()
    return app


@pytest.fixture
def as_user(app) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    def client_for(username: str):  # type: ignore[no-untyped-def]
        client = app.test_client()
        response = login(client, username)
        assert response.status_code == 302, response.data
        return client

    yield client_for


def runtime(app) -> Any:  # type: ignore[no-untyped-def]
    return app.extensions["hotline"]


def new_client(e164: str = EE_CALLER, name: str | None = "Maria Tamm") -> int:
    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164, name=name)
        return client.id


def kinds(client_id: int) -> list[str]:
    with db.session() as s:
        events, _ = card.timeline(s, client_id, limit=100)
        return [e.kind for e in events]


# --- login and sessions -------------------------------------------------------------------------


def test_login_page_renders_with_a_csrf_field(app) -> None:  # type: ignore[no-untyped-def]
    page = app.test_client().get("/console/login")
    assert page.status_code == 200
    assert b'name="csrf_token"' in page.data and b'name="password"' in page.data


def test_every_page_sends_an_anonymous_visitor_to_login(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for path in ["/console/", *SUPERVISOR_PAGES, *ADMIN_PAGES, *AGENT_PAGES, "/console/recordings/RE1"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/console/login?next="), path


def test_wrong_password_is_refused_and_says_nothing_of_which_part(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for username in ("admin", "nobody"):
        response = login(client, username, "wrong-password")
        assert response.status_code == 401
        assert b"Wrong username or password." in response.data
    assert client.get("/console/dashboard").status_code == 302


def test_login_is_rate_limited_per_username_and_address(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    for _ in range(10):
        assert login(client, "super", "wrong-password").status_code == 401
    refused = login(client, "super")  # even the right password waits out the window
    assert refused.status_code == 429
    assert login(client, "admin").status_code == 302  # another username is not locked out


def test_each_role_lands_on_its_home_page(as_user) -> None:  # type: ignore[no-untyped-def]
    assert as_user("admin").get("/console/").headers["Location"] == "/console/dashboard"
    assert as_user("super").get("/console/").headers["Location"] == "/console/dashboard"
    agent = as_user("anna")
    assert agent.get("/console/").headers["Location"] == "/console/agent"
    assert agent.get("/console/agent").headers["Location"] == "/console/agent/anna"


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    assert login(client, "super", next="/console/rules").headers["Location"] == "/console/rules"
    other = app.test_client()
    assert login(other, "super", next="https://evil.example/").headers["Location"] == "/console/"


def test_logout_ends_the_session(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("super")
    assert post(client, "/console/logout").status_code == 302
    assert client.get("/console/dashboard").status_code == 302


def test_a_password_reset_ends_existing_sessions(app, as_user) -> None:  # type: ignore[no-untyped-def]
    from webhooks.console.users import ensure_user

    client = as_user("super")
    assert client.get("/console/dashboard").status_code == 200
    assert ensure_user("super", "a-new-password", "supervisor") is False
    assert client.get("/console/dashboard").status_code == 302


def test_ensure_user_creates_then_updates_and_checks_its_input(app) -> None:  # type: ignore[no-untyped-def]
    from webhooks.console.users import authenticate, ensure_user

    assert ensure_user("olga", "olga-password", "agent", "olga") is True
    assert ensure_user("olga", "olga-password-2", "supervisor") is False
    account = authenticate("olga", "olga-password-2")
    assert account is not None and account.role == "supervisor" and account.agent_id is None
    assert authenticate("olga", "olga-password") is None
    with pytest.raises(ValueError, match="at least 8"):
        ensure_user("x", "short", "admin")
    with pytest.raises(ValueError, match="role"):
        ensure_user("x", "long-enough-1", "boss")
    with pytest.raises(ValueError, match="agent id"):
        ensure_user("x", "long-enough-1", "agent")


def test_cli_adds_a_user_with_the_password_from_stdin(app, db: str, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from webhooks.cli import main
    from webhooks.console.users import authenticate

    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path / "cli"))
    result = CliRunner().invoke(main, ["users", "add", "liis", "--role", "supervisor", "--password-stdin"],
                                input="liis-password\n")
    assert result.exit_code == 0, result.output
    assert "created supervisor liis" in result.output
    assert authenticate("liis", "liis-password") is not None


# --- roles --------------------------------------------------------------------------------------


def test_admin_opens_every_page(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("admin")
    for path in [*SUPERVISOR_PAGES, *ADMIN_PAGES, *AGENT_PAGES]:
        assert client.get(path).status_code == 200, path


def test_supervisor_opens_supervisor_pages_but_not_admin_pages(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("super")
    for path in [*SUPERVISOR_PAGES, *AGENT_PAGES]:
        assert client.get(path).status_code == 200, path
    for path in ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 403, path
        assert b"needs the admin role" in response.data


def test_agent_cannot_open_admin_or_supervisor_pages(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("anna")
    for path in [*SUPERVISOR_PAGES, *ADMIN_PAGES]:
        assert client.get(path).status_code == 403, path
    for path in AGENT_PAGES:
        assert client.get(path).status_code == 200, path


def test_agent_cannot_use_another_agents_controls(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("anna")
    assert client.get("/console/agent/mart").status_code == 403
    assert client.get("/console/agent/mart/current").status_code == 403
    assert post(client, "/console/agent/mart/status", {"status": "away"}).status_code == 403
    assert post(client, "/console/agent/mart/call", {"phone": EE_CALLER}).status_code == 403
    assert post(client, "/console/admin/agents/mart/status", {"status": "away"}).status_code == 403
    (mart,) = runtime(app).state.snapshot(["mart"], time.time())
    assert mart.status == "available"


def test_agent_cannot_post_to_admin_or_supervisor_actions(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("anna")
    assert post(client, "/console/rules/edit", {"text": "x", "action": "save"}).status_code == 403
    assert post(client, "/console/rules/versions/1/rollback").status_code == 403
    assert post(client, "/console/opt-outs/1/withdraw").status_code == 403


# --- CSRF ---------------------------------------------------------------------------------------


def test_a_form_without_the_csrf_token_is_rejected_and_changes_nothing(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    client = as_user("anna")
    response = client.post(f"/console/cards/{client_id}/notes", data={"text": "sneaky", "kind": "note"})
    assert response.status_code == 400
    assert b"security token" in response.data
    forged = client.post("/console/agent/anna/status", data={"status": "away", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert "note" not in kinds(client_id)
    assert runtime(app).state.snapshot(["anna"], time.time())[0].status == "available"


def test_login_without_the_csrf_token_is_rejected(app) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    response = client.post("/console/login", data={"username": "admin", "password": USERS["admin"][0]})
    assert response.status_code == 400
    assert client.get("/console/dashboard").status_code == 302


def test_api_honours_the_console_session_and_needs_the_csrf_header_to_write(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    client = as_user("anna")
    assert client.get("/api/agents").status_code == 200
    no_header = client.post(f"/api/clients/{client_id}/notes", json={"text": "via api"})
    assert no_header.status_code == 401
    with_header = client.post(f"/api/clients/{client_id}/notes", json={"text": "via api"},
                              headers={"X-CSRF-Token": csrf(client)})
    assert with_header.status_code == 201
    assert with_header.json["data"]["by"] == "anna"
    assert app.test_client().get("/api/agents").status_code == 401  # no session, no token


# --- rules --------------------------------------------------------------------------------------


def rules_path(app) -> Any:  # type: ignore[no-untyped-def]
    return runtime(app).settings.rules_path


def test_rules_with_an_error_show_the_field_path_and_nothing_is_saved(app, as_user) -> None:  # type: ignore[no-untyped-def]
    before = rules_path(app).read_text()
    broken = before.replace("answer_within_rings: 3", "answer_within_rings: 99", 1)
    assert broken != before
    client = as_user("admin")
    response = post(client, "/console/rules/edit", {"text": broken, "action": "save", "comment": "too many"})
    assert response.status_code == 422
    assert b"queues.support.answer_within_rings" in response.data
    assert b"nothing was saved" in response.data
    assert rules_path(app).read_text() == before
    with db.session() as s:
        assert rules_versions.list_versions(s) == []


@pytest.mark.parametrize("text", ["\x00", "[" * 5000, "version: 1\nx: " + "1" * 5000],
                         ids=["NUL", "nested too deep", "huge integer"])
def test_rules_the_yaml_parser_cannot_take_are_an_error_on_the_page_not_a_500(app, as_user, text: str) -> None:  # type: ignore[no-untyped-def]
    before = rules_path(app).read_text()
    for action in ("check", "save"):
        response = post(as_user("admin"), "/console/rules/edit", {"text": text, "action": action})
        assert response.status_code == 422, (action, response.status_code)
    assert rules_path(app).read_text() == before


def test_check_only_validates_without_saving(app, as_user) -> None:  # type: ignore[no-untyped-def]
    before = rules_path(app).read_text()
    changed = before.replace("answer_within_rings: 3", "answer_within_rings: 4", 1)
    response = post(as_user("admin"), "/console/rules/edit", {"text": changed, "action": "check"})
    assert response.status_code == 200
    assert b"The rules are valid" in response.data
    assert rules_path(app).read_text() == before


ONE_RING_WARNING = (b"queues.support.answer_within_rings</code>: 1 ring of 5 s (5 s) is shorter than "
                    b"Twilio&#39;s shortest dial")


def test_check_only_shows_a_ring_target_twilio_cannot_keep_as_a_warning(app, as_user) -> None:  # type: ignore[no-untyped-def]
    before = rules_path(app).read_text()
    one_ring = before.replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    response = post(as_user("admin"), "/console/rules/edit", {"text": one_ring, "action": "check"})
    assert response.status_code == 200
    assert b"The rules are valid" in response.data and b'id="rules-errors"' not in response.data
    assert b'id="rules-warnings"' in response.data and b"1 warning " in response.data
    assert ONE_RING_WARNING in response.data
    assert rules_path(app).read_text() == before
    normal = post(as_user("admin"), "/console/rules/edit", {"text": before, "action": "check"})
    assert b'id="rules-warnings"' not in normal.data


def test_saving_rules_with_a_warning_saves_them_and_shows_the_warning(app, as_user) -> None:  # type: ignore[no-untyped-def]
    one_ring = rules_path(app).read_text().replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    client = as_user("admin")
    response = post(client, "/console/rules/edit", {"text": one_ring, "action": "save"},
                    follow_redirects=True)
    assert response.status_code == 200
    assert b"The new rules are live" in response.data
    assert b"Warning: queues.support.answer_within_rings: 1 ring of 5 s" in response.data
    assert rules_path(app).read_text() == one_ring
    assert runtime(app).rules.current().queues["support"].answer_within_rings == 1
    editor = client.get("/console/rules/edit")  # the live rules' warning shows before any edit
    assert ONE_RING_WARNING in editor.data
    queues = client.get("/console/admin/queues").get_data(as_text=True)  # and the queues page flags it
    assert "shorter than Twilio's shortest dial: agents ring about 10 s" in queues


def test_saving_rules_goes_live_keeps_versions_and_rolls_back(app, as_user) -> None:  # type: ignore[no-untyped-def]
    original = rules_path(app).read_text()
    changed = original.replace("answer_within_rings: 3", "answer_within_rings: 4", 1)
    client = as_user("admin")
    response = post(client, "/console/rules/edit", {"text": changed, "action": "save", "comment": "one more ring"})
    assert response.status_code == 302
    assert rules_path(app).read_text() == changed
    assert runtime(app).rules.current().queues["support"].answer_within_rings == 4
    with db.session() as s:
        first, second = sorted(rules_versions.list_versions(s), key=lambda v: v.id)
    assert (first.text, first.created_by) == (original, "file")
    assert (second.created_by, second.comment) == ("admin", "one more ring")
    page = client.get(f"/console/rules/versions/{second.id}")
    assert page.status_code == 200
    assert b"-    answer_within_rings: 3" in page.data and b"+    answer_within_rings: 4" in page.data
    listing = client.get("/console/rules")
    assert b"one more ring" in listing.data
    rolled = post(client, f"/console/rules/versions/{first.id}/rollback")
    assert rolled.status_code == 302
    assert rules_path(app).read_text() == original
    assert runtime(app).rules.current().queues["support"].answer_within_rings == 3
    with db.session() as s:
        latest = rules_versions.list_versions(s)[0]
    assert latest.comment == f"roll back to version {first.id}" and latest.text == original


def test_supervisor_sees_versions_but_cannot_roll_back(app, as_user) -> None:  # type: ignore[no-untyped-def]
    with db.session() as s:
        version = rules_versions.record_version(s, rules_path(app).read_text(), "admin", "baseline")
    client = as_user("super")
    assert client.get(f"/console/rules/versions/{version.id}").status_code == 200
    assert post(client, f"/console/rules/versions/{version.id}/rollback").status_code == 403
    assert client.get("/console/rules/versions/999").status_code == 404


def test_explain_page_narrates_a_call_without_placing_one(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("super")
    response = client.get("/console/rules/explain",
                          query_string={"phone": "+48 601 234 567", "at": "2026-11-24T10:00", "digits": "1"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="explain-outcome">dial' in page
    assert "pl — the number is from PL" in page
    assert "3 rings × 5 s" in page and 'timeout="10"' in page
    assert "kasia" in page.split('id="explain-agents"')[1]
    assert runtime(app).state.snapshot(["kasia"], time.time())[0].status == "available"  # nobody claimed


def test_explain_says_which_input_is_wrong(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("super")
    bad = client.get("/console/rules/explain", query_string={"phone": "12", "digits": "1"})
    assert bad.status_code == 400 and b"not a valid phone number" in bad.data
    assert client.get("/console/rules/explain").status_code == 200  # the empty form


# --- dashboard ----------------------------------------------------------------------------------


def test_dashboard_shows_service_level_abandoned_and_overdue_items(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    now = datetime.now(UTC)
    with db.session() as s:
        for sid, within in (("CA1", True), ("CA2", False)):
            card.append_event(s, client_id, "call_arrived", {}, now, sid)
            card.append_event(s, client_id, "call_answered", {"within_target": within, "rings": 2 if within else 5},
                              now, sid, agent_id="anna", queue="support")
        card.append_event(s, client_id, "call_abandoned", {"while": "waiting"}, now, "CA3", queue="support")
        card.create_voicemail(s, recording_sid="RE-vm", url="http://x/RE-vm", due_at=now - timedelta(minutes=5),
                              client_id=client_id, queue="support")
    runtime(app).state.join_line("support", "call:CA9", time.time() - 65)
    page = as_user("super").get("/console/dashboard").get_data(as_text=True)
    assert 'id="sl-today">50%' in page
    assert 'id="abandoned-today">1' in page
    assert 'id="calls-today">2' in page
    assert "<svg" in page and "polyline" in page
    assert "voicemail #" in page and "overdue" in page
    assert "1:05" in page or "1:06" in page  # the longest wait in the support line
    live = as_user("super").get("/console/dashboard/live")
    assert live.status_code == 200 and b"<html" not in live.data and b'id="queues"' in live.data


def test_dashboard_figures_by_queue_and_hour_agree_with_the_report(app) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from recordings import dashboard, reports

    client_id = new_client()
    zone = ZoneInfo("Europe/Tallinn")
    at = datetime(2026, 11, 24, 10, 30, tzinfo=zone)
    with db.session() as s:
        for sid, queue, rings in (("CA1", "support", 1), ("CA2", "billing", 3)):
            card.append_event(s, client_id, "call_arrived", {}, at, sid)
            card.append_event(s, client_id, "call_answered", {"within_target": True, "rings": rings}, at, sid,
                              queue=queue)
        card.append_event(s, client_id, "call_arrived", {}, at, "CA3")  # hung up in the support line
        card.append_event(s, client_id, "call_abandoned", {"while": "waiting"}, at, "CA3", queue="support")
        card.append_event(s, client_id, "call_answered", {"within_target": True, "rings": 1}, at, "CA0",
                          queue="support")  # a call that arrived the day before: not today's
        start = datetime(2026, 11, 24, tzinfo=zone)
        end = start + timedelta(days=1)
        levels = dashboard.service_levels(s, start, end, ["support", "billing"])
        report = reports.service_level(s, start, end, zone="Europe/Tallinn")
        hours = dashboard.by_hour(s, start, end, zone)
    everyone, support = levels[None], levels["support"]
    assert (everyone.calls, everyone.answered, everyone.within_target, everyone.average_rings) == (3, 2, 2, 2.0)
    assert (support.calls, support.answered, support.percent) == (2, 1, 50.0)  # the abandoned call counts
    assert levels["billing"].percent == 100.0
    total = report[-1]
    assert total["group"] == "total" and total["service_level_pct"] == round(everyone.percent or 0, 1) == 66.7
    assert len(hours) == 24
    ten = hours[10]
    assert (ten.start.hour, ten.calls, ten.answered, ten.abandoned) == (10, 3, 2, 1)
    assert ten.service_level == everyone.percent


# --- client cards -------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["Maria", "tamm", "+372 5551 2345", "5551 2345", "0037255512345", "55512"])
def test_card_search_finds_by_name_or_any_number_format(as_user, query: str) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    new_client("+37255599999", "Someone Else")
    page = as_user("anna").get("/console/cards", query_string={"q": query}).get_data(as_text=True)
    assert f"/console/cards/{client_id}" in page
    assert "Someone Else" not in page


def test_card_shows_identity_and_the_timeline_with_calls(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    now = datetime.now(UTC)
    with db.session() as s:
        card.update_client(s, client_id, language="ru", zone="Europe/Tallinn", convenient_from="10:00",
                           convenient_to="18:00")
        card.append_event(s, client_id, "call_arrived", {}, now - timedelta(minutes=5), "CA1")
        card.append_event(s, client_id, "call_answered", {"agent": "anna", "rings": 2, "within_target": True},
                          now - timedelta(minutes=5), "CA1", agent_id="anna", queue="support")
        card.append_event(s, client_id, "call_completed", {"duration": 125}, now - timedelta(minutes=3), "CA1")
        card.link_recording(s, sid="RE1", url="http://twilio/RE1", call_sid="CA1", client_id=client_id)
        card.add_note(s, client_id, "prefers email", by="mart")
        card.append_event(s, client_id, "outbound_blocked", {"reason": "outside_hours", "by": "anna",
                                                             "next_allowed_at": now.isoformat()}, now)
    page = as_user("anna").get(f"/console/cards/{client_id}").get_data(as_text=True)
    assert "Maria Tamm" in page and "Europe/Tallinn" in page and "10:00–18:00" in page
    assert "answered in 2 rings" in page and "agent <b>anna</b>" in page and "2:05" in page
    assert 'src="/console/recordings/RE1"' in page
    assert "prefers email" in page and "outside hours" in page
    assert "may be called" in page


def test_agent_adds_a_note_and_an_agreement(as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    client = as_user("anna")
    assert post(client, f"/console/cards/{client_id}/notes", {"text": "asked about tariff", "kind": "note"}).status_code == 302
    assert post(client, f"/console/cards/{client_id}/notes",
                {"text": "call back after 18:00", "kind": "agreement", "call_sid": "CA7"}).status_code == 302
    with db.session() as s:
        events, _ = card.timeline(s, client_id)
        agreement = next(e for e in events if e.kind == "agreement")
        assert (agreement.data["text"], agreement.data["by"], agreement.call_sid) == ("call back after 18:00", "anna", "CA7")
    assert "note" in kinds(client_id)


def test_agent_opts_out_a_client_but_only_an_admin_withdraws(as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    agent = as_user("anna")
    assert post(agent, f"/console/cards/{client_id}/opt-out", {"reason": "asked on the phone"}).status_code == 302
    with db.session() as s:
        header = card.card(s, client_id)
    assert header is not None and header["opted_out"]
    (optout,) = header["opt_outs"]
    assert b"opted out" in agent.get(f"/console/cards/{client_id}").data
    for who in (agent, as_user("super")):
        assert post(who, f"/console/opt-outs/{optout['id']}/withdraw", {"reason": "x"}).status_code == 403
    admin = as_user("admin")
    assert post(admin, f"/console/opt-outs/{optout['id']}/withdraw",
                {"reason": "client asked again", "client_id": str(client_id)}).status_code == 302
    with db.session() as s:
        assert not card.card(s, client_id)["opted_out"]  # type: ignore[index]
    assert "opt_out_withdrawn" in kinds(client_id)


def test_unknown_card_is_404(as_user) -> None:  # type: ignore[no-untyped-def]
    assert as_user("anna").get("/console/cards/424242").status_code == 404


# --- recordings proxy ---------------------------------------------------------------------------


@pytest.fixture
def media_server() -> Iterator[str]:
    """A stand-in for Twilio's recording media: Basic auth with the account, else 401."""
    from flask import Flask, Response, request

    from telephony.simulator.testing import served

    media = Flask("media")

    @media.get("/Recordings/<sid>")
    def recording(sid: str) -> Response:
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (ACCOUNT_SID, AUTH_TOKEN):
            return Response("auth", status=401)
        return Response(b"RIFF-fake-wav-" + sid.encode(), mimetype="audio/x-wav")

    with served(media) as base:
        yield base


def linked_recording(media_base: str, agent: str) -> int:
    client_id = new_client()
    with db.session() as s:
        card.append_event(s, client_id, "call_answered", {"agent": agent}, None, "CA-rec", agent_id=agent)
        card.link_recording(s, sid="RE-rec", url=f"{media_base}/Recordings/RE-rec", call_sid="CA-rec",
                            client_id=client_id)
    return client_id


def test_recordings_are_streamed_only_to_a_logged_in_user_of_the_right_role(app, as_user, media_server: str) -> None:  # type: ignore[no-untyped-def]
    linked_recording(media_server, "anna")
    anonymous = app.test_client().get("/console/recordings/RE-rec")
    assert anonymous.status_code == 302 and b"RIFF" not in anonymous.data
    assert as_user("mart").get("/console/recordings/RE-rec").status_code == 403  # not mart's call
    for who in ("anna", "super", "admin"):
        response = as_user(who).get("/console/recordings/RE-rec")
        assert response.status_code == 200, who
        assert response.data == b"RIFF-fake-wav-RE-rec"
        assert response.mimetype == "audio/x-wav"
        assert "no-store" in response.headers["Cache-Control"]


def test_api_bearer_token_alone_does_not_open_a_recording(app, media_server: str) -> None:  # type: ignore[no-untyped-def]
    linked_recording(media_server, "anna")
    response = app.test_client().get("/console/recordings/RE-rec", headers={"Authorization": "Bearer admin-token"})
    assert response.status_code == 302


def test_unknown_recording_is_404_and_an_upstream_fault_502(as_user, media_server: str) -> None:  # type: ignore[no-untyped-def]
    client = as_user("super")
    assert client.get("/console/recordings/RE-none").status_code == 404
    client_id = new_client("+37255500000", None)
    with db.session() as s:
        card.link_recording(s, sid="RE-bad", url=f"{media_server}/nothing/RE-bad", client_id=client_id)
    assert client.get("/console/recordings/RE-bad").status_code == 502


# --- agent console ------------------------------------------------------------------------------


def call_params(sid: str, caller: str = EE_CALLER, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": caller, "To": "+3726140000",
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}


def route_call_to(voice: Voice, sid: str) -> str:
    """Drive a call through the menu (key 1) and the whisper; returns the agent who took it."""
    voice.twiml("/voice/incoming", call_params(sid))
    menu = voice.twiml("/voice/menu", call_params(sid, Digits="1"))
    whisper_url = menu.find("Dial")[0].get("url")
    agent = whisper_url.split("agent=")[1].split("&")[0]
    voice.twiml(f"/voice/whisper?call={sid}&agent={agent}", call_params("CA-leg", "+37251234567"))
    return agent


def test_routed_call_pops_the_card_on_the_agents_console(voice: Voice) -> None:
    add_users()
    new_client()
    state = runtime(voice.app).state
    for other in ("dmitri", "mart", "kasia"):  # anna is the only one free, so the call is hers
        state.set_status(other, "away", time.time(), by="test")
    client = voice.app.test_client()
    assert login(client, "anna").status_code == 302
    assert client.get("/console/agent/anna/current").json["call_sid"] == ""
    assert route_call_to(voice, "CA-pop") == "anna"
    current = client.get("/console/agent/anna/current").json
    assert current["status"] == "on_call" and current["call_sid"] == "CA-pop"
    assert "Maria Tamm" in current["html"] and EE_CALLER in current["html"]
    assert 'name="call_sid" value="CA-pop"' in current["html"]  # wrap-up notes go on this call
    assert "popped-card" in client.get("/console/agent/anna").get_data(as_text=True)


def test_agent_sets_their_own_status_and_the_log_says_who(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("anna")
    assert post(client, "/console/agent/anna/status", {"status": "away"}).status_code == 302
    state = runtime(app).state
    assert state.snapshot(["anna"], time.time())[0].status == "away"
    assert state.status_log("anna", count=1)[0].by == "anna"
    assert post(client, "/console/agent/anna/status", {"status": "on_call"}).status_code == 400


def test_click_to_call_an_opted_out_client_shows_the_block(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client_id = new_client()
    with db.session() as s:
        card.opt_out_client(s, client_id, source="admin", reason="asked", by="admin")
    response = post(as_user("anna"), "/console/agent/anna/call", {"phone": "5551 2345"})
    assert response.status_code == 409
    assert b"Blocked:" in response.data and b"the client asked not to be called" in response.data
    with db.session() as s:
        events, _ = card.timeline(s, client_id)
        blocked = next(e for e in events if e.kind == "outbound_blocked")
    assert blocked.data["reason"] == "opted_out_client" and blocked.data["by"] == "anna"


# --- admin pages --------------------------------------------------------------------------------


def test_admin_changes_an_agents_status_logged_with_the_admins_name(app, as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("admin")
    page = client.get("/console/admin/agents").get_data(as_text=True)
    assert "Anna Tamm" in page and "rules editor" in page
    assert post(client, "/console/admin/agents/mart/status", {"status": "offline"}).status_code == 302
    change = runtime(app).state.status_log("mart", count=1)[0]
    assert (change.to_status, change.by) == ("offline", "admin")
    assert post(client, "/console/admin/agents/nobody/status", {"status": "away"}).status_code == 404


def test_admin_queue_and_user_pages_show_the_rules_and_the_people(as_user) -> None:  # type: ignore[no-untyped-def]
    client = as_user("admin")
    queues = client.get("/console/admin/queues").get_data(as_text=True)
    assert "support" in queues and "timeout 10 s" in queues and "/console/rules/edit" in queues
    assert "shorter than Twilio" not in queues
    users = client.get("/console/admin/users").get_data(as_text=True)
    assert "anna" in users and "supervisor" in users

