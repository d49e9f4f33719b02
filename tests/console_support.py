"""Console test helpers shared by the Flask-client and browser tests: users, login, CSRF."""

from __future__ import annotations

from functools import cache
from typing import Any

from werkzeug.security import generate_password_hash

from recordings import console_users, db

# username → (password, role, agent id); agent ids are the example rules' agents.
USERS: dict[str, tuple[str, str, str | None]] = {
    "admin": ("admin-pass-1", "admin", None),
    "super": ("super-pass-1", "supervisor", None),
    "anna": ("anna-pass-1", "agent", "anna"),
    "mart": ("mart-pass-1", "agent", "mart"),
}


@cache
def _hash(password: str) -> str:
    return generate_password_hash(password)  # scrypt is slow on purpose: hash once per session


def add_users() -> None:
    """The four console users, straight into SQL (`ensure_user` is tested on its own)."""
    with db.session() as s:
        for name, (password, role, agent_id) in USERS.items():
            console_users.put_user(s, name, _hash(password), role, agent_id)


def csrf(client: Any) -> str:
    """The session's CSRF token (a GET of any console page creates it)."""
    with client.session_transaction() as session:
        if "csrf" not in session:
            session["csrf"] = "test-csrf-token"
        return str(session["csrf"])


def login(client: Any, username: str, password: str | None = None, **extra: str) -> Any:
    client.get("/console/login")
    return client.post("/console/login", data={
        "username": username, "password": password or USERS[username][0], "csrf_token": csrf(client), **extra,
    })


def post(client: Any, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """A console form post with the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf(client), **(data or {})}, **kwargs)
