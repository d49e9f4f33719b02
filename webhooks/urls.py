"""Absolute URLs as Twilio sees them: the public base behind a proxy, else the request's host."""

from __future__ import annotations

from typing import Any

from flask import current_app, request, url_for


def public_url(endpoint: str, **values: Any) -> str:
    base = current_app.extensions["hotline"].settings.public_base_url
    if base:
        return base + url_for(endpoint, _external=False, **values)
    return url_for(endpoint, _external=True, **values)


def signed_url() -> str:
    """The URL Twilio signed for the current request (query string kept, no fragment)."""
    base = current_app.extensions["hotline"].settings.public_base_url
    if base:
        path = request.full_path
        return base + (path.removesuffix("?"))
    return request.url
