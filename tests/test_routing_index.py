"""The routing index (`free_agents:packed`, `agent_timers`) on a real Redis: a dial reads it instead
of every agent's hash, so it must agree with the hashes after any sequence of changes."""

from __future__ import annotations

import random

import pytest
import redis as redis_lib

from telephony.redis_client import KeptConnection
from telephony.state import AgentSnapshot, LiveState, routing_numbers

T0 = 1_700_000_000.0
Numbers = tuple[float, float, int]  # an available agent's idle_since, last_offered_at, misses
AGENTS = [f"a{i}" for i in range(8)]


@pytest.fixture
def state(redis_conn: redis_lib.Redis, redis_prefix: str) -> LiveState:
    live = LiveState(KeptConnection(redis_conn.connection_pool), redis_prefix)
    live.sync_agents({a: i != 7 for i, a in enumerate(AGENTS)}, T0)  # a7 starts offline
    return live


def offerable(state: LiveState, now: float) -> list[AgentSnapshot]:
    """What the agents' own hashes say a new call can be offered: the full snapshot's available."""
    return [a for a in state.snapshot(AGENTS, now) if a.status == "available"]


def index_of(state: LiveState, conn: redis_lib.Redis) -> tuple[dict[str, Numbers], dict[str, float]]:
    free = {k.decode(): routing_numbers(v) for k, v in conn.hgetall(state.keys.free_agents).items()}
    timers = {m.decode(): s for m, s in conn.zrange(state.keys.agent_timers, 0, -1, withscores=True)}
    return free, timers


def expected_index(state: LiveState, conn: redis_lib.Redis) -> tuple[dict[str, Numbers], dict[str, float]]:
    """The index as the agents' hashes imply it (read raw: nothing settled)."""
    free: dict[str, Numbers] = {}
    timers: dict[str, float] = {}
    for agent in AGENTS:
        f = {k.decode(): v.decode() for k, v in conn.hgetall(state.keys.agent(agent)).items()}
        words = [f.get(name) or "0" for name in ("idle_since", "last_offered_at", "misses")]
        if f["status"] == "available":
            free[agent] = (float(words[0]), float(words[1]), int(words[2]))
        elif f["status"] == "ringing":
            timers[agent] = float(f["ring_until"] or 0)
        elif f["status"] == "wrap_up":
            timers[agent] = float(f["wrap_up_until"] or 0)
    return free, timers


def step(state: LiveState, rng: random.Random, now: float, calls: list[str]) -> None:
    """One change of the kinds the webhooks, the dispatcher and people make."""
    agent = rng.choice(AGENTS)
    kind = rng.randrange(9)
    if kind == 0 or not calls:
        sid = f"CA{len(calls)}"
        calls.append(sid)
        state.save_call(sid, {"from": "+3725550000"}, now)
        count = rng.choice([1, 1, 3])  # one agent, or a ring-all
        state.claim_agents(rng.sample(AGENTS, 4), sid, count, now, now + rng.choice([5, 30]), dial=True)
        return
    sid = rng.choice(calls)
    if kind == 1:
        state.answer(agent, sid, now)
    elif kind == 2:
        state.release_after_call(agent, sid, now, rng.choice([0, 10, 60]))
    elif kind == 3:
        state.release_missed(agent, sid, now, 3)
    elif kind == 4:
        state.release_unanswered(sid, rng.choice([None, agent]), now)
    elif kind == 5:
        state.set_status(agent, rng.choice(["available", "away", "offline", "available"]), now, "test")
    elif kind == 6:
        state.end_call(sid)
    elif kind == 7:
        state.snapshot([agent], now)  # settles a lapsed ring or wrap-up
    else:
        state.prepare_dial(sid, None, AGENTS, now)


@pytest.mark.parametrize("seed", range(6))
def test_the_index_agrees_with_the_agents_after_any_changes(
    state: LiveState, redis_conn: redis_lib.Redis, seed: int,
) -> None:
    rng = random.Random(seed)
    now, calls = T0, []
    for n in range(150):
        now += rng.choice([0.0, 1.0, 7.0, 40.0])  # rings and wrap-ups lapse along the way
        step(state, rng, now, calls)
        assert index_of(state, redis_conn) == expected_index(state, redis_conn), f"after step {n}"
        if n % 10 == 0:  # a new call is offered exactly whom the full snapshot finds available
            _, rows = state.prepare_dial(f"CA-new-{n}", None, AGENTS, now)
            assert rows == offerable(state, now), f"after step {n}"


