"""The inbound decisions, read as the service standard they enforce. `now` is always passed."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_rules import engine
from routing_rules.engine import AgentSnapshot, CallerContext, DialPlan, GoToVoicemail
from routing_rules.prompts import TEXTS, placeholders, prompt, when_text
from routing_rules.schema import Rules

TALLINN = ZoneInfo("Europe/Tallinn")

BASE: dict[str, Any] = yaml.safe_load("""
company: Northwind Energy
hotline:
  zone: Europe/Tallinn
  country: EE
  numbers: ["+3726140000"]
  default_language: et
languages:
  en: {say_language: en-GB, voice: Polly.Amy}
  ru: {say_language: ru-RU, voice: Polly.Tatyana}
  et: {audio_base_url: /static/audio/et}
queues:
  support:
    digit: "1"
    department: {en: support, ru: поддержка, et: tugi}
    agents: [anna, boris, carl, dora]
    answer_within_rings: 3
    max_attempts: 3
    hours:
      - {days: [mon, tue, wed, thu, fri], open: "08:00", close: "20:00"}
      - {days: [sat], open: "10:00", close: "16:00"}
    holidays: {country: EE, extra_dates: [2026-12-31]}
  complaints:
    complaints: true
    department: {en: complaints, ru: жалобы, et: kaebused}
    agents: [sven]
    answer_within_rings: 5
agents:
  anna: {name: Anna, endpoint: client:anna, languages: [et, en], skills: [power]}
  boris: {name: Boris, endpoint: client:boris, languages: [ru, et], skills: [power, gas]}
  carl: {name: Carl, endpoint: client:carl, languages: [en], skills: [gas]}
  dora: {name: Dora, endpoint: client:dora, languages: [et], skills: [power], miss_limit: 2}
  sven: {name: Sven, endpoint: client:sven, languages: [et, en, ru], supervisor: true}
