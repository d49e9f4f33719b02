"""Faults with real services: Redis stopped mid-call, the database down, a worker killed mid-job,
status callbacks duplicated, reordered or for calls we never saw.

The callers' side must always hear valid TwiML (an apology and a voicemail at worst) and no
card event may be lost or applied twice once the fault is over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import sqlalchemy as sa
from rq import Retry, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from recordings import db as card_db
from recordings.models import CardEvent, Voicemail
from tests.conftest import ACCOUNT_SID, API_TOKENS, AUTH_TOKEN, ROOT, Voice, always_open_rules
from webhooks import runtime as runtime_module
from webhooks.worker import run_burst


def call_params(sid: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": "+37255512345", "To": "+3726140000",
            "CallStatus": "ringing", "Direction": "inbound", **extra}


def events(call_sid: str) -> list[tuple[str, str | None]]:
    with card_db.session(readonly=True) as s:
        rows = s.execute(sa.select(CardEvent.kind, CardEvent.key).where(CardEvent.call_sid == call_sid)
                         .order_by(CardEvent.id)).all()
    return [(kind, key) for kind, key in rows]


def kinds(call_sid: str) -> list[str]:
    return sorted(kind for kind, _ in events(call_sid))


def verbs(response: Any) -> list[str]:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/xml"
    return [child.tag for child in ET.fromstring(response.data)]


# --- a Redis server of our own, to stop and start ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """`redis-server --save ''` with an append-only file, so a restart keeps queued jobs as a
    production Redis with persistence would (RDB snapshots off: nothing to wait for)."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 5
        while True:
            try:
                conn.ping()
                break
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        conn.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def build_app(tmp_path: Path, redis_url: str, prefix: str, database_url: str, rules_text: str) -> Any:
    from webhooks import create_app
    from webhooks.settings import Settings, parse_api_tokens

    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(always_open_rules(rules_text), encoding="utf-8")
    return create_app(settings=Settings(
        data_dir=tmp_path / "var", redis_url=redis_url, redis_prefix=prefix, database_url=database_url,
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, rules_path=rules_path,
        api_tokens=parse_api_tokens(API_TOKENS), job_queue=f"{prefix}jobs", log_level="WARNING"))


def test_redis_stopped_mid_call_callers_hear_twiml_and_no_event_is_lost(
        own_redis: RedisProcess, tmp_path: Path, db: str, example_rules_text: str) -> None:
    app = build_app(tmp_path, own_redis.url, "fault:", db, example_rules_text)
    voice = Voice(app)
    assert "Gather" in verbs(voice.post("/voice/incoming", call_params("CAred1")))  # queued in Redis
    own_redis.stop()

    # mid-call: the menu choice and the Dial action degrade to an apology and a voicemail
    for path, extra in (("/voice/menu", {"Digits": "1"}),
                        ("/voice/dial-result", {"DialCallStatus": "no-answer"})):
        tags = verbs(voice.post(path, call_params("CAred1", CallStatus="in-progress", **extra)))
        assert "Record" in tags and tags[0] in ("Say", "Play"), (path, tags)
    # where Twilio forbids <Record>: the agent's leg hangs up (the Dial moves on), a waiting
    # caller leaves the line (the Enqueue action then takes the voicemail)
    assert verbs(voice.post("/voice/whisper?call=CAred1&agent=kasia",
                            call_params("CAred1-agent", CallStatus="in-progress", ParentCallSid="CAred1"))) == ["Hangup"]
    assert verbs(voice.post("/voice/wait?queue=support&lang=en", call_params("CAred1", CallStatus="in-progress",
                                                                           QueuePosition="3"))) == ["Say", "Leave"]
    # a new call while Redis is down: still answered, still a voicemail
    tags = verbs(voice.post("/voice/incoming", call_params("CAred2")))
    assert "Record" in tags
    # the status callback is applied at once (no queue to wait in)
    done = voice.post("/voice/status", call_params("CAred1", CallStatus="completed", SequenceNumber="3"))
    assert done.status_code < 500
    assert kinds("CAred1") == ["call_completed"]

    own_redis.start()  # the queued job survived (append-only file) and lands now
    voice.run_jobs()
    assert kinds("CAred1") == ["call_arrived", "call_completed"]
    assert len({key for _, key in events("CAred1")}) == 2


