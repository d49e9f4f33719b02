"""Inbound calls through the real webhooks: signatures, language, ring targets, voicemail, the card."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from recordings import card, db
from recordings.models import CardEvent, Voicemail
from routing_rules import engine
from tests.conftest import Voice, always_open_rules

EE_CALLER = "+37255512345"
RU_CALLER = "+79161234567"
PL_CALLER = "+48601234567"
HOTLINE = "+3726140000"


def call_params(sid: str, caller: str = EE_CALLER, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": HOTLINE,
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01", **extra}


def dial_targets(root) -> list[str]:  # type: ignore[no-untyped-def]
    dial = root.find("Dial")
    assert dial is not None, "expected a <Dial>"
    return dial_targets_of(dial)


def dial_targets_of(dial) -> list[str]:  # type: ignore[no-untyped-def]
    names = []
    for noun in dial:
        text = (noun.text or "").strip()
        names.append({"Client": "client:", "Sip": ""}.get(noun.tag, "") + text)
    return names


def agent_for(voice: Voice, endpoint: str) -> str:
    rules = voice.app.extensions["hotline"].rules.current()
    return next(a for a, r in rules.agents.items() if r.endpoint == endpoint)


def events(e164: str, kind: str | None = None) -> list[CardEvent]:
    with db.session() as s:
        client = card.find_client_by_phone(s, e164)
        if client is None:
            return []
        found, _ = card.timeline(s, client.id, limit=200)
        for event in found:
            s.expunge(event)
    return [e for e in found if kind is None or e.kind == kind]


# --- signatures -----------------------------------------------------------------------------


def test_missing_signature_is_refused_with_403(voice: Voice) -> None:
    response = voice.client.post("/voice/incoming", data=call_params("CA-nosig"))
    assert response.status_code == 403


def test_forged_signature_is_refused_with_403(voice: Voice) -> None:
    response = voice.post("/voice/incoming", call_params("CA-forged"), signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 403


def test_signature_for_other_parameters_is_refused(voice: Voice) -> None:
    params = call_params("CA-altered")
    signature = voice.validator.compute_signature("http://localhost/voice/incoming", params)
    params["From"] = "+37200000000"  # altered after signing
    response = voice.post("/voice/incoming", params, signature=signature)
    assert response.status_code == 403


def test_signature_behind_a_proxy_uses_the_public_url(make_app) -> None:  # type: ignore[no-untyped-def]
    voice = Voice(make_app(public_base_url="https://hotline.example.com"))
    params = call_params("CA-proxy")
    good = voice.validator.compute_signature("https://hotline.example.com/voice/incoming", params)
    assert voice.post("/voice/incoming", params, signature=good).status_code == 200
    local = voice.validator.compute_signature("http://localhost/voice/incoming", params)
    assert voice.post("/voice/incoming", params, signature=local).status_code == 403


# --- greeting and language --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "language", "voice_name"),
    [(RU_CALLER, "ru-RU", "Polly.Tatyana"), (PL_CALLER, "pl-PL", "Polly.Ewa")],
)
def test_caller_is_greeted_in_the_language_of_their_number(voice: Voice, caller: str, language: str,
                                                           voice_name: str) -> None:
    root = voice.twiml("/voice/incoming", call_params(f"CA-lang-{language}", caller))
    greeting = root.find("Say")
    assert greeting is not None
    assert greeting.get("language") == language
    assert greeting.get("voice") == voice_name
    assert root.find("Gather") is not None


def test_estonian_caller_hears_recorded_audio_never_say(voice: Voice) -> None:
    root = voice.twiml("/voice/incoming", call_params("CA-et", EE_CALLER))
    plays = [p.text for p in root.iter("Play")]
    assert plays and all(p.startswith("http://localhost/audio/et/") for p in plays)
    assert all(s.get("language") != "et-EE" for s in root.iter("Say"))


def test_language_on_the_card_wins_over_the_number(voice: Voice) -> None:
    with db.session() as s:
        card.find_or_create_client(s, EE_CALLER, language="ru")
    root = voice.twiml("/voice/incoming", call_params("CA-card-lang", EE_CALLER))
    assert root.find("Say").get("language") == "ru-RU"


def test_the_greeting_is_rendered_once_per_language_period_rules_and_host(voice: Voice, example_rules_text: str,
                                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from webhooks import voice as voice_module

    renders: list[object] = []
    real_render = voice_module.render
    monkeypatch.setattr(voice_module, "render", lambda script: renders.append(script) or real_render(script))
    evening = datetime(2026, 11, 24, 18, 30, tzinfo=UTC)  # 20:30 in Tallinn
    monkeypatch.setattr(voice_module, "now_utc", lambda: evening)
    first = voice.post("/voice/incoming", call_params("CA-greet-1", RU_CALLER)).data
    second = voice.post("/voice/incoming", call_params("CA-greet-2", RU_CALLER)).data
    assert first == second and len(renders) == 1
    assert "Добрый вечер" in first.decode()

    voice.post("/voice/incoming", call_params("CA-greet-3", PL_CALLER))  # another language: its own
    assert len(renders) == 2
    monkeypatch.setattr(voice_module, "now_utc", lambda: evening.replace(hour=7))  # 09:30: another period
    assert "Доброе утро" in voice.post("/voice/incoming", call_params("CA-greet-4", RU_CALLER)).data.decode()

    renamed = always_open_rules(example_rules_text).replace("company: Northwind Energy", "company: Southwind Power")
    response = voice.app.test_client().put("/api/rules", data=renamed, headers={"Authorization": "Bearer admin-token"})
    assert response.status_code == 200, response.json
    assert "Southwind Power" in voice.post("/voice/incoming", call_params("CA-greet-5", RU_CALLER)).data.decode()

    params = call_params("CA-greet-6", RU_CALLER)
    signature = voice.validator.compute_signature("http://other.example/voice/incoming", params)
    other = voice.client.post("/voice/incoming", data=params, base_url="http://other.example",
                              headers={"X-Twilio-Signature": signature})
    assert other.status_code == 200
    assert 'action="http://other.example/voice/menu?' in other.data.decode()  # the host it was asked on


def test_a_greeting_kept_at_the_turn_of_the_hour_is_the_one_its_key_names(voice: Voice, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The part of the day is read once: a clock crossing noon while the greeting is made must not
    keep an afternoon greeting under the morning's key."""
    from webhooks import voice as voice_module

    readings = iter([datetime(2026, 11, 24, 9, 59, 59, 999_999, tzinfo=UTC),  # 11:59:59.999999 in Tallinn
                     datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)])
    monkeypatch.setattr(voice_module, "now_utc", lambda: next(readings))
    rules = voice.app.extensions["hotline"].rules.current()
    with voice.app.test_request_context("/voice/incoming", method="POST"):
        text = voice_module.greeting_twiml(rules, "ru")
    assert "Доброе утро" in text


