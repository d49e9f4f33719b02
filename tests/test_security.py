"""Attack surface: Twilio signatures on every `/voice/*` route, API roles, secrets in logs, rate limits."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from twilio.request_validator import RequestValidator

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, Voice

CALL = {"CallSid": "CAsec0001", "AccountSid": ACCOUNT_SID, "From": "+3725551234", "To": "+3726140000",
        "CallStatus": "in-progress", "Direction": "inbound", "Digits": "1"}


def voice_routes(app: Flask) -> list[str]:
    rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("voice.")]
    assert len(rules) >= 15  # the blueprint really was enumerated
    return sorted(rules)


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def other_path(path: str) -> str:
    return "/voice/fallback" if path != "/voice/fallback" else "/voice/incoming"


def forgery(name: str, path: str) -> tuple[str, str, dict[str, str], str | None]:
    """(method, where it is sent, params, signature) of one forged request to `path`."""
    url = "http://localhost" + path
    return {
        "wrong token": ("post", path, CALL, sign(url, CALL, "not-the-auth-token")),
        "altered parameter": ("post", path, {**CALL, "Digits": "2"}, sign(url, CALL)),
        "added parameter": ("post", path, {**CALL, "Extra": "x"}, sign(url, CALL)),
        "other URL (host)": ("post", path, CALL, sign("https://evil.example" + path, CALL)),
        "other query string": ("post", path, CALL, sign(url + "?queue=billing", CALL)),
        "replayed to another path": ("post", other_path(path), CALL, sign(url, CALL)),
        "missing header": ("post", path, CALL, None),
        "empty header": ("post", path, CALL, ""),
        "non-ASCII header": ("post", path, CALL, sign(url, CALL)[:-2] + "é="),
        "GET instead of POST": ("get", path, {}, sign(url + "?CallSid=CAsec0001", {})),
    }[name]


FORGERIES = ["wrong token", "altered parameter", "added parameter", "other URL (host)", "other query string",
             "replayed to another path", "missing header", "empty header", "non-ASCII header",
             "GET instead of POST"]


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app()


def test_every_voice_route_accepts_a_valid_signature(app: Flask) -> None:
    """The control row: without it the refusals below could pass for a broken route."""
    voice = Voice(app)
    for path in voice_routes(app):
        response = voice.post(path, CALL)
        assert response.status_code in (200, 204), (path, response.status_code)


@pytest.mark.parametrize("name", FORGERIES)
def test_every_voice_route_refuses_a_forged_request(app: Flask, name: str) -> None:
    client = app.test_client()
    for path in voice_routes(app):
        method, target, params, signature = forgery(name, path)
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        if method == "get":
            response = client.get(target + "?CallSid=CAsec0001", headers=headers)
        else:
            response = client.post(target, data=params, headers=headers)
        refused = 405 if method == "get" else 403  # the voice routes answer POST only
        assert response.status_code == refused, (name, path, response.status_code)
        assert b"<Response" not in response.data, (name, path)


# --- shared keys and token rotation: the secret a request names is the one it is checked with ---

SHARED_KEY = "webhooks_sharedkey_01hotlinetest"
SHARED_SECRET = "shared-secret-Zm9vYmFy"
OLD_KEY, OLD_SECRET = "webhooks_sharedkey_00retiring", "old-shared-secret"
SECONDARY_TOKEN = "secondary-auth-token-98765"


def settings_header(key: str = SHARED_KEY, algorithm: str = "HMAC_SHA256") -> str:
    return f"key={key},algorithm={algorithm}"


@pytest.fixture
def keyed_app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app(twilio_webhook_keys={SHARED_KEY: SHARED_SECRET, OLD_KEY: OLD_SECRET},
                    twilio_secondary_auth_token=SECONDARY_TOKEN)


def signed_post(app: Flask, path: str, *, secret: str, algorithm: str = "HMAC_SHA1", header: str | None = None,
                params: dict[str, str] = CALL, sign_params: dict[str, str] | None = None) -> Any:
    """POST `params` to `path`, signed with `secret` and `algorithm` over `sign_params` (default:
    what is sent), naming signature settings `header` when given."""
    url = "http://localhost" + path
    signature = RequestValidator(secret).compute_signature(url, params if sign_params is None else sign_params,
                                                           algorithm)
    headers = {"X-Twilio-Signature": signature}
    if header is not None:
        headers["X-Twilio-Webhooks-Signature-Settings"] = header
    return app.test_client().post(path, data=params, headers=headers)


@pytest.mark.parametrize(("secret", "algorithm", "header"), [
    (SHARED_SECRET, "HMAC_SHA256", settings_header()),
    (SHARED_SECRET, "HMAC_SHA1", settings_header(algorithm="HMAC_SHA1")),
    (SHARED_SECRET, "HMAC_SHA256", " algorithm=hmac_sha256 , key=" + SHARED_KEY),  # order, case, spaces
    (OLD_SECRET, "HMAC_SHA256", settings_header(OLD_KEY)),  # a key being rotated out still signs
    (AUTH_TOKEN, "HMAC_SHA1", None),  # no rule matched: the Auth Token
    (SECONDARY_TOKEN, "HMAC_SHA1", None),  # the token being rotated in
], ids=["sha256 key", "sha1 key", "header spelled loosely", "second key", "auth token", "secondary token"])
def test_every_voice_route_accepts_each_configured_signer(keyed_app: Flask, secret: str, algorithm: str,
                                                          header: str | None) -> None:
    for path in voice_routes(keyed_app):
        response = signed_post(keyed_app, path, secret=secret, algorithm=algorithm, header=header)
        assert response.status_code in (200, 204), (path, response.status_code)


KEYED_FORGERIES: dict[str, dict[str, Any]] = {
    "auth token named as the shared key": {"secret": AUTH_TOKEN, "algorithm": "HMAC_SHA256",
                                           "header": settings_header()},
    "other key's secret": {"secret": OLD_SECRET, "algorithm": "HMAC_SHA256", "header": settings_header()},
    "SHA-1 sent as SHA-256": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA1", "header": settings_header()},
    "SHA-256 sent as SHA-1": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA256",
                              "header": settings_header(algorithm="HMAC_SHA1")},
    "shared key without its header": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA1", "header": None},
    "unknown key id": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA256",
                       "header": settings_header("webhooks_sharedkey_unknown")},
    "header naming no key": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA256", "header": "algorithm=HMAC_SHA256"},
    "unsupported algorithm": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA256",
                              "header": settings_header(algorithm="HMAC_MD5")},
    "altered parameter": {"secret": SHARED_SECRET, "algorithm": "HMAC_SHA256", "header": settings_header(),
                          "params": {**CALL, "Digits": "2"}, "sign_params": CALL},
    "a third auth token": {"secret": "not-a-token-we-hold", "algorithm": "HMAC_SHA1", "header": None},
}


@pytest.mark.parametrize("name", list(KEYED_FORGERIES))
def test_every_voice_route_refuses_a_request_its_named_signer_did_not_sign(keyed_app: Flask, name: str) -> None:
    for path in voice_routes(keyed_app):
        response = signed_post(keyed_app, path, **KEYED_FORGERIES[name])
        assert response.status_code == 403, (name, path, response.status_code)
        assert b"<Response" not in response.data, (name, path)


def test_without_shared_keys_a_request_naming_one_is_refused_and_logged(
        make_app, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    app = make_app(log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    response = signed_post(app, "/voice/incoming", secret=SHARED_SECRET, algorithm="HMAC_SHA256",
                           header=settings_header())
    assert response.status_code == 403
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    lines = [line for line in logged.splitlines() if "twilio signature rejected" in line]
    assert lines and SHARED_KEY in lines[0] and "TWILIO_WEBHOOK_KEYS" in lines[0]
    assert SHARED_SECRET not in logged


def test_webhook_keys_setting_is_parsed_and_a_bad_entry_is_named_without_its_text() -> None:
    from webhooks.settings import from_env, parse_webhook_keys

    settings = from_env({"TWILIO_WEBHOOK_KEYS": f" {SHARED_KEY}:{SHARED_SECRET} , {OLD_KEY}:a:b=",
                         "TWILIO_SECONDARY_AUTH_TOKEN": SECONDARY_TOKEN})
    assert settings.twilio_webhook_keys == {SHARED_KEY: SHARED_SECRET, OLD_KEY: "a:b="}  # a secret may hold ':'
    assert settings.twilio_secondary_auth_token == SECONDARY_TOKEN
    assert from_env({}).twilio_webhook_keys == {} and from_env({}).twilio_secondary_auth_token is None
    for raw, problem in [(SHARED_SECRET, "entry 1 needs key_id:secret"),  # the secret pasted alone
                         (f"{SHARED_KEY}:{SHARED_SECRET},:{SHARED_SECRET}", "entry 2 needs key_id:secret"),
                         (f"{SHARED_KEY}:", "entry 1 needs key_id:secret"),
                         (f"{SHARED_KEY}:{SHARED_SECRET},{SHARED_KEY}:x", "entry 2 repeats the key id")]:
        with pytest.raises(ValueError, match="TWILIO_WEBHOOK_KEYS") as error:
            parse_webhook_keys(raw)
        assert problem in str(error.value) and SHARED_SECRET not in str(error.value)


# --- API roles ---------------------------------------------------------------------------------

TOKENS = {"none": None, "agent": "anna-token", "supervisor": "super-token", "admin": "admin-token"}
READ = {"none": 401, "agent": 200, "supervisor": 200, "admin": 200}
SUPERVISOR = {"none": 401, "agent": 403, "supervisor": 200, "admin": 200}
ADMIN_ONLY = {"none": 401, "agent": 403, "supervisor": 403, "admin": 200}

# (method, path, body, expected status by role)
ROLE_TABLE: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/api/agents", None, READ),
    ("GET", "/api/agents/anna/status", None, READ),
    ("PUT", "/api/agents/mart/status", {"status": "away"},
     {"none": 401, "agent": 403, "supervisor": 200, "admin": 200}),  # anna may set only her own
    ("PUT", "/api/agents/anna/status", {"status": "away"}, READ),
    ("GET", "/api/clients?phone=%2B37255512345", None, READ),
    ("POST", "/api/outbound/check", {"phone": "+37255512345"}, READ),
    ("POST", "/api/outbound/screen", {"phones": ["+37255512345"]}, SUPERVISOR),
    ("GET", "/api/opt-outs", None, SUPERVISOR),
    ("GET", "/api/rules", None, SUPERVISOR),
    ("POST", "/api/rules/check", "version: 1\n", {"none": 401, "agent": 403, "supervisor": 403, "admin": 422}),
    ("DELETE", "/api/opt-outs/999999", None, {"none": 401, "agent": 403, "supervisor": 403, "admin": 404}),
    ("GET", "/metrics", None, READ),
    ("GET", "/api/openapi.json", None, {"none": 200, "agent": 200, "supervisor": 200, "admin": 200}),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), ROLE_TABLE,
                         ids=[f"{m} {p}" for m, p, _, _ in ROLE_TABLE])
def test_api_tokens_are_scoped_by_role(app: Flask, method: str, path: str, body: Any,
                                       expected: dict[str, int]) -> None:
    client = app.test_client()
    for role, token in TOKENS.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, str):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json"] = body
        response = client.open(path, method=method, **kwargs)
        assert response.status_code == expected[role], (role, response.status_code, response.data[:200])


def test_every_api_route_wants_a_token(app: Flask) -> None:
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint == "api.openapi":
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        path = "/".join("1" if part in rule.arguments else part for part in path.split("/"))
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(path, method=method, headers={"Authorization": "Bearer forged"})
            assert response.status_code == 401, (method, rule.rule, response.status_code)


# --- secrets never reach the logs ----------------------------------------------------------------


def test_secrets_never_logged(make_app, caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
                              capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    voice = Voice(app)
    client = app.test_client()
    secrets = [AUTH_TOKEN, "admin-token", "anna-token", "super-token", "forged-secret-token"]
    voice.post("/voice/incoming", CALL)
    voice.post("/voice/menu", CALL, signature="forged")  # rejected: logged as a warning
    voice.post("/voice/whisper?call=CAnope&agent=nobody", CALL)  # a fault: logged with a traceback
    client.get("/api/agents", headers={"Authorization": "Bearer admin-token"})
    client.get("/api/agents", headers={"Authorization": "Bearer forged-secret-token"})
    client.get("/metrics", headers={"Authorization": "Bearer anna-token"})
    client.post("/api/rules/check", data="{broken", headers={"Authorization": "Bearer admin-token"})
    voice.run_jobs()
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert logged, "nothing was logged: the test would pass vacuously"
    for secret in secrets:
        assert secret not in logged


def test_a_webhook_s_log_line_names_its_call_and_path(make_app, caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    Voice(app).post("/voice/menu", CALL, signature="forged")  # rejected: logged as a warning
    out, err = capfd.readouterr()
    lines = [line for line in (caplog.text + out + err).splitlines() if "twilio signature rejected" in line]
    assert lines, "the rejection was not logged"
    assert "call_sid='CAsec0001'" in lines[0] and "path='/voice/menu'" in lines[0]


# --- rate limits -----------------------------------------------------------------------------


def test_api_rate_limit_answers_429_with_reason_and_retry_after(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(api_rate_limit="5/60")
    client = app.test_client()
    admin = {"Authorization": "Bearer admin-token"}
    codes = [client.get("/api/agents", headers=admin).status_code for _ in range(5)]
    assert codes == [200] * 5
    limited = client.get("/api/agents", headers=admin)
    assert limited.status_code == 429
    assert limited.json["error"] == "rate_limited" and "5 requests" in limited.json["reason"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    # another token has its own window; the voice webhooks are never limited
    assert client.get("/api/agents", headers={"Authorization": "Bearer anna-token"}).status_code == 200
    assert Voice(app).post("/voice/incoming", CALL).status_code == 200


def test_unauthenticated_callers_get_a_smaller_window_per_ip(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(api_rate_limit="100/60")
    client = app.test_client()
    codes = [client.get("/api/agents", headers={"Authorization": f"Bearer guess{i}"}).status_code
             for i in range(11)]
    assert codes == [401] * 10 + [429]  # token guessing stops after a tenth of the budget
    assert client.get("/api/agents", headers={"Authorization": "Bearer admin-token"}).status_code == 200


def test_api_tokens_setting_names_a_bad_entry_by_place_not_by_its_text() -> None:
    from webhooks.settings import parse_api_tokens

    secret = "s3cretTokenValue"
    for raw, problem in [(secret, "entry 1 needs token:role"),
                         (f"admin-token:admin, {secret}:root", "entry 2 needs token:role")]:
        with pytest.raises(ValueError, match="HOTLINE_API_TOKENS") as error:
            parse_api_tokens(raw)
        assert problem in str(error.value) and secret[:4] not in str(error.value)


@pytest.mark.parametrize("next_url", ["/console\n", "/console/cards\r\nSet-Cookie: x=1", "/console\x7f", "//evil.example"])
def test_login_sends_a_next_with_control_characters_or_another_host_to_the_start_page(
        make_app, next_url: str) -> None:  # type: ignore[no-untyped-def]
    from tests.console_support import add_users, login

    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a failure answers 500 rather than raising into the test
    client = app.test_client()
    add_users()
    response = login(client, "admin", next=next_url)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"] == "/console/"
    page = app.test_client().get("/console/login", query_string={"next": next_url})
    assert page.status_code == 200 and b'name="next" value="/console/"' in page.data
