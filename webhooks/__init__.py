"""Hotline's web process: the composition root that wires the rooms together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog
from flask import Flask, has_request_context, jsonify
from werkzeug.middleware.proxy_fix import ProxyFix

from recordings import db as card_db
from telephony import context as telephony_context

from .current import this_request
from .forms import FormRequest
from .runtime import Runtime, build_runtime
from .settings import Settings, from_env


def request_fields(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The request a line was logged in: its path and, on a webhook, the CallSid. Read when a
    line is written rather than bound on every request (most requests write none); a body not
    parsed yet is left alone, so logging never reads one."""
    if has_request_context():
        req = this_request()
        event_dict.setdefault("path", req.path)
        form = req.__dict__.get("form")
        if form is not None and "CallSid" in form:
            event_dict.setdefault("call_sid", form["CallSid"])
    return event_dict


def configure_logging(level: str) -> None:
    """JSON-ish key=value logs with the request's path and CallSid; secrets are never passed in."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            request_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def prepare_storage(settings: Settings) -> None:
    """Create the embedded SQLite schema on first start; PostgreSQL waits for `hotline db upgrade`."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        card_db.upgrade(url)


class HotlineFlask(Flask):
    """Flask, with `ensure_sync` remembered per function: Flask asks it of every hook and view
    on every request (eight `inspect` calls for a webhook), and the answer never changes."""

    _SYNC_KEPT = 512  # hooks and views are a fixed few; the bound only guards against growth

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        known = self.__dict__.setdefault("_sync_funcs", {})
        found = known.get(func)
        if found is None:
            if len(known) >= self._SYNC_KEPT:
                known.clear()
            found = known[func] = super().ensure_sync(func)
        return found  # type: ignore[no-any-return]


def create_app(overrides: Mapping[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    settings = (settings or from_env()).with_overrides(overrides)
    configure_logging(settings.log_level)
    app = HotlineFlask(__name__)
    app.request_class = FormRequest
    app.config.update(SECRET_KEY=settings.secret_key, JSON_SORT_KEYS=False)
    if settings.proxy_fix_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_fix_hops, x_proto=settings.proxy_fix_hops,
            x_host=settings.proxy_fix_hops, x_port=settings.proxy_fix_hops,
        )
    prepare_storage(settings)
    runtime = build_runtime(settings)
    app.extensions["hotline"] = runtime
    telephony_context.install(runtime)
    if settings.public_base_url:  # lets jobs build absolute URLs outside a request
        from urllib.parse import urlsplit

        parts = urlsplit(settings.public_base_url)
        app.config.update(SERVER_NAME=parts.netloc, PREFERRED_URL_SCHEME=parts.scheme or "https")
    runtime.sync_agents()

    from . import api, voice

    app.register_blueprint(voice.bp)
    app.register_blueprint(api.bp)
    from . import console

    console.init_app(app)  # /console: session login, pages for admins, supervisors, agents
    from . import service_api

    service_api.init_app(app)  # complaints, voicemails, callbacks, reports, audio
    from . import metrics, rate_limit

    metrics.init_app(app)  # /metrics and per-endpoint latency (shared through Redis)
    rate_limit.init_app(app)  # /api/* and /metrics: 429 past a token's (or IP's) window

    @app.get("/healthz")
    def healthz():
        checks = {"redis": _redis_ok(runtime), "database": card_db.ping()}
        return jsonify(status="ok" if all(checks.values()) else "degraded", checks=checks), (
            200 if all(checks.values()) else 503
        )

    return app


def _redis_ok(runtime: Runtime) -> bool:
    try:
        return bool(runtime.redis.ping())
    except Exception:  # noqa: BLE001
        return False
