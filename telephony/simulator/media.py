"""Recording media generated in code: a quiet tone, so players and downloads have real audio."""

from __future__ import annotations

import io
import math
import struct
import wave

SAMPLE_RATE = 8000  # Twilio recordings are 8 kHz mono (dual: stereo)
MAX_MEDIA_SECONDS = 5  # keep files small: enough to be a valid, playable WAV


def wav_bytes(seconds: float, channels: int = 1, tone_hz: float = 440.0) -> bytes:
    """A 16-bit PCM WAV of a soft tone, at most MAX_MEDIA_SECONDS long."""
    frames = int(SAMPLE_RATE * max(0.1, min(float(seconds), MAX_MEDIA_SECONDS)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(max(1, channels))
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        samples = bytearray()
        for i in range(frames):
            value = int(2000 * math.sin(2 * math.pi * tone_hz * i / SAMPLE_RATE))
            samples += struct.pack("<h", value) * max(1, channels)
        out.writeframes(bytes(samples))
    return buf.getvalue()