# --- ring targets -----------------------------------------------------------------------------


def test_dial_timeout_is_the_ring_target_minus_twilios_buffer(voice: Voice) -> None:
    voice.twiml("/voice/incoming", call_params("CA-timeout"))
    root = voice.twiml("/voice/menu", call_params("CA-timeout", Digits="1"))
    dial = root.find("Dial")
    assert dial.get("timeout") == "10"  # 3 rings × 5 s (EE cadence) − 5 s buffer
    assert dial.get("answerOnBridge") == "true"
    assert dial.get("record") == "record-from-answer-dual"
    assert dial.get("action").startswith("http://localhost/voice/dial-result")
    noun = dial[0]
    assert "/voice/whisper" in noun.get("url")


def test_agent_who_misses_the_ring_target_is_skipped_and_the_next_rung(voice: Voice) -> None:
    sid = "CA-miss-next"
    voice.twiml("/voice/incoming", call_params(sid))
    first = dial_targets(voice.twiml("/voice/menu", call_params(sid, Digits="1")))
    assert len(first) == 1
    second = dial_targets(voice.twiml("/voice/dial-result", call_params(sid, DialCallStatus="no-answer")))
    assert len(second) == 1 and second != first
    voice.run_jobs()
    rung = events(EE_CALLER, "agent_rung")
    assert len(rung) == 1
    assert rung[0].agent_id == agent_for(voice, first[0])
    assert rung[0].data["outcome"] == "no-answer"
    state = voice.app.extensions["hotline"].state
    (missed,) = state.snapshot([agent_for(voice, first[0])], time.time())
    assert missed.misses == 1 and missed.status == "available"


def test_agent_answers_then_wraps_up_and_the_card_says_within_target(voice: Voice) -> None:
    sid = "CA-answered"
    voice.twiml("/voice/incoming", call_params(sid))
    (endpoint,) = dial_targets(voice.twiml("/voice/menu", call_params(sid, Digits="1")))
    agent = agent_for(voice, endpoint)
    whisper = voice.twiml(f"/voice/whisper?call={sid}&agent={agent}", call_params("CA-child", endpoint))
    assert whisper.find("Say") is not None or whisper.find("Play") is not None
    state = voice.app.extensions["hotline"].state
    assert state.snapshot([agent], time.time())[0].status == "on_call"
    root = voice.twiml("/voice/dial-result", call_params(sid, DialCallStatus="completed", DialCallDuration="42"))
    assert root.find("Dial") is None
    assert state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")
    voice.run_jobs()
    (answered,) = events(EE_CALLER, "call_answered")
    assert answered.agent_id == agent
    assert answered.data["within_target"] is True and answered.data["rings"] <= 3


