"""Live state on a real Redis: agents, calls, waiting lines, estimated wait, idempotency."""

from __future__ import annotations

import pytest
import redis as redis_lib

from telephony.redis_client import KeptConnection
from telephony.state import AgentSnapshot, Keys, LiveState, UnknownAgent

T0 = 1_700_000_000.0  # a fixed clock: tests pass `now`, never sleep


@pytest.fixture
def state(redis_conn: redis_lib.Redis, redis_prefix: str) -> LiveState:
    live = LiveState(KeptConnection(redis_conn.connection_pool), redis_prefix)  # as the app has it
    live.sync_agents({"ann": True, "bob": True, "cat": True, "dan": False}, T0)
    return live


def status_of(state: LiveState, agent_id: str, now: float) -> str:
    return state.snapshot([agent_id], now)[0].status


# ---- keys -------------------------------------------------------------------------------


def test_every_key_is_under_the_prefix(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    names = [
        keys.agent("a"),
        keys.agents_index,
        keys.status_log,
        keys.calls_day,
        keys.call("CA1"),
        keys.tried("CA1"),
        keys.claimed("CA1"),
        keys.line("q"),
        keys.handle_times("q"),
        keys.last_agent("+3725550000"),
    ]
    assert all(n.startswith(redis_prefix) for n in names)
    assert len(set(names)) == len(names)


# ---- sync and snapshot ------------------------------------------------------------------


def test_sync_creates_missing_agents_with_their_default(state: LiveState) -> None:
    snap = {a.id: a for a in state.snapshot(["ann", "dan"], T0)}
    assert snap["ann"] == AgentSnapshot("ann", "available", T0, 0.0, 0)
    assert snap["dan"].status == "offline"
    assert state.agent_ids() == {"ann", "bob", "cat", "dan"}


def test_sync_never_overwrites_an_existing_status(state: LiveState) -> None:
    state.set_status("ann", "away", T0 + 1, by="agent:ann")
    created = state.sync_agents({"ann": True, "eve": True}, T0 + 2)
    assert created == ["eve"]
    assert status_of(state, "ann", T0 + 3) == "away"


def test_snapshot_leaves_out_unknown_agents(state: LiveState) -> None:
    assert [a.id for a in state.snapshot(["ann", "nobody", "bob"], T0)] == ["ann", "bob"]
    assert state.snapshot([], T0) == []


def test_snapshot_reads_empty_or_missing_number_fields_as_zero(
        state: LiveState, redis_conn: redis_lib.Redis) -> None:
    """The snapshot comes back as words: an empty field must not shift the agents after it."""
    redis_conn.hset(state.keys.agent("ann"), mapping={"idle_since": "", "last_offered_at": ""})
    redis_conn.hdel(state.keys.agent("ann"), "misses")
    redis_conn.hset(state.keys.agent("bob"), mapping={"misses": "2.0", "last_offered_at": T0 - 5})
    snap = state.snapshot(["ann", "bob", "cat"], T0)
    assert snap == [AgentSnapshot("ann", "available", 0.0, 0.0, 0),
                    AgentSnapshot("bob", "available", T0, T0 - 5, 2),
                    AgentSnapshot("cat", "available", T0, 0.0, 0)]


def test_agents_by_status_counts_every_status(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    counts = state.agents_by_status(["ann", "bob", "cat", "dan"], T0 + 1)
    assert counts == {
        "available": 2,
        "ringing": 1,
        "on_call": 0,
        "wrap_up": 0,
        "away": 0,
        "offline": 1,
    }


# ---- set_status -------------------------------------------------------------------------


def test_set_status_returns_previous_and_current_and_logs_who(state: LiveState) -> None:
    assert state.set_status("ann", "away", T0 + 5, by="supervisor:sue") == ("available", "away")
    change = state.status_log("ann", count=1)[0]
    assert (change.from_status, change.to_status, change.by, change.at) == (
        "available",
        "away",
        "supervisor:sue",
        T0 + 5,
    )


def test_set_status_refuses_available_for_an_agent_on_a_call(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.set_status("ann", "available", T0 + 4, by="agent:ann") == ("on_call", "on_call")
    assert status_of(state, "ann", T0 + 5) == "on_call"
    assert state.status_log("ann", count=1)[0].to_status == "on_call"  # refusal not logged


def test_set_status_refuses_available_while_ringing(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert state.set_status("ann", "available", T0 + 1, by="agent:ann") == ("ringing", "ringing")


def test_away_unsticks_an_agent_whose_call_callbacks_were_lost(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.set_status("ann", "offline", T0 + 3600, by="supervisor:sue") == (
        "on_call",
        "offline",
    )
    assert not state.release_after_call("ann", "CA1", T0 + 3601, 10)  # the call let go


def test_set_status_available_resets_misses(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.release_missed("ann", "CA1", T0 + 20, miss_limit=3)
    assert state.snapshot(["ann"], T0 + 21)[0].misses == 1
    state.set_status("ann", "available", T0 + 22, by="agent:ann")
    assert state.snapshot(["ann"], T0 + 23)[0].misses == 0


def test_set_status_rejects_call_statuses_and_unknown_agents(state: LiveState) -> None:
    with pytest.raises(ValueError):
        state.set_status("ann", "on_call", T0, by="agent:ann")
    with pytest.raises(UnknownAgent):
        state.set_status("nobody", "away", T0, by="agent:nobody")


# ---- claims -----------------------------------------------------------------------------


def test_claim_walks_candidates_in_order_and_skips_busy(state: LiveState) -> None:
    state.set_status("bob", "away", T0, by="agent:bob")
    claimed = state.claim_agents(["dan", "bob", "cat", "ann"], "CA1", 2, T0 + 1, T0 + 31)
    assert claimed == ["cat", "ann"]
    snap = {a.id: a for a in state.snapshot(["cat", "ann"], T0 + 2)}
    assert snap["cat"].status == "ringing" and snap["cat"].last_offered_at == T0 + 1
    assert state.claim_agents(["cat", "ann"], "CA2", 1, T0 + 2, T0 + 32) == []
    assert state.claimed("CA1") == {"cat", "ann"}


def test_claim_ignores_duplicate_candidates_and_nonpositive_count(state: LiveState) -> None:
    assert state.claim_agents(["ann", "ann", "bob"], "CA1", 0, T0, T0 + 30) == []
    assert state.claim_agents(["ann", "ann", "bob"], "CA1", 2, T0, T0 + 30) == ["ann", "bob"]


def test_expired_reservation_becomes_claimable(state: LiveState) -> None:
    assert state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30) == ["ann"]
    assert state.claim_agents(["ann"], "CA2", 1, T0 + 29.9, ring_until=T0 + 60) == []
    assert status_of(state, "ann", T0 + 29.9) == "ringing"
    assert status_of(state, "ann", T0 + 30) == "available"
    assert state.claim_agents(["ann"], "CA2", 1, T0 + 31, ring_until=T0 + 61) == ["ann"]
    expired = [c for c in state.status_log("ann") if c.by == "rule:ring_expired"]
    assert len(expired) == 1 and expired[0].at == T0 + 30  # dated when it expired


def test_claim_itself_settles_an_expired_reservation(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert state.claim_agents(["ann"], "CA2", 1, T0 + 45, ring_until=T0 + 75) == ["ann"]


def test_wrap_up_ends_lazily(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.mark_on_call("ann", "CA1", T0 + 5)
    assert state.release_after_call("ann", "CA1", T0 + 100, wrap_up_seconds=10)
    assert status_of(state, "ann", T0 + 109) == "wrap_up"
    assert state.claim_agents(["ann"], "CA2", 1, T0 + 109, T0 + 139) == []
    ann = state.snapshot(["ann"], T0 + 110)[0]
    assert (ann.status, ann.idle_since) == ("available", T0 + 110)
    assert state.status_log("ann", count=1)[0].by == "rule:wrap_up_ended"
    assert state.claim_agents(["ann"], "CA2", 1, T0 + 111, T0 + 141) == ["ann"]


# ---- answered, released, missed ---------------------------------------------------------


def test_mark_on_call_only_for_the_call_that_rings_the_agent(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert not state.mark_on_call("ann", "CA-other", T0 + 2)
    assert not state.mark_on_call("bob", "CA1", T0 + 2)  # bob was never claimed
    assert state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.mark_on_call("ann", "CA1", T0 + 4)  # a repeated callback is fine
    assert status_of(state, "ann", T0 + 5) == "on_call"


def test_ring_all_answer_releases_the_others_without_a_miss(state: LiveState) -> None:
    assert state.claim_agents(["ann", "bob", "cat"], "CA1", 3, T0, T0 + 30) == ["ann", "bob", "cat"]
    assert state.mark_on_call("bob", "CA1", T0 + 4)
    snap = {a.id: a for a in state.snapshot(["ann", "bob", "cat"], T0 + 5)}
    assert {i: a.status for i, a in snap.items()} == {
        "ann": "available",
        "bob": "on_call",
        "cat": "available",
    }
    assert snap["ann"].misses == 0
    # The dial's no-answer for the others arriving late changes nothing.
    assert state.release_missed("ann", "CA1", T0 + 6, miss_limit=1) == ("available", 0)


def test_release_unanswered_when_the_caller_hangs_up(state: LiveState) -> None:
    state.claim_agents(["ann", "bob"], "CA1", 2, T0, T0 + 30)
    assert sorted(state.release_unanswered("CA1", None, T0 + 3)) == ["ann", "bob"]
    assert state.release_unanswered("CA1", None, T0 + 4) == []


def test_release_after_call_starts_wrap_up_and_counts_the_call(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.release_missed("ann", "CA0", T0, 3)  # not this call: nothing
    state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.release_after_call("ann", "CA1", T0 + 200, wrap_up_seconds=15)
    fields = state.agent("ann", T0 + 201)
    assert fields is not None
    assert fields["status"] == "wrap_up"
    assert float(fields["wrap_up_until"]) == T0 + 215
    assert float(fields["idle_since"]) == T0 + 215
    assert fields["calls_today"] == "1" and fields["misses"] == "0" and fields["call_sid"] == ""


def test_a_new_day_zeroes_calls_today_of_known_agents_and_never_goes_back(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.release_after_call("ann", "CA1", T0 + 60, 0)
    assert not state.start_day("2026-11-24", ["ann", "nobody"])  # the first day recorded: its own counters
    assert not state.start_day("2026-11-24", ["ann", "nobody"])
    assert state.agent("ann", T0 + 61)["calls_today"] == "1"  # type: ignore[index]
    assert state.start_day("2026-11-25", ["ann", "nobody"])
    assert state.agent("ann", T0 + 61)["calls_today"] == "0"  # type: ignore[index]
    assert state.agent("nobody", T0 + 61) is None  # an unknown id is not created
    state.claim_agents(["ann"], "CA2", 1, T0 + 70, ring_until=T0 + 100)
    state.release_after_call("ann", "CA2", T0 + 90, 0)
    assert not state.start_day("2026-11-24", ["ann"])  # a worker whose clock is behind
    assert not state.start_day("2026-11-25", ["ann"])  # a second worker's tick the same day
    assert state.agent("ann", T0 + 91)["calls_today"] == "1"  # type: ignore[index]


def test_a_window_counter_counts_and_always_expires(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    key = state.keys.login_attempts("someone")
    assert [state.count_hit(key, 300) for _ in range(3)] == [1, 2, 3]
    assert 0 < redis_conn.ttl(key) <= 300
    redis_conn.persist(key)  # as if it had been created without its expiry
    assert state.count_hit(key, 300) == 4 and 0 < redis_conn.ttl(key) <= 300


def test_the_tick_resets_calls_today_after_local_midnight(voice) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from routing_rules import engine
    from telephony import dispatch

    runtime = voice.app.extensions["hotline"]
    state, rules = runtime.state, runtime.rules.current()
    agent = next(iter(rules.agents))
    midnight = datetime(2026, 11, 25, tzinfo=engine.zone(rules)).astimezone(UTC)  # the hotline's
    state.claim_agents([agent], "CA1", 1, T0, ring_until=T0 + 30)
    state.mark_on_call(agent, "CA1", T0 + 3)
    state.release_after_call(agent, "CA1", T0 + 60, 0)
    dispatch.tick(midnight - timedelta(hours=2))
    dispatch.tick(midnight - timedelta(seconds=1))
    assert state.agent(agent, T0 + 61)["calls_today"] == "1"  # type: ignore[index]
    dispatch.tick(midnight + timedelta(seconds=1))
    assert state.agent(agent, T0 + 61)["calls_today"] == "0"  # type: ignore[index]


def test_release_after_call_with_no_wrap_up_is_available_at_once(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.release_after_call("ann", "CA1", T0 + 60, wrap_up_seconds=0)
    assert status_of(state, "ann", T0 + 60) == "available"


def test_release_after_call_is_idempotent(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.mark_on_call("ann", "CA1", T0 + 3)
    assert state.release_after_call("ann", "CA1", T0 + 60, 0)
    state.claim_agents(["ann"], "CA2", 1, T0 + 61, ring_until=T0 + 91)
    assert not state.release_after_call("ann", "CA1", T0 + 62, 0)  # stale: must not free CA2
    assert status_of(state, "ann", T0 + 63) == "ringing"
    assert state.agent("ann", T0 + 63)["calls_today"] == "1"  # type: ignore[index]


def test_missed_ring_counts_and_frees_the_agent(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert state.release_missed("ann", "CA1", T0 + 20, miss_limit=3) == ("available", 1)
    assert state.release_missed("ann", "CA1", T0 + 21, miss_limit=3) == ("available", 1)


def test_agent_who_misses_three_rings_is_set_away_and_logged(state: LiveState) -> None:
    for n, sid in enumerate(["CA1", "CA2", "CA3"], start=1):
        now = T0 + 100 * n
        assert state.claim_agents(["ann"], sid, 1, now, ring_until=now + 30) == ["ann"]
        status, misses = state.release_missed("ann", sid, now + 20, miss_limit=3)
        assert misses == n
    assert (status, misses) == ("away", 3)
    assert state.claim_agents(["ann"], "CA4", 1, T0 + 500, T0 + 530) == []
    change = state.status_log("ann", count=1)[0]
    assert (change.from_status, change.to_status, change.by, change.call_sid) == (
        "ringing",
        "away",
        "rule:miss_limit",
        "CA3",
    )
    assert state.release_missed("ann", "CA3", T0 + 321, miss_limit=3) == ("away", 3)


def test_answering_resets_the_miss_count(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    state.release_missed("ann", "CA1", T0 + 20, miss_limit=3)
    state.claim_agents(["ann"], "CA2", 1, T0 + 40, ring_until=T0 + 70)
    state.mark_on_call("ann", "CA2", T0 + 45)
    state.release_after_call("ann", "CA2", T0 + 90, 0)
    assert state.snapshot(["ann"], T0 + 91)[0].misses == 0


def test_a_late_no_answer_after_expiry_still_counts_once(state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, ring_until=T0 + 30)
    assert status_of(state, "ann", T0 + 31) == "available"
    assert state.release_missed("ann", "CA1", T0 + 32, miss_limit=1) == ("away", 1)
    assert state.release_missed("ann", "CA1", T0 + 33, miss_limit=1) == ("away", 1)


def test_a_late_answer_after_expiry_is_accepted_if_nobody_claimed_the_agent(
    state: LiveState,
) -> None:
    state.claim_agents(["ann", "bob"], "CA1", 2, T0, ring_until=T0 + 30)
    assert state.mark_on_call("ann", "CA1", T0 + 31)
    assert state.claim_agents(["bob"], "CA2", 1, T0 + 32, ring_until=T0 + 62) == ["bob"]
    assert not state.mark_on_call("bob", "CA1", T0 + 33)  # bob now belongs to CA2


def test_unknown_agent_releases_are_values_not_errors(state: LiveState) -> None:
    assert state.release_missed("nobody", "CA1", T0, 3) == (None, 0)
    assert not state.release_after_call("nobody", "CA1", T0, 10)
    assert not state.mark_on_call("nobody", "CA1", T0)


# ---- calls ------------------------------------------------------------------------------


def test_call_state_round_trip_with_ttl(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    assert state.get_call("CA1") is None
    state.save_call("CA1", {"queue": "support", "lang": "en", "skip": None}, T0)
    call = state.get_call("CA1")
    assert call == {"queue": "support", "lang": "en", "created_at": repr(T0)}
    assert 0 < redis_conn.ttl(state.keys.call("CA1")) <= 24 * 3600
    assert state.update_call("CA1", lang="ru", queue=None, answered_by="")
    assert state.get_call("CA1") == {"lang": "ru", "answered_by": "", "created_at": repr(T0)}
    assert not state.update_call("CA-unknown", lang="ru")
    assert state.get_call("CA-unknown") is None


def served_by(state: LiveState, e164: str, agent_id: str, now: float) -> None:
    """The number's last agent, as a real answer leaves it: claimed, answered, freed."""
    sid = f"CA-served-{agent_id}-{now}"
    assert state.claim_agents([agent_id], sid, 1, now, now + 30) == [agent_id]
    assert state.mark_on_call(agent_id, sid, now, e164=e164)
    assert state.release_after_call(agent_id, sid, now, wrap_up_seconds=0)


def test_tried_agents_and_attempts(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    state.save_call("CA1", {"from": "+3725550000"}, T0)
    assert state.tried("CA1") == set()
    assert state.prepare_dial("CA1", "+3725550000", (), T0)[0] == (1, set(), None)
    served_by(state, "+3725550000", "bob", T0)
    state.claim_agents(["ann", "bob"], "CA1", 2, T0 + 1, T0 + 31, dial=True)
    assert state.prepare_dial("CA1", "+3725550000", (), T0 + 1)[0] == (2, {"ann", "bob"}, "bob")
    state.release_unanswered("CA1", None, T0 + 2)  # the attempt ended unanswered
    state.claim_agents(["ann"], "CA1", 1, T0 + 2, T0 + 32, dial=True)
    assert state.tried("CA1") == {"ann", "bob"}
    assert state.prepare_dial("CA1", None, (), T0 + 2)[0] == (3, {"ann", "bob"}, None)
    call = state.get_call("CA1") or {}
    assert (call["claimed"], call["dial_started_at"], call["answered_by"]) == ("ann", str(T0 + 2), "")
    assert redis_conn.ttl(state.keys.tried("CA1")) > 0
    assert redis_conn.ttl(state.keys.call("CA1")) > 0
    state.claim_agents(["cat"], "CA-unknown", 1, T0, T0 + 30, dial=True)  # a call Redis no longer knows is not recreated
    assert state.get_call("CA-unknown") is None


def test_prepare_dial_sets_fields_counts_the_attempt_and_reads_the_decision_inputs(state: LiveState) -> None:
    state.save_call("CA1", {"from": "+3725550000", "queue": "sales", "attempt": "4"}, T0)
    served_by(state, "+3725550000", "bob", T0 - 60)
    state.claim_agents(["ann"], "CA-other", 1, T0, ring_until=T0 + 30)  # expires before T0 + 31
    facts, agents = state.prepare_dial("CA1", "+3725550000", ["ann", "bob", "nobody"], T0 + 31,
                                       {"queue": "support", "attempt": "0", "skip": None})
    assert facts == (1, set(), "bob")  # the new queue's attempts restart at 1
    assert [(a.id, a.status) for a in agents] == [("ann", "available"), ("bob", "available")]
    assert state.snapshot(["ann"], T0 + 31)[0].status == "available"  # the expiry was written back
    call = state.get_call("CA1") or {}
    assert (call["queue"], call["attempt"]) == ("support", "1") and "skip" not in call
    state.claim_agents(["ann"], "CA1", 1, T0 + 32, T0 + 62, dial=True)
    assert state.prepare_dial("CA1", None, [], T0 + 33) == ((2, {"ann"}, None), [])
    # an unknown call takes no fields (no hash without its TTL beyond the attempt counter)
    facts, _ = state.prepare_dial("CA-unknown", None, [], T0, {"queue": "support"})
    assert facts.attempt == 1 and "queue" not in (state.get_call("CA-unknown") or {})


def test_prepare_dial_returns_only_the_agents_the_call_can_be_offered(state: LiveState) -> None:
    state.save_call("CA1", {"from": "+3725550000"}, T0)
    state.claim_agents(["ann"], "CA1", 1, T0, T0 + 30, dial=True)  # tried on this call, ringing
    state.release_unanswered("CA1", None, T0 + 1)  # available again, but already tried
    state.claim_agents(["bob"], "CA-other", 1, T0 + 1, T0 + 31)  # ringing for another call
    state.claim_agents(["cat"], "CA-old", 1, T0 - 60, T0 - 30)  # its ring expired: settled to available
    _, agents = state.prepare_dial("CA1", None, ["ann", "bob", "cat", "dan", "nobody"], T0 + 2)
    assert [(a.id, a.status) for a in agents] == [("cat", "available")]
    assert {a.id: a.status for a in state.snapshot(["ann", "bob", "cat", "dan"], T0 + 2)} == {
        "ann": "available", "bob": "ringing", "cat": "available", "dan": "offline"}  # the snapshot has everyone


def test_a_claim_for_a_dial_notes_it_on_the_call_in_the_same_step(state: LiveState) -> None:
    state.save_call("CA1", {"from": "+3725550000", "answered_by": "old"}, T0)
    assert state.claim_agents(["ann", "bob", "cat"], "CA1", 2, T0 + 1, T0 + 31, dial=True) == ["ann", "bob"]
    call = state.get_call("CA1") or {}
    assert (call["claimed"], call["dial_started_at"], call["answered_by"]) == ("ann,bob", repr(T0 + 1), "")
    assert state.tried("CA1") == {"ann", "bob"}
    assert state.claim_agents(["ann", "bob"], "CA2", 1, T0 + 2, T0 + 32, dial=True) == []
    assert state.tried("CA2") == set() and state.get_call("CA2") is None  # nothing claimed, nothing noted
    state.claim_agents(["cat"], "CA3", 1, T0 + 3, T0 + 33)  # no dial: the call is not touched
    assert state.get_call("CA3") is None and state.tried("CA3") == set()


def test_the_answer_is_noted_on_the_call_and_the_number_remembers_the_agent(state: LiveState) -> None:
    state.save_call("CA1", {"from": "+3725550000"}, T0)
    state.claim_agents(["ann", "bob"], "CA1", 2, T0, T0 + 30, dial=True)
    call, claimed = state.call_and_claimed("CA1")
    assert call is not None and claimed == {"ann", "bob"}
    assert state.mark_on_call("bob", "CA1", T0 + 4, claimed=claimed, e164="+3725550000")
    call = state.get_call("CA1") or {}
    assert (call["answered_by"], call["answered_at"]) == ("bob", repr(T0 + 4))
    assert state.last_agent("+3725550000") == "bob"
    assert status_of(state, "ann", T0 + 5) == "available"  # the rest of the ring-all is freed
    assert not state.mark_on_call("ann", "CA1", T0 + 6, claimed=claimed, e164="+3725550000")
    assert state.last_agent("+3725550000") == "bob"  # a refused answer changes nothing
    assert state.call_and_claimed("CA-unknown") == (None, set())


def test_the_end_of_a_talk_frees_the_agent_and_keeps_the_handle_time_with_the_lines_length(
        state: LiveState) -> None:
    state.claim_agents(["ann"], "CA1", 1, T0, T0 + 30)
    state.mark_on_call("ann", "CA1", T0 + 2)
    assert state.release_after_talk("ann", "CA1", T0 + 62, 5, "support", 60) == (True, 0)
    assert status_of(state, "ann", T0 + 63) == "wrap_up"
    state.join_line("support", "call:CA2", T0)
    state.join_line("support", "callback:7", T0 + 1)
    # a repeated Dial action frees nobody (the agent no longer holds CA1) and keeps no second time
    assert state.release_after_talk("ann", "CA1", T0 + 70, 0, "support", 120) == (False, 2)
    assert status_of(state, "ann", T0 + 66) == "available"  # the first release's wrap-up ended, nothing else
    assert state.average_handle_seconds("support") == 60


def test_a_known_call_keeps_its_handle_time_once_even_when_nobody_is_released(state: LiveState) -> None:
    """The agent was set away during the talk: the Dial action releases nobody, yet the talk
    happened and counts once for the wait estimate; a repeat adds nothing."""
    state.save_call("CA1", {"from": "+3725550000"}, T0)
    state.claim_agents(["ann"], "CA1", 1, T0, T0 + 30, dial=True)
    state.mark_on_call("ann", "CA1", T0 + 2)
    state.set_status("ann", "away", T0 + 10, by="supervisor")
    assert state.release_after_talk("ann", "CA1", T0 + 40, 0, "support", 38) == (False, 0)
    assert state.release_after_talk("ann", "CA1", T0 + 41, 0, "support", 39) == (False, 0)
    assert state.average_handle_seconds("support") == 38
    assert status_of(state, "ann", T0 + 42) == "away"


def test_a_carrier_script_pushes_the_card_events_after_its_own_writes(
        state: LiveState, redis_conn: redis_lib.Redis) -> None:
    events = state.keys.card_events()
    state.save_call("CA1", {"from": "+3725550000"}, T0, carry=['{"n":1}', '{"n":2}'])
    assert state.get_call("CA1") == {"created_at": repr(T0), "from": "+3725550000"}
    claimed = state.claim_agents(["ann", "bob"], "CA1", 1, T0, T0 + 30, dial=True, carry=['{"n":3}'])
    assert claimed == ["ann"] and state.tried("CA1") == {"ann"}  # the agents' ids were not mistaken for events
    state.mark_on_call("ann", "CA1", T0 + 1)
    assert state.release_after_talk("ann", "CA1", T0 + 9, 0, "q", 8, carry=['{"n":4}']) == (True, 0)
    ended = state.end_call("CA1", carry=['{"n":5}'])
    assert ended is not None and ended[1] == {"ann"}
    assert state.end_call("CA1", carry=['{"n":6}']) is None  # an end seen twice still sends its events
    state.save_call("CA2", {"from": "+3725550001"}, T0)  # nothing carried: nothing pushed
    assert state.update_call("CA2", voicemail="1", carry=['{"n":7}']) is True
    assert state.get_call("CA2")["voicemail"] == "1"
    assert state.update_call("CA9", voicemail="1", carry=['{"n":8}']) is False  # an unknown call: events still go
    assert state.get_call("CA9") is None
    assert redis_conn.lrange(events, 0, -1) == [b'{"n":%d}' % n for n in range(1, 9)]


def test_a_carrier_script_that_fails_pushes_no_card_event(state: LiveState, redis_conn: redis_lib.Redis) -> None:
    redis_conn.set(state.keys.call("CA1"), "not a hash")
    with pytest.raises(redis_lib.ResponseError):
        state.save_call("CA1", {"from": "+3725550000"}, T0, carry=['{"n":1}'])
    assert redis_conn.llen(state.keys.card_events()) == 0


def test_a_call_ends_once_with_its_fields_and_claimed_agents(state: LiveState) -> None:
    state.save_call("CA1", {"from": "+3725550000", "queue": "support"}, T0)
    state.claim_agents(["ann", "bob"], "CA1", 2, T0, ring_until=T0 + 30)
    ended = state.end_call("CA1")
    assert ended is not None
    fields, claimed = ended
    assert fields["queue"] == "support" and fields["ended"] == "1" and claimed == {"ann", "bob"}
    assert state.end_call("CA1") is None  # a repeated or late terminal callback
    assert state.end_call("CA-unknown") is None
    assert state.get_call("CA-unknown") is None  # not created by the attempt
    assert sorted(state.release_unanswered("CA1", None, T0 + 5, claimed=claimed)) == ["ann", "bob"]


def test_last_agent_is_remembered_per_number(state: LiveState) -> None:
    assert state.last_agent("+3725550000") is None
    served_by(state, "+3725550000", "ann", T0)
    served_by(state, "+3725550000", "bob", T0 + 60)
    assert state.last_agent("+3725550000") == "bob"


# ---- waiting lines ----------------------------------------------------------------------


def test_line_orders_by_first_join_and_rejoin_keeps_place(state: LiveState) -> None:
    assert state.join_line("support", "call:CA1", T0)
    assert state.join_line("support", "call:CA2", T0 + 10)
    assert not state.join_line("support", "call:CA1", T0 + 20)  # re-join keeps the place
    assert state.position("support", "call:CA1") == 1
    assert state.position("support", "call:CA2") == 2
    assert state.position("support", "call:CA9") is None
    assert state.line_length("support") == 2
    assert state.longest_waiting("support") == ("call:CA1", T0)


def test_callback_keeps_its_place_ahead_of_later_callers(state: LiveState) -> None:
    state.join_line("support", "call:CA1", T0)
    state.join_line("support", "call:CA2", T0 + 60)
    state.join_line("support", "call:CA3", T0 + 90)
    # CA1's caller chose a callback: the call leaves, the callback takes its original time.
    assert state.leave_line("support", "call:CA1")
    assert not state.leave_line("support", "call:CA1")
    state.join_line("support", "callback:42", since=T0)
    assert state.line("support") == [
        ("callback:42", T0),
        ("call:CA2", T0 + 60),
        ("call:CA3", T0 + 90),
    ]
    assert state.pop_longest("support") == "callback:42"
    assert state.pop_longest("support") == "call:CA2"
    assert state.position("support", "call:CA3") == 1


def test_empty_line(state: LiveState) -> None:
    assert state.longest_waiting("sales") is None
    assert state.pop_longest("sales") is None
    assert state.line("sales") == []
    assert state.line_length("sales") == 0


# ---- estimated wait ---------------------------------------------------------------------


def test_estimated_wait_defaults_to_three_minutes_per_round(state: LiveState) -> None:
    assert state.estimated_wait_seconds("support", position=1, agents_on_duty=2) == 180
    assert state.estimated_wait_seconds("support", position=3, agents_on_duty=2) == 360
    assert state.estimated_wait_seconds("support", position=3, agents_on_duty=0) == 540
    assert state.estimated_wait_seconds("support", position=0, agents_on_duty=2) == 0


def test_estimated_wait_averages_the_last_fifty_handle_times(state: LiveState) -> None:
    for n in range(60):  # talks of known calls: each keeps its time, even where it frees nobody
        state.save_call(f"CA{n}", {"from": "+3725550000"}, T0)
        state.release_after_talk("ann", f"CA{n}", T0, 0, "support", 1000 if n < 10 else 100)
    assert state.average_handle_seconds("support") == 100
    assert state.estimated_wait_seconds("support", position=5, agents_on_duty=2) == 300


def test_a_script_the_server_does_not_know_is_loaded_and_run_once(state: LiveState) -> None:
    """A restarted Redis (or one whose scripts were flushed) answers NOSCRIPT: the script did
    not run, so it is loaded and run, once. (The server's scripts are shared by every user of
    it, so the test makes the script unknown by its SHA rather than by flushing them.)"""
    carrier = state._save_call.script  # the script behind save_call
    real_sha = carrier.sha
    carrier.sha = "0" * 40
    state.save_call("CA1", {"from": "+3725550000"}, T0, carry=['{"n":1}'])
    assert carrier.sha == real_sha
    assert state.get_call("CA1") == {"created_at": repr(T0), "from": "+3725550000"}
    assert state.redis.lrange(state.keys.card_events(), 0, -1) == [b'{"n":1}']  # pushed once