def test_redis_down_new_call_and_its_voicemail_still_reach_the_card(
        own_redis: RedisProcess, tmp_path: Path, db: str, example_rules_text: str) -> None:
    app = build_app(tmp_path, own_redis.url, "fault:", db, example_rules_text)
    voice = Voice(app)
    own_redis.stop()
    assert "Record" in verbs(voice.post("/voice/incoming", call_params("CAred3")))
    recording = {"AccountSid": ACCOUNT_SID, "CallSid": "CAred3", "RecordingSid": "REred3",
                 "RecordingUrl": "https://api.twilio.com/rec/REred3", "RecordingStatus": "completed",
                 "RecordingDuration": "7", "RecordingChannels": "1", "RecordingSource": "RecordVerb"}
    assert voice.post("/voice/recording?kind=voicemail", recording).status_code < 300
    with card_db.session(readonly=True) as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Voicemail)
                        .where(Voicemail.recording_sid == "REred3")) == 1
    assert "call_arrived" in kinds("CAred3")


# --- the database down: events wait in the queue -----------------------------------------------


def test_database_down_events_wait_in_the_queue_and_land_later(make_app, db: str) -> None:  # type: ignore[no-untyped-def]
    """However long the outage: the card events stay in their Redis list (no retries to run out,
    nothing in the failed-job registry) and land once, in order, when the database is back."""
    from webhooks.card_events import CardEventDrainer

    app = make_app()
    voice = Voice(app)
    runtime = app.extensions["hotline"]
    drainer = CardEventDrainer(runtime, runtime.jobs.connection)
    card_db.configure("postgresql+psycopg://nobody@127.0.0.1:1/down?connect_timeout=1")  # refused at once
    try:
        # webhooks do not need the database: the caller is served, the events are queued
        assert "Gather" in verbs(voice.post("/voice/incoming", call_params("CAdb1")))
        assert voice.post("/voice/status", call_params("CAdb1", CallStatus="completed",
                                                       SequenceNumber="3")).status_code == 204
        waiting = drainer.backlog()
        assert waiting >= 2  # call_arrived and the status callback, at least
        for _ in range(3):  # the worker tries again and again while the outage lasts
            run_burst(app)
            assert drainer.backlog() == waiting
        assert ScheduledJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection).count == 0
        assert runtime.jobs.count == 0
    finally:
        card_db.configure(db)
    assert kinds("CAdb1") == []
    run_burst(app)
    landed = events("CAdb1")
    assert {"call_arrived", "call_completed"} <= {kind for kind, _ in landed}
    assert [kind for kind, _ in landed][0] == "call_arrived"
    assert len(landed) == waiting == len({key for _, key in landed})  # every one, once
    assert drainer.backlog() == 0
    assert FailedJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection).count == 0


def test_a_job_outlives_an_outage_of_hours() -> None:
    """Jobs with side effects (an opt-out said on the phone, a complaint, a callback booked) retry
    with the product's policy: in order 10 s, 60 s, then every 5 min for about four hours."""
    retry = runtime_module.JOB_RETRY
    assert retry.max == len(retry.intervals)  # else RQ repeats the first interval, not the last
    assert retry.intervals[:3] == [10, 60, 300] and set(retry.intervals[2:]) == {300}
    assert sum(retry.intervals) >= 3.5 * 3600


# --- a worker killed mid-job ---------------------------------------------------------------------