def test_the_end_of_a_one_agent_talk_needs_only_the_dial_s_action_url(voice: Voice) -> None:
    """The action names the agent, when the dial began and the caller's number; the rings to
    the answer are counted to `DialCallDuration` seconds before the action (the backstop of the
    agent leg's own "answered" callback)."""
    from urllib.parse import parse_qs, urlencode, urlsplit

    sid = "CA-action-url"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu?lang=en", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    action = urlsplit(dial.get("action"))
    query = {k: v[0] for k, v in parse_qs(action.query).items()}
    assert query["agent"] == agent and query["e164"] == EE_CALLER and float(query["at"]) <= time.time()
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    state = voice.app.extensions["hotline"].state
    state.redis.delete(state.keys.call(sid))  # nothing of the live call is read: gone, it is not missed
    query["at"] = repr(time.time() - 40)  # the dial began 40 s ago; the talk lasted 32 s: rang 8 s
    root = voice.twiml(f"{action.path}?{urlencode(query)}",
                       call_params(sid, DialCallStatus="completed", DialCallDuration="32"))
    assert [child.tag for child in root] in (["Hangup"], ["Redirect"])  # the end, or the survey
    assert state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")
    voice.run_jobs()
    (answered,) = events(EE_CALLER, "call_answered")
    assert answered.agent_id == agent and 7.5 <= answered.data["seconds"] <= 9.0
    assert answered.data["rings"] == engine.rings_for(answered.data["seconds"], voice.app.extensions["hotline"].rules
                                                      .current(), "support")
    (handled,) = events(EE_CALLER, "call_handled")
    assert handled.agent_id == agent and handled.data["duration"] == 32 and handled.queue == "support"


def test_a_talk_the_whisper_could_not_mark_is_handled_not_abandoned(voice: Voice) -> None:
    """The agent was set away while ringing, so the whisper could not put them on the call and
    hangs up on them; should Twilio have bridged the call anyway (a whisper answered by an
    earlier release), the end of the talk notes who talked, and the status callback does not
    take the call for abandoned."""
    sid = "CA-away-talk"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    state = voice.app.extensions["hotline"].state
    state.set_status(agent, "away", time.time(), by="test")
    whisper = voice.twiml(dial[0].get("url").removeprefix("http://localhost"),
                          call_params(sid + "-leg", ParentCallSid=sid))
    assert [step.tag for step in whisper] == ["Hangup"]
    assert not state.get_call(sid).get("answered_by")
    voice.twiml(dial.get("action").removeprefix("http://localhost"),
                call_params(sid, DialCallStatus="completed", DialCallDuration="15"))
    assert state.get_call(sid)["answered_by"] == agent
    voice.post("/voice/status", call_params(sid, CallStatus="completed", CallDuration="30", SequenceNumber="0"))
    voice.run_jobs()
    kinds = [e.kind for e in events(EE_CALLER)]
    assert "call_handled" in kinds and "call_abandoned" not in kinds
    assert state.snapshot([agent], time.time())[0].status == "away"  # their own choice stands


def test_an_agent_who_hangs_up_during_the_whisper_is_skipped_freed_and_missed(voice: Voice) -> None:
    """They answered, heard the whisper and hung up before the bridge: Twilio reports the Dial as
    not answered. Declined like a ring not answered: a miss, the next agent rung, and the agent
    available again (on_call has no timer: nothing else would free them)."""
    sid = "CA-whisper-drop"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    first = agent_for(voice, dial_targets_of(dial)[0])
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    state = voice.app.extensions["hotline"].state
    assert state.snapshot([first], time.time())[0].status == "on_call"
    second = dial_targets(voice.twiml(dial.get("action").removeprefix("http://localhost"),
                                      call_params(sid, DialCallStatus="no-answer")))
    assert second and agent_for(voice, second[0]) != first
    (dropped,) = state.snapshot([first], time.time())
    assert (dropped.status, dropped.misses) == ("available", 1)


def test_a_caller_who_hangs_up_during_the_whisper_frees_the_agent_without_a_miss(voice: Voice) -> None:
    sid = "CA-caller-left-whisper"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    voice.twiml(dial.get("action").removeprefix("http://localhost"), call_params(sid, DialCallStatus="canceled"))
    voice.post("/voice/status", call_params(sid, CallStatus="completed", CallDuration="12", SequenceNumber="0"))
    (freed,) = voice.app.extensions["hotline"].state.snapshot([agent], time.time())
    assert (freed.status, freed.misses) == ("available", 0)


