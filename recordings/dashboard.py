"""Figures the live dashboard shows, aggregated from card events in SQL.

Kept to what the dashboard needs (service level in rings, abandoned calls, volume by hour);
CSV/API reports live in `recordings/reports.py`. Service level counts `call_answered` events,
whose `data.within_target` the voice flow sets when the agent picks up within the queue's
`answer_within_rings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import CardEvent


@dataclass(frozen=True)
class ServiceLevel:
    answered: int
    within_target: int
    average_rings: float | None

    @property
    def percent(self) -> float | None:
        """Share of answered calls picked up within the ring target; None with no calls."""
        return 100.0 * self.within_target / self.answered if self.answered else None


@dataclass(frozen=True)
class HourFigures:
    start: datetime  # local, in the zone asked for
    calls: int  # call_arrived
    answered: int
    within_target: int
    abandoned: int

    @property
    def service_level(self) -> float | None:
        return 100.0 * self.within_target / self.answered if self.answered else None


def _window(kind: str, start: datetime, end: datetime, queue: str | None) -> list[sa.ColumnElement[bool]]:
    where = [CardEvent.kind == kind, CardEvent.at >= start, CardEvent.at < end]
    if queue is not None:
        where.append(CardEvent.queue == queue)
    return where


def _within() -> sa.ColumnElement[int]:
    return sa.case((CardEvent.data["within_target"].as_boolean(), 1), else_=0)


def service_level(s: Session, start: datetime, end: datetime, queue: str | None = None) -> ServiceLevel:
    """Answered calls in [start, end), how many within target, and the average rings to answer."""
    row = s.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_within()), 0),
                  sa.func.avg(CardEvent.data["rings"].as_float()))
        .where(*_window("call_answered", start, end, queue))
    ).one()
    return ServiceLevel(int(row[0]), int(row[1]), float(row[2]) if row[2] is not None else None)


def count_events(s: Session, kind: str, start: datetime, end: datetime, queue: str | None = None) -> int:
    """E.g. `call_abandoned` or `call_arrived` in [start, end)."""
    return int(s.scalar(sa.select(sa.func.count()).select_from(CardEvent)
                        .where(*_window(kind, start, end, queue))) or 0)


def by_hour(s: Session, start: datetime, end: datetime, zone: ZoneInfo) -> list[HourFigures]:
    """Volume and service level per local hour of [start, end).

    Bucketed in Python: the hour boundaries are local wall-clock hours (DST included), which
    SQLite and PostgreSQL cannot compute alike. Only the hour's start and two flags per event
    are read, so a day of events stays cheap.
    """
    rows = s.execute(
        sa.select(CardEvent.kind, CardEvent.at, _within())
        .where(CardEvent.kind.in_(("call_arrived", "call_answered", "call_abandoned")),
               CardEvent.at >= start, CardEvent.at < end)
    ).all()
    first = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    hours: list[datetime] = []
    at = first
    while at < end:
        hours.append(at)
        at = (at + timedelta(hours=1)).astimezone(zone)
    counts = {h: [0, 0, 0, 0] for h in hours}
    for kind, event_at, within in rows:
        hour = event_at.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        bucket = counts.get(hour)
        if bucket is None:
            continue
        if kind == "call_arrived":
            bucket[0] += 1
        elif kind == "call_answered":
            bucket[1] += 1
            bucket[2] += int(within)
        else:
            bucket[3] += 1
    return [HourFigures(h, *counts[h]) for h in hours]


def local_day(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Today's midnight in `zone` and `now`: the dashboard's "today"."""
    local = now.astimezone(zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0), now
