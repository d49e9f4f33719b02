"""Redis lost its data (a restart without persistence, a failover to an empty replica): the
agents and the worker's periodic chains come back by themselves, with no process restarted."""

from __future__ import annotations

import uuid
from typing import Any

import redis as redis_lib
from rq.registry import ScheduledJobRegistry

from telephony import context as telephony_context
from telephony import dispatch
from telephony.alerts import CHECK_JOB_ID
from telephony.context import job_id
from tests.conftest import ACCOUNT_SID
from webhooks.worker import keep_chains, purge_queue

ADMIN = {"Authorization": "Bearer admin-token"}


def lose_redis_data(conn: redis_lib.Redis, prefix: str) -> None:
    """What a restart without persistence leaves of the hotline's keys and its job queue
    (queued and scheduled jobs, `make_app`'s queue): nothing."""
    keys = list(conn.scan_iter(match=prefix + "*", count=1000))
    if keys:
        conn.delete(*keys)
    purge_queue(conn, f"{prefix}jobs")


def menu_choice(voice: Any, sid: str) -> list[str]:
    """A caller dials in and presses 1; the tags of the menu's answer."""
    base = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": "+3725123456", "To": "+3726123456",
            "CallStatus": "ringing", "Direction": "inbound"}
    gather = voice.twiml("/voice/incoming", base).find("Gather")
    answer = voice.twiml(gather.attrib["action"].removeprefix("http://localhost"),
                         {**base, "CallStatus": "in-progress", "Digits": "1"})
    return [child.tag for child in answer]


def test_the_tick_brings_back_agents_that_redis_lost(voice, redis_conn, redis_prefix) -> None:  # type: ignore[no-untyped-def]
    state = voice.app.extensions["hotline"].state
    rules = voice.app.extensions["hotline"].rules.current()
    lose_redis_data(redis_conn, redis_prefix)
    assert state.snapshot(list(rules.agents), 0.0) == []
    assert "Dial" not in menu_choice(voice, "CA" + "1" * 32)  # no agent can be reached

    dispatch.tick()

    back = {agent.id: agent.status for agent in state.snapshot(list(rules.agents), 0.0)}
    assert back == {a: ("available" if r.available_by_default else "offline") for a, r in rules.agents.items()}
    assert "Dial" in menu_choice(voice, "CA" + "2" * 32)


def test_the_tick_leaves_existing_agents_as_they_are(voice) -> None:  # type: ignore[no-untyped-def]
    import time

    state = voice.app.extensions["hotline"].state
    agent = next(iter(voice.app.extensions["hotline"].rules.current().agents))
    state.set_status(agent, "away", time.time(), by="test")
    dispatch.tick()
    assert state.agent(agent, time.time())["status"] == "away"  # type: ignore[index]


def test_the_agent_api_answers_for_agents_that_redis_lost(voice, redis_conn, redis_prefix) -> None:  # type: ignore[no-untyped-def]
    rules = voice.app.extensions["hotline"].rules.current()
    agent = next(a for a, r in rules.agents.items() if r.available_by_default)
    lose_redis_data(redis_conn, redis_prefix)

    got = voice.client.get(f"/api/agents/{agent}/status", headers=ADMIN)
    assert got.status_code == 200, got.data
    assert got.json["status"] == "available"

    lose_redis_data(redis_conn, redis_prefix)
    listed = voice.client.get("/api/agents", headers=ADMIN)
    assert sorted(a["id"] for a in listed.json["agents"]) == sorted(rules.agents)

    lose_redis_data(redis_conn, redis_prefix)
    put = voice.client.put(f"/api/agents/{agent}/status", headers=ADMIN, json={"status": "away"})
    assert put.status_code == 200, put.data
    assert put.json["status"] == "away" and put.json["previous"] == "available"