def test_a_ring_all_agent_answering_after_another_took_the_call_is_hung_up_not_connected(
        make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    """Twilio keeps ringing the rest of a ring-all while the first answerer's whisper plays, and
    the state freed them when that agent answered: a second answer must not be bridged, or the
    agent would talk on a call while the state offers them the next one."""
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    data["queues"]["support"]["strategy"] = "ring_all"
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    state = voice.app.extensions["hotline"].state
    sid = "CA-ring-all-twice"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    rung = [agent_for(voice, endpoint) for endpoint in dial_targets_of(dial)]
    first = voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-a", ParentCallSid=sid))
    assert "Say" in [step.tag for step in first]
    late = voice.twiml(dial[1].get("url").removeprefix("http://localhost"), call_params(sid + "-b", ParentCallSid=sid))
    assert [step.tag for step in late] == ["Hangup"]
    statuses = {a.id: a.status for a in state.snapshot(rung[:2], time.time())}
    assert statuses == {rung[0]: "on_call", rung[1]: "available"}
    assert state.get_call(sid)["answered_by"] == rung[0]


def test_a_menu_choice_that_arrives_after_the_caller_hung_up_rings_nobody(voice: Voice) -> None:
    """Twilio's requests race: the status callback of a caller who pressed 1 and hung up at once
    may come first. The late dial must not leave an agent ringing for nobody until the ring
    expires."""
    sid = "CA-gone-before-menu"
    voice.twiml("/voice/incoming", call_params(sid))
    voice.post("/voice/status", call_params(sid, CallStatus="completed", CallDuration="3", SequenceNumber="0"))
    voice.post("/voice/menu", call_params(sid, Digits="1"))
    state = voice.app.extensions["hotline"].state
    agents = list(voice.app.extensions["hotline"].rules.current().queues["support"].agents)
    assert "ringing" not in {a.status for a in state.snapshot(agents, time.time())}
    assert not state.claimed(sid)


def test_an_agent_whose_dial_action_never_comes_is_freed_a_minute_after_the_call(voice: Voice) -> None:
    """The Dial action frees the agent who talked; if its request failed (Twilio then asks the
    fallback URL instead), the caller's status callback schedules a look a minute later, which
    frees the agent. When the action came first, nothing is scheduled."""
    from rq.registry import ScheduledJobRegistry

    from telephony import dispatch

    runtime = voice.app.extensions["hotline"]
    scheduled = ScheduledJobRegistry(runtime.jobs.name, connection=runtime.jobs.connection)
    sid = "CA-no-dial-action"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    voice.post("/voice/status", call_params(sid, CallStatus="completed", CallDuration="95", SequenceNumber="0"))
    assert runtime.state.snapshot([agent], time.time())[0].status == "on_call"
    (job_id,) = scheduled.get_job_ids()
    job = runtime.jobs.fetch_job(job_id)
    assert job is not None and job.func is dispatch.release_stranded_agent and job.args == (agent, sid)
    with voice.app.app_context():
        assert dispatch.release_stranded_agent(agent, sid)
        assert not dispatch.release_stranded_agent(agent, sid)  # once
    assert runtime.state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")

    other = "CA-dial-action-first"
    voice.twiml("/voice/incoming", call_params(other))
    dial = voice.twiml("/voice/menu", call_params(other, Digits="1")).find("Dial")
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(other + "-leg", ParentCallSid=other))
    voice.twiml(dial.get("action").removeprefix("http://localhost"),
                call_params(other, DialCallStatus="completed", DialCallDuration="30"))
    voice.post("/voice/status", call_params(other, CallStatus="completed", CallDuration="40", SequenceNumber="0"))
    assert scheduled.get_job_ids() == [job_id]  # nothing new for the call whose action came


def test_a_repeated_dial_action_keeps_the_handle_time_once(voice: Voice) -> None:
    """Twilio may send the Dial action again: the agent is freed once and the queue's wait
    estimate counts the talk once, also when the agent's status no longer shows the call."""
    state = voice.app.extensions["hotline"].state
    handle_times = state.keys.handle_times("support")
    state.redis.delete(handle_times)
    for sid, away in (("CA-repeat-end", False), ("CA-repeat-away", True)):
        voice.twiml("/voice/incoming", call_params(sid))
        dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
        agent = agent_for(voice, dial_targets_of(dial)[0])
        voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
        if away:
            state.set_status(agent, "away", time.time(), by="test")
        for _ in range(3):
            voice.twiml(dial.get("action").removeprefix("http://localhost"),
                        call_params(sid, DialCallStatus="completed", DialCallDuration="25"))
        if not away:
            state.set_status(agent, "away", time.time(), by="test")  # not offered to the next call
    assert [float(v) for v in state.redis.lrange(handle_times, 0, -1)] == [25.0, 25.0]
    voice.run_jobs()
    assert len(events(EE_CALLER, "call_handled")) == 2


