"""`/console`: server-rendered pages for admins, supervisors and agents (session login).

One blueprint, views split by area (auth, rules, dashboard, cards, agent, admin). Every page
needs a logged-in user of the right role; every form carries the session's CSRF token. The
logged-in user is also honoured by `/api` (`auth.current_principal` reads `g.console_user`),
there only with the CSRF token in `X-CSRF-Token` for anything but reads.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")


def init_app(app: Flask) -> None:
    """Register the console and harden the session cookie it relies on."""
    from . import admin, agent, auth, cards, dashboard, rules  # noqa: F401  (routes on `bp`)

    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # a cross-site POST carries no session
    base = app.extensions["hotline"].settings.public_base_url or ""
    if base.startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.register_blueprint(bp)
