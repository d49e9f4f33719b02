"""Two simultaneous calls never claim the same agent: threads and processes on a real Redis.

Three independent checks, because a double claim could hide from any single one:
- a holder key per agent (SET NX right after the claim, DEL just before the release) and a
  counter of agents held, which must never pass the number of agents;
- per round (threads): every agent is claimed exactly once when demand exceeds supply;
- afterwards: the status log (written by the same Lua script as each claim, so in true order)
  replays as one unbroken chain per agent — every claim starts from `available`.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from typing import Any, cast

import redis as redis_lib

from telephony.redis_client import KeptConnection
from telephony.state import LiveState

AGENTS = [f"agent{n}" for n in range(10)]
T0 = 1_700_000_000.0
FAR = T0 + 10**6  # reservations in the hammer tests end by release, never by expiry
NO_MISS_LIMIT = 10**9


def _hold(conn: redis_lib.Redis, prefix: str, agent: str, sid: str) -> None:
    """Record that `sid` holds `agent`; any overlap with another holder is a violation."""
    if not conn.set(f"{prefix}check:holder:{agent}", sid, nx=True):
        other = conn.get(f"{prefix}check:holder:{agent}")
        conn.rpush(f"{prefix}check:violations", f"{agent} claimed by {sid} while held by {other!r}")
    if conn.incr(f"{prefix}check:held") > len(AGENTS):
        conn.rpush(f"{prefix}check:violations", f"more than {len(AGENTS)} agents held")


def _unhold(conn: redis_lib.Redis, prefix: str, agents: list[str]) -> None:
    for agent in agents:
        conn.delete(f"{prefix}check:holder:{agent}")
    if agents:
        conn.decrby(f"{prefix}check:held", len(agents))


def _release(
    state: LiveState, rng: random.Random, claimed: list[str], sid: str, now: float
) -> None:
    """End the call one of three ways: answered (ring-all frees the rest), missed, abandoned."""
    way = rng.choice(["answered", "missed", "abandoned"])
    if way == "answered":
        first = claimed[0]
        assert state.mark_on_call(first, sid, now)
        assert state.release_after_call(first, sid, now, wrap_up_seconds=0)
    elif way == "missed":
        for agent in claimed:
            assert state.release_missed(agent, sid, now, NO_MISS_LIMIT)[0] == "available"
    else:
        assert sorted(state.release_unanswered(sid, None, now)) == sorted(claimed)


def _hammer(url: str, prefix: str, worker: int, calls: int, seed: int) -> None:
    """One process: claim, hold, release as fast as possible with random candidate orders."""
    conn = redis_lib.Redis.from_url(url)
    state = LiveState(KeptConnection(conn.connection_pool), prefix)  # as a web process has it
    rng = random.Random(seed)
    claims = 0
    for n in range(calls):
        sid = f"CA-p{worker}-{n}"
        candidates = rng.sample(AGENTS, len(AGENTS))
        # a call's usual work: the claim notes its dial, and the next attempt reads its facts
        claimed = state.claim_agents(candidates, sid, rng.randint(1, 3), T0 + n, FAR, dial=True)
        for agent in claimed:
            _hold(conn, prefix, agent, sid)
        claims += len(claimed)
        state.prepare_dial(sid, None, (), T0 + n)
        _unhold(conn, prefix, claimed)
        if claimed:
            _release(state, rng, claimed, sid, T0 + n)
    conn.incrby(f"{prefix}check:claims", claims)
    conn.close()


def _violations(conn: redis_lib.Redis, prefix: str) -> list[Any]:
    return cast(list[Any], conn.lrange(f"{prefix}check:violations", 0, -1))


def _assert_log_is_one_chain_per_agent(state: LiveState, expected_claims: int) -> None:
    """Replay the status log: each change starts where the agent's last one ended."""
    entries = cast(Any, state.redis.xrange(state.keys.status_log))
    last: dict[str, str] = {}
    claims = 0
    for _id, raw in entries:
        f = {k.decode(): v.decode() for k, v in raw.items()}
        agent = f["agent"]
        assert f["from"] == last.get(agent, ""), f"broken chain for {agent}: {f}"
        if f["to"] == "ringing":
            assert f["from"] == "available"
            claims += 1
        last[agent] = f["to"]
    assert set(last) == set(AGENTS)  # the log starts at sync: nothing was trimmed
    assert claims == expected_claims


