"""Console sessions: login and logout, roles, CSRF tokens, and the pieces every page uses.

The session cookie (Flask's signed cookie) holds the user id, a fingerprint of the password
hash (a password reset ends old sessions) and a CSRF token. The user is re-read from SQL on
every console or API request, so a changed role takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

import redis as redis_lib
from flask import abort, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from ..auth import Principal
from ..current import this_request
from ..runtime import Runtime
from . import bp
from .users import authenticate, load_account

log = logging.getLogger("hotline.console")

SESSION_MAX_SECONDS = 12 * 3600  # one working day; then log in again
LOGIN_ATTEMPTS = 10  # per username and address ...
LOGIN_WINDOW_SECONDS = 300  # ... in five minutes, then 429 until the window passes
LOGIN_FAILURES_PER_USER = LOGIN_ATTEMPTS * 5  # failures of one username from any address in a
# window: many addresses, each under its own limit, still stop here (and a nuisance lock lasts
# one window at most)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def rt() -> Runtime:
    return current_app.extensions["hotline"]


# --- who is logged in -------------------------------------------------------------------------


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@bp.before_app_request
def load_console_user() -> None:
    """Set `g.console_user` for console and API requests that carry a live session.

    `/voice` never reads the session (no SQL on Twilio's path). On `/api` a session counts for
    writes only with the CSRF header, so a cookie alone cannot change anything cross-site.
    """
    # every request passes here: the request itself, not its proxy's attribute (`webhooks.current`)
    if this_request().blueprint not in ("console", "api") or "console_uid" not in session:
        return  # `g.console_user` stays unset: its readers take None for it
    if request.blueprint == "api" and request.method in UNSAFE_METHODS and not csrf_ok():
        return
    if time.time() - float(session.get("console_at", 0)) > SESSION_MAX_SECONDS:
        session.clear()
        return
    account = load_account(int(session["console_uid"]))
    if account is None or not hmac.compare_digest(_fingerprint(account.password_hash),
                                                  str(session.get("console_fp", ""))):
        session.clear()
        return
    g.console_user = Principal(account.role, account.agent_id, account.username)


def user() -> Principal:
    """The logged-in user of a view guarded by `role_required`."""
    principal: Principal | None = g.get("console_user")
    assert principal is not None
    return principal


def role_required(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Not logged in → the login page; logged in with a lesser role → 403."""
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            principal = g.get("console_user")
            if principal is None:
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if not principal.at_least(role):
                abort(403, f"This page needs the {role} role.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def require_own_agent(agent_id: str) -> None:
    """Agents act only on their own line; supervisors and admins on anyone's."""
    principal = user()
    if principal.role == "agent" and principal.agent_id != agent_id:
        abort(403, "Agents may use only their own controls.")


# --- CSRF -------------------------------------------------------------------------------------


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok() -> bool:
    expected = session.get("csrf")
    presented = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    return bool(expected) and hmac.compare_digest(str(expected), presented)


@bp.before_request
def check_csrf() -> None:
    if request.method in UNSAFE_METHODS and not csrf_ok():
        abort(400, "The form's security token is missing or out of date. Reload the page and try again.")


@bp.app_context_processor
def console_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "console_user": g.get("console_user")}


@bp.app_template_filter("local")
def local_time(value: datetime | str | float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time as the hotline's wall clock shows it."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value).astimezone()
    assert isinstance(value, datetime)
    return value.astimezone(ZoneInfo(rt().rules.current().hotline.zone)).strftime(fmt)


@bp.app_errorhandler(HTTPException)
def console_error(error: HTTPException) -> Any:
    if request.blueprint != "console":
        return error
    return render_template("error.html", error=error), error.code or 500


# --- login ------------------------------------------------------------------------------------


def _attempts_key(username: str) -> str:
    who = hashlib.sha256(f"{username.lower()}|{request.remote_addr}".encode()).hexdigest()[:24]
    return rt().state.keys.login_attempts(who)


def _count_attempt(username: str) -> int:
    """This attempt's number within the window (which starts with the first attempt); 0 when
    Redis is down (the console stays usable)."""
    try:
        return rt().state.count_hit(_attempts_key(username), LOGIN_WINDOW_SECONDS)
    except redis_lib.RedisError:
        log.warning("login rate limit unavailable: redis error")
        return 0


def _failures_key(username: str) -> str:
    who = hashlib.sha256(username.lower().encode()).hexdigest()[:24]
    return rt().state.keys.login_failures(who)


def _locked_seconds(username: str) -> int:
    """Seconds until `username` may try again after too many failed logins from any address;
    0 when it may. Never locks for good: a counter without an expiry (which `count_hit` gives it
    at the next failure) does not lock, and Redis down locks no one out."""
    try:
        failures, seconds_left = rt().state.window_hits(_failures_key(username))
    except redis_lib.RedisError:
        log.warning("login rate limit unavailable: redis error")
        return 0
    return seconds_left if failures >= LOGIN_FAILURES_PER_USER and seconds_left > 0 else 0


def _count_failure(username: str) -> None:
    """One more failed login for `username` from any address (a successful one is not counted)."""
    try:
        rt().state.count_hit(_failures_key(username), LOGIN_WINDOW_SECONDS)
    except redis_lib.RedisError:
        log.warning("login rate limit unavailable: redis error")


def safe_next(raw: str) -> str:
    """Where to go after login: a console path, else the console's start page. Never another
    site (`//host`), nor a control character, which cannot go into the Location header."""
    if not raw.startswith("/console") or raw.startswith("//") or any(c < " " or c == "\x7f" for c in raw):
        return url_for("console.index")
    return raw


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = safe_next(request.values.get("next", ""))
    if request.method == "GET":
        return render_template("login.html", next=next_url)
    username = request.form.get("username", "").strip()
    attempt = _count_attempt(username)  # 0: Redis is down, so no limit (and no more round trips)
    if attempt > LOGIN_ATTEMPTS:
        return render_template("login.html", next=next_url, username=username,
                               error="Too many attempts. Wait five minutes and try again."), 429
    locked = _locked_seconds(username) if attempt else 0
    if locked:
        log.warning("console login refused for %s: too many failures from any address", username[:100])
        minutes = math.ceil(locked / 60)
        return render_template(
            "login.html", next=next_url, username=username,
            error=f"Too many failed logins for this user. Try again in {minutes} minute{'s' * (minutes != 1)}.",
        ), 429, {"Retry-After": str(locked)}
    account = authenticate(username, request.form.get("password", ""))
    if account is None:
        log.info("console login failed for %s", username[:100])
        if attempt:
            _count_failure(username)
        return render_template("login.html", next=next_url, username=username,
                               error="Wrong username or password."), 401
    try:
        rt().state.redis.delete(_attempts_key(username))
    except redis_lib.RedisError:
        pass
    session.clear()  # a new session: nothing from before the login survives (fixation)
    session.update(console_uid=account.id, console_fp=_fingerprint(account.password_hash),
                   console_at=time.time(), csrf=secrets.token_urlsafe(32))
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("console.login"))


@bp.get("/")
@role_required("agent")
def index() -> Any:
    principal = user()
    if principal.role == "agent":
        return redirect(url_for("console.agent_console"))
    return redirect(url_for("console.dashboard"))
