"""Overdue work (voicemails, callbacks, complaints past their deadline) and the alerts about it.

An alert is a row keyed `{kind}:{id}:overdue`, inserted once however often the periodic check
runs or however many workers run it; delivery (webhook, SMS) is telephony's, and is retried
while `sent_at` is NULL. Functions take an open session and never commit, like `card`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import card
from .models import CALLBACK_OPEN_STATUSES, Alert, Callback, Complaint, Voicemail

MAX_SEND_ATTEMPTS = 5  # then the alert stays on the dashboard only; a dead receiver is not retried forever
RESEND_AFTER = timedelta(minutes=2)  # a claimed, unsent alert is tried again after this (worker died)


@dataclass(frozen=True)
class OverdueItem:
    kind: str  # voicemail | callback | complaint
    item_id: int
    client_id: int | None
    queue: str | None
    due_at: datetime

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.item_id}:overdue"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _overdue_voicemails(now: datetime) -> sa.Select[Any]:
    return sa.select(Voicemail).where(Voicemail.status == "open", Voicemail.due_at < now)


def _overdue_callbacks(now: datetime) -> sa.Select[Any]:
    return sa.select(Callback).where(Callback.status.in_(CALLBACK_OPEN_STATUSES),
                                     Callback.due_at < now)


def _overdue_complaints(now: datetime) -> sa.Select[Any]:
    return sa.select(Complaint).where(
        sa.or_(
            sa.and_(Complaint.status == "open", Complaint.ack_due_at < now),
            sa.and_(Complaint.status != "resolved", Complaint.resolve_due_at < now),
        )
    )


def overdue_items(s: Session, now: datetime) -> list[OverdueItem]:
    """Everything past its deadline now, oldest deadline first."""
    items = [OverdueItem("voicemail", v.id, v.client_id, v.queue, _aware(v.due_at))
             for v in s.scalars(_overdue_voicemails(now))]
    items += [OverdueItem("callback", c.id, c.client_id, c.queue, _aware(c.due_at))
              for c in s.scalars(_overdue_callbacks(now)) if c.due_at is not None]
    for row in s.scalars(_overdue_complaints(now)):
        missed_ack = row.status == "open" and _aware(row.ack_due_at) < now
        due = row.ack_due_at if missed_ack else row.resolve_due_at
        items.append(OverdueItem("complaint", row.id, row.client_id, row.queue, _aware(due)))
    return sorted(items, key=lambda i: (i.due_at, i.kind, i.item_id))


def overdue_counts(s: Session, now: datetime) -> dict[str, int]:
    """{voicemails, callbacks, complaints, alerts_unsent}: the figures the dashboard and
    /metrics publish (gauges), each one COUNT query."""

    def count(query: sa.Select[Any]) -> int:
        return s.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0

    return {
        "voicemails": count(_overdue_voicemails(now)),
        "callbacks": count(_overdue_callbacks(now)),
        "complaints": count(_overdue_complaints(now)),
        "alerts_unsent": count(sa.select(Alert).where(Alert.sent_at.is_(None),
                                                      Alert.attempts < MAX_SEND_ATTEMPTS)),
    }


def record_alerts(s: Session, items: list[OverdueItem], now: datetime) -> list[Alert]:
    """Insert an alert for each item that has none yet; returns only the new ones."""
    if not items:
        return []
    keys = {i.key for i in items}
    seen = set(s.scalars(sa.select(Alert.key).where(Alert.key.in_(keys))))
    created = []
    for item in items:
        if item.key in seen:
            continue
        row = Alert(key=item.key, kind=item.kind, item_id=item.item_id, client_id=item.client_id,
                    queue=item.queue, due_at=item.due_at, created_at=now, attempts=0)

        def find(key: str = item.key) -> Alert | None:
            return s.scalar(sa.select(Alert).where(Alert.key == key))

        stored, new = card._insert_or_find(s, row, find)
        if new:
            created.append(stored)
    return created


def claim_unsent(s: Session, now: datetime, limit: int = 50) -> list[Alert]:
    """Alerts to deliver now, each claimed by bumping `attempts` (one worker wins a row)."""
    rows = list(s.scalars(
        sa.select(Alert)
        .where(Alert.sent_at.is_(None), Alert.attempts < MAX_SEND_ATTEMPTS)
        .order_by(Alert.created_at, Alert.id)
        .limit(limit)
    ))
    claimed = []
    for row in rows:
        result = s.execute(
            sa.update(Alert)
            .where(Alert.id == row.id, Alert.sent_at.is_(None), Alert.attempts == row.attempts,
                   sa.or_(Alert.attempts == 0, Alert.created_at < now - RESEND_AFTER * row.attempts))
            .values(attempts=row.attempts + 1)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            s.refresh(row)
            claimed.append(row)
    return claimed


def mark_sent(s: Session, alert_id: int, now: datetime, supervisor: str | None) -> None:
    s.execute(sa.update(Alert).where(Alert.id == alert_id)
              .values(sent_at=now, supervisor=supervisor, last_error=None))


def mark_failed(s: Session, alert_id: int, error: str) -> None:
    s.execute(sa.update(Alert).where(Alert.id == alert_id).values(last_error=error[:500]))
