"""The live dashboard: waiting calls and agents per queue, today's service level in rings,
abandoned calls, open and overdue voicemails/callbacks/complaints, and an hourly SVG chart.

The page re-fetches its live part (`/console/dashboard/live`) every 5 s; the chart is SVG drawn
on the server, so the page needs no chart library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template

from recordings import card, db
from recordings import dashboard as figures
from routing_rules import engine

from . import bp
from .auth import role_required, rt

CHART_W, CHART_H, CHART_PAD = 720, 200, 30  # px; the bars fill 24 slots between the paddings


@dataclass(frozen=True)
class Deadline:
    what: str  # voicemail, callback, complaint
    id: int
    client_id: int | None
    queue: str | None
    due_at: datetime | None
    overdue: bool
    detail: str


def chart(hours: list[figures.HourFigures]) -> dict[str, Any]:
    """Bar heights (calls) and service-level points, in SVG coordinates."""
    top = max([h.calls for h in hours] + [1])
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    slot = inner_w / max(1, len(hours))
    bars, points = [], []
    for i, h in enumerate(hours):
        x = CHART_PAD + i * slot
        height = inner_h * h.calls / top
        bars.append({"x": round(x + slot * 0.15, 1), "y": round(CHART_PAD + inner_h - height, 1),
                     "w": round(slot * 0.7, 1), "h": round(height, 1), "label": f"{h.start:%H}",
                     "calls": h.calls, "sl": h.service_level, "lx": round(x + slot / 2, 1)})
        if h.service_level is not None:
            y = CHART_PAD + inner_h * (1 - h.service_level / 100)
            points.append((round(x + slot / 2, 1), round(y, 1)))
    return {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD, "top": top, "bars": bars,
            "points": " ".join(f"{x},{y}" for x, y in points), "dots": points,
            "base": CHART_H - CHART_PAD}


def deadlines(now: datetime) -> list[Deadline]:
    """Open voicemails, callbacks and complaints, soonest deadline first."""
    rows: list[Deadline] = []
    with db.session(readonly=True) as s:
        for vm in card.list_voicemails(s, "open", now):
            rows.append(Deadline("voicemail", vm.id, vm.client_id, vm.queue, vm.due_at, vm.is_overdue(now),
                                 f"{vm.duration or 0} s message"))
        for cb in card.list_callbacks(s, "open", now):
            rows.append(Deadline("callback", cb.id, cb.client_id, cb.queue, cb.due_at,
                                 bool(cb.due_at and now > cb.due_at),
                                 f"{cb.e164}, {cb.attempts} attempt(s), {cb.status}"))
        for c in card.list_complaints(s, "unresolved", now):
            due = c.ack_due_at if c.status == "open" else c.resolve_due_at
            step = "acknowledge" if c.status == "open" else "resolve"
            rows.append(Deadline("complaint", c.id, c.client_id, c.queue, due, now > due,
                                 f"{c.status}; {step} by the deadline"))
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda d: (not d.overdue, d.due_at or far))


def live_data() -> dict[str, Any]:
    runtime = rt()
    rules = runtime.rules.current()
    state = runtime.state
    now_ts = time.time()
    now = datetime.now(UTC)
    zone = engine.zone(rules)
    snapshots = {a.id: a for a in state.snapshot(list(rules.agents), now_ts)}
    queues = []
    start, _ = figures.local_day(now, zone)
    with db.session(readonly=True) as s:
        levels = figures.service_levels(s, start, now, rules.queues)
        for name, q in rules.queues.items():
            longest = state.longest_waiting(name)
            by_status: dict[str, list[str]] = {}
            for agent_id in q.agents:
                snap = snapshots.get(agent_id)
                by_status.setdefault(snap.status if snap else "unknown", []).append(agent_id)
            queues.append({
                "name": name, "department": q.department_for("en"),
                "waiting": state.line_length(name),
                "longest_wait": int(now_ts - longest[1]) if longest else None,
                "agents": dict(sorted(by_status.items())),
                "open": engine.is_open(rules, name, now),
                "target_rings": q.answer_within_rings,
                "service": levels[name],
                "abandoned": figures.count_events(s, "call_abandoned", start, now, name),
            })
        today = {
            "service": levels[None],
            "abandoned": figures.count_events(s, "call_abandoned", start, now),
            "calls": figures.count_events(s, "call_arrived", start, now),
        }
        hours = figures.by_hour(s, start, start + timedelta(days=1), zone)
    agents = [{"id": a, "name": r.name, "status": snapshots[a].status if a in snapshots else "unknown"}
              for a, r in rules.agents.items()]
    return {"queues": queues, "today": today, "chart": chart(hours), "deadlines": deadlines(now),
            "agents": agents, "now": now, "start": start}


@bp.get("/dashboard")
@role_required("supervisor")
def dashboard() -> Any:
    return render_template("dashboard.html", **live_data())


@bp.get("/dashboard/live")
@role_required("supervisor")
def dashboard_live() -> Any:
    return render_template("_dashboard_live.html", **live_data())
