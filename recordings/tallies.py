"""Today's tallies of card events, for `/metrics`: calls by outcome, rings to answer, blocked dials.

Counted from the card events themselves (deduplicated by their idempotency keys), so a
retried job or a duplicated Twilio callback is never counted twice and every process (web,
workers) agrees without counters of its own. Functions take an open session, like `card`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import CardEvent

# Event kind → the call outcome it stands for (one per finished call path).
OUTCOME_OF_KIND: dict[str, str] = {
    "call_arrived": "arrived",
    "call_answered": "answered",
    "call_abandoned": "abandoned",
    "routed_to_voicemail": "voicemail",
    "voicemail_left": "voicemail_left",
    "callback_requested": "callback",
    "closed": "closed",
}


@dataclass
class DayTallies:
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome → calls
    rings: dict[int, int] = field(default_factory=dict)  # rings to answer → answered calls
    blocked: dict[str, int] = field(default_factory=dict)  # guard reason → blocked dials


def day_tallies(s: Session, start: datetime, end: datetime) -> DayTallies:
    """Three GROUP BY queries over [start, end); cheap with an index on (kind, at)."""
    window = (CardEvent.at >= start, CardEvent.at < end)
    tallies = DayTallies(outcomes=dict.fromkeys(sorted(set(OUTCOME_OF_KIND.values())), 0))
    for kind, count in s.execute(
        sa.select(CardEvent.kind, sa.func.count())
        .where(CardEvent.kind.in_(OUTCOME_OF_KIND), *window)
        .group_by(CardEvent.kind)
    ):
        tallies.outcomes[OUTCOME_OF_KIND[kind]] += int(count)
    rings = CardEvent.data["rings"].as_integer()
    for value, count in s.execute(
        sa.select(rings, sa.func.count())
        .where(CardEvent.kind == "call_answered", *window)
        .group_by(rings)
    ):
        if value is not None:
            tallies.rings[int(value)] = int(count)
    reason = CardEvent.data["reason"].as_string()
    for value, count in s.execute(
        sa.select(reason, sa.func.count())
        .where(CardEvent.kind == "outbound_blocked", *window)
        .group_by(reason)
    ):
        tallies.blocked[str(value or "unknown")] = int(count)
    return tallies
