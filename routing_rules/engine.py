"""Inbound decisions as pure functions: plain values in (rules, agent snapshots, `now`), a
decision out. The web layer renders them and the telephony layer performs them; nothing here
touches Redis, SQL, Flask or Twilio, and nothing reads the clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Final, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from routing_rules.prompts import Prompt, prompt
from routing_rules.schema import (
    WEEKDAYS,
    HighVolumeRules,
    Lang,
    QueueRules,
    Rules,
    minutes_of,
    ring_seconds_for_country,
)

__all__ = [
    "AgentSnapshot", "CallerContext", "DialPlan", "GoToVoicemail", "Prompt", "after_dial",
    "callback_not_before", "choose_language", "decide_dial", "greeting_period",
    "high_volume_triggered", "is_open", "next_open_at", "prompt", "queue_for_digit",
    "RingTarget", "rank_agents", "ring_seconds", "ring_target", "ring_timeout_seconds", "ring_tone",
    "rings_for", "zone",
]

MAX_PARALLEL = 10  # Twilio rings at most ten nouns of one <Dial> at once
MAX_CANDIDATES = 10  # a sequential plan lists spares in case the first claim is lost
TWILIO_MIN_TIMEOUT, TWILIO_MAX_TIMEOUT = 5, 600  # <Dial timeout> bounds, seconds
OPENING_HORIZON_DAYS = 400  # hours that never open within a year are "never"

# Where a caller's number comes from tells us the likely language; the card knows better.
COUNTRY_LANGUAGE: dict[str, Lang] = {
    "RU": "ru", "BY": "ru", "KZ": "ru", "KG": "ru",
    "PL": "pl",
    "EE": "et",
    "GB": "en", "IE": "en", "US": "en", "CA": "en", "AU": "en", "NZ": "en",
}

# Twilio <Dial ringTone> codes (note: the UK is "uk", not "gb").
RING_TONES = frozenset({
    "at", "au", "bg", "br", "be", "ch", "cl", "cn", "cz", "de", "dk", "ee", "es", "fi", "fr",
    "gr", "hu", "il", "in", "it", "lt", "jp", "mx", "my", "nl", "no", "nz", "ph", "pl", "pt",
    "ru", "se", "sg", "th", "uk", "us", "tw", "ve", "za",
})

Period = Literal["morning", "afternoon", "evening"]
NextStep = Literal["done", "next", "voicemail"]


class AgentState(Protocol):
    """Anything shaped like `AgentSnapshot` (telephony/state.py has its own twin)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def idle_since(self) -> float: ...
    @property
    def last_offered_at(self) -> float: ...
    @property
    def misses(self) -> int: ...


class AgentSnapshot(NamedTuple):
    """An agent as live state sees it now; times are epoch seconds. A named tuple, not a frozen
    dataclass: one is built for every agent of a queue on every routed call, in half the time."""

    id: str
    status: str  # available, ringing, on_call, wrap_up, away, offline
    idle_since: float
    last_offered_at: float
    misses: int


@dataclass(frozen=True, slots=True)
class CallerContext:
    e164: str | None
    language: Lang
    last_agent: str | None = None  # who served this client last (sticky routing)


@dataclass(frozen=True, slots=True)
class DialPlan:
    """Ring these agents: in parallel (ring_all), or the first of them that can be claimed."""

    candidates: list[str]
    parallel: bool
    timeout_seconds: int
    rings: int


@dataclass(frozen=True, slots=True)
class GoToVoicemail:
    reason: Literal["max_attempts", "no_agent_available"]


# --- language and greeting ----------------------------------------------------------------


def choose_language(rules: Rules, card_language: str | None, caller_country: str | None) -> Lang:
    """The card's language, else the caller's country's, else the hotline default (if spoken)."""
    if card_language in rules.languages:
        return card_language  # type: ignore[return-value]
    guess = COUNTRY_LANGUAGE.get((caller_country or "").upper())
    if guess is not None and guess in rules.languages:
        return guess
    return rules.hotline.default_language


