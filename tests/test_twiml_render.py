"""telephony.twiml.render: repeated answers are rendered once per process, dials never reused."""

from __future__ import annotations

from routing_rules.prompts import Prompt
from telephony import twiml
from telephony.twiml import (
    DialStep,
    DialTarget,
    GatherStep,
    HangupStep,
    RedirectStep,
    Script,
    render,
)


def menu(text: str) -> Script:
    spoken = Prompt(text=text, say_language="en-GB", voice="Polly.Amy", audio_url=None)
    return Script().add(
        GatherStep(action="https://h.example/voice/menu?lang=en", prompts=[spoken], timeout=6),
        RedirectStep("https://h.example/voice/menu?lang=en&noinput=1"),
    )


def test_an_answer_that_repeats_is_rendered_once_and_equal_steps_give_equal_text() -> None:
    first = render(menu("Good morning, press 1."))
    hits = twiml._render_steps.cache_info().hits
    again = render(menu("Good morning, press 1."))  # new objects, the same steps
    assert again == first and twiml._render_steps.cache_info().hits == hits + 1
    assert '<Say language="en-GB" voice="Polly.Amy">Good morning, press 1.</Say>' in first
    other = render(menu("Good evening, press 1."))
    assert other != first and "Good evening" in other
    assert render(Script().add(HangupStep())).endswith("<Response><Hangup /></Response>")


def test_a_dial_is_rendered_every_time_and_its_targets_are_kept_in_order() -> None:
    dial = DialStep(targets=[DialTarget("client:anna", whisper_url="https://h.example/w?call=CA1&agent=anna"),
                             DialTarget("client:mart")],
                    action="https://h.example/voice/dial-result", timeout=15,
                    recording_callback="https://h.example/voice/recording")
    size = twiml._render_steps.cache_info().currsize
    text = render(Script().add(dial))
    assert text.index(">anna</Client>") < text.index(">mart</Client>")
    assert "call=CA1&amp;agent=anna" in text
    assert twiml._render_steps.cache_info().currsize == size  # nothing kept for a call's own URLs


def test_the_text_is_what_twilio_itself_writes_for_every_kind_of_step() -> None:
    """`render` serialises twilio's element tree itself (one pass to text): the result must be
    byte for byte what `str(VoiceResponse)` gives, escapes and non-ASCII included."""
    said = Prompt(text='Tere & "tervist" <Ülle>, 1 > 0 — привет, zażółć', say_language="ru-RU",
                  voice="Polly.Tatyana", audio_url=None)
    played = Prompt(text="", say_language=None, voice=None, audio_url="https://h.example/a.mp3?x=1&y=2")
    script = Script().add(
        said, played, twiml.Pause(2),
        GatherStep(action="https://h.example/voice/menu?lang=ru&repeat=0", prompts=[said, twiml.Pause()],
                   finish_on_key="#", speech_language="ru-RU"),
        DialStep(targets=[DialTarget("client:anna", whisper_url="https://h.example/w?call=CA1&agent=anna",
                                     status_callback="https://h.example/leg?call=CA1&agent=anna"),
                          DialTarget("+3725551234"), DialTarget("sip:desk@pbx.example")],
                 action="https://h.example/voice/dial-result?queue=q&at=1.5", timeout=15,
                 recording_callback="https://h.example/voice/recording?kind=call", caller_id="+3726140000",
                 ring_tone="ee"),
        twiml.RecordStep(action="https://h.example/voice/done", max_length=60,
                         recording_callback="https://h.example/voice/recording?kind=voicemail"),
        twiml.EnqueueStep("support", wait_url="https://h.example/voice/wait", action="https://h.example/voice/left"),
        RedirectStep("https://h.example/voice/menu?a=1&b=2"), twiml.LeaveStep(), HangupStep(),
    )
    text = render(script)
    assert text == str(twiml.build(script))
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response>')
    assert "Tere &amp; \"tervist\" &lt;Ülle&gt;, 1 &gt; 0 — привет, zażółć" in text
    for steps in ([said], [HangupStep()], [RedirectStep("https://h.example/r?a=1&b=2")]):  # the kept path
        assert render(Script().add(*steps)) == str(twiml.build(Script().add(*steps)))