""")


def make_rules(hotline: dict[str, Any] | None = None, **support: Any) -> Rules:
    data = copy.deepcopy(BASE)
    data["queues"]["support"].update(support)
    data["hotline"].update(hotline or {})
    return Rules.model_validate(data)


RULES = make_rules()


def tallinn(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TALLINN)


def agent(agent_id: str, *, idle: float = 0, offered: float = 0, status: str = "available",
          misses: int = 0) -> AgentSnapshot:
    return AgentSnapshot(agent_id, status, idle_since=idle, last_offered_at=offered, misses=misses)


def caller(lang: str = "et", last_agent: str | None = None) -> CallerContext:
    return CallerContext(e164="+3725550100", language=lang, last_agent=last_agent)  # type: ignore[arg-type]


# --- language, greeting, menu ---------------------------------------------------------------


@pytest.mark.parametrize(("card", "country", "expected"), [
    ("en", "RU", "en"),  # the card knows best
    ("pl", "RU", "ru"),  # the card's language is not spoken here: fall back to the country
    (None, "RU", "ru"), (None, "BY", "ru"), (None, "KZ", "ru"),
    (None, "EE", "et"),
    (None, "GB", "en"),
    (None, "PL", "et"),  # Polish is not configured: the hotline default
    (None, "FR", "et"), (None, None, "et"),
])
def test_language_comes_from_card_then_caller_country_then_default(
        card: str | None, country: str | None, expected: str) -> None:
    assert engine.choose_language(RULES, card, country) == expected


@pytest.mark.parametrize(("hour", "minute", "period"), [
    (4, 59, "evening"), (5, 0, "morning"), (11, 59, "morning"), (12, 0, "afternoon"),
    (17, 59, "afternoon"), (18, 0, "evening"), (23, 30, "evening"),
])
def test_greeting_follows_the_hotline_clock(hour: int, minute: int, period: str) -> None:
    assert engine.greeting_period(tallinn(2026, 5, 4, hour, minute)) == period


def test_menu_digits_lead_to_queues_and_complaint_key_to_supervisors() -> None:
    assert engine.queue_for_digit(RULES, "1") == "support"
    assert engine.queue_for_digit(RULES, "7") == "complaints"
    assert engine.queue_for_digit(RULES, "5") is None
    assert engine.queue_for_digit(RULES, "") is None


# --- opening hours ------------------------------------------------------------------------


def test_open_on_weekday_hours_closed_outside() -> None:
    assert engine.is_open(RULES, "support", tallinn(2026, 5, 4, 8, 0))  # Monday
    assert not engine.is_open(RULES, "support", tallinn(2026, 5, 4, 7, 59))
    assert not engine.is_open(RULES, "support", tallinn(2026, 5, 4, 20, 0))
    assert engine.is_open(RULES, "support", tallinn(2026, 5, 9, 15, 59))  # Saturday
    assert not engine.is_open(RULES, "support", tallinn(2026, 5, 10, 12, 0))  # Sunday


def test_opening_hours_follow_wall_clock_across_eu_spring_forward() -> None:
    # 05:30 UTC is 07:30 in Tallinn before 29 March 2026 (UTC+2) and 08:30 after (UTC+3).
    assert not engine.is_open(RULES, "support", datetime(2026, 3, 27, 5, 30, tzinfo=UTC))
    assert engine.is_open(RULES, "support", datetime(2026, 3, 30, 5, 30, tzinfo=UTC))
    assert engine.next_open_at(RULES, "support", datetime(2026, 3, 30, 4, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 30, 5, 0, tzinfo=UTC)


def test_opening_time_skipped_by_spring_forward_opens_at_the_jump() -> None:
    rules = make_rules(hours=[{"days": ["sun"], "open": "03:30", "close": "05:00"}])
    # On 29 March 2026 Tallinn clocks jump from 03:00 to 04:00 (01:00 UTC).
    opens = engine.next_open_at(rules, "support", datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert opens == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert engine.is_open(rules, "support", datetime(2026, 3, 29, 1, 0, tzinfo=UTC))


def test_public_holiday_closes_the_queue() -> None:
    independence_day = tallinn(2026, 2, 24, 10, 0)  # a Tuesday
    assert not engine.is_open(RULES, "support", independence_day)
    assert engine.next_open_at(RULES, "support", independence_day) == tallinn(2026, 2, 25, 8, 0)


def test_company_closed_dates_close_the_queue() -> None:
    assert not engine.is_open(RULES, "support", tallinn(2026, 12, 31, 12, 0))


def test_next_opening_skips_the_weekend() -> None:
    assert engine.next_open_at(RULES, "support", tallinn(2026, 5, 8, 21, 0)) == \
        tallinn(2026, 5, 9, 10, 0)
    assert engine.next_open_at(RULES, "support", tallinn(2026, 5, 9, 16, 0)) == \
        tallinn(2026, 5, 11, 8, 0)


def test_next_opening_when_open_is_now() -> None:
    now = tallinn(2026, 5, 4, 9, 0)
    assert engine.next_open_at(RULES, "support", now) == now


def test_queue_without_hours_is_always_open_and_never_reopens_if_always_closed() -> None:
    assert engine.is_open(RULES, "complaints", tallinn(2026, 5, 10, 3, 0))
    every_day = [date(2026, 5, 4) + timedelta(days=i) for i in range(engine.OPENING_HORIZON_DAYS)]
    rules = make_rules(holidays={"extra_dates": every_day})
    assert engine.next_open_at(rules, "support", tallinn(2026, 5, 4, 0, 0)) is None


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        engine.is_open(RULES, "support", datetime(2026, 5, 4, 9, 0))


# --- rings --------------------------------------------------------------------------------


def test_ring_timeout_is_rings_times_cadence_minus_twilio_buffer() -> None:
    assert engine.ring_seconds(RULES, "support") == 5  # Estonia: 1 s on, 4 s off
    assert engine.ring_timeout_seconds(RULES, "support") == 3 * 5 - 5


def test_ring_timeout_uses_the_hotline_country_cadence() -> None:
    us = make_rules(hotline={"country": "US"}, answer_within_rings=4)
    assert engine.ring_timeout_seconds(us, "support") == 4 * 6 - 5
    assert engine.ring_tone(us) == "us"
    assert engine.ring_tone(make_rules(hotline={"country": "GB"})) == "uk"


def test_ring_timeout_never_below_twilio_minimum_of_five_seconds() -> None:
    one_uk_ring = make_rules(hotline={"country": "GB"}, answer_within_rings=1)
    assert engine.ring_timeout_seconds(one_uk_ring, "support") == 5


def test_a_target_under_twilios_shortest_dial_is_not_kept() -> None:
    one_uk_ring = engine.ring_target(make_rules(hotline={"country": "GB"}, answer_within_rings=1),
                                     "support")
    assert (one_uk_ring.target_seconds, one_uk_ring.rings_about_seconds) == (3, 5 + 5)
    assert not one_uk_ring.kept
    three_ee_rings = engine.ring_target(RULES, "support")
    assert (three_ee_rings.timeout_seconds, three_ee_rings.rings_about_seconds) == (10, 15)
    assert three_ee_rings.kept


@pytest.mark.parametrize("ring_seconds", [5.2, 5.5, 5.8, 6.5, 7.3])
def test_rounding_to_whole_seconds_is_not_a_target_missed(ring_seconds: float) -> None:
    rules = make_rules(ring_seconds=ring_seconds)  # 3 rings: well above Twilio's minimum
    assert engine.ring_target(rules, "support").kept


def test_queue_and_hotline_ring_seconds_override_the_country() -> None:
    assert engine.ring_timeout_seconds(make_rules(hotline={"ring_seconds": 4}), "support") == 7
    rules = make_rules(hotline={"ring_seconds": 4, "dial_buffer_seconds": 0}, ring_seconds=6.5)
    assert engine.ring_timeout_seconds(rules, "support") == round(3 * 6.5)


def test_ring_timeout_capped_at_twilio_maximum() -> None:
    rules = make_rules(hotline={"dial_buffer_seconds": 0}, answer_within_rings=20, ring_seconds=30)
    assert engine.ring_timeout_seconds(rules, "support") == 600


@pytest.mark.parametrize(("seconds", "rings"), [(0, 1), (4.9, 1), (5, 1), (5.1, 2), (15, 3),
                                                (16, 4)])
def test_rings_heard_count_a_started_ring(seconds: float, rings: int) -> None:
    assert engine.rings_for(seconds, RULES, "support") == rings


# --- choosing agents ----------------------------------------------------------------------

TEAM = [agent("anna", idle=300, offered=50), agent("boris", idle=100, offered=90),
        agent("dora", idle=200, offered=10)]


def test_longest_idle_offers_the_agent_idle_longest_first() -> None:
    assert engine.rank_agents(RULES, "support", TEAM, caller(), set()) == ["boris", "dora", "anna"]


def test_ring_all_rings_in_longest_idle_order() -> None:
    rules = make_rules(strategy="ring_all")
    assert engine.rank_agents(rules, "support", TEAM, caller(), set()) == ["boris", "dora", "anna"]


def test_round_robin_offers_the_agent_offered_least_recently_first() -> None:
    rules = make_rules(strategy="round_robin")
    assert engine.rank_agents(rules, "support", TEAM, caller(), set()) == ["dora", "anna", "boris"]


def test_sticky_offers_the_clients_last_agent_first() -> None:
    rules = make_rules(strategy="sticky")
    assert engine.rank_agents(rules, "support", TEAM, caller(last_agent="anna"), set()) == [
        "anna", "boris", "dora"]


def reference_rank(rules: Rules, queue: str, agents: list[AgentSnapshot], who: CallerContext,
                   tried: set[str]) -> list[str]:
    """The ranking rule as the docstring states it, written the plain way (a sort per rule)."""
    q = rules.queues[queue]

    def speaks(agent_id: str) -> bool:
        return who.language in (rules.agents[agent_id].languages or [rules.hotline.default_language])

    found = [a for a in agents if a.status == "available" and a.id in q.agents and a.id not in tried
             and a.id in rules.agents and a.misses < rules.agents[a.id].miss_limit
             and set(q.skills).issubset(rules.agents[a.id].skills)]
    if q.strategy == "round_robin":
        found.sort(key=lambda a: (a.last_offered_at, a.idle_since, a.id))
    else:
        found.sort(key=lambda a: (a.idle_since, a.id))
    found.sort(key=lambda a: not speaks(a.id))
    if q.strategy == "sticky" and who.last_agent is not None:
        found.sort(key=lambda a: a.id != who.last_agent)
    return [a.id for a in found]


@given(
    strategy=st.sampled_from(["longest_idle", "round_robin", "ring_all", "sticky"]),
    skills=st.sampled_from([[], ["power"], ["gas"], ["power", "gas"]]),
    team=st.lists(st.tuples(st.sampled_from(["anna", "boris", "carl", "dora", "sven", "ghost"]),
                            st.sampled_from(["available", "available", "ringing", "on_call", "away"]),
                            st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)),
                  max_size=8, unique_by=lambda t: t[0]),
    language=st.sampled_from(["et", "en", "ru", "pl"]),
    last_agent=st.sampled_from([None, "anna", "boris", "ghost"]),
    tried=st.sets(st.sampled_from(["anna", "boris", "carl", "dora"]), max_size=1),
)
@settings(max_examples=400)
def test_ranking_matches_the_rule_as_stated(strategy: str, skills: list[str], team: list[tuple[Any, ...]],
                                            language: str, last_agent: str | None, tried: set[str]) -> None:
    rules = make_rules(strategy=strategy, skills=skills)  # sven is no member, ghost no agent at all
    agents = [agent(i, status=status, idle=idle, offered=offered, misses=misses)
              for i, status, idle, offered, misses in team]
    who = caller(language, last_agent)
    assert engine.rank_agents(rules, "support", agents, who, tried) == reference_rank(rules, "support", agents, who,
                                                                                       tried)


def test_sticky_falls_back_to_longest_idle_when_last_agent_is_busy() -> None:
    rules = make_rules(strategy="sticky")
    team = [agent("anna", idle=1, status="on_call"), *TEAM[1:]]
    assert engine.rank_agents(rules, "support", team, caller(last_agent="anna"), set()) == [
        "boris", "dora"]


def test_agents_speaking_the_callers_language_come_first() -> None:
    # Boris is idle longest, but only Anna speaks English.
    assert engine.rank_agents(RULES, "support", TEAM, caller("en"), set()) == [
        "anna", "boris", "dora"]
    assert engine.rank_agents(RULES, "support", TEAM, caller("ru"), set())[0] == "boris"


def test_agent_who_missed_is_not_offered_again() -> None:
    assert engine.rank_agents(RULES, "support", TEAM, caller(), {"boris"}) == ["dora", "anna"]


def test_agent_at_miss_limit_is_skipped() -> None:
    team = [agent("dora", idle=1, misses=2), agent("anna", idle=5, misses=2)]
    assert engine.rank_agents(RULES, "support", team, caller(), set()) == ["anna"]


@pytest.mark.parametrize("status", ["ringing", "on_call", "wrap_up", "away", "offline"])
def test_only_available_agents_are_offered(status: str) -> None:
    team = [agent("anna", status=status), agent("dora", idle=9)]
    assert engine.rank_agents(RULES, "support", team, caller(), set()) == ["dora"]


def test_agents_outside_the_queue_or_without_its_skills_are_not_offered() -> None:
    rules = make_rules(skills=["power"])
    team = [agent("carl"), agent("sven"), agent("ghost"), agent("anna", idle=5)]
    assert engine.rank_agents(rules, "support", team, caller(), set()) == ["anna"]


def test_ties_are_broken_by_id_so_ranking_is_repeatable() -> None:
    team = [agent("dora", idle=7), agent("anna", idle=7)]
    assert engine.rank_agents(RULES, "support", team, caller(), set()) == ["anna", "dora"]


def test_dial_plan_rings_the_best_agent_for_the_target_rings() -> None:
    plan = engine.decide_dial(RULES, "support", TEAM, caller(), attempt=1, tried=set())
    assert plan == DialPlan(candidates=["boris", "dora", "anna"], parallel=False,
                            timeout_seconds=10, rings=3)


def test_ring_all_dials_in_parallel_at_most_ten() -> None:
    data = copy.deepcopy(BASE)
    ids = [f"a{i:02d}" for i in range(12)]
    data["agents"].update({i: {"name": i, "endpoint": f"client:{i}"} for i in ids})
    data["queues"]["support"].update(agents=ids, strategy="ring_all")
    rules = Rules.model_validate(data)
    team = [agent(i, idle=n) for n, i in enumerate(ids)]
    plan = engine.decide_dial(rules, "support", team, caller(), attempt=1, tried=set())
    assert isinstance(plan, DialPlan)
    assert plan.parallel
    assert plan.candidates == ids[:10]


def test_voicemail_after_max_attempts() -> None:
    plan = engine.decide_dial(RULES, "support", TEAM, caller(), attempt=4, tried=set())
    assert plan == GoToVoicemail("max_attempts")


def test_voicemail_when_nobody_can_take_the_call() -> None:
    plan = engine.decide_dial(RULES, "support", TEAM, caller(), attempt=2,
                              tried={"anna", "boris", "dora"})
    assert plan == GoToVoicemail("no_agent_available")


@pytest.mark.parametrize(("status", "attempt", "step"), [
    ("completed", 1, "done"), ("answered", 3, "done"),
    ("canceled", 1, "done"),  # the caller hung up
    ("no-answer", 1, "next"), ("busy", 2, "next"), ("failed", 2, "next"),
    ("no-answer", 3, "voicemail"), ("busy", 3, "voicemail"), ("failed", 4, "voicemail"),
])
def test_after_dial(status: str, attempt: int, step: str) -> None:
    assert engine.after_dial(RULES, "support", status, attempt) == step


# --- high volume and callbacks --------------------------------------------------------------


def test_high_volume_offer_when_any_trigger_holds() -> None:
    rules = make_rules(high_volume={"waiting_calls_at_least": 2,
                                    "estimated_wait_at_least_seconds": 120})
    assert not engine.high_volume_triggered(rules, "support", 1, 60, available_agents=1)
    assert engine.high_volume_triggered(rules, "support", 2, 60, available_agents=1)
    assert engine.high_volume_triggered(rules, "support", 0, 120, available_agents=1)
    assert engine.high_volume_triggered(rules, "support", 0, None, available_agents=0)
    assert not engine.high_volume_triggered(RULES, "support", 99, 999, available_agents=0)


def test_callback_after_a_time_waits_for_it_today() -> None:
    assert engine.callback_not_before("after 18:00", tallinn(2026, 5, 4, 9, 15)) == \
        tallinn(2026, 5, 4, 18, 0)
    assert engine.callback_not_before("after 18:00", tallinn(2026, 5, 4, 19, 0)) == \
        tallinn(2026, 5, 4, 19, 0)
    assert engine.callback_not_before("asap", tallinn(2026, 5, 4, 9, 15)) == \
        tallinn(2026, 5, 4, 9, 15)


# --- prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ru", "pl", "et"])
def test_every_language_has_every_prompt_with_the_same_placeholders(lang: str) -> None:
    assert set(TEXTS[lang]) == set(TEXTS["en"])
    for key, text in TEXTS["en"].items():
        assert placeholders(TEXTS[lang][key]) == placeholders(text), key


def test_spoken_language_prompt_uses_the_rules_voice() -> None:
    said = prompt(RULES, "ru", "queue_position", position=2, minutes=3)
    assert said.text == "Ваш номер в очереди: 2. Примерное время ожидания в минутах: 3."
    assert (said.say_language, said.voice, said.audio_url) == ("ru-RU", "Polly.Tatyana", None)


def test_estonian_static_prompt_is_played_from_audio() -> None:
    said = prompt(RULES, "et", "connecting")
    assert said.audio_url == "/static/audio/et/connecting.wav"
    assert said.say_language is None
    option = prompt(RULES, "et", "menu_queue_option", department="tugi", digit="1")
    assert option.audio_url == "/static/audio/et/menu_queue_option_1.wav"


def test_estonian_prompt_with_call_values_has_no_audio_but_a_spoken_fallback() -> None:
    said = prompt(RULES, "et", "queue_position", position=4, minutes=6)
    assert said.audio_url is None and said.say_language is None
    assert "4" in said.text
    assert said.fallback is not None
    assert said.fallback.say_language == "en-GB"
    assert said.fallback.text == "You are number 4 in line. Estimated wait 6 minutes."


def test_greeting_names_company_and_department() -> None:
    said = prompt(RULES, "en", "greeting_morning")
    assert said.text == "Good morning, and thank you for calling Northwind Energy, customer service."


def test_menu_lists_queues_by_digit_then_special_keys() -> None:
    text = prompt(RULES, "en", "menu").text
    assert text.index("For support, press 1.") < text.index("To make a complaint, press 7.")
    assert text.index("press 8") < text.index("To choose another language, press 9.")


def test_sentences_starting_with_a_department_are_capitalised() -> None:
    assert prompt(RULES, "ru", "menu_queue_option", department="поддержка", digit="1").text == \
        "Поддержка — нажмите 1."


def test_rules_override_built_in_texts() -> None:
    data = copy.deepcopy(BASE)
    data["prompts"] = {"en": {"connecting": "One moment, {company} is connecting you."}}
    rules = Rules.model_validate(data)
    assert prompt(rules, "en", "connecting").text == "One moment, Northwind Energy is connecting you."


def test_unconfigured_language_falls_back_to_the_default() -> None:
    assert prompt(RULES, "pl", "connecting").audio_url == "/static/audio/et/connecting.wav"


def test_callback_time_lists_the_queues_presets() -> None:
    rules = make_rules(callback={"time_presets": ["asap", "after 18:00"]})
    assert prompt(rules, "en", "callback_time", queue="support").text == (
        "When should we call you back? As soon as possible, press 1. After 18:00, press 2.")


@pytest.mark.parametrize(("at", "expected"), [
    (tallinn(2026, 5, 4, 16, 0), "today at 16:00"),
    (tallinn(2026, 5, 5, 8, 0), "tomorrow at 08:00"),
    (tallinn(2026, 5, 9, 10, 0), "on Saturday at 10:00"),
    (tallinn(2026, 5, 20, 8, 0), "on 20 May at 08:00"),
])
def test_next_opening_is_said_as_people_say_it(at: datetime, expected: str) -> None:
    assert when_text("en", at, tallinn(2026, 5, 4, 9, 0)) == expected


def test_next_opening_in_russian() -> None:
    assert when_text("ru", tallinn(2026, 5, 5, 8, 0), tallinn(2026, 5, 4, 9, 0)) == "завтра в 08:00"
    assert when_text("ru", tallinn(2026, 5, 6, 8, 0), tallinn(2026, 5, 4, 9, 0)) == "в среду в 08:00"
