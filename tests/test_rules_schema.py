"""The rules file: what loads, and that every mistake is reported by its path at once."""

from __future__ import annotations

import textwrap

import pytest

from routing_rules.loading import (
    RulesInvalid,
    RulesWarning,
    check_rules,
    dump_rules,
    load_rules,
    review_rules,
)
from routing_rules.schema import Rules, ring_seconds_for_country

MINIMAL = """\
company: Acme
hotline:
  zone: Europe/Tallinn
  country: EE
  numbers: ["+3726140000"]
  default_language: en
languages:
  en: {say_language: en-GB, voice: Polly.Amy}
  et: {audio_base_url: /static/audio/et}
menu: {complaint_digit: null}
queues:
  support:
    digit: 1
    department: {en: support, et: tugi}
    agents: [anna]
    answer_within_rings: 3
agents:
  anna: {name: Anna, endpoint: "+37251234567", languages: [en, et]}
"""


def paths(text: str) -> list[str]:
    return [e.path for e in check_rules(text)]


def messages(text: str) -> dict[str, str]:
    return {e.path: e.message for e in check_rules(text)}


def test_example_rules_file_is_valid(example_rules_text: str) -> None:
    assert check_rules(example_rules_text) == []
    rules = load_rules(example_rules_text)
    assert rules.company == "Northwind Energy"
    assert rules.queues["support"].answer_within_rings == 3


def test_example_survives_dump_and_load(example_rules_text: str) -> None:
    rules = load_rules(example_rules_text)
    assert load_rules(dump_rules(rules)) == rules


def test_minimal_file_fills_documented_defaults() -> None:
    rules = load_rules(MINIMAL)
    queue = rules.queues["support"]
    assert (queue.digit, queue.strategy, queue.max_attempts, queue.hours) == (
        "1", "longest_idle", 3, [])
    assert rules.hotline.dial_buffer_seconds == 5
    assert rules.menu.language_digit == "9"
    assert queue.callback.time_presets == ["asap"]
    assert queue.voicemail.respond_within_minutes == 240


def test_file_with_many_mistakes_lists_every_one_by_path() -> None:
    text = textwrap.dedent("""\
        company: Acme
        hotline:
          zone: Europe/Talinn
          country: EE
          numbers: ["+372 614 0000"]
          default_language: en
        languages:
          en: {say_language: en-GB}
          et: {say_language: et-EE}
        queues:
          support:
            digit: 1
            department: {en: support, et: tugi}
            agents: [anna, bogdan]
            answer_within_rings: 0
            max_attempts: 0
            hours:
              - {days: [mon], open: "18:00", close: "09:00"}
          billing:
            digit: 1
            department: {en: billing, et: arveldus}
            agents: [anna]
            answer_within_rings: 3
            stratgy: round_robin
        agents:
          anna: {name: Anna, endpoint: "tel:5551234"}
          carl: {name: Carl, endpoint: client:carl, languages: [pl]}
        """)
    found = messages(text)
    assert set(found) >= {
        "hotline.zone",
        "hotline.numbers.0",
        "queues.support.answer_within_rings",
        "queues.support.max_attempts",
        "queues.support.hours.0",
        "queues.billing.stratgy",
        "agents.anna.endpoint",
        "languages.et.say_language",
        "queues.support.agents.1",
        "queues.billing.digit",
        "agents.carl.languages.0",
        "menu.complaint_digit",
    }
    assert "unknown agent 'bogdan'" in found["queues.support.agents.1"]
    assert "queue 'support'" in found["queues.billing.digit"]
    assert found["queues.billing.stratgy"] == "unknown field (did you mean 'strategy'?)"


def test_yaml_syntax_error_names_the_line() -> None:
    errors = check_rules("company: Acme\nhotline:\n  zone: [Europe/Tallinn\n  country: EE\n")
    assert len(errors) == 1
    assert errors[0].path == "<yaml>"
    assert "line " in errors[0].message


def test_a_file_that_is_not_a_mapping_is_one_error() -> None:
    assert paths("- just\n- a list\n") == ["<yaml>"]


def test_duplicate_yaml_keys_are_errors_not_last_wins() -> None:
    text = MINIMAL.replace("agents:\n  anna:", "agents:\n  anna: {name: A, endpoint: client:a}\n  anna:")
    errors = check_rules(text)
    assert [e.path for e in errors] == ["<yaml>"]
    assert "duplicate key 'anna'" in errors[0].message


def test_estonian_cannot_use_say() -> None:
    text = MINIMAL.replace("et: {audio_base_url: /static/audio/et}", "et: {say_language: et-EE}")
    assert "use audio_base_url" in messages(text)["languages.et.say_language"]


def test_language_needs_exactly_one_way_to_speak() -> None:
    text = MINIMAL.replace("en: {say_language: en-GB, voice: Polly.Amy}",
                           "en: {say_language: en-GB, audio_base_url: /a}")
    assert "exactly one" in messages(text)["languages.en"]


