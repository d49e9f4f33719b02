"""`/console`: server-rendered pages for admins, supervisors and agents (session login).

One blueprint, views split by area (auth, rules, dashboard, cards, agent, admin). Every page
needs a logged-in user of the right role; every form carries the session's CSRF token. The
logged-in user is also honoured by `/api` (`auth.current_principal` reads `g.console_user`),
there only with the CSRF token in `X-CSRF-Token` for anything but reads.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Request
from flask.sessions import SecureCookieSessionInterface

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, but a request without the cookie (every Twilio webhook,
    every API call with a token) gets an empty session without building a signer first, and
    one with no Cookie header at all without parsing the headers for it."""

    def open_session(self, app: Flask, request: Request) -> Any:
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or self.get_cookie_name(app) not in request.cookies):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the console and harden the session cookie it relies on."""
    from . import admin, agent, auth, cards, dashboard, rules  # noqa: F401  (routes on `bp`)

    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # a cross-site POST carries no session
    base = app.extensions["hotline"].settings.public_base_url or ""
    if base.startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.session_interface = CookieSessions()
    app.register_blueprint(bp)
