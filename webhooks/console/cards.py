"""Client cards: search by name or any number format, the card with its timeline, notes and
agreements, opt-out and withdrawal, and the authenticated recording proxy.

Recordings are fetched from Twilio with the account's credentials and streamed through, so the
browser never sees a Twilio URL or credential and only a logged-in user of the right role hears one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
import sqlalchemy as sa
from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from recordings import card, client_search, db
from recordings.models import CardEvent, Recording, Voicemail
from telephony import numbers

from . import bp
from .auth import role_required, rt, user

MEDIA_TIMEOUT_SECONDS = 10  # Twilio answers media requests quickly; a hung fetch must not pin a worker
MEDIA_CHUNK_BYTES = 64 * 1024
TIMELINE_LIMIT = 200
# Events of one call folded into a single timeline row.
CALL_KINDS = frozenset({"call_arrived", "menu_choice", "agent_rung", "call_answered", "call_status",
                        "call_completed", "call_abandoned", "recording_linked", "outbound_placed",
                        "call_handled", "routed_to_voicemail", "high_volume_offer", "queued", "dequeued",
                        "offer_choice", "closed"})


@dataclass
class CallRow:
    call_sid: str
    at: datetime
    direction: str = "inbound"
    queue: str | None = None
    agent: str | None = None
    rings: int | None = None
    within_target: bool | None = None
    duration: int | None = None
    outcome: str = ""
    recordings: list[str] = field(default_factory=list)


@dataclass
class EventRow:
    kind: str
    at: datetime
    data: dict[str, Any]
    agent_id: str | None
    call_sid: str | None


def timeline_rows(events: list[CardEvent]) -> list[CallRow | EventRow]:
    """Newest first: each call as one row (rings, agent, duration, recordings), other events as they are."""
    calls: dict[str, CallRow] = {}
    rows: list[CallRow | EventRow] = []
    for event in events:  # newest first
        data = event.data or {}
        if event.call_sid and event.kind in CALL_KINDS:
            row = calls.get(event.call_sid)
            if row is None:
                row = calls[event.call_sid] = CallRow(event.call_sid, event.at)
                rows.append(row)
            row.at = min(row.at, event.at)
            row.queue = row.queue or event.queue or data.get("queue")
            if event.kind == "outbound_placed":
                row.direction, row.agent = "outbound", row.agent or data.get("agent")
            elif event.kind == "call_answered":
                row.agent, row.rings = data.get("agent") or event.agent_id, data.get("rings")
                row.within_target = data.get("within_target")
                row.outcome = row.outcome or "answered"
            elif event.kind in ("call_completed", "call_handled") and data.get("duration") is not None:
                row.duration = max(row.duration or 0, int(data["duration"]))
            elif event.kind == "call_abandoned":
                row.outcome = f"abandoned while {data.get('while', 'waiting')}"
            elif event.kind == "routed_to_voicemail" and not row.outcome:
                row.outcome = "to voicemail"
            elif event.kind == "recording_linked" and data.get("sid"):
                row.recordings.append(str(data["sid"]))
            continue
        rows.append(EventRow(event.kind, event.at, data, event.agent_id, event.call_sid))
    return rows


@bp.get("/cards")
@role_required("agent")
def cards_search() -> Any:
    q = request.args.get("q", "").strip()
    results = []
    if q:
        e164 = numbers.normalize(q, rt().rules.current().hotline.country)
        with db.session(readonly=True) as s:
            results = [card.card(s, c.id) for c in client_search.search_clients(s, q, e164)]
    return render_template("cards.html", q=q, results=results)


def load_card(client_id: int, before: str | None = None) -> dict[str, Any]:
    with db.session(readonly=True) as s:
        header = card.card(s, client_id)
        if header is None:
            abort(404, f"No client card {client_id}.")
        try:
            events, next_cursor = card.timeline(s, client_id, limit=TIMELINE_LIMIT, before=before)
        except ValueError:
            abort(400, "Not a timeline position this page gave out.")
    return {"client": header, "rows": timeline_rows(events), "next": next_cursor}


@bp.get("/cards/<int:client_id>")
@role_required("agent")
def card_view(client_id: int) -> Any:
    return render_template("card.html", **load_card(client_id, request.args.get("before")))


def back(client_id: int) -> Any:
    target = request.form.get("next", "")
    if target.startswith("/console/") and not target.startswith("//"):
        return redirect(target)
    return redirect(url_for("console.card_view", client_id=client_id))


@bp.post("/cards/<int:client_id>/notes")
@role_required("agent")
def card_note(client_id: int) -> Any:
    text = request.form.get("text", "").strip()
    kind = request.form.get("kind", "note")
    if kind not in ("note", "agreement"):
        abort(400, "A note or an agreement.")
    if not text:
        flash("Write the note first.", "error")
        return back(client_id)
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            abort(404, f"No client card {client_id}.")
        card.add_note(s, client_id, text, by=user().name, kind=kind,  # type: ignore[arg-type]
                      call_sid=request.form.get("call_sid") or None)
    flash("Agreement saved." if kind == "agreement" else "Note saved.")
    return back(client_id)


@bp.post("/cards/<int:client_id>/opt-out")
@role_required("agent")
def card_opt_out(client_id: int) -> Any:
    principal = user()
    with db.session() as s:
        if card.get_client(s, client_id) is None:
            abort(404, f"No client card {client_id}.")
        card.opt_out_client(s, client_id, source="agent" if principal.role == "agent" else "admin",
                            reason=request.form.get("reason", "").strip() or None, by=principal.name)
    flash("The client is opted out: no outbound call will be placed to them.")
    return back(client_id)


@bp.post("/opt-outs/<int:optout_id>/withdraw")
@role_required("admin")
def withdraw_opt_out(optout_id: int) -> Any:
    client_id = int(request.form.get("client_id", "0") or 0)
    with db.session() as s:
        optout = card.withdraw_opt_out(s, optout_id, by=user().name,
                                       reason=request.form.get("reason", "").strip() or None)
        if optout is None:
            abort(404, f"No active opt-out {optout_id}.")
        client_id = optout.client_id or client_id
    flash("Opt-out withdrawn.")
    if client_id:
        return back(client_id)
    return redirect(url_for("console.cards_search"))


# --- recordings -------------------------------------------------------------------------------


def recording_source(sid: str) -> tuple[str, str | None]:
    """(media URL, call sid) of a stored call recording or voicemail; 404 when unknown."""
    with db.session(readonly=True) as s:
        rec = s.scalar(sa.select(Recording).where(Recording.sid == sid))
        if rec is not None:
            return rec.url, rec.call_sid
        vm = s.scalar(sa.select(Voicemail).where(Voicemail.recording_sid == sid))
        if vm is not None:
            return vm.url, vm.call_sid
    abort(404, "No such recording.")


def agent_took_call(agent_id: str | None, call_sid: str | None) -> bool:
    if not agent_id or not call_sid:
        return False
    with db.session(readonly=True) as s:
        return bool(s.scalar(sa.select(sa.func.count()).select_from(CardEvent).where(
            CardEvent.call_sid == call_sid, CardEvent.agent_id == agent_id,
            CardEvent.kind.in_(("call_answered", "outbound_placed")))))


@bp.get("/recordings/<sid>")
@role_required("agent")
def recording(sid: str) -> Any:
    """Supervisors and admins hear any recording; an agent only those of calls they took."""
    url, call_sid = recording_source(sid)
    principal = user()
    if principal.role == "agent" and not agent_took_call(principal.agent_id, call_sid):
        abort(403, "Agents hear only recordings of their own calls.")
    settings = rt().settings
    try:
        upstream = requests.get(url, auth=(settings.twilio_account_sid, settings.twilio_auth_token),
                                stream=True, timeout=MEDIA_TIMEOUT_SECONDS)
    except requests.RequestException:
        abort(502, "Twilio did not answer for this recording. Try again in a minute.")
    if upstream.status_code != 200:
        upstream.close()
        abort(502, f"Twilio answered {upstream.status_code} for this recording.")
    headers = {"Cache-Control": "private, no-store"}
    if upstream.headers.get("Content-Length"):
        headers["Content-Length"] = upstream.headers["Content-Length"]

    def body() -> Any:
        try:
            yield from upstream.iter_content(MEDIA_CHUNK_BYTES)
        finally:
            upstream.close()

    return Response(stream_with_context(body()), mimetype=upstream.headers.get("Content-Type", "audio/wav"),
                    headers=headers)