def test_threads_claim_each_agent_once_per_round(
    redis_conn: redis_lib.Redis, redis_prefix: str
) -> None:
    threads, rounds = 50, 20
    state = LiveState(redis_conn, redis_prefix)
    state.sync_agents(dict.fromkeys(AGENTS, True), T0)
    barrier = threading.Barrier(threads, timeout=30)
    errors: list[BaseException] = []

    def caller(worker: int) -> None:
        rng = random.Random(worker)
        try:
            for r in range(rounds):
                sid = f"CA-t{worker}-{r}"
                now = T0 + r
                candidates = rng.sample(AGENTS, len(AGENTS))
                claimed = state.claim_agents(candidates, sid, rng.randint(1, 3), now, FAR)
                for agent in claimed:
                    _hold(redis_conn, redis_prefix, agent, sid)
                    redis_conn.rpush(f"{redis_prefix}check:round:{r}", agent)
                barrier.wait()  # everyone has claimed: the round's claims are all in
                _unhold(redis_conn, redis_prefix, claimed)
                if claimed:
                    _release(state, rng, claimed, sid, now + 0.5)
                barrier.wait()  # everyone has released: next round starts clean
        # Any failure is re-raised by the test below; a dead thread must not hang the others.
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert _violations(redis_conn, redis_prefix) == []
    for r in range(rounds):
        raw = cast(list[bytes], redis_conn.lrange(f"{redis_prefix}check:round:{r}", 0, -1))
        claimed = [a.decode() for a in raw]
        # 50 callers want 50..150 agents: all 10 are claimed, none twice.
        assert Counter(claimed) == Counter(AGENTS), f"round {r}: {Counter(claimed)}"
    assert {a.status for a in state.snapshot(AGENTS, T0 + rounds)} == {"available"}
    _assert_log_is_one_chain_per_agent(state, expected_claims=rounds * len(AGENTS))


def test_processes_never_claim_the_same_agent(
    redis_url: str, redis_conn: redis_lib.Redis, redis_prefix: str
) -> None:
    processes, calls = 4, 200
    state = LiveState(redis_conn, redis_prefix)
    state.sync_agents(dict.fromkeys(AGENTS, True), T0)
    methods = multiprocessing.get_all_start_methods()
    ctx: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    procs = [
        ctx.Process(target=_hammer, args=(redis_url, redis_prefix, n, calls, 1000 + n))
        for n in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * processes
    assert _violations(redis_conn, redis_prefix) == []
    assert int(redis_conn.get(f"{redis_prefix}check:held") or 0) == 0
    claims = int(redis_conn.get(f"{redis_prefix}check:claims") or 0)
    assert claims > processes * calls / 2  # the hammer really claimed, not just got refused
    assert {a.status for a in state.snapshot(AGENTS, T0 + calls)} == {"available"}
    _assert_log_is_one_chain_per_agent(state, expected_claims=claims)


def test_expired_reservations_are_reclaimed_once_under_contention(
    redis_conn: redis_lib.Redis, redis_prefix: str
) -> None:
    """The lazy expiry runs inside the claim: racing calls cannot both win a freed agent."""
    state = LiveState(redis_conn, redis_prefix)
    state.sync_agents(dict.fromkeys(AGENTS, True), T0)
    assert len(state.claim_agents(AGENTS, "CA-old", len(AGENTS), T0, T0 + 30)) == len(AGENTS)
    results: dict[int, list[str]] = {}
    start = threading.Barrier(50, timeout=30)

    def caller(n: int) -> None:
        start.wait()
        rng = random.Random(n)
        results[n] = state.claim_agents(
            rng.sample(AGENTS, len(AGENTS)), f"CA-{n}", 1, T0 + 31, T0 + 61
        )

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(50)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=30)
    won = [a for claimed in results.values() for a in claimed]
    assert Counter(won) == Counter(AGENTS)
    expired = [c for c in state.status_log(count=1000) if c.by == "rule:ring_expired"]
    assert len(expired) == len(AGENTS)  # each expiry happened (and was logged) once
