"""card_events (kind, at): the tallies and reports count events of a kind over a time range.

Hand-written (frozen: no imports from recordings.models), like 0001.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_card_events_kind_at", "card_events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_card_events_kind_at", table_name="card_events")
