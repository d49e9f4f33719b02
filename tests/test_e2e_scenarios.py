"""End to end: the real app served over HTTP, a real worker, the local Twilio calling it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recordings import card, db
from routing_rules import engine
from webhooks.local_stack import LocalStack, always_open

EN_CALLER = "+447911000123"
RU_CALLER = "+79161234567"


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, redis_prefix: str, db: str, example_rules_text: str) -> Iterator[LocalStack]:
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(always_open(example_rules_text, wrap_up_seconds=0), encoding="utf-8")
    local = LocalStack(rules_path=rules_path, data_dir=tmp_path / "var", redis_url=redis_url,
                       database_url=db, redis_prefix=redis_prefix, job_queue=f"{redis_prefix}jobs").start()
    yield local
    local.stop()


def ranked_support_agents(stack: LocalStack, caller: str, language: str) -> list[str]:
    rules = stack.rules
    snapshot = stack.runtime.state.snapshot(rules.queues["support"].agents, time.time())
    return engine.rank_agents(rules, "support", snapshot, engine.CallerContext(caller, language), set())


def card_kinds(e164: str) -> list[str]:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        assert client is not None, f"no card for {e164}"
        events, _ = card.timeline(s, client.id, limit=200)
        return [e.kind for e in reversed(events)]


def card_events(e164: str, kind: str) -> list[dict]:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        events, _ = card.timeline(s, client.id, limit=200)
        return [{"agent": e.agent_id, **(e.data or {})} for e in events if e.kind == kind]


def test_call_answered_within_three_rings(stack: LocalStack) -> None:
    first = ranked_support_agents(stack, EN_CALLER, "en")[0]
    stack.sim.add_agent(stack.rules.agents[first].endpoint, {"name": first, "answer_after_rings": 2,
                                                             "hang_up_after": 40})
    record = stack.sim.place_inbound(EN_CALLER, stack.hotline_number, [{"press": "1"}])
    assert stack.wait_for_jobs()
    text = str(record)
    assert "answered after 2 rings" in text, text
    (answered,) = card_events(EN_CALLER, "call_answered")
    assert answered["agent"] == first and answered["within_target"] is True
    kinds = card_kinds(EN_CALLER)
    assert kinds[0] == "call_arrived" and "menu_choice" in kinds and "recording_linked" in kinds
    (agent,) = stack.runtime.state.snapshot([first], time.time())
    assert agent.status == "available" and agent.misses == 0


def test_missed_agent_is_skipped_and_the_next_answers(stack: LocalStack) -> None:
    first, second = ranked_support_agents(stack, RU_CALLER, "ru")[:2]
    stack.sim.add_agent(stack.rules.agents[first].endpoint, {"name": first, "answer_after_rings": 6})
    stack.sim.add_agent(stack.rules.agents[second].endpoint, {"name": second, "answer_after_rings": 1,
                                                              "hang_up_after": 30})
    record = stack.sim.place_inbound(RU_CALLER, stack.hotline_number, [{"press": "1"}])
    assert stack.wait_for_jobs()
    assert "no-answer" in str(record) or "no answer" in str(record), str(record)
    (rung,) = card_events(RU_CALLER, "agent_rung")
    assert rung["agent"] == first and rung["outcome"] == "no-answer"
    (answered,) = card_events(RU_CALLER, "call_answered")
    assert answered["agent"] == second
    snapshot = {a.id: a for a in stack.runtime.state.snapshot([first, second], time.time())}
    assert snapshot[first].misses == 1 and snapshot[second].misses == 0


def test_all_agents_miss_then_voicemail_with_deadline(stack: LocalStack) -> None:
    for agent_id in stack.rules.queues["support"].agents:
        stack.sim.add_agent(stack.rules.agents[agent_id].endpoint, "never")
    record = stack.sim.place_inbound(EN_CALLER, stack.hotline_number, [{"press": "1"}, {"record": 12}])
    assert stack.wait_for_jobs()
    assert record.recordings, str(record)
    kinds = card_kinds(EN_CALLER)
    assert kinds.count("agent_rung") == stack.rules.queues["support"].max_attempts
    assert "voicemail_left" in kinds
    with db.session() as s:
        (mail,) = card.list_voicemails(s, "open", now=None) if False else card.list_voicemails(s, "open", None)
        assert mail.due_at is not None