def race_for_the_candidates(voice: Voice, monkeypatch: pytest.MonkeyPatch, sid: str) -> list[tuple[str, str]]:
    """Between `sid`'s read of the queue and its claim, other calls take every candidate (a
    loaded machine paused the request); the first of them ends at once. Returns those calls
    and their agents."""
    state = voice.app.extensions["hotline"].state
    real_claim = state.claim_agents
    others: list[tuple[str, str]] = []

    def others_first(candidates: list[str], call_sid: str, *args: Any, **kwargs: Any) -> list[str]:
        if call_sid == sid and not others:
            for n, agent in enumerate(candidates):
                other = f"CA-other-{n}"
                if real_claim([agent], other, 1, time.time(), time.time() + 60):
                    others.append((other, agent))
            lost = real_claim(candidates, call_sid, *args, **kwargs)
            state.release_unanswered(others[0][0], None, time.time())  # that caller hung up
            return lost
        return real_claim(candidates, call_sid, *args, **kwargs)

    monkeypatch.setattr(state, "claim_agents", others_first)
    return others


def test_a_caller_whose_candidates_were_all_taken_meanwhile_gets_an_agent_freed_since(
        voice: Voice, monkeypatch: pytest.MonkeyPatch) -> None:
    """The menu reads the queue again and dials the agent free now, instead of sending the
    caller to voicemail or to an empty line."""
    others = race_for_the_candidates(voice, monkeypatch, "CA-raced")
    voice.twiml("/voice/incoming", call_params("CA-raced"))
    root = voice.twiml("/voice/menu", call_params("CA-raced", Digits="1"))
    assert len(others) >= 2 and root.find("Record") is None and root.find("Enqueue") is None
    (endpoint,) = dial_targets(root)
    assert agent_for(voice, endpoint) == others[0][1]
    voice.run_jobs()
    assert not events(EE_CALLER, "routed_to_voicemail")


