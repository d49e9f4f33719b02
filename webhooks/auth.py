"""Bearer tokens with roles for `/api`. Tokens come from settings; compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app, g, jsonify, request

from .settings import ApiToken

ROLE_RANK = {"agent": 1, "supervisor": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    role: str
    agent_id: str | None
    name: str

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def _match(presented: str, tokens: tuple[ApiToken, ...]) -> ApiToken | None:
    found = None
    for token in tokens:
        if hmac.compare_digest(presented.encode(), token.token.encode()):
            found = token
    return found


def current_principal() -> Principal | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = _match(header[len("Bearer "):].strip(), current_app.extensions["hotline"].settings.api_tokens)
        if token:
            return Principal(token.role, token.agent_id, token.agent_id or token.role)
    session_user = getattr(g, "console_user", None)  # set by the console's session login
    return session_user


def requires(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None:
                return jsonify(error="unauthorized", reason="a valid bearer token is required"), 401
            if not principal.at_least(role):
                return jsonify(error="forbidden", reason=f"needs the {role} role"), 403
            g.principal = principal
            return view(*args, **kwargs)

        return wrapped

    return decorator
