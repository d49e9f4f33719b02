"""`/api`: the REST API (JSON, bearer tokens with roles). Views parse, call, and answer JSON.

Bad input always gets a 4xx with a JSON `reason` naming the field.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from recordings import card, db
from recordings.card import OPT_OUT_SOURCES
from routing_rules.loading import RulesReview, load_rules, review_rules
from routing_rules.schema import Rules
from telephony import numbers
from telephony.outbound import Dialler, dialler_for
from telephony.state import UnknownAgent

from .auth import requires
from .openapi import OPENAPI
from .runtime import Runtime

bp = Blueprint("api", __name__, url_prefix="/api")

PERSON_STATUSES = ("available", "away", "offline")
MAX_PAGE = 200


class BadRequest(Exception):
    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.field, self.reason, self.status = field, reason, status


@bp.errorhandler(BadRequest)
def bad_request(error: BadRequest):
    return jsonify(error="invalid", field=error.field, reason=error.reason), error.status


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return jsonify(error=error.name.lower().replace(" ", "_"), reason=error.description), error.code


MAX_ID = 2**31 - 1  # ids are INTEGER columns: a larger one cannot exist (the driver would 500)


def id_in_range(name: str, value: int) -> int:
    """`value` if a row could have it; else the 404 of a missing row, before the driver overflows."""
    if not 0 < value <= MAX_ID:
        raise BadRequest(name, f"no {name.removesuffix('_id')} {value}", 404)
    return value


@bp.url_value_preprocessor
def ids_in_range(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Every `<int:...>` path id through `id_in_range` (service_api registers it too)."""
    for name, value in (values or {}).items():
        if isinstance(value, int):
            id_in_range(name, value)


def rt() -> Runtime:
    return current_app.extensions["hotline"]


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("body", "expected a JSON object")
    return data


MIN_YEAR, MAX_YEAR = 2000, 2100  # outside this a time is a typo (and overflows zone arithmetic)


