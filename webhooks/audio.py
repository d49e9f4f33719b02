"""Recorded prompts for languages Twilio cannot speak (Estonian): uploaded first, then shipped.

The product ships synthesised files in `webhooks/static/audio/{lang}/` (tools/make_et_audio.py);
an admin's upload (`PUT /api/audio/{lang}/{file}.wav`) lands in `HOTLINE_DATA_DIR/audio/{lang}/`
and wins. `GET /audio/{lang}/{file}.wav` serves that choice without auth, because Twilio fetches
it for `<Play>`: point `languages.et.audio_base_url` at `/audio/et`.
"""

from __future__ import annotations

import io
import re
import wave
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

from routing_rules.prompts import KEYS
from routing_rules.schema import LANGS

bp = Blueprint("audio", __name__)

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # ~5 min of 8 kHz 16-bit mono; a prompt is seconds long
MAX_SECONDS = 300
RATES = range(8000, 48001)
_STEM = re.compile(r"^[a-z_]+(?:_[A-Za-z0-9.-]+)*$")


class AudioRejected(ValueError):
    """An upload we will not store; `field` and the message say why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_width: int
    sample_rate: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def check_name(lang: str, filename: str) -> str:
    """The file stem, if `lang`/`filename` name a prompt recording (`menu_queue_option_1.wav`)."""
    if lang not in LANGS:
        raise AudioRejected("lang", f"one of {', '.join(LANGS)}")
    stem = filename.removesuffix(".wav")
    if stem == filename or not _STEM.match(stem):
        raise AudioRejected("key", "a prompt file name like greeting_morning.wav or menu_queue_option_1.wav")
    if not any(stem == key or stem.startswith(key + "_") for key in KEYS):
        raise AudioRejected("key", f"{stem!r} is not a prompt key (see routing_rules/prompts.py)")
    return stem


def check_wav(data: bytes) -> WavInfo:
    """Refuse what Twilio's <Play> could not play or a caller should not hear."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise AudioRejected("body", f"larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if not data:
        raise AudioRejected("body", "empty: send the WAV file as the request body")
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            info = WavInfo(wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise AudioRejected("body", f"not a PCM WAV file: {error}") from None
    if info.channels not in (1, 2):
        raise AudioRejected("body", f"{info.channels} channels; use mono (1) or stereo (2)")
    if info.sample_width not in (1, 2):
        raise AudioRejected("body", f"{8 * info.sample_width}-bit samples; use 8- or 16-bit PCM")
    if info.sample_rate not in RATES:
        raise AudioRejected("body", f"{info.sample_rate} Hz; use 8000-48000 Hz (8000 is enough for a phone)")
    if info.frames == 0:
        raise AudioRejected("body", "no audio in the file")
    if info.seconds > MAX_SECONDS:
        raise AudioRejected("body", f"{info.seconds:.0f} s long; a prompt may be {MAX_SECONDS} s at most")
    return info


def uploaded_dir(lang: str) -> Path:
    return current_app.extensions["hotline"].settings.data_dir / "audio" / lang


def shipped_dir(lang: str) -> Path:
    return Path(current_app.static_folder or "static") / "audio" / lang


def store(lang: str, stem: str, data: bytes) -> bool:
    """Write the upload atomically; True when it replaced an earlier upload."""
    folder = uploaded_dir(lang)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.wav"
    existed = target.exists()
    tmp = target.with_suffix(".wav.new")
    tmp.write_bytes(data)
    tmp.replace(target)  # a concurrent <Play> gets the old or the new file, never half
    return existed


def source_of(lang: str, stem: str) -> str | None:
    """"uploaded", "shipped" or None: where `/audio/{lang}/{stem}.wav` would come from."""
    if (uploaded_dir(lang) / f"{stem}.wav").is_file():
        return "uploaded"
    if (shipped_dir(lang) / f"{stem}.wav").is_file():
        return "shipped"
    return None


@bp.get("/audio/<lang>/<filename>")
def serve(lang: str, filename: str):
    try:
        stem = check_name(lang, filename)
    except AudioRejected:
        abort(404)
    source = source_of(lang, stem)
    if source is None:
        abort(404)
    folder = uploaded_dir(lang) if source == "uploaded" else shipped_dir(lang)
    return send_from_directory(folder.resolve(), f"{stem}.wav", mimetype="audio/wav", max_age=300)
