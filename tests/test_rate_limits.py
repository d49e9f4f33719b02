"""Rate limits where secrets are guessed: bearer tokens on `/metrics` as on `/api`, and console
passwords per username from any number of addresses. Real Redis, real SQL."""

from __future__ import annotations

from typing import Any

import redis as redis_lib

from tests.conftest import Voice
from tests.console_support import add_users, login
from tests.test_faults import RedisProcess

CALL = {"CallSid": "CArate0001", "AccountSid": "AC" + "0" * 32, "From": "+37255512345",
        "To": "+3726140000", "CallStatus": "ringing", "Direction": "inbound"}


def guess(client: Any, n: int) -> int:
    return int(client.get("/metrics", headers={"Authorization": f"Bearer guess{n}"}).status_code)


def login_from(client: Any, address: str, username: str, password: str | None = None) -> Any:
    client.environ_base["REMOTE_ADDR"] = address
    return login(client, username, password)


def app_client(client: Any) -> Any:
    """A fresh client (no session) of the same app."""
    return client.application.test_client()


def fail_from_many_addresses(client: Any, username: str, failures: int) -> list[int]:
    """`failures` wrong passwords, five per address: each address stays under its own limit."""
    return [login_from(client, f"10.0.{n // 5}.{n % 5 + 1}", username, "wrong-password").status_code
            for n in range(failures)]


# --- bearer tokens on /metrics ------------------------------------------------------------------


def test_token_guessing_on_metrics_stops_after_the_unauthenticated_share(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(api_rate_limit="100/60").test_client()
    assert [guess(client, n) for n in range(11)] == [401] * 10 + [429]
    limited = client.get("/metrics", headers={"Authorization": "Bearer guess11"})
    assert limited.status_code == 429 and limited.json["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    # a valid token is counted on its own, not with the guesses from its address
    assert client.get("/metrics", headers={"Authorization": "Bearer anna-token"}).status_code == 200


def test_guesses_on_metrics_and_api_share_one_budget_per_address(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(api_rate_limit="100/60").test_client()
    on_api = [client.get("/api/agents", headers={"Authorization": f"Bearer guess{n}"}).status_code
              for n in range(6)]
    assert on_api == [401] * 6
    assert [guess(client, n) for n in range(5)] == [401] * 4 + [429]


def test_a_token_s_scrapes_count_against_its_window(make_app) -> None:  # type: ignore[no-untyped-def]
    client = make_app(api_rate_limit="5/60").test_client()
    anna = {"Authorization": "Bearer anna-token"}
    assert [client.get("/metrics", headers=anna).status_code for _ in range(5)] == [200] * 5
    limited = client.get("/metrics", headers=anna)
    assert limited.status_code == 429 and "5 requests" in limited.json["reason"]
    assert client.get("/metrics", headers={"Authorization": "Bearer admin-token"}).status_code == 200


def test_twilio_webhooks_are_neither_limited_nor_counted(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(api_rate_limit="100/60")
    voice = Voice(app)
    assert [voice.post("/voice/incoming", {**CALL, "CallSid": f"CArate{n:04}"}).status_code
            for n in range(15)] == [200] * 15
    client = app.test_client()
    assert [guess(client, n) for n in range(10)] == [401] * 10  # the webhooks took none of the 10
    assert guess(client, 10) == 429
    assert voice.post("/voice/incoming", {**CALL, "CallSid": "CArate0099"}).status_code == 200


# --- console passwords per username ---------------------------------------------------------------


def test_one_username_guessed_from_many_addresses_is_refused_for_the_window(make_app) -> None:  # type: ignore[no-untyped-def]
    from webhooks.console.auth import LOGIN_FAILURES_PER_USER, LOGIN_WINDOW_SECONDS

    client = make_app().test_client()
    add_users()
    assert fail_from_many_addresses(client, "super", LOGIN_FAILURES_PER_USER) == [401] * LOGIN_FAILURES_PER_USER
    refused = login_from(client, "192.0.2.7", "super")  # a new address, the right password
    assert refused.status_code == 429
    assert b"Too many failed logins for this user. Try again in 5 minutes." in refused.data
    assert 1 <= int(refused.headers["Retry-After"]) <= LOGIN_WINDOW_SECONDS
    assert login_from(app_client(client), "192.0.2.7", "admin").status_code == 302  # other users log in


def test_successful_logins_are_not_counted_as_failures(make_app) -> None:  # type: ignore[no-untyped-def]
    from webhooks.console.auth import LOGIN_FAILURES_PER_USER

    client = make_app().test_client()
    add_users()
    first = LOGIN_FAILURES_PER_USER - 5
    assert fail_from_many_addresses(client, "anna", first) == [401] * first
    for n in range(5):
        assert login_from(app_client(client), f"198.51.100.{n + 1}", "anna").status_code == 302
    assert fail_from_many_addresses(client, "anna", 5)[-1] == 401  # the last failure allowed
    assert login_from(app_client(client), "198.51.100.9", "anna").status_code == 429


def test_every_login_counter_expires_within_its_window(make_app, redis_conn: redis_lib.Redis,  # type: ignore[no-untyped-def]
                                                      redis_prefix: str) -> None:
    from webhooks.console.auth import LOGIN_FAILURES_PER_USER, LOGIN_WINDOW_SECONDS

    client = make_app().test_client()
    add_users()
    fail_from_many_addresses(client, "mart", LOGIN_FAILURES_PER_USER)
    assert login_from(client, "192.0.2.8", "mart").status_code == 429
    counters = list(redis_conn.scan_iter(match=f"{redis_prefix}console:login*"))
    assert len(counters) > 1  # per address and per username
    assert all(0 < redis_conn.ttl(key) <= LOGIN_WINDOW_SECONDS for key in counters)
    redis_conn.delete(*counters)  # the window passes
    assert login_from(client, "192.0.2.8", "mart").status_code == 302


def test_redis_down_locks_no_one_out_of_the_console(make_app, own_redis: RedisProcess) -> None:  # type: ignore[no-untyped-def]
    from webhooks.console.auth import LOGIN_FAILURES_PER_USER

    client = make_app(redis_url=own_redis.url).test_client()
    add_users()
    fail_from_many_addresses(client, "super", LOGIN_FAILURES_PER_USER)
    assert login_from(client, "192.0.2.9", "super").status_code == 429
    own_redis.stop()
    assert login_from(client, "192.0.2.9", "super", "wrong-password").status_code == 401
    assert login_from(client, "192.0.2.9", "super").status_code == 302