def greeting_period(local: datetime) -> Period:
    """Morning 05:00-12:00, afternoon 12:00-18:00, evening otherwise (night calls included)."""
    if 5 <= local.hour < 12:
        return "morning"
    if 12 <= local.hour < 18:
        return "afternoon"
    return "evening"


def queue_for_digit(rules: Rules, digit: str | None) -> str | None:
    """The queue a menu key leads to; the complaint key leads to the complaints queue."""
    if not digit:
        return None
    for name, queue in rules.queues.items():
        if queue.digit == digit:
            return name
    if digit == rules.menu.complaint_digit:
        return rules.complaints_queue()
    return None


# --- opening hours ------------------------------------------------------------------------


def zone(rules: Rules) -> ZoneInfo:
    return ZoneInfo(rules.hotline.zone)


def is_open(rules: Rules, queue: str, now: datetime) -> bool:
    """Open by the hotline's wall clock (so DST moves nothing) and not a holiday."""
    local = _local(rules, now)
    q = rules.queues[queue]
    if _is_holiday(q, local.date()):
        return False
    if not q.hours:
        return True
    minute = local.hour * 60 + local.minute + local.second / 60
    return any(lo <= minute < hi for lo, hi in _ranges(q, local.date()))


def next_open_at(rules: Rules, queue: str, now: datetime) -> datetime | None:
    """`now` if open, else the next opening in the hotline's zone; None if not within a year."""
    if is_open(rules, queue, now):
        return now.astimezone(zone(rules))
    local = _local(rules, now)
    q = rules.queues[queue]
    tz = zone(rules)
    for offset in range(OPENING_HORIZON_DAYS):
        day = local.date() + timedelta(days=offset)
        if _is_holiday(q, day):
            continue
        for lo, _ in sorted(_ranges(q, day)):
            start = _wall_time(day, lo, tz)
            if start.timestamp() > now.timestamp():
                return start
    return None


def _local(rules: Rules, now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone(rules))


def _ranges(q: QueueRules, day: date) -> list[tuple[int, int]]:
    weekday = WEEKDAYS[day.weekday()]
    return [(minutes_of(h.open), minutes_of(h.close)) for h in q.hours if weekday in h.days]