def parse_when(value: Any, field: str) -> datetime:
    if value in (None, ""):
        return datetime.now(UTC)
    if not isinstance(value, str):
        raise BadRequest(field, "expected an ISO 8601 time string, e.g. 2026-11-24T15:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(field, "expected an ISO 8601 time, e.g. 2026-11-24T15:00:00Z") from None
    if parsed.tzinfo is None:
        raise BadRequest(field, "the time needs a UTC offset, e.g. 2026-11-24T15:00:00+02:00")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise BadRequest(field, f"a time in the years {MIN_YEAR} to {MAX_YEAR}")
    return parsed.astimezone(UTC)


def optional_body() -> dict[str, Any]:
    """A JSON object body, or {} when there is none; anything else is a 400."""
    if not request.get_data():
        return {}
    return body()


def text_field(data: dict[str, Any], field: str, *, choices: tuple[str, ...] | None = None,
               required: bool = False, max_length: int | None = None) -> str | None:
    """A string field (or None when absent); wrong types, unknown choices and text longer than
    its column (`max_length`: PostgreSQL refuses it) are a 400 naming it."""
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise BadRequest(field, "required")
        return None
    if not isinstance(value, str):
        raise BadRequest(field, "expected a string")
    if choices is not None and value not in choices:
        raise BadRequest(field, f"one of {', '.join(choices)}")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(field, f"at most {max_length} characters")
    return value


HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d\Z")  # \Z: `$` would take "09:30\n"


def parse_limit() -> int:
    raw = request.args.get("limit", "50")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest("limit", f"an integer from 1 to {MAX_PAGE}")
    return int(raw)


def zone_is_valid(zone: Any) -> bool:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(str(zone))
        return "/" in str(zone) or str(zone) == "UTC"
    except (ValueError, KeyError, OSError):
        return False


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def recording_path(sid: str) -> str:
    """Where a person hears a recording: the console's player, which checks who may (an agent only
    their own calls). Twilio's media URL is never handed out: it may play without credentials."""
    return url_for("console.recording", sid=sid)


def event_json(event: Any) -> dict[str, Any]:
    """A card event for the API: a recording named by its sid and `recording_path`, not its URL."""
    shown = card.event_json(event)
    data = shown.get("data")
    if isinstance(data, dict) and "url" in data:
        data = {k: v for k, v in data.items() if k != "url"}  # a copy: the event keeps its URL
        sid = data.get("recording_sid") or data.get("sid")
        if sid:
            data["recording_path"] = recording_path(sid)
        shown["data"] = data
    return shown


@bp.get("/openapi.json")
def openapi():
    return jsonify(OPENAPI)


# --- agents ---------------------------------------------------------------------------------


@bp.get("/agents")
@requires("agent")
def list_agents():
    rules = rt().rules.current()
    snapshots = live_agents(list(rules.agents), time.time())
    return jsonify(agents=[agent_json(s, rules) for s in snapshots])


def live_agents(ids: list[str], now: float) -> list[Any]:
    """The agents' live state; agents of the rules that it lacks are added first.

    It lacks them after Redis lost its data or when the rules file gained an agent by hand
    (the worker's tick adds them too, within seconds): the API shows and sets them at once.
    """
    state = rt().state
    found = state.snapshot(ids, now)
    if len(found) < len(ids):
        rt().sync_agents()
        found = state.snapshot(ids, now)
    return found


def agent_json(snapshot: Any, rules: Any) -> dict[str, Any]:
    agent = rules.agents.get(snapshot.id)
    return {
        "id": snapshot.id,
        "name": agent.name if agent else snapshot.id,
        "status": snapshot.status,
        "misses": snapshot.misses,
        "languages": list(agent.languages) if agent else [],
    }


@bp.get("/agents/<agent_id>/status")
@requires("agent")
def get_agent_status(agent_id: str):
    rules = rt().rules.current()
    if agent_id not in rules.agents:
        raise BadRequest("agent_id", f"no agent {agent_id!r} in the rules", 404)
    (snapshot,) = live_agents([agent_id], time.time())
    return jsonify(agent_json(snapshot, rules))


@bp.put("/agents/<agent_id>/status")
@requires("agent")
def set_agent_status(agent_id: str):
    rules = rt().rules.current()
    if agent_id not in rules.agents:
        raise BadRequest("agent_id", f"no agent {agent_id!r} in the rules", 404)
    principal = g.principal
    if principal.role == "agent" and principal.agent_id != agent_id:
        return jsonify(error="forbidden", reason="agents may set only their own status"), 403
    status = body().get("status")
    if status not in PERSON_STATUSES:
        raise BadRequest("status", f"one of {', '.join(PERSON_STATUSES)}")
    now = time.time()
    previous, current = apply_agent_status(agent_id, status, principal.name, now)
    if current != status:  # the state refuses, e.g. making an agent on a call available
        return jsonify(error="conflict", field="status",
                       reason=f"agent is {current}; status changes when the call ends"), 409
    (snapshot,) = rt().state.snapshot([agent_id], now)
    return jsonify({**agent_json(snapshot, rules), "previous": previous})


def apply_agent_status(agent_id: str, status: str, by: str, now: float) -> tuple[str, str]:
    """Set a person-chosen status (logged with `by`); a freed agent wakes the waiting work.

    Returns (previous, current); `current != status` means the state refused. Shared with the
    console's agent and admin pages.
    """
    state = rt().state
    try:
        previous, current = state.set_status(agent_id, status, now, by=by)
    except UnknownAgent:  # the live state lacks the agent (see `live_agents`): added, then set
        rt().sync_agents()
        previous, current = state.set_status(agent_id, status, now, by=by)
    if current == status == "available":
        from telephony import dispatch

        rt().enqueue(dispatch.agent_freed, None)
    return previous, current


# --- clients and their cards ----------------------------------------------------------------


@bp.get("/clients")
@requires("agent")
def find_clients():
    phone = request.args.get("phone", "")
    if not phone:
        raise BadRequest("phone", "give ?phone= in any format, e.g. +372 5123 4567")
    e164 = numbers.normalize(phone, rt().rules.current().hotline.country)
    if e164 is None:
        raise BadRequest("phone", f"{phone!r} is not a valid phone number")
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        found = [card.card(s, client.id)] if client else []
    return jsonify(clients=found, phone=e164)


CLIENT_NAME_MAX = 200  # clients.name is VARCHAR(200)
WINDOW = ("convenient_from", "convenient_to")


def card_fields(data: dict[str, Any], rules: Rules) -> dict[str, str | None]:
    """The card fields the body names, checked; null or "" clears one. A field left out is not
    in the result, so posting a known number never erases what the body did not mention."""
    fields: dict[str, str | None] = {}
    if "name" in data:
        fields["name"] = text_field(data, "name", max_length=CLIENT_NAME_MAX)
    if "language" in data:
        fields["language"] = text_field(data, "language", choices=tuple(rules.languages))
    if "zone" in data:
        zone = fields["zone"] = text_field(data, "zone")
        if zone is not None and not zone_is_valid(zone):
            raise BadRequest("zone", f"{zone!r} is not an IANA time zone")
    for field in WINDOW:
        if field in data:
            value = fields[field] = text_field(data, field)
            if value is not None and not HHMM.match(value):
                raise BadRequest(field, "a local time HH:MM, e.g. 09:30")
    return fields


@bp.post("/clients")
@requires("agent")
def create_client():
    """The card for this number: created (201) or updated (200) with the fields the body names."""
    data = body()
    phone = data.get("phone")
    if not isinstance(phone, str):
        raise BadRequest("phone", "required: the client's phone number")
    rules = rt().rules.current()
    e164 = numbers.normalize(phone, rules.hotline.country)
    if e164 is None:
        raise BadRequest("phone", f"{phone!r} is not a valid phone number")
    fields = card_fields(data, rules)
    with db.session() as s:  # a refusal below rolls back a card just created: nothing half-made
        client, created = card.find_or_create_client(s, e164, language=fields.get("language"),
                                                     name=fields.get("name"))
        window = {f: fields.get(f, getattr(client, f)) for f in WINDOW}
        half = (window["convenient_from"] is None) != (window["convenient_to"] is None)
        if half and fields.keys() & set(WINDOW):  # only when the body touches the window
            # the guard ignores half a window: a lone end would silently widen it to the legal hours
            missing = "convenient_to" if window["convenient_to"] is None else "convenient_from"
            raise BadRequest(missing, "convenient_from and convenient_to go together: set both, or clear both")
        card.update_client(s, client.id, by=g.principal.name, **fields)
        result = card.card(s, client.id)
    return jsonify(result), 201 if created else 200


@bp.get("/clients/<int:client_id>")
@requires("agent")
def get_client(client_id: int):
    limit = parse_limit()
    before = request.args.get("before")
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            raise BadRequest("client_id", f"no client {client_id}", 404)
        try:
            events, next_cursor = card.timeline(s, client_id, limit=limit, before=before)
        except ValueError:  # a made-up cursor (`decode_cursor`: no time or id a row can have)
            raise BadRequest("before", "not a cursor this API returned") from None
        result = card.card(s, client_id) or {}
        result["timeline"] = [event_json(e) for e in events]
        result["next"] = next_cursor
    return jsonify(result)


@bp.post("/clients/<int:client_id>/notes")
@requires("agent")
def add_note(client_id: int):
    data = body()
    text = data.get("text")
    kind = data.get("kind", "note")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("text", "required: the note's text")
    if kind not in ("note", "agreement"):
        raise BadRequest("kind", "note or agreement")
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            raise BadRequest("client_id", f"no client {client_id}", 404)
        event = card.add_note(s, client_id, text.strip(), by=g.principal.name, kind=kind)
        return jsonify(event_json(event)), 201


@bp.post("/clients/<int:client_id>/opt-out")
@requires("agent")
def opt_out_client(client_id: int):
    data = optional_body()
    source = text_field(data, "source", choices=tuple(OPT_OUT_SOURCES)) or "api"
    reason = text_field(data, "reason")
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            raise BadRequest("client_id", f"no client {client_id}", 404)
        optout = card.opt_out_client(s, client_id, source=source, reason=reason, by=g.principal.name)
        return jsonify(card.optout_json(optout)), 201


@bp.post("/opt-outs")
@requires("agent")
def opt_out_number():
    data = body()
    phone = data.get("phone")
    e164 = numbers.normalize(phone, rt().rules.current().hotline.country) if isinstance(phone, str) else None
    if e164 is None:
        raise BadRequest("phone", "required: a valid phone number")
    source = text_field(data, "source", choices=tuple(OPT_OUT_SOURCES)) or "api"
    reason = text_field(data, "reason")
    with db.session() as s:
        optout = card.opt_out_number(s, e164, source=source, reason=reason, by=g.principal.name)
        return jsonify(card.optout_json(optout)), 201


@bp.get("/opt-outs")
@requires("supervisor")
def list_opt_outs():
    with db.session() as s:
        return jsonify(opt_outs=[card.optout_json(o) for o in card.list_opt_outs(s)])


@bp.delete("/opt-outs/<int:optout_id>")
@requires("admin")
def withdraw_opt_out(optout_id: int):
    reason = text_field(optional_body(), "reason")
    with db.session() as s:
        optout = card.withdraw_opt_out(s, optout_id, by=g.principal.name, reason=reason)
        if optout is None:
            raise BadRequest("optout_id", f"no active opt-out {optout_id}", 404)
        return jsonify(card.optout_json(optout))


# --- outbound: the guard and the one dialler --------------------------------------------------


def dialler() -> Dialler:
    return dialler_for(rt())


AGENT_CALL = "agent_call"  # the one purpose the API places: the legal windows apply


def purpose_field(data: dict[str, Any], rules: Rules) -> str | None:
    """A purpose to check against: ours or one of the rules' `outbound.purposes`. Free text would
    be checked as the default silently, so a typo'd purpose is a 400 naming the known ones."""
    return text_field(data, "purpose", choices=(AGENT_CALL, *rules.outbound.purposes))


@bp.post("/outbound/check")
@requires("agent")
def outbound_check():
    data = body()
    phone = data.get("phone")
    if not isinstance(phone, str) or not phone:
        raise BadRequest("phone", "required: the number to check")
    at = parse_when(data.get("at"), "at")
    purpose = purpose_field(data, rt().rules.current())
    verdict = dialler().check(phone, at, purpose=purpose)
    return jsonify(verdict_json(verdict))


@bp.post("/outbound/screen")
@requires("supervisor")
def outbound_screen():
    data = body()
    phones = data.get("phones")
    if not isinstance(phones, list) or not all(isinstance(p, str) for p in phones):
        raise BadRequest("phones", "required: a list of phone numbers")
    if len(phones) > 100_000:
        raise BadRequest("phones", "at most 100,000 numbers per request; use `hotline screen` for more")
    at = parse_when(data.get("at"), "at")
    purpose = purpose_field(data, rt().rules.current())
    results = dialler().screen(phones, at, purpose=purpose)
    return jsonify(results=results)


@bp.post("/calls")
@requires("agent")
def place_call():
    """An agent's own call: always `agent_call`. A purpose's window replaces the legal ones, so a
    chosen purpose would let anyone dial outside legal hours; callbacks dial theirs themselves."""
    data = body()
    phone = data.get("phone")
    if not isinstance(phone, str) or not phone:
        raise BadRequest("phone", "required: the client's number")
    if text_field(data, "purpose") not in (None, AGENT_CALL):
        raise BadRequest("purpose", f"only {AGENT_CALL}: other purposes are placed by the work they belong to")
    rules = rt().rules.current()
    agent_id = text_field(data, "agent_id") or g.principal.agent_id
    if not agent_id:
        raise BadRequest("agent_id", "required: the agent whose line rings first")
    if agent_id not in rules.agents:
        raise BadRequest("agent_id", f"no agent {agent_id!r}")
    if g.principal.role == "agent" and agent_id != g.principal.agent_id:
        return jsonify(error="forbidden", reason="agents place calls from their own line"), 403
    result = dialler().place_call(
        phone, agent_id=agent_id, purpose=AGENT_CALL,
        requested_by=g.principal.name,
        now=datetime.now(UTC),
    )
    if result.error:
        return jsonify(error="twilio_refused", reason=result.error), 502
    if not result.placed:
        return jsonify(error="blocked", **verdict_json(result.verdict)), 409
    return jsonify(call_sid=result.call_sid, **verdict_json(result.verdict)), 201


def verdict_json(verdict: Any) -> dict[str, Any]:
    return {
        "allowed": verdict.allowed,
        "reason": verdict.reason,
        "next_allowed_at": iso(verdict.next_allowed_at),
        "next_allowed_local": {z: iso(t) for z, t in (verdict.next_allowed_local or {}).items()},
        "zones": list(verdict.zones),
    }


# --- rules ----------------------------------------------------------------------------------


@bp.get("/rules")
@requires("supervisor")
def get_rules():
    return jsonify(rt().rules.current().model_dump(mode="json"))


def review_json(review: RulesReview) -> dict[str, list[dict[str, str]]]:
    """A rules review's errors and warnings, each `{path, message}` (schema RulesProblem)."""
    return {"errors": [{"path": e.path, "message": e.message} for e in review.errors],
            "warnings": [{"path": w.path, "message": w.message} for w in review.warnings]}


@bp.post("/rules/check")
@requires("admin")
def check_rules_view():
    review = review_rules(request.get_data(as_text=True))
    return jsonify(ok=review.ok, **review_json(review)), (200 if review.ok else 422)


@bp.put("/rules")
@requires("admin")
def put_rules():
    """Replace the rules; like the console's editor, a saved change is a version (diff, rollback).
    Warnings do not stop the save: they come back with it."""
    from .console.rules import save_rules

    comment = request.args.get("comment")
    version_id, review = save_rules(request.get_data(as_text=True), g.principal.name, comment)
    if not review.ok:
        return jsonify(error="invalid_rules", **review_json(review)), 422
    return jsonify(ok=True, version=version_id, warnings=review_json(review)["warnings"])


def write_rules(text: str) -> None:
    """Make already-checked rules text live: the file atomically, this process, new agents.

    Shared with the console's rules editor, which checks first and records a version.
    """
    rules = load_rules(text)
    path = rt().settings.rules_path
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: other processes see the old or the new file, never half
    rt().rules.replace(rules)
    rt().sync_agents()