def test_a_dial_settles_a_lapsed_ring_and_wrap_up_of_its_queue(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    state.claim_agents(["a0"], "CA1", 1, T0, ring_until=T0 + 30)
    state.claim_agents(["a1"], "CA2", 1, T0, ring_until=T0 + 30)
    state.answer("a1", "CA2", T0 + 1)
    state.release_after_call("a1", "CA2", T0 + 5, 20)  # wrap-up until T0 + 25
    _, rows = state.prepare_dial("CA3", None, ["a0", "a1"], T0 + 24)
    assert rows == []
    _, rows = state.prepare_dial("CA3", None, ["a0", "a1"], T0 + 30)
    assert rows == [AgentSnapshot("a0", "available", T0, T0, 0), AgentSnapshot("a1", "available", T0 + 25, T0, 0)]
    assert [c.to_status for c in state.status_log(count=2)] == ["available", "available"]  # logged once each
    assert index_of(state, redis_conn)[1] == {}


def test_a_lost_or_older_index_is_rebuilt_by_the_next_sync(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    state.claim_agents(["a0"], "CA1", 1, T0, ring_until=T0 + 30)
    before = index_of(state, redis_conn)
    redis_conn.delete(state.keys.free_agents, state.keys.agent_timers)  # as after an upgrade
    assert state.prepare_dial("CA2", None, AGENTS, T0 + 1)[1] == []
    assert state.sync_agents({a: True for a in AGENTS}, T0 + 2) == []  # creates nobody, indexes everyone
    assert index_of(state, redis_conn) == before
    assert [a.id for a in state.prepare_dial("CA2", None, AGENTS, T0 + 3)[1]] == AGENTS[1:7]


def test_a_big_queue_reads_the_whole_index_and_keeps_its_own_agents_in_order(
    redis_conn: redis_lib.Redis, redis_prefix: str,
) -> None:
    """A queue of more than 16 agents reads the whole index (HGETALL) instead of an HMGET of its
    ids when the index is at most 4 times its size: either way it gets only its own available,
    untried agents, in the queue's order, and a lapsed ring of its own is settled first."""
    state = LiveState(KeptConnection(redis_conn.connection_pool), redis_prefix)
    everyone = [f"b{i:02d}" for i in range(80)]
    state.sync_agents(dict.fromkeys(everyone, True), T0)
    queue = list(reversed(everyone[10:50]))  # 40 agents, not in the index's order
    state.claim_agents(["b49"], "CA1", 1, T0, ring_until=T0 + 30)  # lapses at T0 + 30
    state.claim_agents(["b48"], "CA2", 1, T0, ring_until=T0 + 300)
    state.set_status("b47", "away", T0, "test")
    state.claim_agents(["b46", "b45"], "CA3", 2, T0, ring_until=T0 + 300, dial=True)
    state.release_unanswered("CA3", None, T0 + 1)  # tried by CA3, free again
    state.save_call("CA3", {"from": "+3725550000"}, T0)

    _, rows = state.prepare_dial("CA3", None, queue, T0 + 31)
    expected = [a for a in state.snapshot(queue, T0 + 31) if a.status == "available" and a.id not in {"b46", "b45"}]
    assert rows == expected
    assert [a.id for a in rows] == [a for a in queue if a not in {"b48", "b47", "b46", "b45"}]
    assert rows[0] == AgentSnapshot("b49", "available", T0, T0, 0)  # its lapsed ring settled by the dial
    _, small = state.prepare_dial("CA4", None, ["b05", "b48", "b30"], T0 + 31)  # a small queue: HMGET
    assert [a.id for a in small] == ["b05", "b30"]
    seventeen = everyone[40:57]  # more than 16, but the index (80) is over 4 times as big: HMGET
    _, rows = state.prepare_dial("CA5", None, seventeen, T0 + 31)
    assert [a.id for a in rows] == [a for a in seventeen if a not in {"b48", "b47"}]  # CA5 tried nobody
    assert rows == [a for a in state.snapshot(seventeen, T0 + 31) if a.status == "available"]
