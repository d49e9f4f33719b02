"""Every prompt in every language: complete, rendered to valid TwiML, voiced the way Twilio can.

Estonian has no `<Say>` voice: it must be `<Play>` of a shipped recording, or the spoken
fallback in another language, never `<Say language="et-…">`.
"""

from __future__ import annotations

import wave
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from routing_rules.loading import load_rules
from routing_rules.prompts import AUDIO_SAFE_VALUES, KEYS, TEXTS, audio_files, placeholders, prompt
from routing_rules.schema import LANGS, Rules
from telephony.twiml import Script, render
from tests.conftest import Voice

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "webhooks" / "static" / "audio" / "et"

# Per-call values, and the digits/times the example rules use (so the recording exists).
SAMPLE_VALUES: dict[str, object] = {
    "position": 3, "minutes": 4, "next_open": "tomorrow at 08:00", "client": "Mari Maasikas",
    "number": "+372 5551 2345", "reason": "outside_hours", "time": "18:00",
}
DIGIT_FOR = {"menu_queue_option": "1", "menu_complaint": "7", "menu_opt_out": "8", "menu_language": "9",
             "language_option": "4", "callback_time_asap": "1", "callback_time_after": "2"}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules((ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8"))


def values_for(key: str) -> dict[str, object]:
    names = placeholders(TEXTS["en"][key]) - {"company", "department", "options"}
    values = {name: SAMPLE_VALUES[name] for name in names if name in SAMPLE_VALUES}
    if "digit" in names:
        values["digit"] = DIGIT_FOR[key]
    if key == "menu_queue_option":
        values["department"] = "tehniline tugi"
    if key == "callback_time":
        values["queue"] = "support"
    return values


def rendered(spoken: object) -> ET.Element:
    xml = render(Script().add(spoken))
    assert xml.startswith("<?xml"), "no whitespace before the declaration (Twilio 12100)"
    root = ET.fromstring(xml)
    assert root.tag == "Response" and len(root) == 1
    return root[0]


@pytest.mark.parametrize("lang", LANGS)
def test_every_language_has_every_prompt_key_with_known_placeholders(lang: str) -> None:
    assert set(TEXTS[lang]) == KEYS
    for key in KEYS:
        assert placeholders(TEXTS[lang][key]) <= placeholders(TEXTS["en"][key]), (lang, key)
        assert TEXTS[lang][key].strip(), (lang, key)


@pytest.mark.parametrize("lang", ["en", "ru", "pl"])
def test_spoken_languages_render_every_prompt_as_say_with_their_voice(rules: Rules, lang: str) -> None:
    configured = rules.languages[lang]  # type: ignore[index]
    for key in sorted(KEYS):
        verb = rendered(prompt(rules, lang, key, **values_for(key)))
        assert verb.tag == "Say", key
        assert verb.get("language") == configured.say_language, key
        assert verb.get("voice") == configured.voice, key
        assert verb.text and "{" not in verb.text and "}" not in verb.text, key


def test_estonian_renders_every_prompt_without_an_estonian_say(rules: Rules) -> None:
    for key in sorted(KEYS):
        spoken = prompt(rules, "et", key, **values_for(key))
        verb = rendered(spoken)
        assert not (verb.tag == "Say" and (verb.get("language") or "").startswith("et")), key
        if placeholders(TEXTS["en"][key]) <= AUDIO_SAFE_VALUES:
            assert verb.tag == "Play", key
            name = (verb.text or "").rsplit("/", 1)[-1]
            assert (SHIPPED / name).is_file(), f"{key}: {name} is not shipped"
        else:  # per-call words have no recording: the same prompt in English
            assert verb.tag == "Say" and verb.get("language") == "en-GB", key
            assert verb.text == spoken.fallback.text  # type: ignore[union-attr]


def test_every_estonian_recording_the_rules_need_is_shipped_as_8khz_mono_16bit(rules: Rules) -> None:
    needed = audio_files(rules, "et")
    assert {"menu_queue_option_1", "menu_queue_option_2", "menu_complaint_7", "greeting_morning",
            "recording_consent", "callback_time_billing", "callback_time_after_1200_2"} <= set(needed)
    for stem in needed:
        with wave.open(str(SHIPPED / f"{stem}.wav"), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2), stem
            assert wav.getnframes() > 8000 * 0.3, f"{stem}: under 0.3 s"


def test_queues_with_different_callback_times_get_different_recordings(rules: Rules) -> None:
    support = prompt(rules, "et", "callback_time", queue="support").audio_url
    billing = prompt(rules, "et", "callback_time", queue="billing").audio_url
    assert support and billing and support != billing
    after_18 = prompt(rules, "et", "callback_time_after", time="18:00", digit="2").audio_url
    after_12 = prompt(rules, "et", "callback_time_after", time="12:00", digit="2").audio_url
    assert after_18 != after_12


def test_the_app_serves_the_shipped_recordings(voice: Voice) -> None:
    for path in ("/static/audio/et/greeting_morning.wav", "/audio/et/greeting_morning.wav"):
        response = voice.client.get(path)
        assert response.status_code == 200, path
        assert response.mimetype in ("audio/wav", "audio/x-wav")
        assert response.data[:4] == b"RIFF"
    assert voice.client.get("/audio/et/no_such_prompt.wav").status_code == 404
    assert voice.client.get("/audio/et/..%2F..%2Fsettings.py").status_code == 404


def test_callback_time_without_its_queue_is_spoken_not_a_wrong_recording(rules: Rules) -> None:
    spoken = prompt(rules, "et", "callback_time", options="Esimesel võimalusel – vajutage 1.")
    assert spoken.audio_url is None
    verb = rendered(spoken)
    assert verb.tag == "Say" and verb.get("language") == "en-GB"


def test_every_recording_an_estonian_caller_is_played_exists(voice: Voice) -> None:
    from tests.test_voice_inbound import EE_CALLER, call_params

    roots = [voice.twiml("/voice/incoming", call_params("CA-et-files", EE_CALLER)),
             voice.twiml("/voice/menu", call_params("CA-et-files", EE_CALLER, Digits="9")),
             voice.twiml("/voice/menu", call_params("CA-et-files", EE_CALLER, Digits="5"))]
    urls = {p.text for root in roots for p in root.iter("Play")}
    assert len(urls) >= 8
    for url in urls:
        assert voice.client.get(url.replace("http://localhost", "")).status_code == 200, url


def test_a_prompt_spoken_in_another_language_says_its_values_in_that_language(rules: Rules) -> None:
    """Estonian has no <Say> voice: a prompt without a recording is spoken in the fallback
    language, and a value worded per language ("tomorrow at 08:00") must be worded in that
    language too, not Estonian words inside an English sentence."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from routing_rules.prompts import when_text

    zone = ZoneInfo("Europe/Tallinn")
    now, opens = datetime(2026, 12, 7, 20, 0, tzinfo=zone), datetime(2026, 12, 8, 8, 0, tzinfo=zone)
    spoken = prompt(rules, "et", "closed", next_open=lambda lang: when_text(lang, opens, now))
    assert spoken.audio_url is None and spoken.fallback is not None, "the test needs an unrecorded prompt"
    assert when_text("et", opens, now) in spoken.text  # the Estonian text keeps Estonian words
    assert (spoken.fallback.say_language or "").startswith("en")  # the example's spoken fallback
    assert when_text("en", opens, now) in spoken.fallback.text
    assert when_text("et", opens, now) not in spoken.fallback.text