def test_lost_periodic_chains_are_started_again(voice, redis_conn, redis_prefix) -> None:  # type: ignore[no-untyped-def]
    app = voice.app
    queue = app.extensions["hotline"].jobs
    with app.app_context():
        assert sorted(keep_chains(app)) == sorted([CHECK_JOB_ID, dispatch.TICK_CHAIN])  # a worker starts
        assert keep_chains(app) == []  # alive: a second worker, or the watch a few seconds later
    first = set(queue.job_ids)
    assert any(j.startswith(job_id(queue.name, CHECK_JOB_ID)) for j in first)
    assert any(j.startswith(job_id(queue.name, "dispatch-tick")) for j in first)

    marks = [app.extensions["hotline"].state.keys.periodic(name) for name in (CHECK_JOB_ID, dispatch.TICK_CHAIN)]
    redis_conn.delete(*marks)
    voice.run_jobs()  # each runs, marks its chain alive and schedules its successor
    assert all(redis_conn.exists(mark) for mark in marks)
    scheduled = ScheduledJobRegistry(queue=queue).get_job_ids()
    assert len(scheduled) == 2
    with app.app_context():
        assert keep_chains(app) == []

    lose_redis_data(redis_conn, redis_prefix)  # the marks and the scheduled successors are gone
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == []
    with app.app_context():
        assert sorted(keep_chains(app)) == sorted([CHECK_JOB_ID, dispatch.TICK_CHAIN])
    assert len(queue.job_ids) == 2


def test_a_chain_whose_mark_expired_is_started_again(voice, redis_conn) -> None:  # type: ignore[no-untyped-def]
    app = voice.app
    state = app.extensions["hotline"].state
    with app.app_context():
        keep_chains(app)
        assert 0 < redis_conn.ttl(state.keys.periodic(dispatch.TICK_CHAIN)) <= dispatch.chain_alive_seconds(
            dispatch.TICK_EVERY_SECONDS)
        redis_conn.delete(state.keys.periodic(dispatch.TICK_CHAIN))  # as when its TTL ran out
        assert keep_chains(app) == [dispatch.TICK_CHAIN]


def test_a_worker_watches_its_chains(voice, redis_conn, redis_prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from webhooks import worker

    monkeypatch.setattr(worker, "CHAINS_WATCH_SECONDS", 0.05)
    app = voice.app
    mark = app.extensions["hotline"].state.keys.periodic(dispatch.TICK_CHAIN)
    stop = threading.Event()
    thread = worker.watch_chains(app, stop)  # started at once, as `hotline worker` does
    try:
        assert redis_conn.exists(mark)
        lose_redis_data(redis_conn, redis_prefix)
        deadline = time.monotonic() + 5
        while not redis_conn.exists(mark) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert redis_conn.exists(mark), "the watch did not start the lost chain again"
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_two_hotlines_sharing_a_redis_keep_their_own_jobs(make_app, redis_conn) -> None:  # type: ignore[no-untyped-def]
    """RQ keeps a job under its id alone, whatever its queue: hotlines sharing a Redis (own key
    prefix, own job queue) must not name their jobs alike, or one overwrites the other's and it
    runs in the wrong hotline."""
    other = f"hotline-test:{uuid.uuid4().hex[:12]}:"
    apps = [make_app(), make_app(redis_prefix=other, job_queue=f"{other}jobs")]
    try:
        for app in apps:
            telephony_context.install(app.extensions["hotline"])  # one per process in production
            with app.app_context():
                assert sorted(keep_chains(app)) == sorted([CHECK_JOB_ID, dispatch.TICK_CHAIN])
            app.extensions["hotline"].enqueue(len, "complaint", job_id="complaint-CAsame")  # one CallSid, both
        queues = [app.extensions["hotline"].jobs for app in apps]
        ids = [set(queue.job_ids) for queue in queues]
        assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]
        for queue in queues:
            assert all(job.origin == queue.name for job in queue.jobs)
            assert job_id(queue.name, "complaint-CAsame") in queue.job_ids
    finally:
        keys = list(redis_conn.scan_iter(match=other + "*", count=1000))
        if keys:
            redis_conn.delete(*keys)
        purge_queue(redis_conn, f"{other}jobs")
