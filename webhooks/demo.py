"""`hotline demo` and `hotline simulate`: the whole product played against the local Twilio.

The demo starts an embedded Redis, a SQLite card store, the web app, a job worker and the
simulator, seeds clients, then plays one scenario per standard and checks each outcome.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import click
import yaml

from recordings import card, db
from routing_rules import engine
from routing_rules.schema import Lang

from .local_stack import LocalStack, always_open
from .settings import from_env

CALLERS = {
    "en": "+447911000123",  # an English-speaking caller from the UK
    "ru": "+79161234567",   # Maria, Russian, has a card
    "pl": "+48601234567",   # Jan, Polish
    "et": "+37255512345",   # Kadri, Estonian: prompts are recorded audio
    "callback": "+37255598765",
    "opted_out": "+37255511111",
    "night_owl": "+15125550134",  # Austin, Texas: a client with a narrow convenient window
}
DEMO_PASSWORD = "demo-password"


@dataclass
class Outcome:
    title: str
    ok: bool
    detail: str


def heading(text: str) -> None:
    click.echo("")
    click.secho("=" * 78, fg="cyan")
    click.secho(text, fg="cyan", bold=True)
    click.secho("=" * 78, fg="cyan")


def show_card(e164: str, *, limit: int = 40) -> None:
    with db.session(readonly=True) as s:
        client = card.find_client_by_phone(s, e164)
        if client is None:
            click.echo(f"  (no card for {e164})")
            return
        summary = card.card(s, client.id) or {}
        events, _ = card.timeline(s, client.id, limit=limit)
        click.secho(f"  Card #{client.id}: {summary.get('name') or '(no name)'}  {e164}  "
                    f"language={summary.get('language')}  zone={summary.get('zone')}  "
                    f"opted_out={summary.get('opted_out')}", bold=True)
        for event in reversed(events):
            when = event.at.astimezone(UTC).strftime("%H:%M:%S")
            agent = f" [{event.agent_id}]" if event.agent_id else ""
            data = ", ".join(f"{k}={v}" for k, v in (event.data or {}).items()
                             if v not in (None, "", {}, []) and k not in ("from", "to"))
            click.echo(f"    {when}  {event.kind:<20}{agent} {data}"[:160])


def kinds(e164: str) -> list[str]:
    with db.session(readonly=True) as s:
        client = card.find_client_by_phone(s, e164)
        if client is None:
            return []
        events, _ = card.timeline(s, client.id, limit=200)
        return [e.kind for e in events]


def first_ranked(stack: LocalStack, queue: str, e164: str, lang: str) -> list[str]:
    rules = stack.rules
    snapshot = stack.runtime.state.snapshot(rules.queues[queue].agents, time.time())
    return engine.rank_agents(rules, queue, snapshot, engine.CallerContext(e164, cast(Lang, lang)), set())


def set_agents(stack: LocalStack, behaviour: Callable[[str], Any]) -> None:
    for agent_id, agent in stack.rules.agents.items():
        stack.sim.add_agent(agent.endpoint, {"name": agent_id, **behaviour(agent_id)})


def seed_clients(stack: LocalStack) -> None:
    with db.session() as s:
        maria, _ = card.find_or_create_client(s, CALLERS["ru"], language="ru", name="Maria Petrova")
        card.add_note(s, maria.id, "Prefers calls after lunch; meter replaced in October.", by="demo")
        card.find_or_create_client(s, CALLERS["pl"], language="pl", name="Jan Kowalski")
        kadri, _ = card.find_or_create_client(s, CALLERS["callback"], language="en", name="Kadri Kask")
        card.update_client(s, kadri.id, convenient_from="00:00", convenient_to="23:59", by="demo")
        out, _ = card.find_or_create_client(s, CALLERS["opted_out"], language="et", name="Peeter Opt-Out")
        card.opt_out_client(s, out.id, source="agent", reason="asked not to be called again", by="demo")
        owl, _ = card.find_or_create_client(s, CALLERS["night_owl"], language="en", name="Taylor Night")
        # a convenient hour inside the legal window (Texas: 09-21, Sundays 12-21) that is not now
        hour = datetime.now(ZoneInfo("America/Chicago")).hour
        start = 14 if hour != 14 else 16
        card.update_client(s, owl.id, zone="America/Chicago", convenient_from=f"{start:02d}:00",
                           convenient_to=f"{start + 1:02d}:00", by="demo")
    try:
        from .console.users import ensure_user

        ensure_user("admin", DEMO_PASSWORD, "admin")
        ensure_user("supervisor", DEMO_PASSWORD, "supervisor")
        ensure_user("anna", DEMO_PASSWORD, "agent", agent_id="anna")
    except ImportError:  # the console is optional for the call scenarios
        pass


def play(stack: LocalStack, e164: str, script: list[dict[str, Any]]) -> Any:
    record = stack.sim.place_inbound(e164, stack.hotline_number, script)
    stack.wait_for_jobs()
    click.echo(str(record))
    return record


def scenario_answered(stack: LocalStack) -> Outcome:
    heading("1. Answered within the ring target (3 rings)")
    e164 = CALLERS["en"]
    first = first_ranked(stack, "support", e164, "en")[0]
    set_agents(stack, lambda a: {"answer_after_rings": 2 if a == first else 1, "hang_up_after": 45})
    play(stack, e164, [{"press": "1"}, {"press": "5"}])
    show_card(e164)
    ok = "call_answered" in kinds(e164)
    return Outcome("answered within 3 rings", ok, f"{first} answered after 2 rings")


def scenario_missed(stack: LocalStack) -> Outcome:
    heading("2. An agent misses the ring target: skipped, the next one rung")
    e164 = CALLERS["ru"]
    first, second = first_ranked(stack, "support", e164, "ru")[:2]
    set_agents(stack, lambda a: {"answer_after_rings": 9} if a == first else {"answer_after_rings": 1,
                                                                               "hang_up_after": 60})
    play(stack, e164, [{"press": "1"}, {"press": "4"}])
    show_card(e164)
    history = kinds(e164)
    return Outcome("missed agent → next", "agent_rung" in history and "call_answered" in history,
                   f"{first} missed (no answer within 3 rings), {second} answered")


def scenario_voicemail(stack: LocalStack) -> Outcome:
    heading("3. Nobody answers: voicemail with a response deadline")
    e164 = CALLERS["pl"]
    set_agents(stack, lambda a: {"answer_after_rings": 0} if False else {"answer_after_rings": 99})
    play(stack, e164, [{"press": "1"}, {"record": 14}])
    show_card(e164)
    with db.session(readonly=True) as s:
        mails = [v for v in card.list_voicemails(s, "open", None) if v.client_id is not None]
        due = mails[-1].due_at if mails else None
    return Outcome("all miss → voicemail", bool(mails), f"voicemail due {due:%Y-%m-%d %H:%M} UTC" if due else "none")


def scenario_callback(stack: LocalStack) -> Outcome:
    heading("4. High volume: every agent busy, the caller asks for a callback and keeps their place")
    rules = stack.rules
    support = rules.queues["support"].agents
    keeper, others = support[0], support[1:]
    now = time.time()
    for agent_id in others:
        stack.runtime.state.set_status(agent_id, "away", now, by="demo")
    set_agents(stack, lambda a: {"answer_after_rings": 1, "hang_up_after": 120})
    busy = stack.sim.start_inbound(CALLERS["et"], stack.hotline_number, [{"press": "1"}])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and stack.runtime.state.snapshot([keeper], time.time())[0].status != "on_call":
        time.sleep(0.05)
    click.echo(f"  ({keeper} is on a call with {CALLERS['et']}; the other support agents are away)")
    e164 = CALLERS["callback"]
    play(stack, e164, [{"press": "1"}, {"press": "2"}, {"press": "1"}, {"press": "1"}])
    busy.call.done.wait(30)
    stack.sim.wait_all(30)
    stack.wait_for_jobs(20)
    click.echo(f"  ({keeper} is free again: the dispatcher rang {keeper} first, then bridged to the client)")
    for agent_id in others:
        stack.runtime.state.set_status(agent_id, "available", time.time(), by="demo")
    show_card(e164)
    history = kinds(e164)
    return Outcome("high volume → callback", "callback_requested" in history and "outbound_placed" in history,
                   "callback booked while busy, dialled agent-first when an agent freed up")


def scenario_opted_out(stack: LocalStack) -> Outcome:
    heading("5. A client who asked not to be called: the dial is blocked")
    e164 = CALLERS["opted_out"]
    response = stack.api("POST", "/api/calls", json={"phone": e164, "agent_id": "anna"})
    click.echo(f"  POST /api/calls {{phone: {e164}, agent_id: anna}} → {response.status_code} {response.json()}")
    show_card(e164)
    return Outcome("opted-out client → blocked", response.status_code == 409
                   and response.json().get("reason") == "opted_out_client", "409 opted_out_client")


def scenario_outside_hours(stack: LocalStack) -> Outcome:
    heading("6. Outside the client's local hours: blocked, with the next allowed time")
    e164 = CALLERS["night_owl"]
    response = stack.api("POST", "/api/calls", json={"phone": e164, "agent_id": "anna"})
    body = response.json()
    click.echo(f"  POST /api/calls {{phone: {e164}, agent_id: anna}} → {response.status_code}")
    click.echo(f"  reason={body.get('reason')} next_allowed_at={body.get('next_allowed_at')} "
               f"local={body.get('next_allowed_local')}")
    show_card(e164)
    return Outcome("outside local hours → blocked", response.status_code == 409
                   and body.get("reason") == "outside_hours" and bool(body.get("next_allowed_at")),
                   f"next allowed {body.get('next_allowed_at')}")


SCENARIOS = [scenario_answered, scenario_missed, scenario_voicemail, scenario_callback,
             scenario_opted_out, scenario_outside_hours]


def prepare_demo_dir(root: Path) -> tuple[Path, Path]:
    data_dir = root / "demo"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # each demo starts from an empty card store and Redis
    data_dir.mkdir(parents=True)
    example = Path(__file__).resolve().parent.parent / "examples" / "rules.yaml"
    data = yaml.safe_load(always_open(example.read_text(encoding="utf-8"), wrap_up_seconds=0))
    # the demo runs at any hour: a callback the client asked for may go out at any hour too;
    # the client's own convenient window (needs_client_window) and opt-outs still decide
    purpose = data["outbound"]["purposes"]["requested_callback"]
    purpose["window"]["hours"] = [{"open": "00:00", "close": "24:00"}]
    purpose["source"] = "demo: requested callbacks at any hour, inside the client's own window"
    rules_path = data_dir / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return data_dir, rules_path


def run_demo(*, keep_running: bool = False, port: int = 0) -> int:
    settings = from_env()
    data_dir, rules_path = prepare_demo_dir(settings.data_dir)
    click.secho("Hotline demo: embedded Redis + SQLite + web app + job worker + local Twilio", bold=True)
    click.echo(f"  data: {data_dir}   rules: {rules_path} (examples/rules.yaml, open around the clock;"
               " requested callbacks allowed at any hour inside the client's window)")
    stack = LocalStack(rules_path=rules_path, data_dir=data_dir, pace="all", time_scale=0.01).start()
    try:
        seed_clients(stack)
        outcomes = []
        for scenario in SCENARIOS:
            stack.reset_agents()
            try:
                outcomes.append(scenario(stack))
            except Exception as error:  # noqa: BLE001 — one broken scenario must not hide the others' results
                outcomes.append(Outcome(scenario.__name__, False, f"{type(error).__name__}: {error}"))
        heading("Summary")
        for outcome in outcomes:
            mark = click.style("PASS", fg="green") if outcome.ok else click.style("FAIL", fg="red")
            click.echo(f"  {mark}  {outcome.title:<32} {outcome.detail}")
        click.echo("")
        click.echo(f"Web app: {stack.url}   console: {stack.url}/console (admin / {DEMO_PASSWORD})")
        click.echo(f"API: {stack.url}/api/openapi.json (token: local-admin)   health: {stack.url}/healthz")
        if keep_running:
            click.echo("Running; Ctrl-C stops.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0 if all(o.ok for o in outcomes) else 1
    finally:
        stack.stop()


def simulate_command(scenario_path: Path | None, interactive: bool, from_: str) -> int:
    from telephony.simulator.scenario import load_scenario, run_scenario
    from telephony.simulator.softphone import run_interactive

    settings = from_env()
    data_dir = settings.data_dir / "simulate"
    data_dir.mkdir(parents=True, exist_ok=True)
    rules_path = data_dir / "rules.yaml"
    rules_path.write_text(always_open(settings.rules_path.read_text(encoding="utf-8")), encoding="utf-8")
    stack = LocalStack(rules_path=rules_path, data_dir=data_dir).start()
    try:
        if interactive:
            click.echo(f"Calling {stack.hotline_number} from {from_}. Type digits at prompts, 'h' hangs up.")
            run_interactive(stack.sim, from_, stack.hotline_number)
            stack.wait_for_jobs()
            show_card(from_)
            return 0
        assert scenario_path is not None
        scenario = load_scenario(scenario_path)
        scenario.setdefault("number", stack.hotline_number)
        result = run_scenario(stack.sim, scenario)
        stack.wait_for_jobs()
        click.echo(str(result))
        for call in scenario["calls"]:
            show_card(str(call["from"]))
        return 0 if result.ok else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(run_demo())