def test_a_caller_who_lost_the_race_joins_the_line_when_others_wait(
        voice: Voice, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where callers already wait in the queue's line, the agent who frees up is theirs first
    (the dispatcher's): the caller who lost the race joins the line instead of a fresh read."""
    state = voice.app.extensions["hotline"].state
    state.join_line("support", "call:CA-waiting", time.time() - 60)
    others = race_for_the_candidates(voice, monkeypatch, "CA-raced")
    voice.twiml("/voice/incoming", call_params("CA-raced"))
    root = voice.twiml("/voice/menu", call_params("CA-raced", Digits="1"))
    assert others and root.find("Enqueue") is not None and root.find("Dial") is None
    assert state.position("support", "call:CA-raced") == 2
    assert state.snapshot([others[0][1]], time.time())[0].status == "available"  # left for the line


def test_a_dial_action_with_a_malformed_start_reads_the_call(voice: Voice) -> None:
    from urllib.parse import parse_qs, urlencode, urlsplit

    sid = "CA-bad-start"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    voice.twiml(dial[0].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    action = urlsplit(dial.get("action"))
    query = {k: v[0] for k, v in parse_qs(action.query).items()} | {"at": "soon"}
    root = voice.twiml(f"{action.path}?{urlencode(query)}",
                       call_params(sid, DialCallStatus="completed", DialCallDuration="15"))
    assert root.find("Record") is None  # the normal end of a talk, not the apology
    state = voice.app.extensions["hotline"].state
    assert state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")


def test_a_ring_all_action_reads_who_answered_from_the_call(make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    data["queues"]["support"]["strategy"] = "ring_all"
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    sid = "CA-ring-all-end"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    assert "agent=" not in dial.get("action")  # several rung: who answered is the call's to say
    answering = agent_for(voice, dial_targets_of(dial)[1])
    voice.twiml(dial[1].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
    voice.twiml(dial.get("action").removeprefix("http://localhost"),
                call_params(sid, DialCallStatus="completed", DialCallDuration="20"))
    voice.run_jobs()
    (handled,) = events(EE_CALLER, "call_handled")
    assert handled.agent_id == answering


def test_a_malformed_duration_in_the_dial_action_still_frees_the_agent(voice: Voice) -> None:
    sid = "CA-bad-duration"
    voice.twiml("/voice/incoming", call_params(sid))
    dial = voice.twiml("/voice/menu", call_params(sid, Digits="1")).find("Dial")
    agent = agent_for(voice, dial_targets_of(dial)[0])
    voice.twiml(f"/voice/whisper?call={sid}&agent={agent}", call_params(sid + "-leg", ParentCallSid=sid))
    # no talk time to count the rings back from: the action reads the answer from the call
    root = voice.twiml(dial.get("action").removeprefix("http://localhost"),
                       call_params(sid, DialCallStatus="completed", DialCallDuration="4x"))
    assert root.find("Record") is None  # the normal end of a talk, not the apology
    state = voice.app.extensions["hotline"].state
    assert state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")
    voice.run_jobs()
    (handled,) = events(EE_CALLER, "call_handled")
    assert handled.data["duration"] == 0


def test_an_answered_call_s_card_events_ride_with_its_live_state_writes(make_app, example_rules_text: str,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    live = voice.app.extensions["hotline"].state.redis
    sent: list[str] = []
    real = live.execute_command

    def counted(*args, **options):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]).upper())
        return real(*args, **options)

    def answered_call(sid: str, caller: str) -> list[list[str]]:
        """The Redis commands of each webhook of an answered call."""
        per_webhook: list[list[str]] = []
        sent.clear()
        gather = voice.twiml("/voice/incoming", call_params(sid, caller)).find("Gather")
        per_webhook.append(sent[:]), sent.clear()
        menu_url = gather.get("action").removeprefix("http://localhost")  # as Twilio requests it
        dial = voice.twiml(menu_url, call_params(sid, caller, Digits="1")).find("Dial")
        per_webhook.append(sent[:]), sent.clear()
        voice.twiml(dial[0].get("url").removeprefix("http://localhost"),  # the whisper URL the dial names
                    call_params(sid + "-leg", caller, ParentCallSid=sid))
        per_webhook.append(sent[:]), sent.clear()
        voice.twiml(dial.get("action").removeprefix("http://localhost"),  # the Dial's own action URL
                    call_params(sid, caller, DialCallStatus="completed", DialCallDuration="42"))
        per_webhook.append(sent[:]), sent.clear()
        voice.post("/voice/status", call_params(sid, caller, CallStatus="completed", CallDuration="50",
                                                SequenceNumber="0"))
        per_webhook.append(sent[:])
        return per_webhook

    monkeypatch.setattr(live, "execute_command", counted)
    answered_call("CA-carried-first", PL_CALLER)  # the first loads the scripts into Redis
    per_webhook = answered_call("CA-carried", EE_CALLER)
    # each webhook's events went with its last write (a script), never in an RPUSH of their own
    # the menu's choice of a queue goes straight to its dial, and the end of a one-agent talk
    # has all it needs in the Dial's action URL: the call is not read first by either
    assert per_webhook == [["EVALSHA"], ["EVALSHA", "EVALSHA"], ["EVALSHA"], ["EVALSHA"], ["EVALSHA"]]
    voice.run_jobs()
    kinds = [e.kind for e in events(EE_CALLER)]
    for kind in ("call_arrived", "menu_choice", "call_answered", "call_handled", "call_completed"):
        assert kinds.count(kind) == 1, (kind, kinds)


def test_a_ring_all_answer_frees_the_others_in_one_step(make_app, example_rules_text: str,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The whisper URL a dial names carries whom it rang and the caller's number: the answer,
    the release of the rest of the ring-all, sticky routing and the call's fields are one script."""
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    data["queues"]["support"]["strategy"] = "ring_all"
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    state = voice.app.extensions["hotline"].state
    sid = "CA-ring-all"
    voice.twiml("/voice/incoming", call_params(sid))
    root = voice.twiml("/voice/menu", call_params(sid, Digits="1"))
    dial = root.find("Dial")
    rung = [agent_for(voice, endpoint) for endpoint in dial_targets(root)]
    assert len(rung) >= 2, "the ring-all rings every free agent of the queue"
    assert {a.status for a in state.snapshot(rung, time.time())} == {"ringing"}
    sent: list[str] = []
    real = state.redis.execute_command

    def counted(*args, **options):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]).upper())
        return real(*args, **options)

    assert not state.mark_on_call("nobody", "CA-none", time.time())  # loads the script into Redis
    monkeypatch.setattr(state.redis, "execute_command", counted)
    answering = rung[1]
    whisper = voice.twiml(dial[1].get("url").removeprefix("http://localhost"),
                          call_params(sid + "-leg", ParentCallSid=sid))
    assert sent == ["EVALSHA"]
    assert EE_CALLER in "".join(say.text or "" for say in whisper.iter("Say"))  # named from the call's fields
    statuses = {a.id: a.status for a in state.snapshot(rung, time.time())}
    assert statuses.pop(answering) == "on_call"
    assert set(statuses.values()) == {"available"}, "the rest of the ring-all is freed"
    assert state.last_agent(EE_CALLER) == answering
    assert state.get_call(sid)["answered_by"] == answering


def test_a_returning_caller_reaches_their_last_agent_through_the_menu_s_direct_path(  # type: ignore[no-untyped-def]
        make_app, example_rules_text: str) -> None:
    """The menu's queue choice dials without reading the live call: the caller's number, read
    from Twilio's fields, still drives sticky routing and the Dial's caller id."""
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    data["queues"]["support"]["strategy"] = "sticky"
    for agent in data["agents"].values():
        agent["wrap_up_seconds"] = 0
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))

    def answered_call(sid: str, pick: int) -> str:
        gather = voice.twiml("/voice/incoming", call_params(sid)).find("Gather")
        root = voice.twiml(gather.get("action").removeprefix("http://localhost"), call_params(sid, Digits="1"))
        dial = root.find("Dial")
        assert dial.get("callerId") == EE_CALLER
        agent = agent_for(voice, dial_targets(root)[pick])
        voice.twiml(dial[pick].get("url").removeprefix("http://localhost"), call_params(sid + "-leg", ParentCallSid=sid))
        voice.twiml("/voice/dial-result", call_params(sid, DialCallStatus="completed", DialCallDuration="30"))
        voice.post("/voice/status", call_params(sid, CallStatus="completed", CallDuration="40", SequenceNumber="0"))
        return agent

    first = answered_call("CA-sticky-1", 0)
    assert voice.app.extensions["hotline"].state.last_agent(EE_CALLER) == first
    gather = voice.twiml("/voice/incoming", call_params("CA-sticky-2")).find("Gather")
    root = voice.twiml(gather.get("action").removeprefix("http://localhost"), call_params("CA-sticky-2", Digits="1"))
    assert agent_for(voice, dial_targets(root)[0]) == first, "the returning caller's last agent is rung first"


