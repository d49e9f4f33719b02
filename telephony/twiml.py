"""The one place that renders TwiML: plain step values in, twilio-python's VoiceResponse out.

Views compose steps (what the caller hears and does next); this module knows how each step is
spelled in TwiML. Prompts with an audio file are played (Estonian has no `<Say>` voice); the
others are spoken with the language and voice the rules give.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, Union

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

DIAL_RECORDING = "record-from-answer-dual"
MAX_PARALLEL_NOUNS = 10  # Twilio rings at most ten nouns of one <Dial> at once


class Spoken(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def say_language(self) -> str | None: ...
    @property
    def voice(self) -> str | None: ...
    @property
    def audio_url(self) -> str | None: ...
    @property
    def fallback(self) -> Spoken | None: ...


@dataclass(frozen=True)
class Pause:
    seconds: int = 1


@dataclass(frozen=True)
class GatherStep:
    action: str
    prompts: Sequence[Spoken | Pause]
    num_digits: int | None = 1
    timeout: int = 6
    finish_on_key: str | None = None
    speech_language: str | None = None  # set → input="dtmf speech"

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))  # hashable: see render()


@dataclass(frozen=True)
class DialTarget:
    endpoint: str  # E.164, client:name or sip:uri
    whisper_url: str | None = None  # TwiML played to the callee after answer, before bridging
    status_callback: str | None = None


@dataclass(frozen=True)
class DialStep:
    targets: Sequence[DialTarget]
    action: str
    timeout: int
    recording_callback: str
    caller_id: str | None = None
    ring_tone: str | None = None
    record: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))


@dataclass(frozen=True)
class RecordStep:
    action: str
    max_length: int
    recording_callback: str
    timeout: int = 5
    finish_on_key: str = "#"


@dataclass(frozen=True)
class EnqueueStep:
    queue_name: str
    wait_url: str
    action: str


@dataclass(frozen=True)
class RedirectStep:
    url: str


@dataclass(frozen=True)
class HangupStep:
    pass


@dataclass(frozen=True)
class LeaveStep:
    pass


Step = Union["Spoken", Pause, GatherStep, DialStep, RecordStep, EnqueueStep, RedirectStep, HangupStep, LeaveStep]


@dataclass
class Script:
    """An ordered list of steps: the whole answer to one Twilio request."""

    steps: list[object] = field(default_factory=list)

    def add(self, *steps: object) -> Script:
        self.steps.extend(steps)
        return self


def _speak(target: VoiceResponse | Gather, prompt: Spoken | Pause) -> None:
    if isinstance(prompt, Pause):
        target.pause(length=prompt.seconds)
    elif prompt.audio_url:
        target.play(prompt.audio_url)
    elif not prompt.say_language and getattr(prompt, "fallback", None) is not None:
        # no recording and no <Say> voice for this language (Estonian with per-call values):
        # never send it to <Say>; speak the same prompt in a language Twilio has
        _speak(target, prompt.fallback)  # type: ignore[arg-type]
    else:
        kwargs = {}
        if prompt.say_language:
            kwargs["language"] = prompt.say_language
        if prompt.voice:
            kwargs["voice"] = prompt.voice
        target.say(prompt.text, **kwargs)


def _dial_noun(dial: Dial, target: DialTarget) -> None:
    events = "initiated ringing answered completed"  # a space-separated string, not a list
    extra: dict[str, str] = {}
    if target.whisper_url:
        extra["url"] = target.whisper_url
    if target.status_callback:
        extra.update(status_callback=target.status_callback, status_callback_event=events)
    if target.endpoint.startswith("client:"):
        dial.client(target.endpoint[len("client:"):], **extra)
    elif target.endpoint.startswith("sip:"):
        dial.sip(target.endpoint, **extra)
    else:
        dial.number(target.endpoint, **extra)


def build(script: Script) -> VoiceResponse:
    response = VoiceResponse()
    for step in script.steps:
        if isinstance(step, GatherStep):
            kwargs: dict[str, object] = {"action": step.action, "method": "POST", "timeout": step.timeout}
            if step.num_digits:
                kwargs["num_digits"] = step.num_digits
            if step.finish_on_key is not None:
                kwargs["finish_on_key"] = step.finish_on_key
            if step.speech_language:
                kwargs["input"] = "dtmf speech"
                kwargs["language"] = step.speech_language
            gather = response.gather(**kwargs)
            for prompt in step.prompts:
                _speak(gather, prompt)
        elif isinstance(step, DialStep):
            kwargs = {
                "action": step.action,
                "method": "POST",
                "timeout": step.timeout,
                "answer_on_bridge": True,
            }
            if step.record:
                kwargs.update(
                    record=DIAL_RECORDING,
                    recording_status_callback=step.recording_callback,
                    recording_status_callback_event="completed",
                )
            if step.caller_id:
                kwargs["caller_id"] = step.caller_id
            if step.ring_tone:
                kwargs["ring_tone"] = step.ring_tone
            dial = response.dial(**kwargs)
            for target in list(step.targets)[:MAX_PARALLEL_NOUNS]:
                _dial_noun(dial, target)
        elif isinstance(step, RecordStep):
            response.record(
                action=step.action,
                method="POST",
                max_length=step.max_length,
                timeout=step.timeout,
                finish_on_key=step.finish_on_key,
                play_beep=True,
                recording_status_callback=step.recording_callback,
                recording_status_callback_event="completed",
            )
        elif isinstance(step, EnqueueStep):
            response.enqueue(
                step.queue_name, wait_url=step.wait_url, wait_url_method="POST",
                action=step.action, method="POST",
            )
        elif isinstance(step, RedirectStep):
            response.redirect(step.url, method="POST")
        elif isinstance(step, HangupStep):
            response.hangup()
        elif isinstance(step, LeaveStep):
            response.leave()
        else:
            _speak(response, step)  # type: ignore[arg-type]
    return response


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def render(script: Script) -> str:
    """TwiML text; no whitespace before the XML declaration (Twilio error 12100).

    Most answers repeat (the greeting and menu of a language at a time of day, a hangup, a
    thank-you): those are rendered once per process and then reused, since VoiceResponse costs
    tens of µs per answer. A `<Dial>` names its call in its URLs, so it is never reused.
    """
    steps = tuple(script.steps)
    if any(isinstance(step, DialStep) for step in steps):
        return _text(build(script))
    try:
        return _render_steps(steps)
    except TypeError:  # a step that is not hashable (a caller's own prompt type): no reuse
        return _text(build(script))


@lru_cache(maxsize=512)
def _render_steps(steps: tuple[object, ...]) -> str:
    return _text(build(Script(list(steps))))


def _text(response: VoiceResponse) -> str:
    """What `str(response)` gives (twilio's `to_xml`: its element tree, serialised by
    ElementTree after the declaration), serialised to text directly: `to_xml` writes UTF-8
    bytes through two io wrappers and decodes them again, twice the cost of a Dial's
    serialisation (tests/test_twiml_render.py checks the two agree)."""
    return XML_DECLARATION + ET.tostring(response.xml(), encoding="unicode")
