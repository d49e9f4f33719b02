"""The client card's tables (SQLAlchemy 2 typed ORM). Writes go through `recordings.card`.

Times are timezone-aware UTC in Python on both backends: PostgreSQL stores timestamptz,
SQLite stores naive UTC text (sortable, so keyset pagination works the same).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

OPT_OUT_SOURCES = ("ivr", "agent", "admin", "import", "api")
VOICEMAIL_STATUSES = ("open", "handled")
CALLBACK_STATUSES = ("pending", "dialling", "completed", "failed", "cancelled", "blocked")
CALLBACK_OPEN_STATUSES = ("pending", "dialling")  # at most one of these per client + queue
COMPLAINT_STATUSES = ("open", "acknowledged", "resolved")
RECORDING_KINDS = ("call", "voicemail")
ACTIVE_CLIENT_OPT_OUT = "e164 IS NULL AND withdrawn_at IS NULL"
ACTIVE_NUMBER_OPT_OUT = "e164 IS NOT NULL AND withdrawn_at IS NULL"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out; naive datetimes are a bug and rejected."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
    }


class OptOut(Base):
    """An opt-out ("don't call me again"): a whole client (e164 NULL) or one number (e164 set).

    Withdrawing keeps the row (who, when, why) instead of deleting it.
    """

    __tablename__ = "opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    e164: Mapped[str | None] = mapped_column(sa.String(20), index=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(100))
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(sa.String(100))
    withdrawn_reason: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint("client_id IS NOT NULL OR e164 IS NOT NULL", name="target"),
        # One active opt-out per client and per number, so concurrent "stop" presses collapse.
        sa.Index(
            "uq_opt_outs_active_client",
            "client_id",
            unique=True,
            sqlite_where=sa.text(ACTIVE_CLIENT_OPT_OUT),
            postgresql_where=sa.text(ACTIVE_CLIENT_OPT_OUT),
        ),
        sa.Index(
            "uq_opt_outs_active_number",
            "e164",
            unique=True,
            sqlite_where=sa.text(ACTIVE_NUMBER_OPT_OUT),
            postgresql_where=sa.text(ACTIVE_NUMBER_OPT_OUT),
        ),
    )

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    language: Mapped[str | None] = mapped_column(sa.String(8))
    zone: Mapped[str | None] = mapped_column(sa.String(64))  # IANA; None → the number's zones
    convenient_from: Mapped[str | None] = mapped_column(sa.String(5))  # local "HH:MM"
    convenient_to: Mapped[str | None] = mapped_column(sa.String(5))
    convenient_days: Mapped[list[str] | None] = mapped_column(sa.JSON)  # ["mon", ..., "sun"]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Derived, never stored: an active client-level opt-out exists.
    opted_out: Mapped[bool] = column_property(
        sa.exists()
        .where(OptOut.client_id == id, OptOut.e164.is_(None), OptOut.withdrawn_at.is_(None))
        .correlate_except(OptOut)
    )

    numbers: Mapped[list[PhoneNumber]] = relationship(
        back_populates="client", order_by="PhoneNumber.id", cascade="all, delete-orphan"
    )


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        sa.ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    e164: Mapped[str] = mapped_column(sa.String(20), unique=True)  # one card per number
    label: Mapped[str | None] = mapped_column(sa.String(50))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    client: Mapped[Client] = relationship(back_populates="numbers")


class CardEvent(Base):
    """One line of the card's timeline. Appended only by `card.append_event`."""

    __tablename__ = "card_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("clients.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    call_sid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(sa.String(100))
    queue: Mapped[str | None] = mapped_column(sa.String(100))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    key: Mapped[str | None] = mapped_column(sa.String(200), unique=True)  # idempotency

    __table_args__ = (
        # Newest-first pages scan this B-tree backwards (both backends), which serves
        # ORDER BY at DESC, id DESC as well as a DESC index would, and Alembic can compare it.
        sa.Index("ix_card_events_timeline", "client_id", "at", "id"),
        # today's tallies per kind (/metrics), reports over a range: migration 0004
        sa.Index("ix_card_events_kind_at", "kind", "at"),
    )


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    call_sid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    client_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    url: Mapped[str] = mapped_column(sa.Text)
    duration: Mapped[int | None]  # seconds
    channels: Mapped[int | None]
    source: Mapped[str | None] = mapped_column(sa.String(40))  # DialVerb, RecordVerb, ...
    status: Mapped[str] = mapped_column(sa.String(20))
    kind: Mapped[str] = mapped_column(sa.String(16), default="call")
    started_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Voicemail(Base):
    """A message to answer by `due_at`; overdue = past due_at and still open."""

    __tablename__ = "voicemails"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int | None] = mapped_column(  # None: an anonymous caller
        sa.ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    call_sid: Mapped[str | None] = mapped_column(sa.String(64))
    recording_sid: Mapped[str] = mapped_column(sa.String(64), unique=True)
    url: Mapped[str] = mapped_column(sa.Text)
    duration: Mapped[int | None]
    queue: Mapped[str | None] = mapped_column(sa.String(100))
    language: Mapped[str | None] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    handled_at: Mapped[datetime | None]
    handled_by: Mapped[str | None] = mapped_column(sa.String(100))
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_voicemails_status_due_at", "status", "due_at"),)

    def is_overdue(self, now: datetime) -> bool:
        return self.status == "open" and now > self.due_at


class Callback(Base):
    """A promised call back. `first_queued_at` keeps the caller's place in line."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.ForeignKey("clients.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(sa.String(20))
    queue: Mapped[str] = mapped_column(sa.String(100))
    language: Mapped[str | None] = mapped_column(sa.String(8))
    call_sid: Mapped[str | None] = mapped_column(sa.String(64))
    first_queued_at: Mapped[datetime]
    requested_at: Mapped[datetime]
    not_before: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_result: Mapped[str | None] = mapped_column(sa.String(40))
    agent_id: Mapped[str | None] = mapped_column(sa.String(100))
    closed_at: Mapped[datetime | None]
    # The latest dial: its id (the dispatcher's `CB{id}-{ms}` until the call is placed, then
    # the agent leg's CallSid), which keys its attempt, and when it began (the sweep's clock).
    dial_sid: Mapped[str | None] = mapped_column(sa.String(64))
    dialled_at: Mapped[datetime | None]

    __table_args__ = (
        sa.Index("ix_callbacks_status_first_queued_at", "status", "first_queued_at"),
        sa.Index(
            "uq_callbacks_open_client_queue",
            "client_id",
            "queue",
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'dialling')"),
            postgresql_where=sa.text("status IN ('pending', 'dialling')"),
        ),
    )

    @property
    def is_open(self) -> bool:
        return self.status in CALLBACK_OPEN_STATUSES


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(
        sa.ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    call_sid: Mapped[str | None] = mapped_column(sa.String(64), unique=True)  # one per call
    queue: Mapped[str | None] = mapped_column(sa.String(100))
    summary: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    opened_at: Mapped[datetime]
    opened_by: Mapped[str | None] = mapped_column(sa.String(100))
    ack_due_at: Mapped[datetime]
    resolve_due_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(100))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(sa.String(100))
    resolution: Mapped[str | None] = mapped_column(sa.Text)
    escalated_at: Mapped[datetime | None]

    __table_args__ = (sa.Index("ix_complaints_status_ack_due_at", "status", "ack_due_at"),)


CONSOLE_ROLES = ("admin", "supervisor", "agent")


class ConsoleUser(Base):
    """A person who logs in to the web console; only the password's hash is kept."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    agent_id: Mapped[str | None] = mapped_column(sa.String(100))  # the rules' agent id, if an agent
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("role IN ('admin', 'supervisor', 'agent')", name="role"),
    )


class RulesVersion(Base):
    """A saved rules file: who saved it, when and why, so a change can be diffed and rolled back."""

    __tablename__ = "rules_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(100))
    comment: Mapped[str | None] = mapped_column(sa.Text)


ALERT_KINDS = ("voicemail", "callback", "complaint")


class Alert(Base):
    """An overdue item reported to the supervisor: one row per item (`key`), so it is sent once.

    `sent_at` stays NULL until a channel accepted it; the periodic check retries those.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)  # `{kind}:{id}:overdue`
    kind: Mapped[str] = mapped_column(sa.String(16))
    item_id: Mapped[int]
    client_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("clients.id", ondelete="SET NULL"), index=True
    )
    queue: Mapped[str | None] = mapped_column(sa.String(100))
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    supervisor: Mapped[str | None] = mapped_column(sa.String(100))  # on duty when sent

    __table_args__ = (sa.Index("ix_alerts_sent_at", "sent_at"),)