def test_all_agents_miss_then_voicemail_with_deadline(voice: Voice, make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"].pop("high_volume")
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    sid = "CA-all-miss"
    voice.twiml("/voice/incoming", call_params(sid))
    root = voice.twiml("/voice/menu", call_params(sid, Digits="1"))
    rung = set()
    for _ in range(3):  # support: max_attempts 3
        rung.update(dial_targets(root))
        root = voice.twiml("/voice/dial-result", call_params(sid, DialCallStatus="no-answer"))
    assert len(rung) == 3
    record = root.find("Record")
    assert record is not None, "after max_attempts misses the caller is offered voicemail"
    assert record.get("maxLength") == "120"
    received = datetime.now(UTC)
    callback = record.get("recordingStatusCallback").replace("http://localhost", "")
    voice.post(callback, call_params(sid, RecordingSid="RE" + "1" * 32, RecordingStatus="completed",
                                     RecordingUrl="https://api.twilio.com/rec/RE1", RecordingDuration="17",
                                     RecordingSource="RecordVerb", RecordingChannels="1"))
    voice.run_jobs()
    with db.session() as s:
        (mail,) = s.query(Voicemail).all()
        due = mail.due_at if mail.due_at.tzinfo else mail.due_at.replace(tzinfo=UTC)
        assert abs(due - (received + timedelta(minutes=240))) < timedelta(seconds=30)
    kinds = [e.kind for e in events(EE_CALLER)]
    assert kinds.count("agent_rung") == 3
    assert kinds.count("routed_to_voicemail") == 1  # carried by the step that marks the voicemail
    assert "voicemail_left" in kinds


def test_duplicate_status_callbacks_make_one_card_entry(voice: Voice) -> None:
    sid = "CA-dup-status"
    voice.twiml("/voice/incoming", call_params(sid))
    completed = call_params(sid, CallStatus="completed", CallDuration="65", SequenceNumber="3",
                            CallbackSource="call-progress-events")
    for _ in range(3):
        assert voice.post("/voice/status", completed).status_code == 204
    voice.run_jobs()
    assert len(events(EE_CALLER, "call_completed")) == 1


def test_a_webhook_never_500s_when_redis_is_down(make_app) -> None:  # type: ignore[no-untyped-def]
    import redis

    app = make_app()
    voice = Voice(app)
    runtime = app.extensions["hotline"]
    from telephony.redis_client import KeptConnection
    from telephony.state import LiveState

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    runtime.state = LiveState(KeptConnection(dead.connection_pool), runtime.state.keys.prefix)  # scripts too
    runtime.jobs.connection = dead
    root = voice.twiml("/voice/incoming", call_params("CA-redis-down"))
    assert root.find("Record") is not None  # apology and a voicemail, with 200 and valid TwiML


# --- the caller's own choices in the menu -------------------------------------------------------


def test_caller_opts_out_from_the_menu_after_confirming(voice: Voice) -> None:
    sid = "CA-ivr-optout"
    voice.twiml("/voice/incoming", call_params(sid, RU_CALLER))
    confirm = voice.twiml("/voice/menu", call_params(sid, RU_CALLER, Digits="8"))
    gather = confirm.find("Gather")
    assert gather is not None and "/voice/opt-out" in gather.get("action")
    voice.twiml(gather.get("action").replace("http://localhost", ""), call_params(sid, RU_CALLER, Digits="1"))
    voice.run_jobs()
    (opted,) = events(RU_CALLER, "opted_out")
    assert opted.data["source"] == "ivr"
    with db.session() as s:
        client_out, number_out, _ = card.is_opted_out(s, RU_CALLER)
        assert client_out or number_out


def test_caller_who_does_not_confirm_is_not_opted_out(voice: Voice) -> None:
    sid = "CA-ivr-no-optout"
    voice.twiml("/voice/incoming", call_params(sid, RU_CALLER))
    gather = voice.twiml("/voice/menu", call_params(sid, RU_CALLER, Digits="8")).find("Gather")
    voice.twiml(gather.get("action").replace("http://localhost", ""), call_params(sid, RU_CALLER, Digits="2"))
    voice.run_jobs()
    assert events(RU_CALLER, "opted_out") == []


def test_caller_switches_language_in_the_menu_and_the_card_remembers(voice: Voice) -> None:
    sid = "CA-switch"
    voice.twiml("/voice/incoming", call_params(sid, RU_CALLER))
    choices = voice.twiml("/voice/menu", call_params(sid, RU_CALLER, Digits="9"))
    options = [say.text for say in choices.iter("Say")]
    assert any("English" in text for text in options), options
    codes = list(voice.app.extensions["hotline"].rules.current().languages)
    menu = voice.twiml("/voice/language", call_params(sid, RU_CALLER, Digits=str(codes.index("pl") + 1)))
    assert {say.get("language") for say in menu.iter("Say")} == {"pl-PL"}
    voice.run_jobs()
    (changed,) = events(RU_CALLER, "language_changed")
    assert changed.data == {"from": "ru", "to": "pl"}
    with db.session() as s:
        assert card.find_client_by_phone(s, RU_CALLER).language == "pl"


def test_a_rules_change_mid_call_never_leaves_the_agent_on_a_call(voice: Voice, example_rules_text: str) -> None:
    sid = "CA-rules-change"
    voice.twiml("/voice/incoming", call_params(sid))
    (endpoint,) = dial_targets(voice.twiml("/voice/menu", call_params(sid, Digits="1")))
    agent = agent_for(voice, endpoint)
    voice.twiml(f"/voice/whisper?call={sid}&agent={agent}", call_params("CA-child-2", endpoint))
    runtime = voice.app.extensions["hotline"]
    renamed = always_open_rules(example_rules_text).replace("\n  support:\n", "\n  support_v2:\n", 1)
    response = voice.app.test_client().put("/api/rules", data=renamed,
                                           headers={"Authorization": "Bearer admin-token"})
    assert response.status_code == 200, response.json
    root = voice.twiml("/voice/dial-result?queue=support", call_params(sid, DialCallStatus="completed",
                                                                       DialCallDuration="30"))
    assert root.find("Record") is None  # not the apology
    assert runtime.state.snapshot([agent], time.time())[0].status in ("wrap_up", "available")


def test_a_callback_after_a_chosen_hour_uses_the_callers_clock(voice: Voice) -> None:
    from datetime import datetime as dt
    from zoneinfo import ZoneInfo

    from recordings.models import Callback

    sid = "CA-cb-after"
    caller = "+12125550134"  # New York: "after 18:00" is 18:00 there, not in Tallinn
    voice.twiml("/voice/incoming", call_params(sid, caller))
    voice.twiml("/voice/menu", call_params(sid, caller, Digits="1"))
    voice.twiml("/voice/offer?queue=support&lang=en", call_params(sid, caller, Digits="2"))
    voice.twiml("/voice/callback-number?queue=support&lang=en", call_params(sid, caller, Digits="1"))
    presets = voice.app.extensions["hotline"].rules.current().queues["support"].callback.time_presets
    digit = str(presets.index("after 18:00") + 1)
    voice.twiml("/voice/callback-time?queue=support&lang=en", call_params(sid, caller, Digits=digit))
    voice.run_jobs()
    with db.session() as s:
        (callback,) = s.query(Callback).all()
        not_before = callback.not_before if callback.not_before.tzinfo else callback.not_before.replace(tzinfo=UTC)
        local = not_before.astimezone(ZoneInfo("America/New_York"))
        now_local = dt.now(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (18, 0) or local <= now_local + timedelta(seconds=5)


def test_a_caller_put_out_of_the_line_without_a_choice_goes_to_voicemail(make_app, example_rules_text: str) -> None:  # type: ignore[no-untyped-def]
    """<Leave> without a key pressed comes only from a failed hold loop: never back into the line,
    even where the queue offers no voicemail choice."""
    data = yaml.safe_load(always_open_rules(example_rules_text))
    data["queues"]["support"]["high_volume"]["offer_voicemail"] = False
    voice = Voice(make_app(yaml.safe_dump(data, allow_unicode=True)))
    sid = "CA-left-by-fault"
    voice.twiml("/voice/incoming", call_params(sid))
    voice.twiml("/voice/menu", call_params(sid, Digits="1"))
    root = voice.twiml("/voice/queue-result?queue=support&lang=et",
                       call_params(sid, QueueResult="leave", QueueSid="QU1", QueueTime="12"))
    assert root.find("Record") is not None and root.find("Enqueue") is None
