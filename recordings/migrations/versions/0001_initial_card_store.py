"""Initial card store: clients, numbers, opt-outs, card events, recordings, voicemails,
callbacks, complaints.

Hand-written (frozen: no imports from recordings.models) and checked on SQLite and PostgreSQL.
Times are DateTime(timezone=True): timestamptz on PostgreSQL, UTC text on SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_CALLBACK = "status IN ('pending', 'dialling')"
ACTIVE_CLIENT_OPT_OUT = "e164 IS NULL AND withdrawn_at IS NULL"
ACTIVE_NUMBER_OPT_OUT = "e164 IS NOT NULL AND withdrawn_at IS NULL"


def ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def text(name: str, length: int | None = None, nullable: bool = True) -> sa.Column:
    type_ = sa.String(length) if length else sa.Text()
    return sa.Column(name, type_, nullable=nullable)


def client_fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["client_id"], ["clients.id"], name=f"fk_{table}_client_id_clients", ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), nullable=False),
        text("name", 200),
        text("language", 8),
        text("zone", 64),
        text("convenient_from", 5),
        text("convenient_to", 5),
        sa.Column("convenient_days", sa.JSON(), nullable=True),
        ts("created_at"),
        ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_clients"),
    )

    op.create_table(
        "phone_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        text("e164", 20, nullable=False),
        text("label", 50),
        ts("created_at"),
        client_fk("phone_numbers"),
        sa.PrimaryKeyConstraint("id", name="pk_phone_numbers"),
        sa.UniqueConstraint("e164", name="uq_phone_numbers_e164"),
    )
    op.create_index("ix_phone_numbers_client_id", "phone_numbers", ["client_id"])

    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        text("e164", 20),
        text("source", 16, nullable=False),
        text("reason"),
        ts("created_at"),
        text("created_by", 100),
        ts("withdrawn_at", nullable=True),
        text("withdrawn_by", 100),
        text("withdrawn_reason"),
        sa.CheckConstraint("client_id IS NOT NULL OR e164 IS NOT NULL", name="ck_opt_outs_target"),
        client_fk("opt_outs"),
        sa.PrimaryKeyConstraint("id", name="pk_opt_outs"),
    )
    op.create_index("ix_opt_outs_client_id", "opt_outs", ["client_id"])
    op.create_index("ix_opt_outs_e164", "opt_outs", ["e164"])
    for name, column, where in (
        ("uq_opt_outs_active_client", "client_id", ACTIVE_CLIENT_OPT_OUT),
        ("uq_opt_outs_active_number", "e164", ACTIVE_NUMBER_OPT_OUT),
    ):
        op.create_index(
            name,
            "opt_outs",
            [column],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )

    op.create_table(
        "card_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        text("kind", 40, nullable=False),
        ts("at"),
        text("call_sid", 64),
        text("agent_id", 100),
        text("queue", 100),
        sa.Column("data", sa.JSON(), nullable=False),
        text("key", 200),
        client_fk("card_events"),
        sa.PrimaryKeyConstraint("id", name="pk_card_events"),
        sa.UniqueConstraint("key", name="uq_card_events_key"),
    )
    # Scanned backwards for newest-first pages on (client_id, at DESC, id DESC).
    op.create_index("ix_card_events_timeline", "card_events", ["client_id", "at", "id"])
    op.create_index("ix_card_events_call_sid", "card_events", ["call_sid"])

    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        text("sid", 64, nullable=False),
        text("call_sid", 64),
        sa.Column("client_id", sa.Integer(), nullable=True),
        text("url", nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        text("source", 40),
        text("status", 20, nullable=False),
        text("kind", 16, nullable=False),
        ts("started_at", nullable=True),
        ts("created_at"),
        client_fk("recordings", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.UniqueConstraint("sid", name="uq_recordings_sid"),
    )
    op.create_index("ix_recordings_call_sid", "recordings", ["call_sid"])
    op.create_index("ix_recordings_client_id", "recordings", ["client_id"])

    op.create_table(
        "voicemails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=True),
        text("call_sid", 64),
        text("recording_sid", 64, nullable=False),
        text("url", nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        text("queue", 100),
        text("language", 8),
        ts("created_at"),
        ts("due_at"),
        text("status", 16, nullable=False),
        ts("handled_at", nullable=True),
        text("handled_by", 100),
        text("note"),
        client_fk("voicemails", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_voicemails"),
        sa.UniqueConstraint("recording_sid", name="uq_voicemails_recording_sid"),
    )
    op.create_index("ix_voicemails_client_id", "voicemails", ["client_id"])
    op.create_index("ix_voicemails_status_due_at", "voicemails", ["status", "due_at"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        text("e164", 20, nullable=False),
        text("queue", 100, nullable=False),
        text("language", 8),
        text("call_sid", 64),
        ts("first_queued_at"),
        ts("requested_at"),
        ts("not_before", nullable=True),
        ts("due_at", nullable=True),
        text("status", 16, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        ts("next_attempt_at", nullable=True),
        text("last_result", 40),
        text("agent_id", 100),
        ts("closed_at", nullable=True),
        client_fk("callbacks"),
        sa.PrimaryKeyConstraint("id", name="pk_callbacks"),
    )
    op.create_index(
        "ix_callbacks_status_first_queued_at", "callbacks", ["status", "first_queued_at"]
    )
    op.create_index(
        "uq_callbacks_open_client_queue",
        "callbacks",
        ["client_id", "queue"],
        unique=True,
        sqlite_where=sa.text(OPEN_CALLBACK),
        postgresql_where=sa.text(OPEN_CALLBACK),
    )

    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        text("call_sid", 64),
        text("queue", 100),
        text("summary"),
        text("status", 16, nullable=False),
        ts("opened_at"),
        text("opened_by", 100),
        ts("ack_due_at"),
        ts("resolve_due_at"),
        ts("acknowledged_at", nullable=True),
        text("acknowledged_by", 100),
        ts("resolved_at", nullable=True),
        text("resolved_by", 100),
        text("resolution"),
        ts("escalated_at", nullable=True),
        client_fk("complaints"),
        sa.PrimaryKeyConstraint("id", name="pk_complaints"),
        sa.UniqueConstraint("call_sid", name="uq_complaints_call_sid"),
    )
    op.create_index("ix_complaints_client_id", "complaints", ["client_id"])
    op.create_index("ix_complaints_status_ack_due_at", "complaints", ["status", "ack_due_at"])


def downgrade() -> None:
    for table in (
        "complaints",
        "callbacks",
        "voicemails",
        "recordings",
        "card_events",
        "opt_outs",
        "phone_numbers",
        "clients",
    ):
        op.drop_table(table)  # drops the table's indexes with it
