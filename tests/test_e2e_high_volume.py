"""High volume end to end: two agents, many callers, the offer, the line, callbacks, voicemail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from recordings import card, db
from recordings.models import Callback
from webhooks.local_stack import LocalStack, always_open

HOLD = 3000  # virtual seconds a patient caller is willing to wait


def caller(n: int) -> str:
    return f"+447911{n:06d}"


@pytest.fixture
def stack(tmp_path: Path, redis_url: str, redis_prefix: str, db: str, example_rules_text: str) -> Iterator[LocalStack]:
    data = yaml.safe_load(always_open(example_rules_text, wrap_up_seconds=0))
    data["queues"]["support"]["agents"] = ["anna", "mart"]
    data["queues"]["support"]["survey"] = False
    data["queues"]["support"]["high_volume"] = {"waiting_calls_at_least": 1, "when_no_agent_available": True,
                                                "announce_every_seconds": 20}
    data["queues"]["support"]["callback"]["time_presets"] = ["asap"]
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    data["outbound"].setdefault("countries", {})["GB"] = {  # the test must not depend on the hour
        "hours": [{"days": every_day, "open": "00:00", "close": "24:00"}], "on_holiday": "open",
        "source": "test: callable around the clock"}
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    local = LocalStack(rules_path=rules_path, data_dir=tmp_path / "var", redis_url=redis_url, database_url=db,
                       redis_prefix=redis_prefix, job_queue=f"{redis_prefix}jobs", pace="all",
                       time_scale=0.01).start()
    yield local
    local.stop()


def busy_agents(stack: LocalStack, talk: float) -> list:
    """Both agents answer at once and talk `talk` virtual seconds: two callers occupy them."""
    for agent in ("anna", "mart"):
        stack.sim.add_agent(stack.rules.agents[agent].endpoint, {"name": agent, "answer_after_rings": 1,
                                                                  "hang_up_after": talk})
    first = [stack.sim.start_inbound(caller(i), stack.hotline_number, [{"press": "1"}]) for i in (1, 2)]
    wait_until(lambda: sum(a.status == "on_call" for a in stack.runtime.state.snapshot(["anna", "mart"], time.time())) == 2)
    return first


def wait_until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def kinds(e164: str) -> list[str]:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        if client is None:
            return []
        events, _ = card.timeline(s, client.id, limit=200)
        return [e.kind for e in reversed(events)]


def event_time(e164: str, kind: str) -> float:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        events, _ = card.timeline(s, client.id, limit=200)
        return next(e.at.timestamp() for e in events if e.kind == kind)


def test_callers_beyond_the_trigger_are_offered_and_a_waiting_caller_is_connected(stack: LocalStack) -> None:
    first = busy_agents(stack, talk=150)
    waiting = stack.sim.start_inbound(caller(3), stack.hotline_number,
                                      [{"press": "1"}, {"wait": 10}, {"hang_up_after": HOLD}])
    wait_until(lambda: stack.runtime.state.line_length("support") == 1)
    for record in [*first, waiting]:
        assert record.call.done.wait(30), str(record)
    assert stack.wait_for_jobs()
    history = kinds(caller(3))
    assert "high_volume_offer" in history and "queued" in history
    assert "dequeued" in history and "call_answered" in history, history
    assert "high_volume_offer" not in kinds(caller(1))


def test_callback_keeps_its_place_ahead_of_a_later_caller(stack: LocalStack) -> None:
    first = busy_agents(stack, talk=150)
    booker = stack.sim.start_inbound(caller(4), stack.hotline_number,
                                     [{"press": "1"}, {"press": "2"}, {"press": "1"}])
    assert booker.call.done.wait(20), str(booker)
    wait_until(lambda: stack.runtime.state.line_length("support") == 1)  # the callback holds a place
    later = stack.sim.start_inbound(caller(5), stack.hotline_number,
                                    [{"press": "1"}, {"wait": 10}, {"hang_up_after": HOLD}])
    wait_until(lambda: stack.runtime.state.line_length("support") == 2)
    line = [m for m, _ in stack.runtime.state.line("support")]
    assert line[0].startswith("callback:") and line[1].startswith("call:")
    for record in [*first, later]:
        assert record.call.done.wait(40), str(record)
    stack.sim.wait_all(20)
    assert stack.wait_for_jobs()
    assert "callback_requested" in kinds(caller(4))
    assert "call_abandoned" not in kinds(caller(4))  # booking a callback is not abandoning
    assert "outbound_placed" in kinds(caller(4)), kinds(caller(4))
    assert "dequeued" in kinds(caller(5))
    assert event_time(caller(4), "outbound_placed") <= event_time(caller(5), "dequeued")
    with db.session() as s:
        (callback,) = s.query(Callback).all()
        assert callback.status == "completed", (callback.status, callback.last_result)


def test_voicemail_chosen_at_the_offer_appears_with_its_deadline(stack: LocalStack) -> None:
    first = busy_agents(stack, talk=60)
    record = stack.sim.start_inbound(caller(6), stack.hotline_number, [{"press": "1"}, {"press": "1"}, {"record": 9}])
    for r in [*first, record]:
        assert r.call.done.wait(30), str(r)
    assert stack.wait_for_jobs()
    with db.session() as s:
        (mail,) = card.list_voicemails(s, "open", None)
        assert mail.queue == "support" and mail.due_at is not None
    assert "voicemail_left" in kinds(caller(6))


def test_a_callback_whose_client_opts_out_meanwhile_is_not_dialled(stack: LocalStack) -> None:
    first = busy_agents(stack, talk=150)
    booker = stack.sim.start_inbound(caller(7), stack.hotline_number,
                                     [{"press": "1"}, {"press": "2"}, {"press": "1"}])
    assert booker.call.done.wait(20)
    wait_until(lambda: stack.runtime.state.line_length("support") == 1)
    response = stack.api("POST", "/api/opt-outs", json={"phone": caller(7), "reason": "asked on the phone"})
    assert response.status_code == 201, response.text
    for r in first:
        assert r.call.done.wait(40)
    stack.sim.wait_all(20)
    assert stack.wait_for_jobs()
    history = kinds(caller(7))
    assert "outbound_placed" not in history
    assert "outbound_blocked" in history
    with db.session() as s:
        (callback,) = s.query(Callback).all()
        assert callback.status == "blocked"


def test_a_caller_who_hangs_up_while_waiting_is_on_the_card_as_abandoned(stack: LocalStack) -> None:
    first = busy_agents(stack, talk=150)
    quitter = stack.sim.start_inbound(caller(8), stack.hotline_number,
                                      [{"press": "1"}, {"wait": 10}, {"hang_up_after": 90}])
    assert quitter.call.done.wait(30), str(quitter)
    for r in first:
        assert r.call.done.wait(40)
    assert stack.wait_for_jobs()
    assert "call_abandoned" in kinds(caller(8)), kinds(caller(8))
    with db.session() as s:
        client = card.find_client_by_phone(s, caller(8))
        events, _ = card.timeline(s, client.id, limit=50)
        (abandoned,) = [e for e in events if e.kind == "call_abandoned"]
        assert abandoned.data["while"] == "waiting" and abandoned.data["queue"] == "support"
    assert stack.runtime.state.line_length("support") == 0


def test_ten_callers_two_agents_the_line_is_served_in_arrival_order(stack: LocalStack) -> None:
    for agent in ("anna", "mart"):
        stack.sim.add_agent(stack.rules.agents[agent].endpoint, {"name": agent, "answer_after_rings": 1,
                                                                  "hang_up_after": 60})
    records = []
    for n in range(10, 20):  # ten callers, one after another, each patient
        records.append(stack.sim.start_inbound(caller(n), stack.hotline_number,
                                               [{"press": "1"}, {"wait": 10}, {"hang_up_after": HOLD}]))
        wait_until(lambda n=n: "call_arrived" in kinds(caller(n)) or stack.wait_for_jobs(0.2))
        time.sleep(0.05)
    for record in records:
        assert record.call.done.wait(60), str(record)
    assert stack.wait_for_jobs(20)
    offered = [n for n in range(10, 20) if "high_volume_offer" in kinds(caller(n))]
    assert len(offered) >= 5  # all but those who found an agent free at the moment they chose
    unserved = {n: kinds(caller(n)) for n in range(10, 20) if "call_answered" not in kinds(caller(n))}
    assert not unserved, unserved  # everyone was served in the end, nobody sent to voicemail
    line = sorted((first_time(caller(n), "queued"), n) for n in offered if "queued" in kinds(caller(n)))
    connected = {n: first_time(caller(n), "dequeued") for _, n in line}
    order = [n for _, n in line]
    for i, earlier in enumerate(order):  # first in line, first connected (two redirects racing
        for later in order[i + 2:]:      # to the web app may land a few ms apart, so neighbours
            assert connected[earlier] <= connected[later], (earlier, later)  # are not compared)


def first_time(e164: str, kind: str) -> float:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        events, _ = card.timeline(s, client.id, limit=200)
        return min(e.at.timestamp() for e in events if e.kind == kind)


def test_a_callback_booked_for_later_does_not_hold_up_the_caller_behind_it(stack: LocalStack) -> None:
    from datetime import UTC, datetime, timedelta

    first = busy_agents(stack, talk=150)
    booker = stack.sim.start_inbound(caller(21), stack.hotline_number,
                                     [{"press": "1"}, {"press": "2"}, {"press": "1"}])
    assert booker.call.done.wait(20), str(booker)
    wait_until(lambda: stack.runtime.state.line_length("support") == 1)
    with db.session() as s:  # as if the client chose a time hours away: it keeps its place till then
        (callback,) = s.query(Callback).all()
        callback.not_before = datetime.now(UTC) + timedelta(hours=2)
    later = stack.sim.start_inbound(caller(22), stack.hotline_number,
                                    [{"press": "1"}, {"wait": 10}, {"hang_up_after": HOLD}])
    wait_until(lambda: stack.runtime.state.line_length("support") == 2)
    for record in [*first, later]:
        assert record.call.done.wait(40), str(record)
    assert stack.wait_for_jobs()
    assert "dequeued" in kinds(caller(22)) and "call_answered" in kinds(caller(22)), kinds(caller(22))
    assert "outbound_placed" not in kinds(caller(21))
    assert [m for m, _ in stack.runtime.state.line("support")] == [f"callback:{callback.id}"]
    with db.session() as s:
        (callback,) = s.query(Callback).all()
        assert (callback.status, callback.attempts) == ("pending", 0)
