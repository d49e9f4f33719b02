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