def _wall_time(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """`day` at `minute` local; a time skipped by spring-forward becomes the jump itself."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    wall = naive.replace(tzinfo=tz)
    if wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
        return wall
    # In a gap: between these two instants the wall clock jumps past `naive`.
    before, after = wall.utcoffset(), wall.replace(fold=1).utcoffset()
    assert before is not None and after is not None
    lo, hi = sorted(((naive - after).replace(tzinfo=UTC), (naive - before).replace(tzinfo=UTC)))
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0).astimezone(tz)


def _is_holiday(q: QueueRules, day: date) -> bool:
    if day in q.holidays.extra_dates:
        return True
    if q.holidays.country is None:
        return False
    return day in _calendar(q.holidays.country, q.holidays.subdivision, day.year)


@lru_cache(maxsize=64)
def _calendar(country: str, subdivision: str | None, year: int) -> holidays_lib.HolidayBase:
    return holidays_lib.country_holidays(country, subdiv=subdivision, years=year)


# --- rings and seconds --------------------------------------------------------------------


def ring_seconds(rules: Rules, queue: str) -> float:
    """Seconds per ring: the queue's, else the hotline's, else the country's cadence."""
    q = rules.queues[queue]
    if q.ring_seconds is not None:
        return q.ring_seconds
    if rules.hotline.ring_seconds is not None:
        return rules.hotline.ring_seconds
    return ring_seconds_for_country(rules.hotline.country)


def ring_timeout_seconds(rules: Rules, queue: str) -> int:
    """`<Dial timeout>` so the caller hears at most `answer_within_rings` rings.

    Twilio rings about `dial_buffer_seconds` longer than the timeout, so it is subtracted;
    Twilio accepts 5..600.
    """
    rings = rules.queues[queue].answer_within_rings
    target = round(rings * ring_seconds(rules, queue) - rules.hotline.dial_buffer_seconds)
    return min(TWILIO_MAX_TIMEOUT, max(TWILIO_MIN_TIMEOUT, target))


@dataclass(frozen=True, slots=True)
class RingTarget:
    """A queue's ring target and what Twilio does with it: rings the agent for about
    `timeout_seconds + buffer_seconds`, which a short target cannot get under (Twilio's
    shortest `<Dial timeout>` is 5 s, and its buffer comes on top)."""

    rings: int
    ring_seconds: float
    timeout_seconds: int
    buffer_seconds: int

    @property
    def target_seconds(self) -> float:
        return self.rings * self.ring_seconds

    @property
    def rings_about_seconds(self) -> int:
        return self.timeout_seconds + self.buffer_seconds

    @property
    def kept(self) -> bool:
        """Twilio rings no longer than the target, give or take the rounding to whole seconds
        (`ring_timeout_seconds` rounds, so up to half a second either way is not a miss)."""
        return self.rings_about_seconds <= self.target_seconds + 0.5 + 1e-9


def ring_target(rules: Rules, queue: str) -> RingTarget:
    """The queue's ring target with the timeout Twilio gets and how long it will ring."""
    return RingTarget(rings=rules.queues[queue].answer_within_rings,
                      ring_seconds=ring_seconds(rules, queue),
                      timeout_seconds=ring_timeout_seconds(rules, queue),
                      buffer_seconds=rules.hotline.dial_buffer_seconds)


def rings_for(seconds: float, rules: Rules, queue: str) -> int:
    """How many rings a caller heard in `seconds` of ringing (a started ring counts), >= 1."""
    return max(1, math.ceil(seconds / ring_seconds(rules, queue) - 1e-9))


def ring_tone(rules: Rules) -> str | None:
    """Twilio's ringTone code for the hotline's country, so callers hear the ring they know."""
    code = "uk" if rules.hotline.country == "GB" else rules.hotline.country.lower()
    return code if code in RING_TONES else None


# --- choosing agents ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _QueueTeam:
    """What ranking needs of one queue's agents under one rules object, worked out once: the
    members who may take its calls (known, with every skill of the queue) with their miss
    limits, and who among them speaks each language."""

    rules: Rules  # kept to tell this rules object from a later one that reuses its id
    miss_limits: dict[str, int]
    speakers: dict[str, frozenset[str]]


_TEAMS: dict[tuple[int, str], _QueueTeam] = {}
_TEAMS_KEPT = 256  # queues × rules objects alive at once: a handful; bounded all the same


def _queue_team(rules: Rules, queue: str) -> _QueueTeam:
    found = _TEAMS.get((id(rules), queue))
    if found is not None and found.rules is rules:
        return found
    q = rules.queues[queue]
    needed = set(q.skills)
    limits = {a: rules.agents[a].miss_limit for a in q.agents
              if a in rules.agents and needed.issubset(rules.agents[a].skills)}
    spoken = {a: rules.agents[a].languages or [rules.hotline.default_language] for a in limits}
    speakers: dict[str, frozenset[str]] = {
        str(lang): frozenset(a for a in limits if lang in spoken[a]) for lang in rules.languages}
    if len(_TEAMS) >= _TEAMS_KEPT:
        _TEAMS.clear()
    team = _TEAMS[(id(rules), queue)] = _QueueTeam(rules, limits, speakers)
    return team


def rank_agents(
    rules: Rules,
    queue: str,
    agents: Sequence[AgentState],
    caller: CallerContext,
    tried: set[str],
) -> list[str]:
    """Agents to offer this call to, best first.

    Only available queue members not yet tried on this call, below their miss limit, with
    every skill of the queue. Order: the sticky agent (strategy sticky), then agents who speak
    the caller's language, each group in strategy order (ties broken by id for repeatability).
    Runs on every routed call over the whole queue, so the rules' part is worked out once per
    rules object (`_queue_team`), the strategy's order is one sort by a C key (no Python call
    an agent), and the groups (sticky, speakers) are taken out after it, which keeps that
    order within each: the same result as one sort by (group, order), at half its cost.
    """
    strategy = rules.queues[queue].strategy
    team = _queue_team(rules, queue)
    limits = team.miss_limits
    speakers = team.speakers.get(caller.language, frozenset())
    sticky = caller.last_agent if strategy == "sticky" else None
    candidates = [a for a in agents
                  if a.status == "available" and a.id not in tried and a.misses < limits.get(a.id, 0)]
    candidates.sort(key=_ROUND_ROBIN_ORDER if strategy == "round_robin" else _IDLE_ORDER)
    ranked = [a.id for a in candidates]
    if not speakers.isdisjoint(ranked) and not speakers.issuperset(ranked):  # speakers first
        ranked = [i for i in ranked if i in speakers] + [i for i in ranked if i not in speakers]
    if sticky is not None and sticky in ranked:  # then the sticky agent before everyone
        ranked.remove(sticky)
        ranked.insert(0, sticky)
    return ranked


_IDLE_ORDER: Final = attrgetter("idle_since", "id")  # longest_idle, ring_all and sticky's fallback
_ROUND_ROBIN_ORDER: Final = attrgetter("last_offered_at", "idle_since", "id")


def decide_dial(
    rules: Rules,
    queue: str,
    agents: Sequence[AgentState],
    caller: CallerContext,
    attempt: int,
    tried: set[str],
) -> DialPlan | GoToVoicemail:
    """Dial attempt number `attempt` (from 1): whom to ring and for how long, or voicemail."""
    q = rules.queues[queue]
    if attempt > q.max_attempts:
        return GoToVoicemail("max_attempts")
    ranked = rank_agents(rules, queue, agents, caller, tried)
    if not ranked:
        return GoToVoicemail("no_agent_available")
    parallel = q.strategy == "ring_all"
    return DialPlan(
        candidates=ranked[:MAX_PARALLEL if parallel else MAX_CANDIDATES],
        parallel=parallel,
        timeout_seconds=ring_timeout_seconds(rules, queue),
        rings=q.answer_within_rings,
    )


def after_dial(rules: Rules, queue: str, dial_status: str, attempt: int) -> NextStep:
    """What follows a `<Dial>` that ended with `DialCallStatus`.

    Answered → done; caller hung up (canceled) → done; otherwise (no-answer, busy, failed or
    anything unknown) the next agent while attempts remain, then voicemail.
    """
    if dial_status in ("completed", "answered", "canceled"):
        return "done"
    if attempt < rules.queues[queue].max_attempts:
        return "next"
    return "voicemail"


# --- high volume and callbacks ------------------------------------------------------------


def high_volume_triggered(
    rules: Rules,
    queue: str,
    waiting_calls: int,
    estimated_wait_seconds: float | None,
    available_agents: int,
) -> bool:
    """Offer voicemail/callback now? True when any configured trigger of the queue holds."""
    hv: HighVolumeRules | None = rules.queues[queue].high_volume
    if hv is None:
        return False
    if hv.when_no_agent_available and available_agents == 0:
        return True
    if hv.waiting_calls_at_least is not None and waiting_calls >= hv.waiting_calls_at_least:
        return True
    return (hv.estimated_wait_at_least_seconds is not None and estimated_wait_seconds is not None
            and estimated_wait_seconds >= hv.estimated_wait_at_least_seconds)


def callback_not_before(preset: str, now_local: datetime) -> datetime:
    """Earliest time for a callback preset ("asap", "after HH:MM"), in `now_local`'s zone.

    The outbound guard still decides the actual moment; this only honours the caller's choice.
    """
    if preset == "asap":
        return now_local
    minute = minutes_of(preset.removeprefix("after ").strip())
    start = now_local.replace(hour=minute // 60, minute=minute % 60, second=0, microsecond=0)
    return max(start, now_local)
