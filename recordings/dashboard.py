"""Figures the live dashboard shows, from the same call facts as the report.

Kept to what the dashboard needs (service level in rings, abandoned calls, volume by hour);
CSV/API reports live in `recordings/reports.py`, which also holds the one definition of the
service level (`reports.service_level_pct`): calls are counted by when they arrived, and a call
counts as within target when its `call_answered` event says the agent picked up within the
queue's `answer_within_rings`. So the dashboard and a report over the same day agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import CardEvent
from .reports import CallFacts, call_facts, service_level_pct


@dataclass(frozen=True)
class ServiceLevel:
    calls: int  # arrived in the window
    answered: int
    within_target: int
    average_rings: float | None

    @property
    def percent(self) -> float | None:
        return service_level_pct(self.within_target, self.calls)


@dataclass(frozen=True)
class HourFigures:
    start: datetime  # local, in the zone asked for
    calls: int  # arrived in this hour
    answered: int
    within_target: int
    abandoned: int

    @property
    def service_level(self) -> float | None:
        return service_level_pct(self.within_target, self.calls)


def summarise(calls: Iterable[CallFacts]) -> ServiceLevel:
    calls = list(calls)
    answered = [c for c in calls if c.answered]
    rings = [c.rings for c in answered if c.rings is not None]
    return ServiceLevel(len(calls), len(answered), sum(1 for c in answered if c.within_target),
                        sum(rings) / len(rings) if rings else None)


def service_levels(s: Session, start: datetime, end: datetime, queues: Iterable[str]) -> dict[str | None, ServiceLevel]:
    """The service level of calls that arrived in [start, end): per queue, and under None for
    all calls (those that never reached a queue included). One query."""
    facts = call_facts(s, start, end)
    levels: dict[str | None, ServiceLevel] = {None: summarise(facts)}
    for queue in queues:
        levels[queue] = summarise(c for c in facts if c.queue == queue)
    return levels


def count_events(s: Session, kind: str, start: datetime, end: datetime, queue: str | None = None) -> int:
    """E.g. `call_abandoned` or `call_arrived` in [start, end)."""
    where = [CardEvent.kind == kind, CardEvent.at >= start, CardEvent.at < end]
    if queue is not None:
        where.append(CardEvent.queue == queue)
    return int(s.scalar(sa.select(sa.func.count()).select_from(CardEvent).where(*where)) or 0)


def by_hour(s: Session, start: datetime, end: datetime, zone: ZoneInfo) -> list[HourFigures]:
    """Calls and service level per local hour of arrival in [start, end).

    Bucketed in Python: the hour boundaries are local wall-clock hours (DST included), which
    SQLite and PostgreSQL cannot compute alike.
    """
    first = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    hours: list[datetime] = []
    at = first
    while at < end:
        hours.append(at)
        at = (at + timedelta(hours=1)).astimezone(zone)
    buckets: dict[datetime, list[CallFacts]] = {h: [] for h in hours}
    for call in call_facts(s, start, end):
        bucket = buckets.get(call.arrived_at.astimezone(zone).replace(minute=0, second=0, microsecond=0))
        if bucket is not None:
            bucket.append(call)
    figures = []
    for hour in hours:
        level = summarise(buckets[hour])
        figures.append(HourFigures(hour, level.calls, level.answered, level.within_target,
                                   sum(1 for c in buckets[hour] if c.abandoned)))
    return figures


def local_day(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Today's midnight in `zone` and `now`: the dashboard's "today"."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0), now
