"""Admin pages: agents with live status (change it on their behalf, logged with the admin's
name), queues with their rules and load, console users. Agents and queues themselves are edited
in the rules editor, the one place the rules change.
"""

from __future__ import annotations

import time
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from recordings import console_users, db
from routing_rules import engine

from .. import api
from . import bp
from .auth import role_required, rt, user

STATUS_LOG_SHOWN = 30


@bp.get("/admin/agents")
@role_required("admin")
def admin_agents() -> Any:
    rules = rt().rules.current()
    now = time.time()
    live = {a: rt().state.agent(a, now) or {} for a in rules.agents}
    queues_of = {a: [q for q, rules_q in rules.queues.items() if a in rules_q.agents] for a in rules.agents}
    return render_template("admin_agents.html", agents=rules.agents, live=live, queues_of=queues_of,
                           log=rt().state.status_log(count=STATUS_LOG_SHOWN), statuses=api.PERSON_STATUSES)


@bp.post("/admin/agents/<agent_id>/status")
@role_required("admin")
def admin_agent_status(agent_id: str) -> Any:
    if agent_id not in rt().rules.current().agents:
        abort(404, f"No agent {agent_id!r} in the rules.")
    status = request.form.get("status", "")
    if status not in api.PERSON_STATUSES:
        abort(400, f"The status is one of {', '.join(api.PERSON_STATUSES)}.")
    _, current = api.apply_agent_status(agent_id, status, user().name, time.time())
    if current != status:
        flash(f"{agent_id} is {current}; the status changes when the call ends.", "error")
    else:
        flash(f"{agent_id} is now {current}.")
    return redirect(url_for("console.admin_agents"))


@bp.get("/admin/queues")
@role_required("admin")
def admin_queues() -> Any:
    rules = rt().rules.current()
    state = rt().state
    now = time.time()
    snapshots = {a.id: a for a in state.snapshot(list(rules.agents), now)}
    rows = []
    for name, q in rules.queues.items():
        rows.append({
            "name": name, "q": q, "waiting": state.line_length(name),
            "timeout": engine.ring_timeout_seconds(rules, name),
            "target": engine.ring_target(rules, name),  # a target Twilio cannot keep is flagged
            "ring_seconds": engine.ring_seconds(rules, name),
            "agents": [(a, snapshots[a].status if a in snapshots else "unknown") for a in q.agents],
        })
    return render_template("admin_queues.html", queues=rows)


@bp.get("/admin/users")
@role_required("admin")
def admin_users() -> Any:
    with db.session(readonly=True) as s:
        users = console_users.list_users(s)
    return render_template("admin_users.html", users=users)
