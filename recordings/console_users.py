"""Console users in SQL: who may log in to the web console, with which role.

Only hashes are stored; hashing itself happens in the web layer (`webhooks/console/users.py`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import CONSOLE_ROLES, ConsoleUser


def get_user(s: Session, user_id: int) -> ConsoleUser | None:
    return s.get(ConsoleUser, user_id)


def find_user(s: Session, username: str) -> ConsoleUser | None:
    return s.scalar(sa.select(ConsoleUser).where(ConsoleUser.username == username))


def list_users(s: Session) -> list[ConsoleUser]:
    return list(s.scalars(sa.select(ConsoleUser).order_by(ConsoleUser.username)))


def put_user(s: Session, username: str, password_hash: str, role: str,
             agent_id: str | None = None) -> tuple[ConsoleUser, bool]:
    """Create the user, or reset an existing one's password, role and agent; (user, created)."""
    if role not in CONSOLE_ROLES:
        raise ValueError(f"role must be one of {', '.join(CONSOLE_ROLES)}, not {role!r}")
    if role == "agent" and not agent_id:
        raise ValueError("an agent user needs the agent id from the rules (--agent)")
    user = find_user(s, username)
    created = user is None
    if user is None:
        user = ConsoleUser(username=username)
        s.add(user)
    user.password_hash, user.role, user.agent_id = password_hash, role, agent_id
    s.flush()
    return user, created
