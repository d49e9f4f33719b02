"""The processes a benchmark runs: the app and the bare baseline under gunicorn, RQ workers.

Everything is real and local: gunicorn as in the Procfile, the Redis server (db 15, a unique
key prefix and job queue, only those keys deleted afterwards) and PostgreSQL (a throwaway
database, dropped afterwards) or a SQLite file.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if sys.path[0] != str(ROOT):  # the project's packages before bench/: bench/webhooks.py is not `webhooks`
    sys.path.insert(0, str(ROOT))
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "b" * 32
ADMIN_TOKEN = "bench-admin-token"
HOTLINE_NUMBER = "+3726140000"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def bench_rules(agents: int) -> str:
    """One always-open queue over `agents` Twilio Client agents, English only, no wrap-up."""
    ids = [f"a{i:03d}" for i in range(agents)]
    data: dict[str, Any] = {
        "version": 1,
        "company": "Bench Energy",
        "hotline": {"zone": "Europe/Tallinn", "country": "EE", "numbers": [HOTLINE_NUMBER],
                    "default_language": "en", "recording_consent": True},
        "languages": {"en": {"say_language": "en-GB", "voice": "Polly.Amy"}},
        "menu": {"timeout_seconds": 6, "language_digit": None, "opt_out_digit": None,
                 "complaint_digit": None, "repeats": 2},
        "queues": {"support": {
            "digit": "1", "department": {"en": "support"}, "agents": ids, "answer_within_rings": 3,
            "strategy": "longest_idle", "max_attempts": 2, "hours": [], "holidays": {},
            "voicemail": {"max_length_seconds": 60, "respond_within_minutes": 240},
        }},
        "agents": {a: {"name": f"Agent {a}", "endpoint": f"client:{a}", "languages": ["en"],
                       "wrap_up_seconds": 0, "miss_limit": 1000} for a in ids},
    }
    return yaml.safe_dump(data, sort_keys=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1, headers=headers).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


@dataclass
class Stack:
    """The app's processes on fresh Redis keys and a fresh database; `close()` removes both."""

    agents: int = 100
    database: str = "postgres"  # or "sqlite"
    redis_url: str = DEFAULT_REDIS
    postgres_url: str = DEFAULT_POSTGRES
    web_workers: int | None = None  # None: webhooks.gunicorn_conf's count, as the Procfile; else `-w N`
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hotline-bench-")))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    database_url: str = ""
    root: Path = ROOT  # the code the app and workers run (bench/compare.py: another revision's tree)
    _pg_name: str | None = None

    @property
    def prefix(self) -> str:
        return f"hotline-bench:{self.run_id}:"

    @property
    def job_queue(self) -> str:
        return f"hotline-bench-{self.run_id}"

    def prepare(self) -> Stack:
        from recordings import db as card_db

        (self.tmp / "rules.yaml").write_text(bench_rules(self.agents), encoding="utf-8")
        if self.database == "postgres":
            self._pg_name = f"hotline_bench_{self.run_id}"
            admin = sa.create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self._pg_name}"'))
            admin.dispose()
            self.database_url = sa.make_url(self.postgres_url).set(database=self._pg_name).render_as_string(
                hide_password=False)
        else:
            self.database_url = f"sqlite:///{self.tmp / 'cards.sqlite3'}"
        card_db.upgrade(self.database_url)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "REDIS_URL": self.redis_url, "HOTLINE_REDIS_PREFIX": self.prefix, "DATABASE_URL": self.database_url,
            "HOTLINE_JOB_QUEUE": self.job_queue, "HOTLINE_RULES": str(self.tmp / "rules.yaml"),
            "HOTLINE_DATA_DIR": str(self.tmp / "var"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "HOTLINE_API_TOKENS": f"{ADMIN_TOKEN}:admin",
            "HOTLINE_LOG_LEVEL": "WARNING", "HOTLINE_API_RATE_LIMIT": "0",
            # REST calls (dispatch) must never leave the machine: a closed local port
            "TWILIO_API_BASE": f"http://127.0.0.1:{free_port()}",
            "PYTHONPATH": f"{self.root}{os.pathsep}{BENCH}",
        })
        env.update(extra)
        return env

    def _spawn(self, cmd: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / log_name).open("ab")
        proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def gunicorn(self, app: str, log_name: str, **extra_env: str) -> str:
        """gunicorn on a free port as the Procfile runs it (its settings module, or `-w N` when
        `web_workers` is set: another revision may predate the module); returns the base URL."""
        port = free_port()
        workers = ["-w", str(self.web_workers)] if self.web_workers else ["-c", "python:webhooks.gunicorn_conf"]
        cmd = [sys.executable, "-m", "gunicorn", *workers, "-b", f"127.0.0.1:{port}", "--backlog", "2048", app]
        self._spawn(cmd, self.env(**extra_env), log_name)
        return f"http://127.0.0.1:{port}"

    def start_app(self) -> str:
        url = self.gunicorn("webhooks:create_app()", "app.log")
        wait_ready(url + "/healthz")
        return url

    def start_baseline(self) -> str:
        url = self.gunicorn("twiml_baseline:create_app()", "baseline.log")
        wait_ready(url + "/")
        return url

    def start_workers(self, count: int = 1) -> None:
        for i in range(count):
            self._spawn([sys.executable, "-m", "webhooks.cli", "worker"], self.env(), f"worker{i}.log")

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        conn = self.redis()
        keys = list(conn.scan_iter(match=self.prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            conn.delete(*keys[start:start + 1000])
        from webhooks.worker import purge_queue

        purge_queue(conn, self.job_queue)
        conn.close()
        from recordings import db as card_db

        card_db.dispose()
        if self._pg_name:
            admin = sa.create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn_pg:
                conn_pg.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)
