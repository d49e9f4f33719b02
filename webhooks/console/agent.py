"""The agent console: my status, the card of the call routed to me (polled every 2 s), wrap-up
notes and agreements, and click-to-call through the outbound guard.

The current call comes from live state: the agent's `call_sid` → the call's hash → its E.164
→ the card. Click-to-call uses the same `Dialler` as `POST /api/calls`, so a blocked call shows
the guard's reason and the next allowed time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for

from recordings import card, db

from .. import api
from . import bp
from .auth import require_own_agent, role_required, rt, user
from .cards import timeline_rows

LIVE_CALL_STATUSES = ("ringing", "on_call")
PANEL_EVENTS = 8  # the popped card shows the latest few lines; the full card is a click away
REASONS = {
    "opted_out_client": "the client asked not to be called",
    "opted_out_number": "this number asked not to be called",
    "outside_hours": "it is outside the calling hours in the client's local time",
    "holiday": "it is a public holiday where the client is",
    "unknown_zone": "the client's time zone is unknown",
    "invalid_number": "the number is not a valid phone number",
}


def agent_or_404(agent_id: str) -> Any:
    agent = rt().rules.current().agents.get(agent_id)
    if agent is None:
        abort(404, f"No agent {agent_id!r} in the rules.")
    require_own_agent(agent_id)
    return agent


def current_call(agent_id: str) -> dict[str, Any]:
    """The agent's status and, while a call rings or is up, the call and its card."""
    state = rt().state
    fields = state.agent(agent_id, time.time()) or {}
    status = fields.get("status", "unknown")
    sid = fields.get("call_sid", "") if status in LIVE_CALL_STATUSES else ""
    result: dict[str, Any] = {"status": status, "call_sid": sid, "call": None, "client": None, "rows": []}
    if not sid:
        return result
    call = state.get_call(sid) or {}
    result["call"] = call
    e164 = call.get("e164")
    if e164:
        with db.session(readonly=True) as s:
            client = card.find_client_by_phone(s, e164)
            if client is not None:
                result["client"] = card.card(s, client.id)
                events, _ = card.timeline(s, client.id, limit=PANEL_EVENTS)
                result["rows"] = timeline_rows(events)
    return result


@bp.get("/agent")
@role_required("agent")
def agent_console() -> Any:
    principal = user()
    if principal.agent_id:
        return redirect(url_for("console.agent_page", agent_id=principal.agent_id))
    return redirect(url_for("console.admin_agents" if principal.role == "admin" else "console.dashboard"))


@bp.get("/agent/<agent_id>")
@role_required("agent")
def agent_page(agent_id: str) -> Any:
    agent = agent_or_404(agent_id)
    return render_template("agent.html", agent_id=agent_id, agent=agent, current=current_call(agent_id),
                           dial=None, phone="")


@bp.get("/agent/<agent_id>/current")
@role_required("agent")
def agent_current(agent_id: str) -> Any:
    agent_or_404(agent_id)
    current = current_call(agent_id)
    html = render_template("_current_call.html", agent_id=agent_id, current=current)
    return jsonify(status=current["status"], call_sid=current["call_sid"], html=html)


@bp.post("/agent/<agent_id>/status")
@role_required("agent")
def agent_status(agent_id: str) -> Any:
    agent_or_404(agent_id)
    status = request.form.get("status", "")
    if status not in api.PERSON_STATUSES:
        abort(400, f"The status is one of {', '.join(api.PERSON_STATUSES)}.")
    _, current = api.apply_agent_status(agent_id, status, user().name, time.time())
    if current != status:
        flash(f"You are {current}; your status changes when the call ends.", "error")
    else:
        flash(f"Status: {current}.")
    return redirect(url_for("console.agent_page", agent_id=agent_id))


@bp.post("/agent/<agent_id>/call")
@role_required("agent")
def agent_call(agent_id: str) -> Any:
    agent = agent_or_404(agent_id)
    phone = request.form.get("phone", "").strip()
    if not phone:
        flash("Enter the number to call.", "error")
        return redirect(url_for("console.agent_page", agent_id=agent_id))
    result = api.dialler().place_call(phone, agent_id=agent_id, purpose="agent_call",
                                      requested_by=user().name, now=datetime.now(UTC))
    dial = {"placed": result.placed, "call_sid": result.call_sid, "client_id": result.client_id,
            "error": result.error, **api.verdict_json(result.verdict),
            "reason_text": REASONS.get(result.verdict.reason or "", result.verdict.reason)}
    status = 201 if result.placed else (502 if result.error else 409)
    return render_template("agent.html", agent_id=agent_id, agent=agent, current=current_call(agent_id),
                           dial=dial, phone=phone), status
