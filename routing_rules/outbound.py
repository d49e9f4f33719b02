"""The outbound guard: may we call this person now, and if not, when is the first moment we may?

Pure: the telephony layer resolves a number into an `OutboundTarget` (E.164, country,
subdivision, zones) and the dialler asks `outbound_verdict(target, policy, now)` at the moment
of dialling. Only stdlib, pydantic, zoneinfo and `holidays` are used here.

How it decides (docs/outbound.md has the long form):
1. opt-outs (client, then number) block for every purpose; no setting can override them;
2. an invalid number, or a number whose zones are unknown and no zone on the card, is blocked;
3. the candidate zones are the card's zone plus every zone of the number (or the card's zone
   alone with `zone_mode: stored_zone_decides`); the call is allowed only if `now` is inside
   the window in every candidate zone (most restrictive);
4. the window is the country's (or `default`), narrowed by the region's (a US state, ...),
   narrowed by the client's convenient window; a purpose override may replace the legal
   windows by a wider one, only together with the client's own chosen time.

Bulk screening evaluates a million numbers against one `now`, and they fall into a few
thousand (zones, rules) groups, so the work is memoised per (zone, local date) and per
(zones, plan, now). `reference_verdict` runs the same code with fresh caches per call: the
benchmark's naive baseline and the tests' cross-check.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays as holidays_lib
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
Reason = Literal[
    "opted_out_client", "opted_out_number", "outside_hours", "holiday", "unknown_zone",
    "invalid_number",
]
HolidayRule = Literal["closed", "as_sunday", "open"]

HORIZON_DAYS = 400  # beyond a year: a window that never opens within it is reported as None
_FIRST_LOOK_DAYS = 8  # most answers are within a week; look further only when needed
_MAX_EAST = 14 * 3600  # zone offsets lie within UTC-12..UTC+14
_MAX_WEST = 12 * 3600


def _minutes(text: str, *, allow_24: bool = False) -> int:
    hours, _, mins = text.partition(":")
    if len(hours) != 2 or len(mins) != 2 or not (hours + mins).isdigit():
        raise ValueError(f"expected HH:MM, got {text!r}")
    value = int(hours) * 60 + int(mins)
    if int(mins) > 59 or value > 24 * 60 or (value == 24 * 60 and not allow_24):
        raise ValueError(f"not a time of day: {text!r}")
    return value


# --- the rules file's models --------------------------------------------------------------


class Span(BaseModel):
    """Calling hours on some weekdays, callee's local wall time, [open, close)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    days: tuple[Weekday, ...] = WEEKDAYS
    open: str
    close: str

    @field_validator("open")
    @classmethod
    def _open_is_time(cls, v: str) -> str:
        _minutes(v)
        return v

    @field_validator("close")
    @classmethod
    def _close_is_time(cls, v: str) -> str:
        _minutes(v, allow_24=True)
        return v

    @model_validator(mode="after")
    def _opens_before_close(self) -> Span:
        if _minutes(self.open) >= _minutes(self.close, allow_24=True):
            raise ValueError(f"open {self.open} must be before close {self.close}")
        return self


class Window(BaseModel):
    """A legal or house calling window for a country or region, with the law it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hours: tuple[Span, ...]
    on_holiday: HolidayRule = "closed"  # as_sunday: a public holiday gets Sunday's hours
    extra_holidays: tuple[date, ...] = ()  # dates the `holidays` package does not know
    source: str = ""


class PurposeRule(BaseModel):
    """A wider window for one purpose (never touches opt-outs).

    With `needs_client_window` (the default) it applies only when the client chose a
    convenient time, so `requested_callback` can honour "call me at 21:30" where the law
    allows it, while calls without a chosen time keep the normal windows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    window: Window
    needs_client_window: bool = True
    source: str = ""


