"""Callback URLs and the signed URL read the same as Flask's own, on every route and host."""

from __future__ import annotations

from typing import Any

import pytest
from flask import url_for

from webhooks.urls import public_url, quick_signed_url, signed_url

VALUES: list[dict[str, Any]] = [
    {},
    {"lang": "et", "repeat": 0},
    {"call": "CA123", "agent": "ann", "lang": "ru", "attempt": 2},
    {"queue": None, "kind": "call"},  # None is left out, as url_for does
    {"q": "a b&c=d/é?!$'()*,:;@+%"},  # what quoting keeps and what it escapes
    {"e164": "+37255501234", "at": 1764059000.123456, "ring": "ann,bob", "x": "a~b-c_d.e", "y": "[]#^`{}|\\\"<>"},
    {"raw": "a b/é".encode()},  # bytes are quoted as they are, not as their repr
]
ENVIRONS: list[dict[str, Any]] = [
    {"base_url": "http://localhost"},
    {"base_url": "https://hotline.example.com:8443"},
    {"base_url": "http://127.0.0.1:8000", "environ_base": {"SCRIPT_NAME": "/hotline"}},
]


def flask_url(app: Any, endpoint: str, values: dict[str, Any]) -> str:
    base = app.extensions["hotline"].settings.public_base_url
    if base:
        return base + url_for(endpoint, _external=False, **values)
    return url_for(endpoint, _external=True, **values)


@pytest.mark.parametrize("public_base", ["", "https://public.example.org"])
@pytest.mark.parametrize("environ", ENVIRONS)
def test_public_url_is_url_for_on_every_voice_route(make_app, public_base: str, environ: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(public_base_url=public_base) if public_base else make_app()
    endpoints = sorted({rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("voice.")})
    assert len(endpoints) > 15
    with app.test_request_context("/voice/menu", method="POST", **environ):
        for endpoint in endpoints:
            for values in VALUES:
                for _ in range(2):  # built, then from the per-process cache
                    assert public_url(endpoint, **values) == flask_url(app, endpoint, values)


def test_routes_with_path_variables_and_calls_outside_a_request_use_url_for(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(public_base_url="https://public.example.org")
    variable = next(rule for rule in app.url_map.iter_rules() if rule.arguments)
    values = {name: "x1" for name in variable.arguments} | {"extra": "y"}
    with app.test_request_context("/voice/menu"):
        assert public_url(variable.endpoint, **values) == flask_url(app, variable.endpoint, values)
    with app.app_context():  # a job: no request, SERVER_NAME from the public base
        assert public_url("voice.status", lang="pl") == "https://public.example.org/voice/status?lang=pl"


@pytest.mark.parametrize("public_base", ["", "https://public.example.org"])
@pytest.mark.parametrize("path", ["/voice/menu?lang=et&repeat=1", "/voice/status", "/voice/whisper?call=CA1&agent=a%2Bb"])
@pytest.mark.parametrize("environ", ENVIRONS)
def test_quick_signed_url_is_the_signed_url(make_app, public_base: str, path: str, environ: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(public_base_url=public_base) if public_base else make_app()
    with app.test_request_context(path, method="POST", **environ) as ctx:
        assert quick_signed_url(ctx.request.environ, app.extensions["hotline"].settings.public_base_url) == signed_url()


def test_route_urls_kept_per_app_stay_bounded_whatever_the_host(make_app) -> None:  # type: ignore[no-untyped-def]
    from webhooks.urls import ROUTE_URLS_KEPT

    app = make_app()
    for n in range(ROUTE_URLS_KEPT + 50):  # a caller choosing a new Host header each time
        with app.test_request_context("/voice/menu", base_url=f"http://h{n}.example.com"):
            assert public_url("voice.status") == f"http://h{n}.example.com/voice/status"
    assert 0 < len(app.extensions["hotline.route_urls"]) <= ROUTE_URLS_KEPT