def test_unknown_agent_in_queue_is_named() -> None:
    text = MINIMAL.replace("agents: [anna]", "agents: [anna, anya]")
    assert messages(text) == {"queues.support.agents.1": "unknown agent 'anya'"}


def test_broken_agent_is_not_also_reported_unknown() -> None:
    text = MINIMAL.replace('endpoint: "+37251234567"', 'endpoint: "555"')
    assert paths(text) == ["agents.anna.endpoint"]


def test_two_queues_on_one_digit_are_rejected() -> None:
    text = MINIMAL + textwrap.dedent("""\
        # second queue
        """)
    text = text.replace("agents:\n  anna:", textwrap.dedent("""\
          billing:
            digit: "1"
            department: {en: billing, et: arveldus}
            agents: [anna]
            answer_within_rings: 3
        agents:
          anna:"""))
    assert "already used by queue 'support'" in messages(text)["queues.billing.digit"]


def test_queue_digit_cannot_take_a_menu_key() -> None:
    text = MINIMAL.replace("digit: 1", "digit: 9")
    assert "language_digit" in messages(text)["queues.support.digit"]


@pytest.mark.parametrize("digit", ["10", "a", "", "**"])
def test_digit_is_one_key(digit: str) -> None:
    text = MINIMAL.replace("digit: 1", f'digit: "{digit}"')
    assert paths(text) == ["queues.support.digit"]


@pytest.mark.parametrize("digit", ['"*"', '"#"', "0"])
def test_star_hash_and_zero_are_keys(digit: str) -> None:
    assert check_rules(MINIMAL.replace("digit: 1", f"digit: {digit}")) == []


@pytest.mark.parametrize("rings", [0, 21])
def test_answer_within_rings_is_1_to_20(rings: int) -> None:
    text = MINIMAL.replace("answer_within_rings: 3", f"answer_within_rings: {rings}")
    assert paths(text) == ["queues.support.answer_within_rings"]


def test_unquoted_times_are_read_as_times_not_sexagesimal_numbers() -> None:
    text = MINIMAL.replace(
        "    answer_within_rings: 3\n",
        "    answer_within_rings: 3\n    hours: [{days: [mon], open: 10:00, close: 18:30}]\n")
    rules = load_rules(text)
    assert rules.queues["support"].hours[0].open == "10:00"


def test_country_no_is_norway_not_false() -> None:
    text = MINIMAL.replace("    answer_within_rings: 3\n",
                           "    answer_within_rings: 3\n    holidays: {country: NO}\n")
    assert load_rules(text).queues["support"].holidays.country == "NO"


def test_unknown_holiday_country_is_an_error() -> None:
    text = MINIMAL.replace("    answer_within_rings: 3\n",
                           "    answer_within_rings: 3\n    holidays: {country: XX}\n")
    assert paths(text) == ["queues.support.holidays"]


@pytest.mark.parametrize("endpoint", ["+37251234567", "client:anna.t", "sip:anna@pbx.example.com",
                                      "sip:anna@10.0.0.5:5060"])
def test_agent_endpoints_accepted(endpoint: str) -> None:
    assert check_rules(MINIMAL.replace('"+37251234567"', f'"{endpoint}"')) == []


@pytest.mark.parametrize("endpoint", ["37251234567", "+0123456789", "client:anna t", "sip:pbx",
                                      "tel:+37251234567"])
def test_agent_endpoints_rejected(endpoint: str) -> None:
    assert paths(MINIMAL.replace('"+37251234567"', f'"{endpoint}"')) == ["agents.anna.endpoint"]


def test_every_language_used_needs_an_entry() -> None:
    text = MINIMAL.replace("languages: [en, et]", "languages: [en, ru]")
    assert "no entry in languages" in messages(text)["agents.anna.languages.1"]


def test_default_language_needs_an_entry() -> None:
    text = MINIMAL.replace("default_language: en", "default_language: pl")
    assert "hotline.default_language" in paths(text)


def test_queue_needs_a_name_in_every_language() -> None:
    text = MINIMAL.replace("department: {en: support, et: tugi}", "department: {en: support}")
    assert messages(text) == {"queues.support.department": "no name in et"}


def test_complaint_key_needs_a_complaints_queue() -> None:
    text = MINIMAL.replace("menu: {complaint_digit: null}\n", "")
    assert "complaints: true" in messages(text)["menu.complaint_digit"]


def test_complaints_go_to_supervisors_only() -> None:
    text = MINIMAL.replace("menu: {complaint_digit: null}\n", "").replace(
        "    answer_within_rings: 3\n", "    answer_within_rings: 3\n    complaints: true\n")
    assert "not a supervisor" in messages(text)["queues.support.agents.0"]


def test_queue_skill_no_member_has_is_an_error() -> None:
    text = MINIMAL.replace("    answer_within_rings: 3\n",
                           "    answer_within_rings: 3\n    skills: [gas]\n")
    assert "gas" in messages(text)["queues.support.skills"]


