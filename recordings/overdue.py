"""Overdue work (voicemails, callbacks, complaints past their deadline) and the alerts about it.

An alert is a row keyed `{kind}:{id}:overdue` (a complaint has one per missed deadline:
`alert_key`), inserted once however often the periodic check runs or however many workers run
it; delivery (webhook, SMS) is telephony's, and is retried while `sent_at` is NULL. Functions
take an open session and never commit, like `card`.
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
ALERTS_PER_RUN = 500  # new alerts one check records; a backlog (first start on old data) takes a few runs
KEYS_PER_LOOKUP = 1000  # bound parameters in one `key IN (...)`: psycopg refuses more than 65,535


@dataclass(frozen=True)
class OverdueItem:
    kind: str  # voicemail | callback | complaint
    item_id: int
    client_id: int | None
    queue: str | None
    due_at: datetime
    stage: str | None = None  # a complaint's missed deadline: acknowledge | resolve

    @property
    def key(self) -> str:
        return alert_key(self.kind, self.item_id, self.stage)


def _key_suffix(stage: str | None) -> str:
    # a complaint's acknowledge stage keeps the plain key its alerts had before stages
    return ":resolve:overdue" if stage == "resolve" else ":overdue"


def alert_key(kind: str, item_id: int, stage: str | None = None) -> str:
    """`{kind}:{id}:overdue`; a complaint's missed resolve deadline is `complaint:{id}:resolve:overdue`."""
    return f"{kind}:{item_id}{_key_suffix(stage)}"


def alert_stage(key: str) -> str | None:
    """The complaint stage an alert key names (None for voicemails and callbacks)."""
    if not key.startswith("complaint:"):
        return None
    return "resolve" if key.endswith(_key_suffix("resolve")) else "acknowledge"


def _alerted(kind: str, item_id: Any, stage: str | None = None) -> sa.ColumnElement[bool]:
    """An alert exists for the row: one probe of the alerts' unique key per row, no key list."""
    key = sa.literal(f"{kind}:") + sa.cast(item_id, sa.String) + _key_suffix(stage)
    return sa.exists().where(Alert.key == key)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _voicemail_overdue(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(Voicemail.status == "open", Voicemail.due_at < now)


def _callback_overdue(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(Callback.status.in_(CALLBACK_OPEN_STATUSES), Callback.due_at < now)


def items_to_alert(s: Session, now: datetime, limit: int = ALERTS_PER_RUN) -> list[OverdueItem]:
    """Overdue items with no alert yet, oldest deadline first, at most `limit`.

    The query leaves out what was alerted already, so a run reads the new overdue work, not
    every overdue item ever (and sends no list of keys). A complaint is alerted once per
    escalated stage: `card.escalate_overdue_complaints` runs first, in the same transaction.
    (An escalation from before stages had its alert then, keyed `complaint:{id}:overdue`.)
    """
    items: list[OverdueItem] = []
    work: list[tuple[str, Any, sa.ColumnElement[bool]]] = [
        ("voicemail", Voicemail, _voicemail_overdue(now)), ("callback", Callback, _callback_overdue(now))]
    for kind, model, overdue in work:
        rows = s.execute(
            sa.select(model.id, model.client_id, model.queue, model.due_at)
            .where(overdue, ~_alerted(kind, model.id))
            .order_by(model.due_at, model.id)
            .limit(limit)
        )
        items += [OverdueItem(kind, item_id, client_id, queue, _aware(due))
                  for item_id, client_id, queue, due in rows]
    for stage in card.COMPLAINT_STAGES:
        due_at = card.complaint_stage_due(stage)
        rows = s.execute(
            sa.select(Complaint.id, Complaint.client_id, Complaint.queue, due_at)
            .where(card.complaint_stage_overdue(stage, now), card.complaint_stage_event(stage),
                   ~_alerted("complaint", Complaint.id, stage))
            .order_by(due_at, Complaint.id)
            .limit(limit)
        )
        items += [OverdueItem("complaint", item_id, client_id, queue, _aware(due), stage)
                  for item_id, client_id, queue, due in rows]
    return sorted(items, key=lambda i: (i.due_at, i.kind, i.item_id))[:limit]


def overdue_counts(s: Session, now: datetime) -> dict[str, int]:
    """{voicemails, callbacks, complaints, alerts_unsent}: the figures the dashboard and
    /metrics publish (gauges), each one COUNT query."""

    def count(query: sa.Select[Any]) -> int:
        return s.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0

    return {
        "voicemails": count(sa.select(Voicemail.id).where(_voicemail_overdue(now))),
        "callbacks": count(sa.select(Callback.id).where(_callback_overdue(now))),
        "complaints": count(sa.select(Complaint.id).where(card.complaint_overdue(now))),
        "alerts_unsent": count(sa.select(Alert).where(Alert.sent_at.is_(None),
                                                      Alert.attempts < MAX_SEND_ATTEMPTS)),
    }


def record_alerts(s: Session, items: list[OverdueItem], now: datetime) -> list[Alert]:
    """Insert an alert for each item that has none yet; returns only the new ones."""
    keys = list({i.key for i in items})
    seen: set[str] = set()
    for start in range(0, len(keys), KEYS_PER_LOOKUP):
        seen.update(s.scalars(sa.select(Alert.key).where(Alert.key.in_(keys[start:start + KEYS_PER_LOOKUP]))))
    created = []
    for item in items:
        if item.key in seen:
            continue
        seen.add(item.key)
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
