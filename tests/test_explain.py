"""The "explain a call" narration: pure, over the example rules, no Flask, Redis or SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from routing_rules.engine import AgentSnapshot
from routing_rules.explain import CallInput, QueueLoad, explain_call
from routing_rules.loading import load_rules
from routing_rules.schema import Rules

ROOT = Path(__file__).resolve().parent.parent
TUESDAY_NOON = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # 12:00 in Tallinn, support open
TUESDAY_NIGHT = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 23:00 in Tallinn, closed


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules((ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8"))


def everyone(rules: Rules, status: str = "available", **overrides: str) -> list[AgentSnapshot]:
    """Every agent idle since a different moment (anna longest), statuses overridable by id."""
    return [AgentSnapshot(a, overrides.get(a, status), 100.0 + i, 0.0, 0) for i, a in enumerate(rules.agents)]


def free(rules: Rules, queue: str = "support") -> dict[str, QueueLoad]:
    return {queue: QueueLoad(waiting_calls=0, position=1, estimated_wait_seconds=0, free_agents=4)}


def test_polish_caller_is_offered_to_the_polish_speaker_first(rules: Rules) -> None:
    call = CallInput(at=TUESDAY_NOON, e164="+48601234567", caller_country="PL", digits="1")
    result = explain_call(rules, call, everyone(rules), free(rules))
    assert result.language == "pl" and "from PL" in result.language_reason
    assert result.period == "afternoon"
    assert (result.queue, result.open, result.high_volume, result.outcome) == ("support", True, False, "dial")
    assert result.order == ("kasia", "anna", "dmitri", "mart")
    assert (result.rings, result.ring_seconds, result.timeout_seconds) == (3, 5.0, 10)
    assert result.heard[0].startswith("Dzień dobry")
    assert any("Łączymy" in text for text in result.heard)


def test_the_card_language_wins_over_the_number(rules: Rules) -> None:
    call = CallInput(at=TUESDAY_NOON, e164="+48601234567", caller_country="PL", card_language="ru", digits="1")
    result = explain_call(rules, call, everyone(rules), free(rules))
    assert result.language == "ru" and result.language_reason == "the client's card says so"
    assert result.order[0] == "anna"  # longest idle of the Russian speakers (anna, dmitri, kasia)


def test_agents_not_available_are_listed_with_the_reason(rules: Rules) -> None:
    agents = everyone(rules, anna="on_call", dmitri="away")
    result = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="1"), agents, free(rules))
    assert result.order == ("mart", "kasia")
    why = {line.id: line for line in result.agents}
    assert why["anna"].offered_as is None and why["anna"].why == "on_call"
    assert why["dmitri"].why == "away"
    assert why["mart"].offered_as == 1


def test_closed_queue_says_when_it_opens_and_offers_a_voicemail(rules: Rules) -> None:
    result = explain_call(rules, CallInput(at=TUESDAY_NIGHT, digits="1"), everyone(rules), free(rules))
    assert result.outcome == "closed" and result.open is False
    assert result.next_open_at is not None
    assert result.next_open_at.astimezone(UTC) == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 08:00 Tallinn
    assert result.period == "evening"
    assert result.order == ()  # nobody is rung when closed


def test_high_volume_triggers_the_offer_instead_of_a_dial(rules: Rules) -> None:
    busy = {"support": QueueLoad(waiting_calls=2, position=3, estimated_wait_seconds=240, free_agents=1)}
    call = CallInput(at=TUESDAY_NOON, e164="+447700900123", caller_country="GB", digits="1")
    result = explain_call(rules, call, everyone(rules), busy)
    assert result.outcome == "high_volume_offer" and result.high_volume is True
    assert any("number 3 in line" in text and "4 minutes" in text for text in result.heard)


def test_no_agent_free_means_voicemail(rules: Rules) -> None:
    data = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8"))
    del data["queues"]["billing"]["high_volume"]  # no offer: with nobody free, voicemail
    quiet = load_rules(yaml.safe_dump(data, allow_unicode=True))
    result = explain_call(quiet, CallInput(at=TUESDAY_NOON, digits="2"), everyone(rules, "offline"),
                          {"billing": QueueLoad(free_agents=0)})
    assert (result.queue, result.outcome, result.high_volume) == ("billing", "voicemail", False)
    assert all(line.why == "offline" for line in result.agents)


def test_nobody_free_triggers_the_offer_where_the_rule_says_so(rules: Rules) -> None:
    result = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="2"), everyone(rules, "offline"),
                          {"billing": QueueLoad(free_agents=0)})
    assert (result.outcome, result.high_volume) == ("high_volume_offer", True)


def test_ring_all_rings_everyone_at_once(rules: Rules) -> None:
    call = CallInput(at=TUESDAY_NOON, e164="+37255512345", caller_country="EE", digits="7")
    result = explain_call(rules, call, everyone(rules), free(rules, "complaints"))
    assert result.queue == "complaints" and result.parallel is True
    assert (result.rings, result.timeout_seconds) == (5, 20)
    assert any("complaint" in step.detail for step in result.steps)


def test_language_menu_then_queue(rules: Rules) -> None:
    result = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="921"), everyone(rules), free(rules))
    assert result.language == "ru" and "language menu" in result.language_reason
    assert result.queue == "support" and result.outcome == "dial"


def test_no_key_goes_to_the_default_queue_and_a_wrong_key_repeats_the_menu(rules: Rules) -> None:
    silent = explain_call(rules, CallInput(at=TUESDAY_NOON, digits=""), everyone(rules), free(rules))
    assert silent.queue == rules.default_queue() and silent.outcome == "dial"
    wrong = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="5"), everyone(rules), free(rules))
    assert wrong.outcome == "invalid_choice" and wrong.queue is None


def test_opt_out_key_is_explained_without_routing(rules: Rules) -> None:
    result = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="81"), everyone(rules), free(rules))
    assert result.outcome == "opt_out" and result.queue is None
    assert "opted out" in result.steps[-1].detail


def test_explaining_reads_no_clock(rules: Rules) -> None:
    call = CallInput(at=TUESDAY_NOON, digits="1")
    assert explain_call(rules, call, everyone(rules), free(rules)) == explain_call(
        rules, call, everyone(rules), free(rules))


def test_a_ring_target_twilio_cannot_keep_is_explained_as_such(rules: Rules) -> None:
    data = yaml.safe_load((ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8"))
    data["queues"]["support"]["answer_within_rings"] = 1  # 1 ring of 5 s: under Twilio's 5 s + 5 s buffer
    short = load_rules(yaml.safe_dump(data, allow_unicode=True))
    result = explain_call(short, CallInput(at=TUESDAY_NOON, digits="1"), everyone(short), free(short))
    dial = next(step for step in result.steps if step.title == "Dial")
    assert "rings anna for 5 s = Twilio's shortest" in dial.detail and "ring about 10 s" in dial.detail
    kept = explain_call(rules, CallInput(at=TUESDAY_NOON, digits="1"), everyone(rules), free(rules))
    assert "3 rings × 5 s − 5 s buffer" in next(step for step in kept.steps if step.title == "Dial").detail