def test_opening_hours_must_open_before_they_close() -> None:
    text = MINIMAL.replace(
        "    answer_within_rings: 3\n",
        '    answer_within_rings: 3\n    hours: [{open: "20:00", close: "08:00"}]\n')
    assert "before close" in messages(text)["queues.support.hours.0"]


def test_callback_presets_are_asap_or_after_a_time() -> None:
    text = MINIMAL.replace("    answer_within_rings: 3\n",
                           '    answer_within_rings: 3\n    callback: {time_presets: [asap, "evening"]}\n')
    assert "after HH:MM" in messages(text)["queues.support.callback.time_presets"]


def test_callback_max_attempts_at_least_one() -> None:
    text = MINIMAL.replace("    answer_within_rings: 3\n",
                           "    answer_within_rings: 3\n    callback: {max_attempts: 0}\n")
    assert paths(text) == ["queues.support.callback.max_attempts"]


def test_prompt_override_with_unknown_key_or_placeholder() -> None:
    text = MINIMAL + "prompts:\n  en:\n    conecting: Hi\n    queue_position: 'You are {place}'\n"
    found = messages(text)
    assert found["prompts.en.conecting"] == "unknown prompt key"
    assert "{place}" in found["prompts.en.queue_position"]


def test_load_rules_raises_with_every_error() -> None:
    text = MINIMAL.replace("answer_within_rings: 3", "answer_within_rings: 30").replace(
        "agents: [anna]", "agents: [zed]")
    with pytest.raises(RulesInvalid) as raised:
        load_rules(text)
    assert {e.path for e in raised.value.errors} == {
        "queues.support.answer_within_rings", "queues.support.agents.0"}


def test_rules_built_in_python_are_cross_checked_too() -> None:
    data = load_rules(MINIMAL).model_dump(mode="json")
    data["queues"]["support"]["agents"] = ["ghost"]
    with pytest.raises(ValueError, match="unknown agent 'ghost'"):
        Rules.model_validate(data)


@pytest.mark.parametrize(("country", "seconds"), [("US", 6), ("CA", 6), ("GB", 3), ("EE", 5),
                                                  ("PL", 5), ("RU", 5), ("DE", 5), ("ee", 5)])
def test_ring_cadence_by_country(country: str, seconds: float) -> None:
    assert ring_seconds_for_country(country) == seconds


# --- warnings: what Twilio cannot keep, said but never refused ------------------------------------


def uk(text: str, buffer: int = 5) -> str:
    return text.replace("country: EE", f"country: GB\n  dial_buffer_seconds: {buffer}")


def test_a_one_ring_target_is_a_warning_and_the_rules_still_load() -> None:
    text = uk(MINIMAL, buffer=0).replace("answer_within_rings: 3", "answer_within_rings: 1")
    review = review_rules(text)
    assert review.ok and review.errors == [] and check_rules(text) == []
    assert review.warnings == [RulesWarning(
        "queues.support.answer_within_rings",
        "1 ring of 3 s (3 s) is shorter than Twilio's shortest dial (5 s): "
        "agents will ring about 5 s (2 rings)")]
    assert load_rules(text).queues["support"].answer_within_rings == 1  # accepted as written


def test_three_uk_rings_are_shorter_than_twilios_timeout_plus_its_buffer() -> None:
    (warning,) = review_rules(uk(MINIMAL)).warnings
    assert str(warning) == (
        "queues.support.answer_within_rings: 3 rings of 3 s (9 s) is shorter than Twilio's shortest "
        "dial (5 s timeout + 5 s buffer = 10 s): agents will ring about 10 s (4 rings)")


@pytest.mark.parametrize(("hotline", "rings"), [("country: EE", 3), ("country: EE", 2),
                                                ("country: US", 2), ("country: GB", 4)])
def test_a_target_twilio_can_keep_gives_no_warning(hotline: str, rings: int) -> None:
    text = MINIMAL.replace("country: EE", hotline).replace(
        "answer_within_rings: 3", f"answer_within_rings: {rings}")
    assert review_rules(text).warnings == []


def test_a_queue_ring_seconds_override_is_judged_per_queue() -> None:
    text = MINIMAL.replace("answer_within_rings: 3", "answer_within_rings: 1\n    ring_seconds: 4")
    (warning,) = review_rules(text).warnings
    assert warning.message.startswith("1 ring of 4 s (4 s) is shorter")


def test_warnings_come_with_cross_field_errors_but_not_with_broken_fields() -> None:
    short = MINIMAL.replace("answer_within_rings: 3", "answer_within_rings: 1")
    unknown_agent = review_rules(short.replace("agents: [anna]", "agents: [zed]"))
    assert [e.path for e in unknown_agent.errors] == ["queues.support.agents.0"]
    assert [w.path for w in unknown_agent.warnings] == ["queues.support.answer_within_rings"]
    bad_zone = review_rules(short.replace("Europe/Tallinn", "Europe/Talinn"))
    assert [e.path for e in bad_zone.errors] == ["hotline.zone"] and bad_zone.warnings == []