class DatabaseLock:
    """Holds the card store's write lock from another connection, so a job blocks mid-way."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.conn: Any = None

    def __enter__(self) -> DatabaseLock:  # noqa: PYI034
        self.conn = self.engine.connect()
        if self.engine.dialect.name == "sqlite":
            self.conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.conn.begin()
            self.conn.execute(sa.text("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.engine.dialect.name == "sqlite":
            self.conn.exec_driver_sql("ROLLBACK")
        else:
            self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


WORKER_SCRIPT = """
import sys
from webhooks import create_app
from webhooks.settings import from_env
from webhooks.worker import make_worker
make_worker(create_app(settings=from_env())).work(with_scheduler=False)
"""


def test_worker_killed_mid_batch_the_batch_is_replayed_and_applied_once(
        make_app, db: str, redis_url: str, redis_prefix: str, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_module, "JOB_RETRY", Retry(max=2))  # requeued at once when found abandoned
    app = make_app()
    runtime = app.extensions["hotline"]
    voice = Voice(app)
    env = {**os.environ, "REDIS_URL": redis_url, "HOTLINE_REDIS_PREFIX": redis_prefix, "DATABASE_URL": db,
           "HOTLINE_JOB_QUEUE": runtime.jobs.name, "HOTLINE_RULES": str(runtime.settings.rules_path),
           "HOTLINE_DATA_DIR": str(tmp_path / "var"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "HOTLINE_LOG_LEVEL": "WARNING"}
    processing = runtime.state.keys.card_events("processing")  # the batched writer's in-flight list
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not Worker.all(queue=runtime.jobs) and time.monotonic() < deadline:
            time.sleep(0.05)  # up and listening (its start-up migrates SQLite: not under our lock)
        assert Worker.all(queue=runtime.jobs), "the worker did not start"
        with DatabaseLock(db):
            assert voice.post("/voice/status", call_params("CAkill", CallStatus="completed",
                                                           SequenceNumber="3")).status_code == 204
            while not runtime.redis.llen(processing) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert runtime.redis.llen(processing), "the worker's drainer never took the event"
            time.sleep(0.2)  # inside the batch, blocked on the lock
            worker.send_signal(signal.SIGKILL)
            worker.wait(5)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)
        for dead in Worker.all(queue=runtime.jobs):  # a killed worker cannot unregister itself
            if dead.pid == worker.pid:
                dead.register_death()
    assert kinds("CAkill") == []
    # The next drainer to start re-applies what the dead one left in `processing`.
    run_burst(app)
    assert events("CAkill") == [("call_completed", "status:CAkill:3")]
    run_burst(app)  # nothing left to apply twice
    assert len(events("CAkill")) == 1


# --- Twilio's status callbacks: duplicated, out of order, for calls we never saw ------------------


def test_status_callbacks_duplicated_reordered_or_unknown_change_nothing_twice(voice: Voice) -> None:
    voice.twiml("/voice/incoming", call_params("CAdup"))
    sequence = [("2", "in-progress"), ("0", "initiated"), ("3", "completed"), ("1", "ringing"),
                ("3", "completed"), ("0", "initiated"), ("2", "in-progress")]
    for seq, status in sequence:
        response = voice.post("/voice/status", call_params("CAdup", CallStatus=status, SequenceNumber=seq,
                                                           CallDuration="42"))
        assert response.status_code == 204
    for seq, status in (("3", "completed"), ("3", "completed"), ("1", "ringing")):
        response = voice.post("/voice/status", call_params("CAnever", CallStatus=status, SequenceNumber=seq,
                                                           From="+37255599999"))
        assert response.status_code == 204  # a call we never saw: applied once, no error
    voice.run_jobs()
    voice.run_jobs()
    keys = [key for _, key in events("CAdup")]
    assert len(keys) == len(set(keys))
    assert {"arrived:CAdup", "status:CAdup:0", "status:CAdup:1", "status:CAdup:2", "status:CAdup:3"} <= set(keys)
    assert kinds("CAdup").count("call_completed") == 1
    assert kinds("CAnever").count("call_completed") == 1 and kinds("CAnever").count("call_status") == 1
    runtime = voice.app.extensions["hotline"]
    assert FailedJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection).count == 0


def test_a_twiml_request_twilio_delivers_again_records_its_events_once(voice: Voice) -> None:
    """Twilio's retry of a request carries the first delivery's I-Twilio-Idempotency-Token: the
    events the webhook keys by nothing else (a menu choice) land once; a new request (a new
    token) is a new event."""
    voice.twiml("/voice/incoming", call_params("CAagain"))
    first = {"I-Twilio-Idempotency-Token": "token-of-the-first-delivery"}
    for _ in range(2):  # the first delivery and its retry
        response = voice.post("/voice/menu", call_params("CAagain", CallStatus="in-progress", Digits="1"),
                              headers=first)
        assert response.status_code == 200
    voice.run_jobs()
    assert kinds("CAagain").count("menu_choice") == 1
    response = voice.post("/voice/menu", call_params("CAagain", CallStatus="in-progress", Digits="1"),
                          headers={"I-Twilio-Idempotency-Token": "a-new-request"})
    assert response.status_code == 200
    voice.run_jobs()
    assert kinds("CAagain").count("menu_choice") == 2
