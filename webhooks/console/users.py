"""Console users: hashing and checking passwords (werkzeug.security), over `recordings.console_users`."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

from recordings import console_users, db
from recordings.models import ConsoleUser

MIN_PASSWORD_LENGTH = 8
# Checked when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


@dataclass(frozen=True)
class ConsoleAccount:
    id: int
    username: str
    role: str
    agent_id: str | None
    password_hash: str


def ensure_user(username: str, password: str, role: str, agent_id: str | None = None) -> bool:
    """Create the user, or reset its password/role/agent (the demo and the CLI); True if created."""
    username = username.strip()
    if not username:
        raise ValueError("a username is required")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    with db.session() as s:
        _, created = console_users.put_user(s, username, generate_password_hash(password), role,
                                            agent_id or None)
    return created


def authenticate(username: str, password: str) -> ConsoleAccount | None:
    with db.session(readonly=True) as s:
        user = console_users.find_user(s, username.strip())
        account = _account(user) if user else None
    if account is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return account if check_password_hash(account.password_hash, password) else None


def load_account(user_id: int) -> ConsoleAccount | None:
    with db.session(readonly=True) as s:
        user = console_users.get_user(s, user_id)
        return _account(user) if user else None


def _account(user: ConsoleUser) -> ConsoleAccount:
    return ConsoleAccount(user.id, user.username, user.role, user.agent_id, user.password_hash)
