"""What the voice flow reads from the card store, degrading to nothing when SQL is down."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from recordings import card

log = logging.getLogger("hotline.caller_cards")


@dataclass(frozen=True)
class CallerCard:
    client_id: int
    name: str | None
    language: str | None


def lookup(e164: str | None) -> CallerCard | None:
    """The caller's card if there is one. A database fault must not cost the caller the call."""
    if not e164:
        return None
    try:
        facts = card.caller_facts(e164)
        return CallerCard(*facts) if facts else None
    except Exception:
        log.exception("card lookup failed; continuing without the card")
        return None
