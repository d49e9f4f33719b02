"""Absolute URLs as Twilio sees them: the public base behind a proxy, else the request's host."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote_plus

from flask import Flask, current_app, has_request_context, request, url_for

from .current import this_app, this_request

QUERY_SAFE = "!$'()*,/:;?@"  # werkzeug's: a query reads exactly as url_for writes it
# Text that quoting leaves as it is: ASCII letters, digits, `_.-~` and QUERY_SAFE.
_AS_IS = re.compile(f"[A-Za-z0-9_.~{re.escape(QUERY_SAFE)}-]*")
ROUTE_URLS_KEPT = 1024


def public_url(endpoint: str, **values: Any) -> str:
    """`url_for(endpoint, **values)`, absolute. An answer names several callback URLs, so in a
    request the route's part is built by url_for once per process and host (`_route_url`)
    and only the query is encoded each time; a route with variables in its path, or a call
    outside a request, goes to url_for."""
    app = this_app()  # an answer names several URLs: the objects, not their proxies (`current`)
    base = app.extensions["hotline"].settings.public_base_url
    if has_request_context():
        environ = this_request().environ
        host = "" if base else f"{environ['wsgi.url_scheme']}://{_host(environ)}"
        route = _route_url(app, endpoint, base or "", host, environ.get("SCRIPT_NAME", ""))
        if route is not None:
            query = "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in values.items() if v is not None)
            return f"{route}?{query}" if query else route
    if base:
        return base + url_for(endpoint, _external=False, **values)
    return url_for(endpoint, _external=True, **values)


def _quoted(value: Any) -> str:
    """`urlencode`'s quoting of one name or value: most (ids, numbers, codes) need none, and
    a check is cheaper than quoting; the rest go through `quote_plus` as urlencode does."""
    if isinstance(value, bytes):  # urlencode quotes bytes as they are, not their repr
        return quote_plus(value, safe=QUERY_SAFE)
    text = value if isinstance(value, str) else str(value)
    return text if _AS_IS.fullmatch(text) else quote_plus(text, safe=QUERY_SAFE)


def _route_url(app: Flask, endpoint: str, base: str, host: str, script_name: str) -> str | None:
    """The absolute URL of a route with no variables in its path (every `/voice` route), else
    None; kept per app. The key holds all that url_for reads from the request: host, scheme,
    script root."""
    cache: dict[tuple[str, ...], str | None] = app.extensions.setdefault("hotline.route_urls", {})
    key = (endpoint, base, host, script_name)
    if key in cache:
        return cache[key]
    if len(cache) >= ROUTE_URLS_KEPT:  # bounded: the Host header is the caller's to choose
        cache.clear()
    if any(rule.arguments for rule in app.url_map.iter_rules(endpoint)):
        url = None
    elif base:
        url = base + url_for(endpoint, _external=False)
    else:
        url = url_for(endpoint, _external=True)
    cache[key] = url
    return url


def _host(environ: dict[str, Any]) -> str:
    return environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"


def quick_signed_url(environ: dict[str, Any], base: str | None) -> str:
    """The URL Twilio signed, read straight from the request's WSGI environ and the public base
    URL (`Settings.public_base_url`): what `signed_url` returns for the ASCII paths and queries
    Twilio uses, at a fraction of its cost. A signature that does not match it is checked
    against `signed_url` (see `voice.check_signature`)."""
    if not base:
        base = f"{environ['wsgi.url_scheme']}://{_host(environ)}{environ.get('SCRIPT_NAME', '')}"
    query = environ.get("QUERY_STRING", "")
    return f"{base}{environ.get('PATH_INFO', '')}?{query}" if query else f"{base}{environ.get('PATH_INFO', '')}"


def signed_url() -> str:
    """The URL Twilio signed for the current request (query string kept, no fragment)."""
    base = current_app.extensions["hotline"].settings.public_base_url
    if base:
        path = request.full_path
        return base + (path.removesuffix("?"))
    return request.url
