"""The service-level report: what the standard promised and what the card says happened.

Calls are counted by the time they arrived (a `call_arrived` event in [start, end)); everything
else about a call (its queue, who answered in how many rings, abandonment, the survey score)
comes from that call's other events, so a call answered just after `end` still counts as
answered. Voicemails, callbacks and complaints are counted by when they were left, requested or
opened, and "in time" compares the handling time with their deadline. One SQL query per source,
then a plain aggregation in Python over the rows.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import Callback, CardEvent, Complaint, Voicemail

Grouping = Literal["queue", "agent", "hour"]
GROUPINGS: tuple[Grouping, ...] = ("queue", "agent", "hour")
CALL_KINDS = ("call_arrived", "menu_choice", "call_answered", "call_abandoned", "survey_score")
NONE = "(none)"  # the group of calls without a queue, unanswered calls (by agent), unhandled work
TOTAL = "total"

COLUMNS = (
    "group", "calls", "answered", "answered_within_target", "service_level_pct",
    "avg_rings_to_answer", "abandoned", "voicemails", "voicemails_answered_in_time",
    "callbacks", "callbacks_answered_in_time", "complaints", "complaints_acknowledged_in_time",
    "survey_responses", "survey_average",
)


@dataclass
class CallFacts:
    sid: str
    arrived_at: datetime
    queue: str | None = None
    agent: str | None = None
    rings: int | None = None
    within_target: bool = False
    answered: bool = False
    abandoned: bool = False
    survey: int | None = None


@dataclass
class Tally:
    calls: int = 0
    answered: int = 0
    within_target: int = 0
    rings: list[int] = field(default_factory=list)
    abandoned: int = 0
    voicemails: int = 0
    voicemails_in_time: int = 0
    callbacks: int = 0
    callbacks_in_time: int = 0
    complaints: int = 0
    complaints_in_time: int = 0
    scores: list[int] = field(default_factory=list)

    def row(self, group: str) -> dict[str, Any]:
        return {
            "group": group,
            "calls": self.calls,
            "answered": self.answered,
            "answered_within_target": self.within_target,
            "service_level_pct": _round(service_level_pct(self.within_target, self.calls)),
            "avg_rings_to_answer": round(sum(self.rings) / len(self.rings), 2) if self.rings else None,
            "abandoned": self.abandoned,
            "voicemails": self.voicemails,
            "voicemails_answered_in_time": self.voicemails_in_time,
            "callbacks": self.callbacks,
            "callbacks_answered_in_time": self.callbacks_in_time,
            "complaints": self.complaints,
            "complaints_acknowledged_in_time": self.complaints_in_time,
            "survey_responses": len(self.scores),
            "survey_average": round(sum(self.scores) / len(self.scores), 2) if self.scores else None,
        }


def service_level_pct(within_target: int, calls: int) -> float | None:
    """THE service level, wherever it is shown (report, API, dashboard): the share of calls
    offered (arrived) that an agent answered within the queue's ring target. A call that was
    abandoned, went to voicemail or was answered late counts against it. None with no calls."""
    return 100.0 * within_target / calls if calls else None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


MIN_YEAR, MAX_YEAR = 2000, 2100  # reports outside these years are typos, and would overflow zones


def parse_bound(text: str, zone: str) -> datetime:
    """`2026-11-24` (midnight in the hotline's zone) or an ISO time with an offset → aware UTC.

    Raises ValueError with a message an admin can act on.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise ValueError(f"{text!r}: a year from {MIN_YEAR} to {MAX_YEAR}")
        return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(text)  # 3.11 reads a trailing Z
    except ValueError:
        raise ValueError(f"{text!r}: use a date (2026-11-24) or a time with an offset "
                         "(2026-11-24T08:00:00+02:00)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r}: the time needs an offset, e.g. +02:00 or Z")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValueError(f"{text!r}: a year from {MIN_YEAR} to {MAX_YEAR}")
    return parsed.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def call_facts(s: Session, start: datetime, end: datetime) -> list[CallFacts]:
    """One entry per call that arrived in [start, end), from all of that call's events."""
    arrived = sa.select(CardEvent.call_sid).where(
        CardEvent.kind == "call_arrived", CardEvent.at >= start, CardEvent.at < end,
        CardEvent.call_sid.is_not(None))
    rows = s.execute(
        sa.select(CardEvent.call_sid, CardEvent.kind, CardEvent.at, CardEvent.agent_id,
                  CardEvent.queue, CardEvent.data)
        .where(CardEvent.call_sid.in_(arrived), CardEvent.kind.in_(CALL_KINDS))
        .order_by(CardEvent.at, CardEvent.id)
    )
    calls: dict[str, CallFacts] = {}
    for sid, kind, at, agent_id, queue, data in rows:
        data = data or {}
        if kind == "call_arrived":
            calls.setdefault(sid, CallFacts(sid, _aware(at)))
            continue
        call = calls.get(sid)
        if call is None:
            continue  # an event ordered before its call_arrived (same instant): rare, skipped
        call.queue = data.get("queue") or queue or call.queue
        if kind == "call_answered" and not call.answered:
            call.answered = True
            call.agent = data.get("agent") or agent_id
            call.rings = int(data["rings"]) if data.get("rings") is not None else None
            call.within_target = bool(data.get("within_target"))
        elif kind == "call_abandoned":
            call.abandoned = True
        elif kind == "survey_score" and data.get("score") is not None:
            call.survey = int(data["score"])
    return list(calls.values())


def service_level(
    s: Session,
    start: datetime,
    end: datetime,
    *,
    queue: str | None = None,
    by: Grouping = "queue",
    zone: str = "UTC",
) -> list[dict[str, Any]]:
    """Rows of figures per group (queue, answering agent, or hour of arrival in `zone`), sorted,
    then a `total` row. `queue` limits every figure to that queue."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    tz = ZoneInfo(zone)

    def hour(at: datetime) -> str:
        return _aware(at).astimezone(tz).strftime("%Y-%m-%d %H:00")

    tallies: dict[str, Tally] = defaultdict(Tally)
    total = Tally()

    def add(group: str | None, update: Any) -> None:
        update(tallies[group or NONE])
        update(total)

    for call in call_facts(s, start, end):
        if queue is not None and call.queue != queue:
            continue
        group = {"queue": call.queue, "agent": call.agent, "hour": hour(call.arrived_at)}[by]

        def count_call(t: Tally, c: CallFacts = call) -> None:
            t.calls += 1
            t.answered += c.answered
            t.within_target += c.answered and c.within_target
            if c.answered and c.rings is not None:
                t.rings.append(c.rings)
            t.abandoned += c.abandoned
            if c.survey is not None:
                t.scores.append(c.survey)

        add(group, count_call)

    for vm in _in_range(s, Voicemail, Voicemail.created_at, start, end, queue):
        in_time = vm.handled_at is not None and _aware(vm.handled_at) <= _aware(vm.due_at)
        group = {"queue": vm.queue, "agent": vm.handled_by, "hour": hour(vm.created_at)}[by]
        add(group, lambda t, ok=in_time: _bump(t, "voicemails", ok))
    for cb in _in_range(s, Callback, Callback.requested_at, start, end, queue):
        in_time = cb.status == "completed" and cb.closed_at is not None and (
            cb.due_at is None or _aware(cb.closed_at) <= _aware(cb.due_at))
        group = {"queue": cb.queue, "agent": cb.agent_id, "hour": hour(cb.requested_at)}[by]
        add(group, lambda t, ok=in_time: _bump(t, "callbacks", ok))
    for row in _in_range(s, Complaint, Complaint.opened_at, start, end, queue):
        in_time = row.acknowledged_at is not None and _aware(row.acknowledged_at) <= _aware(row.ack_due_at)
        group = {"queue": row.queue, "agent": row.acknowledged_by, "hour": hour(row.opened_at)}[by]
        add(group, lambda t, ok=in_time: _bump(t, "complaints", ok))

    ordered = sorted(tallies, key=lambda g: (g == NONE, g))
    return [tallies[g].row(g) for g in ordered] + [total.row(TOTAL)]


def _bump(tally: Tally, what: str, in_time: bool) -> None:
    setattr(tally, what, getattr(tally, what) + 1)
    if in_time:
        setattr(tally, f"{what}_in_time", getattr(tally, f"{what}_in_time") + 1)


def _in_range(s: Session, model: Any, column: Any, start: datetime, end: datetime,
              queue: str | None) -> Iterable[Any]:
    query = sa.select(model).where(column >= start, column < end).order_by(column, model.id)
    if queue is not None:
        query = query.where(model.queue == queue)
    return s.scalars(query)


def write_csv(rows: list[dict[str, Any]], out: IO[str]) -> None:
    """The report as CSV with a header; empty figures (no calls, no answers) as blanks."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
