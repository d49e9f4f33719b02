"""The standard as a caller meets it: consent in their language, the survey, complaints that
reach a supervisor with deadlines from the rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from recordings import db
from recordings.models import Complaint
from routing_rules.prompts import TEXTS
from tests.conftest import Voice, always_open_rules
from tests.test_voice_inbound import (
    EE_CALLER,
    PL_CALLER,
    RU_CALLER,
    agent_for,
    call_params,
    dial_targets,
    events,
)

GB_CALLER = "+442071838750"


# --- recording consent ----------------------------------------------------------------------


@pytest.mark.parametrize(("caller", "lang", "locale"),
                         [(RU_CALLER, "ru", "ru-RU"), (PL_CALLER, "pl", "pl-PL"), (GB_CALLER, "en", "en-GB")])
def test_recording_consent_is_said_in_the_callers_language(voice: Voice, caller: str, lang: str,
                                                           locale: str) -> None:
    root = voice.twiml("/voice/incoming", call_params(f"CA-consent-{lang}", caller))
    greeting, consent = root.findall("Say")[:2]
    assert greeting.get("language") == locale
    assert consent.get("language") == locale
    assert consent.text == TEXTS[lang]["recording_consent"]


def test_estonian_caller_hears_the_recorded_consent(voice: Voice) -> None:
    root = voice.twiml("/voice/incoming", call_params("CA-consent-et", EE_CALLER))
    plays = [p.text for p in root.findall("Play")]
    assert plays[1] == "http://localhost/audio/et/recording_consent.wav"
    assert voice.client.get("/audio/et/recording_consent.wav").status_code == 200


def test_no_consent_prompt_when_the_rules_turn_it_off(make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["hotline"]["recording_consent"] = False
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    root = voice.twiml("/voice/incoming", call_params("CA-no-consent", RU_CALLER))
    assert all(s.text != TEXTS["ru"]["recording_consent"] for s in root.iter("Say"))


# --- the post-call survey -------------------------------------------------------------------


def answer(voice: Voice, sid: str, caller: str, digits: str) -> str:
    """Call in, choose `digits`, let the first agent rung answer and finish; returns the agent."""
    voice.twiml("/voice/incoming", call_params(sid, caller))
    (endpoint,) = dial_targets(voice.twiml("/voice/menu", call_params(sid, caller, Digits=digits)))[:1]
    agent = agent_for(voice, endpoint)
    voice.twiml(f"/voice/whisper?call={sid}&agent={agent}", call_params(f"{sid}-leg", endpoint))
    return agent


def test_survey_after_an_answered_call_puts_the_score_on_the_card(voice: Voice) -> None:
    sid = "CA-survey"
    agent = answer(voice, sid, RU_CALLER, "1")  # support has survey: true
    done = voice.twiml("/voice/dial-result?queue=support&lang=ru",
                       call_params(sid, RU_CALLER, DialCallStatus="completed", DialCallDuration="30"))
    redirect = done.find("Redirect")
    assert redirect is not None and "/voice/survey" in redirect.text
    ask = voice.twiml(redirect.text.replace("http://localhost", ""), call_params(sid, RU_CALLER))
    gather = ask.find("Gather")
    assert gather.get("numDigits") == "1"
    assert gather.find("Say").text == TEXTS["ru"]["survey_question"]
    thanks = voice.twiml(gather.get("action").replace("http://localhost", ""),
                         call_params(sid, RU_CALLER, Digits="4"))
    assert thanks.find("Say").text == TEXTS["ru"]["survey_thanks"]
    assert thanks.find("Hangup") is not None
    voice.twiml(gather.get("action").replace("http://localhost", ""), call_params(sid, RU_CALLER, Digits="2"))
    voice.run_jobs()
    (score,) = events(RU_CALLER, "survey_score")
    assert score.data == {"score": 4, "queue": "support", "agent": agent}
    assert score.agent_id == agent and score.call_sid == sid


def test_a_key_outside_one_to_five_is_not_a_score(voice: Voice) -> None:
    voice.twiml("/voice/incoming", call_params("CA-survey-bad", RU_CALLER))
    root = voice.twiml("/voice/survey?lang=ru", call_params("CA-survey-bad", RU_CALLER, Digits="9"))
    assert root.find("Hangup") is not None
    voice.run_jobs()
    assert events(RU_CALLER, "survey_score") == []


def test_queue_without_survey_hangs_up_after_the_call(voice: Voice) -> None:
    sid = "CA-no-survey"
    answer(voice, sid, RU_CALLER, "2")  # billing: no survey
    done = voice.twiml("/voice/dial-result?queue=billing&lang=ru",
                       call_params(sid, RU_CALLER, DialCallStatus="completed", DialCallDuration="30"))
    assert done.find("Redirect") is None and done.find("Hangup") is not None


# --- complaints -----------------------------------------------------------------------------


def complaint_rules(example_rules_text: str, **complaints: int) -> str:
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["complaints"] = complaints
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def test_complaint_call_rings_only_supervisors_and_deadlines_come_from_the_rules(
        make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    voice = Voice(make_app(complaint_rules(example_rules_text, acknowledge_within_minutes=30,
                                           resolve_within_hours=48)))
    rules = voice.app.extensions["hotline"].rules.current()
    sid = "CA-complaint"
    voice.twiml("/voice/incoming", call_params(sid, RU_CALLER))
    root = voice.twiml("/voice/menu", call_params(sid, RU_CALLER, Digits="7"))
    assert root.find("Say").text == TEXTS["ru"]["complaint_opened"]
    targets = dial_targets(root)
    assert targets == [rules.agents["liis"].endpoint]  # olga is a supervisor but not available
    assert all(rules.agents[agent_for(voice, t)].supervisor for t in targets)
    voice.run_jobs()
    with db.session() as s:
        (complaint,) = s.query(Complaint).all()
    assert complaint.queue == "complaints" and complaint.call_sid == sid and complaint.status == "open"
    assert complaint.ack_due_at - complaint.opened_at == timedelta(minutes=30)
    assert complaint.resolve_due_at - complaint.opened_at == timedelta(hours=48)
    (opened,) = events(RU_CALLER, "complaint_opened")
    assert opened.data["ack_due_at"] == complaint.ack_due_at.isoformat()
    assert opened.data["resolve_due_at"] == complaint.resolve_due_at.isoformat()
    (choice,) = events(RU_CALLER, "menu_choice")
    assert choice.data["queue"] == "complaints"


def test_complaint_deadlines_default_to_an_hour_and_three_days(voice: Voice) -> None:
    voice.twiml("/voice/incoming", call_params("CA-complaint-default", PL_CALLER))
    voice.twiml("/voice/menu", call_params("CA-complaint-default", PL_CALLER, Digits="7"))
    voice.run_jobs()
    with db.session() as s:
        (complaint,) = s.query(Complaint).all()
    assert complaint.ack_due_at - complaint.opened_at == timedelta(minutes=60)
    assert complaint.resolve_due_at - complaint.opened_at == timedelta(hours=72)


def test_complaint_deadlines_are_validated(example_rules_text: str) -> None:
    from routing_rules.loading import check_rules

    errors = check_rules(complaint_rules(example_rules_text, acknowledge_within_minutes=600,
                                         resolve_within_hours=2))
    assert [e.path for e in errors] == ["complaints"]
    errors = check_rules(complaint_rules(example_rules_text, acknowledge_within_minutes=0))
    assert [e.path for e in errors] == ["complaints.acknowledge_within_minutes"]
