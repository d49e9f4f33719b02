"""The console in a real browser: headless Debian Chromium driven by Playwright, the app served
for real on 127.0.0.1. Screenshots go to test-artifacts/screenshots/.

Skipped (with the reason) where /usr/bin/chromium or the playwright package is missing; CI
installs Chromium with apt. Never `playwright install`: it downloads a browser build.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNT_SID, Voice
from tests.console_support import USERS, add_users

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
EE_CALLER = "+37255512345"
WAIT_MS = 8000  # the agent page polls every 2 s and the dashboard every 5 s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def served_app(make_app) -> Iterator[tuple[Any, str]]:  # type: ignore[no-untyped-def]
    from telephony.simulator.testing import served

    app = make_app()
    add_users()
    with served(app) as base:
        yield app, base


@pytest.fixture
def open_as(browser, served_app) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A logged-in page for a username, each in its own browser context (own cookies)."""
    _, base = served_app
    contexts = []

    def login(username: str) -> Any:
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", USERS[username][0])
        page.click("button[type=submit]")
        page.wait_for_load_state()
        return page

    yield login
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def new_client(name: str = "Maria Tamm", e164: str = EE_CALLER) -> int:
    from recordings import card, db

    with db.session() as s:
        client, _ = card.find_or_create_client(s, e164, name=name)
        return client.id


def test_each_role_logs_in_to_its_home_page(open_as, served_app) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from recordings import card, db
    from recordings.dashboard import local_day
    from routing_rules import engine

    client_id = new_client()
    now = datetime.now(UTC)
    app, _ = served_app
    start, _ = local_day(now, engine.zone(app.extensions["hotline"].rules.current()))
    with db.session() as s:
        for i, within in enumerate((True, True, False, True)):
            at = now - (now - start) * i / 4  # all on the hotline's local today, even just after midnight
            card.append_event(s, client_id, "call_arrived", {}, at, f"CA{i}")
            card.append_event(s, client_id, "call_answered", {"within_target": within, "rings": 2 + 2 * (not within)},
                              at, f"CA{i}", agent_id="anna", queue="support")
    supervisor = open_as("super")
    assert supervisor.url.endswith("/console/dashboard")
    assert supervisor.inner_text("#sl-today") == "75%"
    shot(supervisor, "dashboard-supervisor")
    admin = open_as("admin")
    assert admin.url.endswith("/console/dashboard")
    admin.click("text=Agents")
    assert admin.is_visible("#agents-table")
    shot(admin, "admin-agents")
    agent = open_as("anna")
    assert agent.url.endswith("/console/agent/anna")
    assert agent.inner_text("h1") == "Anna Tamm"
    assert agent.locator("nav >> text=Dashboard").count() == 0  # no link to what they may not open
    shot(agent, "agent-console-idle")


def test_agent_cannot_open_admin_pages_or_another_agents_controls(open_as) -> None:  # type: ignore[no-untyped-def]
    page = open_as("anna")
    for path in ("/console/admin/agents", "/console/dashboard", "/console/rules/edit", "/console/agent/mart"):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        assert "403" in page.inner_text("h1")
    shot(page, "agent-forbidden")


def test_rules_with_an_error_show_it_and_nothing_is_saved(open_as, served_app) -> None:  # type: ignore[no-untyped-def]
    app, _ = served_app
    path = app.extensions["hotline"].settings.rules_path
    before = path.read_text(encoding="utf-8")
    page = open_as("admin")
    page.goto("/console/rules/edit")
    page.fill("#rules-editor", before.replace("answer_within_rings: 3", "answer_within_rings: 99", 1))
    page.fill("input[name=comment]", "try 99 rings")
    page.click("#save-rules")
    page.wait_for_selector("#rules-errors")
    assert "queues.support.answer_within_rings" in page.inner_text("#rules-errors")
    assert "nothing was saved" in page.inner_text("#rules-errors")
    shot(page, "rules-edit-error")
    assert path.read_text(encoding="utf-8") == before
    page.goto("/console/rules")
    assert page.locator("#versions li").count() == 0


def test_explain_a_call(open_as) -> None:  # type: ignore[no-untyped-def]
    page = open_as("super")
    page.goto("/console/rules/explain")
    page.fill("input[name=phone]", "+48 601 234 567")
    page.fill("input[name=at]", "2026-11-24T12:00")
    page.fill("input[name=digits]", "1")
    page.click("#explain-go")
    page.wait_for_selector("#explanation")
    assert page.inner_text("#explain-outcome") == "dial"
    assert page.inner_text("#explain-queue") == "support"
    assert "10" in page.inner_text("#explain-ring")
    assert page.locator("#explain-agents tbody tr").first.inner_text().startswith("1")
    shot(page, "explain-call")


def test_a_routed_call_pops_the_card_on_the_agent_console(open_as, served_app) -> None:  # type: ignore[no-untyped-def]
    app, _ = served_app
    new_client()
    state = app.extensions["hotline"].state
    for other in ("dmitri", "mart", "kasia"):  # anna is the only one free, so the call is hers
        state.set_status(other, "away", time.time(), by="test")
    page = open_as("anna")
    assert page.is_visible("#no-call")
    voice = Voice(app)
    params = {"CallSid": "CA-browser", "AccountSid": ACCOUNT_SID, "From": EE_CALLER, "To": "+3726140000",
              "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    voice.twiml("/voice/incoming", params)
    dial = voice.twiml("/voice/menu", {**params, "Digits": "1"}).find("Dial")
    assert dial is not None and "agent=anna" in dial[0].get("url")
    voice.twiml("/voice/whisper?call=CA-browser&agent=anna", {**params, "CallSid": "CA-leg"})
    page.wait_for_selector("#popped-card", timeout=WAIT_MS)
    assert page.inner_text("#popped-name") == "Maria Tamm"
    assert EE_CALLER in page.inner_text("#caller-number")
    assert page.inner_text("#my-status") == "on_call"
    page.fill("#popped-card textarea[name=text]", "wants a paper invoice")
    shot(page, "agent-call-popped")
    page.click("#popped-card .note-form button[type=submit]")
    page.wait_for_load_state()
    assert "Note saved." in page.inner_text("main")


def test_click_to_call_an_opted_out_client_shows_the_block(open_as) -> None:  # type: ignore[no-untyped-def]
    from recordings import card, db

    client_id = new_client()
    with db.session() as s:
        card.opt_out_client(s, client_id, source="ivr", reason="pressed 8", by="caller")
    page = open_as("anna")
    page.fill("#call-phone", "5551 2345")
    page.click("#call-button")
    page.wait_for_selector("#dial-result")
    text = page.inner_text("#dial-result")
    assert "Blocked" in text and "the client asked not to be called" in text
    assert "opt-out must be withdrawn" in text
    shot(page, "agent-call-blocked")
