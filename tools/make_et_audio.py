"""Synthesise the Estonian prompt recordings the product ships (Twilio's <Say> has no Estonian).

    python tools/make_et_audio.py [--rules examples/rules.yaml] [--out webhooks/static/audio/et]

Writes one file per entry of `routing_rules.prompts.audio_files(rules, "et")` (every prompt
whose words the rules fix, including one per menu digit) with espeak-ng, converted by sox to
8 kHz mono 16-bit PCM WAV: phone quality, small enough to commit. Files no longer needed are
listed, not deleted. Admins replace any file with a real voice: PUT /api/audio/et/{file}.wav.
Needs `apt-get install espeak-ng sox`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing_rules.loading import load_rules_file
from routing_rules.prompts import audio_files

VOICE = "et"  # espeak-ng's Estonian
WORDS_PER_MINUTE = 150  # a little slower than espeak's 175: menus are listened to once
SAMPLE_RATE = 8000  # what the phone network carries anyway


def synthesise(text: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text],
                       check=True)
        subprocess.run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        str(target)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "rules.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "webhooks" / "static" / "audio" / "et")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: apt-get install -y espeak-ng sox", file=sys.stderr)
        return 2
    files = audio_files(load_rules_file(args.rules), "et")
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, text in sorted(files.items()):
        synthesise(text, args.out / f"{stem}.wav")
        print(f"{stem}.wav  {text}")
    stale = sorted(p.name for p in args.out.glob("*.wav") if p.stem not in files)
    if stale:
        print(f"not needed by these rules (kept): {', '.join(stale)}")
    print(f"{len(files)} files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
