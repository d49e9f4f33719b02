"""callbacks.dial_sid and dialled_at: which dial a `dialling` callback waits for, since when.

The dispatcher marks a callback dialling before it places the call, and a periodic sweep
settles dials that never reported back (`telephony.dispatch.sweep_stuck_dialling`). Rows
already dialling at the upgrade get the upgrade's time and no dial: their call is unknown, so
the sweep waits out the longest call Twilio allows before it settles them.

Hand-written (frozen: no imports from recordings.models), like 0001.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("callbacks", sa.Column("dial_sid", sa.String(64), nullable=True))
    op.add_column("callbacks", sa.Column("dialled_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # naive UTC text there, as the models store it
        now = now.replace(tzinfo=None)
    bind.execute(
        sa.text("UPDATE callbacks SET dialled_at = :now WHERE status = 'dialling'").bindparams(
            sa.bindparam("now", now, type_=sa.DateTime(timezone=True))
        )
    )


def downgrade() -> None:
    op.drop_column("callbacks", "dialled_at")
    op.drop_column("callbacks", "dial_sid")