class ConvenientWindow(BaseModel):
    """The client's own convenient time from the card: local "HH:MM"s, optional weekdays.

    `end` before `start` wraps past midnight (22:00-02:00).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    start: str
    end: str
    days: tuple[Weekday, ...] | None = None

    @field_validator("start", "end")
    @classmethod
    def _is_time(cls, v: str) -> str:
        _minutes(v, allow_24=True)
        return v


def _span(days: tuple[Weekday, ...], open_: str, close: str) -> Span:
    return Span(days=days, open=open_, close=close)


_ALL = WEEKDAYS
_MON_SAT: tuple[Weekday, ...] = WORKDAYS + ("sat",)
_WEEKEND: tuple[Weekday, ...] = ("sat", "sun")

SHIPPED_DEFAULT = Window(
    hours=(_span(WORKDAYS, "09:00", "20:00"),),
    on_holiday="closed",
    source="house default for countries without their own rule: weekdays 09-20, "
    "no weekends or public holidays (about the strictest EU national rules, e.g. FR)",
)

SHIPPED_COUNTRIES: dict[str, Window] = {
    "US": Window(hours=(_span(_ALL, "08:00", "21:00"),), on_holiday="open",
                 source="47 CFR 64.1200(c)(1); 15 USC 1692c(a)(1); 12 CFR 1006.6(b)(1)(i)"),
    "CA": Window(hours=(_span(WORKDAYS, "09:00", "21:30"), _span(_WEEKEND, "10:00", "18:00")),
                 on_holiday="open", source="CRTC Unsolicited Telecommunications Rules (telemarketing)"),
    "RU": Window(hours=(_span(WORKDAYS, "08:00", "22:00"), _span(_WEEKEND, "09:00", "20:00")),
                 on_holiday="as_sunday", source="230-FZ art. 7(3): weekdays 08-22, weekends and "
                 "non-working holidays 09-20, debtor's local time"),
    "AU": Window(hours=(_span(WORKDAYS, "09:00", "20:00"), _span(("sat",), "09:00", "17:00")),
                 on_holiday="closed", source="ACMA Telecommunications (Telemarketing and Research "
                 "Calls) Industry Standard 2017: no Sundays or national public holidays"),
    "GB": Window(hours=(_span(WORKDAYS, "08:00", "20:00"), _span(("sat",), "09:00", "17:00")),
                 on_holiday="closed", source="FCA CONC 7.9.4R sets no hours ('not at unreasonable "
                 "times'); house reading"),
    "PL": Window(hours=(_span(WORKDAYS, "08:00", "20:00"),), on_holiday="closed",
                 source="KPF industry code (weekdays until 22:00, weekends only if no other way); "
                 "house narrows to weekdays 08-20"),
    "EE": Window(hours=(_span(WORKDAYS, "08:00", "18:00"),), on_holiday="closed",
                 source="Finantsinspektsioon guideline 2025 (non-binding): weekdays 08-18, "
                 "no weekends or holidays"),
}

_STATE_08_20 = (_span(_ALL, "08:00", "20:00"),)
SHIPPED_REGIONS: dict[str, Window] = {
    "US-FL": Window(hours=_STATE_08_20, on_holiday="open", source="Fla. Stat. 501.616(6)(a)"),
    "US-OK": Window(hours=_STATE_08_20, on_holiday="open", source="15 O.S. 775C.4"),
    "US-MD": Window(hours=_STATE_08_20, on_holiday="open", source="Md. Com. Law 14-4502"),
    "US-WA": Window(hours=_STATE_08_20, on_holiday="open", source="RCW 19.158.040(2)"),
    "US-TX": Window(hours=(_span(_MON_SAT, "09:00", "21:00"), _span(("sun",), "12:00", "21:00")),
                    on_holiday="open", source="Tex. Bus. & Com. Code 301.051"),
    "US-LA": Window(hours=(_span(_MON_SAT, "08:00", "20:00"),), on_holiday="closed",
                    source="LPSC General Order R-29617: no Sundays, no LPSC holidays "
                    "(add LPSC dates the package lacks to extra_holidays)"),
    "US-MS": Window(hours=(_span(_MON_SAT, "08:00", "20:00"),), on_holiday="open",
                    source="Miss. Code 77-3-723: no Sundays"),
    "US-UT": Window(hours=(_span(_MON_SAT, "08:00", "21:00"),), on_holiday="closed",
                    source="Utah Code 13-25a-103(3): no Sundays or legal holidays"),
    "US-AL": Window(hours=(_span(_MON_SAT, "08:00", "20:00"),), on_holiday="closed",
                    source="Ala. Admin. Code 770-X-5-.17: no Sundays or holidays"),
    "US-PA": Window(hours=(_span(_ALL, "08:00", "21:00"),), on_holiday="closed",
                    source="73 P.S. 2241 (Act 73 of 2019): no legal holidays"),
}


class OutboundPolicy(BaseModel):
    """`outbound:` in the rules file. Treat an instance as immutable: verdicts are memoised.

    `countries` and `regions` are merged over the shipped tables (so adding "DE" does not drop
    "US-FL"); set `shipped_defaults: false` to start from an empty table. A region ("US-FL")
    narrows its country's window; a country without a window gets `default`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    zone_mode: Literal["all", "stored_zone_decides"] = "all"
    shipped_defaults: bool = True
    default: Window = SHIPPED_DEFAULT
    countries: dict[str, Window] = Field(default_factory=dict)
    regions: dict[str, Window] = Field(default_factory=dict)
    purposes: dict[str, PurposeRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _merge_shipped(self) -> OutboundPolicy:
        if self.shipped_defaults:
            object.__setattr__(self, "countries", {**SHIPPED_COUNTRIES, **self.countries})
            object.__setattr__(self, "regions", {**SHIPPED_REGIONS, **self.regions})
        return self

    @field_validator("countries")
    @classmethod
    def _country_codes(cls, v: dict[str, Window]) -> dict[str, Window]:
        for key in v:
            if len(key) != 2 or not key.isalpha() or not key.isupper():
                raise ValueError(f"country {key!r}: use ISO 3166 alpha-2, e.g. 'US'")
        return v

    @field_validator("regions")
    @classmethod
    def _region_codes(cls, v: dict[str, Window]) -> dict[str, Window]:
        for key in v:
            country, dash, sub = key.partition("-")
            if not dash or len(country) != 2 or not sub or not key.isupper():
                raise ValueError(f"region {key!r}: use ISO 3166-2, e.g. 'US-FL'")
        return v


# --- the values the guard works on ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundTarget:
    """A number already resolved by the telephony layer; `e164` None means invalid."""

    e164: str | None
    country: str | None = None
    subdivision: str | None = None
    zones: tuple[str, ...] = ()
    stored_zone: str | None = None
    client_opted_out: bool = False
    number_opted_out: bool = False
    convenient: ConvenientWindow | None = None
    purpose: str = "default"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Allowed, or blocked with a machine-readable reason and the first allowed instant.

    `next_allowed_at` (UTC) is `now` itself when allowed, and None for opt-outs, invalid
    numbers, unknown zones, and windows that never open within `HORIZON_DAYS`.
    """

    allowed: bool
    reason: Reason | None
    next_allowed_at: datetime | None
    next_allowed_local: dict[str, datetime] = field(default_factory=dict)
    zones: tuple[str, ...] = ()


# --- compiled plans: hashable, so they can key caches ----------------------------------------

_Ranges = tuple[tuple[int, int], ...]  # minutes of the local day, [open, close), sorted


@dataclass(frozen=True, slots=True)
class _Layer:
    """One window as per-weekday minute ranges (Monday = 0)."""

    week: tuple[_Ranges, ...]
    on_holiday: HolidayRule


@dataclass(frozen=True, slots=True)
class _Plan:
    """All layers that must allow an instant, plus the holiday calendar that applies."""

    layers: tuple[_Layer, ...]
    country: str | None
    subdivision: str | None
    extra_holidays: frozenset[date]


def _merge(ranges: list[tuple[int, int]]) -> _Ranges:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _layer(window: Window) -> _Layer:
    week: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for span in window.hours:
        for day in span.days:
            week[WEEKDAYS.index(day)].append(
                (_minutes(span.open), _minutes(span.close, allow_24=True)))
    return _Layer(tuple(_merge(d) for d in week), window.on_holiday)


def _client_layer(w: ConvenientWindow) -> _Layer:
    """The client's window per weekday. A window that wraps past midnight belongs to the
    evening it starts on: "Fri 22:00-02:00" is Friday 22:00-24:00 plus Saturday 00:00-02:00."""
    start, end = _minutes(w.start, allow_24=True), _minutes(w.end, allow_24=True)
    days = set(w.days) if w.days else set(WEEKDAYS)
    week: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for i, day in enumerate(WEEKDAYS):
        if day not in days:
            continue
        if start == end:
            week[i].append((0, 24 * 60))  # "any time": a degenerate entry narrows nothing
        elif start < end:
            week[i].append((start, end))
        else:
            if start < 24 * 60:
                week[i].append((start, 24 * 60))
            if end > 0:
                week[(i + 1) % 7].append((0, end))  # after midnight: the next day's date
    return _Layer(tuple(_merge(d) for d in week), "open")


_STRICTNESS: dict[HolidayRule, int] = {"open": 0, "as_sunday": 1, "closed": 2}


def _plan(policy: OutboundPolicy, target: OutboundTarget) -> _Plan:
    """Country (or default) window, narrowed by region, narrowed by the client's window."""
    country = (target.country or "").upper() or None
    region_key = f"{country}-{target.subdivision.upper()}" if country and target.subdivision else None
    legal: list[Window] = [policy.countries.get(country or "", policy.default)]
    if region_key and region_key in policy.regions:
        legal.append(policy.regions[region_key])
    extra = frozenset(d for w in legal for d in w.extra_holidays)
    rule = policy.purposes.get(target.purpose)
    if rule and (target.convenient is not None or not rule.needs_client_window):
        legal = [rule.window]  # the purpose's own window replaces the legal ones
        extra = frozenset(rule.window.extra_holidays)
    layers = [_layer(w) for w in legal]
    if target.convenient is not None:
        layers.append(_client_layer(target.convenient))
    return _Plan(tuple(layers), country, target.subdivision, extra)


# --- interval arithmetic on epoch seconds -----------------------------------------------------

_Intervals = tuple[tuple[float, float], ...]


def _intersect(a: _Intervals, b: _Intervals) -> _Intervals:
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _union(parts: list[tuple[float, float]]) -> _Intervals:
    out: list[tuple[float, float]] = []
    for start, end in sorted(parts):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def _intersect_minutes(a: _Ranges, b: _Ranges) -> _Ranges:
    return tuple((int(s), int(e)) for s, e in _intersect(a, b))  # type: ignore[arg-type]


_EPOCH = datetime(1970, 1, 1)


def _wall_epoch(d: date, minute: int = 0) -> float:
    """Seconds since the epoch of a naive local wall time, as if it were UTC."""
    return (datetime(d.year, d.month, d.day) - _EPOCH).total_seconds() + minute * 60


# --- the engine: the same code cached (bulk, production) or fresh per call (reference) -------


class _Engine:
    """Verdict arithmetic with its memo tables; one instance per cache lifetime."""

    def __init__(self) -> None:
        self.zone = lru_cache(maxsize=1024)(self._zone)
        self.holiday_dates = lru_cache(maxsize=1024)(self._holiday_dates)
        self.local_ranges = lru_cache(maxsize=65536)(self._local_ranges)
        self.zone_day = lru_cache(maxsize=65536)(self._zone_day)
        self.allowed = lru_cache(maxsize=8192)(self._allowed)
        self.decide = lru_cache(maxsize=16384)(self._decide)
        self.local_times = lru_cache(maxsize=16384)(self._local_times)

    @staticmethod
    def _zone(key: str) -> ZoneInfo | None:
        if not key or key.startswith("Etc/Unknown"):
            return None
        try:
            return ZoneInfo(key)
        except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            return None

    @staticmethod
    def _holiday_dates(country: str | None, subdivision: str | None, year: int) -> frozenset[date]:
        if not country:
            return frozenset()
        try:
            cal = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
        except NotImplementedError:  # a subdivision (or country) the package does not know
            if subdivision is None:
                return frozenset()
            try:
                cal = holidays_lib.country_holidays(country, years=year)
            except NotImplementedError:
                return frozenset()
        return frozenset(cal.keys())

    def _is_holiday(self, plan: _Plan, d: date) -> bool:
        return d in plan.extra_holidays or d in self.holiday_dates(
            plan.country, plan.subdivision, d.year)

    def _local_ranges(self, plan: _Plan, d: date) -> tuple[_Ranges, _Ranges]:
        """Allowed minutes of local date `d`: (with holidays applied, ignoring holidays)."""
        holiday = bool(plan.layers) and self._is_holiday(plan, d)
        wd = d.weekday()
        with_h: _Ranges = ((0, 24 * 60),)
        without_h: _Ranges = ((0, 24 * 60),)
        for layer in plan.layers:
            normal = layer.week[wd]
            without_h = _intersect_minutes(without_h, normal)
            if holiday and layer.on_holiday == "closed":
                with_h = ()
            elif holiday and layer.on_holiday == "as_sunday":
                with_h = _intersect_minutes(with_h, layer.week[6])
            else:
                with_h = _intersect_minutes(with_h, normal)
        return with_h, without_h

    def _zone_day(self, key: str, plan: _Plan, d: date) -> tuple[_Intervals, _Intervals]:
        """UTC instants whose wall time in `key` falls in the allowed minutes of date `d`.

        Exact across DST: the day is split into pieces of constant offset; in each piece the
        wall clock is UTC + offset, so a wall range maps to one UTC range. Wall times skipped
        by spring-forward never occur; repeated ones after fall-back are allowed twice.
        """
        zone = self.zone(key)
        assert zone is not None
        ranges = self.local_ranges(plan, d)
        lo = _wall_epoch(d) - _MAX_EAST
        hi = _wall_epoch(d + timedelta(days=1)) + _MAX_WEST
        pieces = _offset_pieces(zone, lo, hi)
        out: list[_Intervals] = []
        for minute_ranges in ranges:
            parts: list[tuple[float, float]] = []
            for a, b, offset in pieces:
                for start, end in minute_ranges:
                    s = max(a, _wall_epoch(d, start) - offset)
                    e = min(b, _wall_epoch(d, end) - offset)
                    if s < e:
                        parts.append((s, e))
            out.append(_union(parts))
        return out[0], out[1]

    def _allowed(self, zones: tuple[str, ...], plan: _Plan, first: date, days: int,
                 with_holidays: bool) -> _Intervals:
        """Instants allowed in every zone whose local date lies in first..first+days."""
        which = 0 if with_holidays else 1
        result: _Intervals | None = None
        for key in zones:
            parts: list[tuple[float, float]] = []
            for n in range(days + 1):
                parts.extend(self.zone_day(key, plan, first + timedelta(days=n))[which])
            mine = _union(parts)
            result = mine if result is None else _intersect(result, mine)
            if not result:
                break
        return result or ()

    def _next_allowed(self, zones: tuple[str, ...], plan: _Plan, now_ts: float,
                      with_holidays: bool) -> float | None:
        first = datetime.fromtimestamp(now_ts, UTC).date() - timedelta(days=1)
        for days in (_FIRST_LOOK_DAYS, HORIZON_DAYS):
            # past this instant some zone's local date is beyond the computed range
            limit = _wall_epoch(first + timedelta(days=days + 1)) - _MAX_EAST
            ivs = self.allowed(zones, plan, first, days, with_holidays)
            i = bisect.bisect_right(ivs, (now_ts, float("inf")))
            for start, end in ivs[max(0, i - 1):]:
                if end > now_ts and start < limit:
                    return max(start, now_ts)
                if start >= limit:
                    break
        return None

    def _decide(self, zones: tuple[str, ...], plan: _Plan,
                now_ts: float) -> tuple[bool, Reason | None, float | None]:
        nxt = self._next_allowed(zones, plan, now_ts, True)
        if nxt == now_ts:
            return True, None, nxt
        ignoring = self._next_allowed(zones, plan, now_ts, False)
        return False, "holiday" if ignoring == now_ts else "outside_hours", nxt

    def verdict(self, target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> Verdict:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        if target.client_opted_out:
            return Verdict(False, "opted_out_client", None, {}, target.zones)
        if target.number_opted_out:
            return Verdict(False, "opted_out_number", None, {}, target.zones)
        if target.e164 is None:
            return Verdict(False, "invalid_number", None, {}, ())
        zones = self.candidate_zones(target, policy.zone_mode)
        if zones is None:
            return Verdict(False, "unknown_zone", None, {}, _dedupe(
                ((target.stored_zone,) if target.stored_zone else ()) + target.zones))
        plan = _policy_plans(policy, target, self)
        allowed, reason, nxt = self.decide(zones, plan, now.timestamp())
        if nxt is None:
            return Verdict(allowed, reason, None, {}, zones)
        at = now.astimezone(UTC) if allowed else datetime.fromtimestamp(nxt, UTC)
        return Verdict(allowed, reason, at, dict(self.local_times(zones, at)), zones)

    def _local_times(self, zones: tuple[str, ...], at: datetime) -> dict[str, datetime]:
        return {z: at.astimezone(self.zone(z)) for z in zones}

    def candidate_zones(self, target: OutboundTarget, mode: str) -> tuple[str, ...] | None:
        """Stored zone + the number's zones; None (fail closed) when any is unusable."""
        stored = target.stored_zone
        if stored is not None and self.zone(stored) is None:
            return None  # a zone on the card we cannot load is a data error: do not guess
        if stored is not None and mode == "stored_zone_decides":
            return (stored,)
        number_zones = tuple(z for z in target.zones if self.zone(z) is not None)
        if stored is None and (not number_zones or len(number_zones) < len(target.zones)):
            return None
        return _dedupe(((stored,) if stored else ()) + number_zones)


def _dedupe(zones: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(zones))


def _offset_pieces(zone: ZoneInfo, lo: float, hi: float) -> list[tuple[float, float, float]]:
    """[lo, hi) split where the zone's UTC offset changes: (start, end, offset seconds)."""
    def offset(ts: float) -> float:
        off = datetime.fromtimestamp(ts, zone).utcoffset()
        return off.total_seconds() if off is not None else 0.0

    pieces: list[tuple[float, float, float]] = []
    start, off_start = lo, offset(lo)
    step = 6 * 3600.0  # zones change offset at most once in a few hours
    probe = start
    while probe < hi:
        nxt = min(probe + step, hi)
        off_next = offset(nxt) if nxt < hi else offset(hi - 1)
        if off_next != off_start:
            a, b = probe, nxt  # the change lies in (a, b]: bisect to the second
            while b - a > 1:
                mid = (a + b) // 2
                if offset(mid) == off_start:
                    a = mid
                else:
                    b = mid
            pieces.append((start, b, off_start))
            start, off_start = b, offset(b)
            probe = b
            continue
        probe = nxt
    pieces.append((start, hi, off_start))
    return pieces


# --- per-policy plan cache: the policy object is pinned so its id cannot be reused -----------

_PLANS: OrderedDict[int, tuple[OutboundPolicy, dict[tuple[object, ...], _Plan]]] = OrderedDict()
_PLANS_KEEP = 16
_PLANS_LOCK = threading.Lock()


def _policy_plans(policy: OutboundPolicy, target: OutboundTarget, engine: _Engine) -> _Plan:
    if engine is not _CACHED:
        return _plan(policy, target)
    key = (target.country, target.subdivision, target.purpose, target.convenient)
    entry = _PLANS.get(id(policy))
    if entry is not None and entry[0] is policy:
        plan = entry[1].get(key)
        if plan is not None:
            return plan
    plan = _plan(policy, target)
    with _PLANS_LOCK:
        entry = _PLANS.get(id(policy))
        if entry is None or entry[0] is not policy:
            entry = _PLANS[id(policy)] = (policy, {})
            while len(_PLANS) > _PLANS_KEEP:
                _PLANS.popitem(last=False)
        entry[1][key] = plan
    return plan


_CACHED = _Engine()


def outbound_verdict(target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> Verdict:
    """May we dial `target` at `now`? Memoised; safe to call for every dial and every row."""
    return _CACHED.verdict(target, policy, now)


def reference_verdict(target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> Verdict:
    """The same decision with empty caches: the per-number baseline, and a cross-check."""
    return _Engine().verdict(target, policy, now)


def clear_caches() -> None:
    """Forget memoised results (tests; or after editing the holidays package's data)."""
    global _CACHED
    _CACHED = _Engine()
    _PLANS.clear()
