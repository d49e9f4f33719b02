"""Scenario files, the printed transcript, the terminal softphone and the load mode."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, request
from twilio.twiml.voice_response import VoiceResponse

from telephony.simulator import Simulator
from telephony.simulator.load import load
from telephony.simulator.scenario import load_scenario, run_scenario
from telephony.simulator.softphone import run_interactive
from telephony.simulator.testing import served

ACCOUNT = "AC" + "c" * 32
TOKEN = "scenario-token"
HOTLINE = "+3726000000"


def hotline_app() -> Flask:
    """A two-option menu: 1 rings anna then the team, anything else says goodbye."""
    app = Flask("sim-scenario-app")

    def xml(r: VoiceResponse) -> Response:
        return Response(str(r), mimetype="text/xml")

    @app.post("/voice")
    def voice() -> Response:
        r = VoiceResponse()
        g = r.gather(num_digits=1, action="/menu", timeout=5)
        g.say("Good morning. Press 1 for support.", language="en-GB", voice="Polly.Amy")
        r.say("Goodbye")
        return xml(r)

    @app.post("/menu")
    def menu() -> Response:
        r = VoiceResponse()
        if request.form["Digits"] != "1":
            r.say("Goodbye")
            return xml(r)
        dial = r.dial(timeout=10, action="/dialed", record="record-from-answer-dual")
        dial.client("anna")
        dial.number("+3725550002")
        return xml(r)

    @app.post("/dialed")
    def dialed() -> Response:
        r = VoiceResponse()
        if request.form["DialCallStatus"] != "completed":
            r.say("Nobody could answer")
        return xml(r)

    return app


@pytest.fixture
def base() -> Iterator[str]:
    with served(hotline_app()) as url:
        yield url


def test_a_yaml_scenario_runs_and_prints_a_readable_transcript(base: str, tmp_path: Path):
    path = tmp_path / "morning.yaml"
    path.write_text(textwrap.dedent(f"""
        number: "{HOTLINE}"
        voice_url: {base}/voice
        agents:
          "client:anna": {{name: anna, answer_after_rings: 2, hang_up_after: 45}}
          "+3725550002": busy
        calls:
          - from: "+3725123456"
            at: 0
            script: [{{press: "1"}}]
          - from: "+3725999999"
            at: 120
            script: [{{wait: 10}}]
        expect:
          - call: 0
            status: completed
            heard: "Good morning"
            pressed: "1"
            dial_status: completed
          - call: 1
            heard: "Goodbye"
    """), encoding="utf-8")

    result = run_scenario(Simulator(ACCOUNT, TOKEN), load_scenario(path))

    assert result.ok, result.failures
    text = str(result)
    assert '[00:00] caller +3725123456 hears (en-GB, Polly.Amy): "Good morning.' in text
    assert "[00:03] caller +3725123456 presses 1" in text
    assert "ringing agent anna (client:anna) — answered after 2 rings" in text
    assert "ringing agent +3725550002 — busy" in text
    assert "recording RE" in text
    assert "[02:00] caller +3725999999" in text
    assert len(result.records[0].recordings) == 1


def test_expectations_that_fail_are_reported(base: str):
    scenario = {"number": HOTLINE, "voice_url": base + "/voice",
                "calls": [{"from": "+3725123456", "script": [{"press": "2"}]}],
                "expect": [{"call": 0, "dial_status": "completed"}]}
    result = run_scenario(Simulator(ACCOUNT, TOKEN), scenario)
    assert result.failures == ["call 0: DialCallStatus None, expected 'completed'"]


def test_softphone_reads_keys_and_prints_what_the_caller_hears(base: str):
    sim = Simulator(ACCOUNT, TOKEN)
    sim.add_number(HOTLINE, base + "/voice")
    sim.add_agent("client:anna", "never")
    sim.add_agent("+3725550002", "never")
    out = io.StringIO()

    record = run_interactive(sim, "+3725123456", HOTLINE, input=io.StringIO("1\n"), output=out)

    printed = out.getvalue()
    assert "Good morning. Press 1 for support." in printed
    assert "keys (digits, h = hang up" in printed
    assert '"Nobody could answer"' in printed
    assert record.status == "completed"


def test_softphone_h_hangs_up(base: str):
    sim = Simulator(ACCOUNT, TOKEN)
    sim.add_number(HOTLINE, base + "/voice")
    out = io.StringIO()
    record = run_interactive(sim, "+3725123456", HOTLINE, input=io.StringIO("h\n"), output=out)
    assert "hangs up" in out.getvalue() and record.status == "completed"


def test_load_mode_reports_latencies_and_outcomes(base: str):
    sim = Simulator(ACCOUNT, TOKEN)
    sim.add_number(HOTLINE, base + "/voice")
    sim.add_agent("client:anna", {"answer_after_rings": 1, "hang_up_after": 10})

    stats = load(sim, ["+3725123456", "+3725123457"], HOTLINE, [{"press": "1"}],
                 concurrency=4, count=12)

    assert stats.calls == 12 and stats.outcomes == {"completed": 12}
    assert stats.failed_webhooks == 0 and not stats.errors
    assert stats.latencies["POST /voice"].count == 12
    assert stats.latencies["POST /menu"].p95 >= stats.latencies["POST /menu"].p50 > 0
    assert stats.calls_per_second > 0
