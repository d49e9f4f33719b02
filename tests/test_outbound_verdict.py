"""The outbound guard: opt-outs always win, every candidate zone must be inside its window,
and next_allowed_at is the first allowed instant, across DST changes and multi-zone numbers.

The properties compare the guard against `_allowed_by_the_book`, a deliberately plain,
pointwise reading of the rules (one instant, each zone's wall clock, the holiday calendar).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing_rules.outbound import (
    WEEKDAYS,
    ConvenientWindow,
    OutboundPolicy,
    OutboundTarget,
    PurposeRule,
    Span,
    Window,
    outbound_verdict,
    reference_verdict,
)
from telephony import numbers

WIDE_CALLBACK = PurposeRule(window=Window(hours=(Span(open="07:00", close="22:00"),),
                                          on_holiday="open", source="test"))
POLICY = OutboundPolicy(purposes={"requested_callback": WIDE_CALLBACK})
STORED_DECIDES = OutboundPolicy(zone_mode="stored_zone_decides",
                                purposes={"requested_callback": WIDE_CALLBACK})
FEW = settings(max_examples=200, deadline=None)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- a plain reading of the rules, one instant at a time -------------------------------------


def _minute(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def _window_allows(window: Window, local: datetime, country: str | None, sub: str | None,
                   ignore_holidays: bool = False) -> bool:
    day = local.date()
    cal = _calendar(country, sub, day.year)
    holiday = (day in cal or day in window.extra_holidays) and not ignore_holidays
    weekday = WEEKDAYS[day.weekday()]
    if holiday and window.on_holiday == "closed":
        return False
    if holiday and window.on_holiday == "as_sunday":
        weekday = "sun"
    minute = local.hour * 60 + local.minute
    return any(weekday in s.days and _minute(s.open) <= minute < _minute(s.close)
               for s in window.hours)


@cache
def _calendar(country: str | None, sub: str | None, year: int) -> frozenset[date]:
    if not country:
        return frozenset()
    try:
        return frozenset(holidays.country_holidays(country, subdiv=sub, years=year))
    except NotImplementedError:
        return frozenset(holidays.country_holidays(country, years=year))


def _client_allows(w: ConvenientWindow, local: datetime) -> bool:
    """The window belongs to the day it starts on: after midnight it is the previous evening's."""
    minute, start, end = local.hour * 60 + local.minute, _minute(w.start), _minute(w.end)
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    if start == end or start < end:
        inside, day = start == end or start <= minute < end, today
    elif minute >= start:
        inside, day = True, today
    else:
        inside, day = minute < end, yesterday
    return inside and (not w.days or day in w.days)


def _windows(policy: OutboundPolicy, t: OutboundTarget) -> list[Window]:
    rule = policy.purposes.get(t.purpose)
    if rule and (t.convenient is not None or not rule.needs_client_window):
        return [rule.window]
    found = [policy.countries.get(t.country or "", policy.default)]
    region = f"{t.country}-{t.subdivision}"
    if region in policy.regions:
        found.append(policy.regions[region])
    return found


def _allowed_by_the_book(policy: OutboundPolicy, t: OutboundTarget, at: datetime) -> bool:
    zones = _zones(policy, t)
    assert zones
    for zone in zones:
        local = at.astimezone(ZoneInfo(zone))
        if not all(_window_allows(w, local, t.country, t.subdivision)
                   for w in _windows(policy, t)):
            return False
        if t.convenient is not None and not _client_allows(t.convenient, local):
            return False
    return True


def _zones(policy: OutboundPolicy, t: OutboundTarget) -> tuple[str, ...]:
    if t.stored_zone and policy.zone_mode == "stored_zone_decides":
        return (t.stored_zone,)
    return tuple(dict.fromkeys(((t.stored_zone,) if t.stored_zone else ()) + t.zones))


# --- strategies -------------------------------------------------------------------------------

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "America/Phoenix", "America/St_Johns", "Europe/Tallinn", "Europe/Warsaw",
         "Europe/Kaliningrad", "Europe/Moscow", "Asia/Kamchatka", "Australia/Sydney",
         "Australia/Lord_Howe", "Asia/Kolkata"]
PLACES = [("US", None), ("US", "TX"), ("US", "FL"), ("US", "LA"), ("US", "UT"), ("CA", "ON"),
          ("RU", None), ("EE", None), ("PL", None), ("AU", None), ("GB", None), ("FR", None)]
HHMM = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))

instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(UTC))
convenient = st.none() | st.builds(
    ConvenientWindow, start=HHMM, end=HHMM,
    days=st.none() | st.lists(st.sampled_from(WEEKDAYS), min_size=1, unique=True).map(tuple))


@st.composite
def targets(draw: st.DrawFn, *, opted_out: bool | None = False) -> OutboundTarget:
    country, sub = draw(st.sampled_from(PLACES))
    zones = tuple(draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True)))
    client_out = number_out = False
    if opted_out:
        client_out, number_out = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return OutboundTarget(
        e164="+10000000000", country=country, subdivision=sub, zones=zones,
        stored_zone=draw(st.none() | st.sampled_from(ZONES)),
        client_opted_out=client_out, number_opted_out=number_out,
        convenient=draw(convenient),
        purpose=draw(st.sampled_from(["default", "requested_callback", "collection"])),
    )


policies = st.sampled_from([POLICY, STORED_DECIDES])


# --- properties -------------------------------------------------------------------------------


@FEW
@given(targets(opted_out=True), policies, instants)
def test_no_opted_out_number_or_client_is_ever_allowed(
        target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> None:
    verdict = outbound_verdict(target, policy, now)
    assert not verdict.allowed
    assert verdict.reason == ("opted_out_client" if target.client_opted_out else "opted_out_number")
    assert verdict.next_allowed_at is None


@FEW
@given(targets(), policies, instants)
def test_allowed_exactly_when_every_candidate_zone_is_inside_its_window(
        target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> None:
    verdict = outbound_verdict(target, policy, now)
    assert verdict.allowed == _allowed_by_the_book(policy, target, now)
    assert set(verdict.zones) == set(_zones(policy, target))
    if not verdict.allowed:
        assert verdict.reason in ("outside_hours", "holiday")


@FEW
@given(targets(), policies, instants)
def test_next_allowed_at_is_allowed_and_nothing_earlier_is(
        target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> None:
    verdict = outbound_verdict(target, policy, now)
    nxt = verdict.next_allowed_at
    if nxt is None:  # a window that never opens (e.g. Kamchatka and Chicago, 08-18 weekdays)
        for step in range(14 * 96):
            assert not _allowed_by_the_book(policy, target, now + timedelta(minutes=15 * step))
        return
    assert nxt >= now and nxt.tzinfo == UTC
    assert _allowed_by_the_book(policy, target, nxt)
    assert outbound_verdict(target, policy, nxt).allowed
    if verdict.allowed:
        assert nxt == now
        return
    if nxt - timedelta(minutes=1) > now:
        assert not _allowed_by_the_book(policy, target, nxt - timedelta(minutes=1))
    t = now
    while t < min(nxt, now + timedelta(days=10)):
        assert not _allowed_by_the_book(policy, target, t)
        t += timedelta(minutes=15)
    for zone, local in verdict.next_allowed_local.items():
        assert local == nxt and local.tzinfo == ZoneInfo(zone)


@FEW
@given(targets(opted_out=None), policies, instants)
def test_cached_and_reference_verdicts_agree(
        target: OutboundTarget, policy: OutboundPolicy, now: datetime) -> None:
    assert outbound_verdict(target, policy, now) == reference_verdict(target, policy, now)


# --- DST: United States -----------------------------------------------------------------------

NY = OutboundTarget(e164="+12127365000", country="US", subdivision="NY",
                    zones=("America/New_York",))


def test_us_spring_forward_opens_at_eight_daylight_time() -> None:
    # Saturday 21:00 EST is closing time; Sunday 2026-03-08 the clocks go 02:00 -> 03:00
    verdict = outbound_verdict(NY, POLICY, utc(2026, 3, 8, 2, 0))
    assert verdict.reason == "outside_hours"
    assert verdict.next_allowed_at == utc(2026, 3, 8, 12, 0)  # 08:00 EDT, not 13:00 UTC
    assert verdict.next_allowed_local["America/New_York"].hour == 8
    assert not outbound_verdict(NY, POLICY, utc(2026, 3, 8, 11, 59)).allowed
    assert outbound_verdict(NY, POLICY, utc(2026, 3, 9, 0, 59)).allowed  # 20:59 EDT
    assert not outbound_verdict(NY, POLICY, utc(2026, 3, 9, 1, 0)).allowed  # 21:00 EDT


def test_us_fall_back_opens_at_eight_standard_time() -> None:
    verdict = outbound_verdict(NY, POLICY, utc(2026, 11, 1, 1, 30))  # Sat 21:30 EDT
    assert verdict.next_allowed_at == utc(2026, 11, 1, 13, 0)  # 08:00 EST
    assert outbound_verdict(NY, POLICY, utc(2026, 11, 2, 1, 59)).allowed  # Sun 20:59 EST
    assert not outbound_verdict(NY, POLICY, utc(2026, 11, 2, 2, 0)).allowed


NIGHT = OutboundPolicy(shipped_defaults=False,
                       default=Window(hours=(Span(open="01:30", close="02:30"),), on_holiday="open"))


def test_a_window_inside_the_skipped_hour_is_only_its_real_half_hour() -> None:
    # 2026-03-08 in New York: 01:30-02:00 EST exists, 02:00-02:30 does not
    assert outbound_verdict(NY, NIGHT, utc(2026, 3, 8, 6, 45)).allowed  # 01:45 EST
    verdict = outbound_verdict(NY, NIGHT, utc(2026, 3, 8, 7, 0))  # 03:00 EDT
    assert not verdict.allowed
    assert verdict.next_allowed_at == utc(2026, 3, 9, 5, 30)  # Monday 01:30 EDT


def test_a_window_inside_the_repeated_hour_is_open_twice() -> None:
    # 2026-11-01: 01:30-02:00 EDT (05:30-06:00 UTC), then 01:30-02:30 EST (06:30-07:30 UTC)
    assert outbound_verdict(NY, NIGHT, utc(2026, 11, 1, 5, 45)).allowed
    gap = outbound_verdict(NY, NIGHT, utc(2026, 11, 1, 6, 10))  # 01:10 EST
    assert gap.next_allowed_at == utc(2026, 11, 1, 6, 30)
    assert outbound_verdict(NY, NIGHT, utc(2026, 11, 1, 7, 15)).allowed  # 02:15 EST
    assert not outbound_verdict(NY, NIGHT, utc(2026, 11, 1, 7, 30)).allowed


# --- DST: European Union ----------------------------------------------------------------------

TALLINN = OutboundTarget(e164="+3725123456", country="EE", zones=("Europe/Tallinn",))
WARSAW = OutboundTarget(e164="+48221234567", country="PL", zones=("Europe/Warsaw",))


def test_eu_spring_forward_weekend_2026_03_29() -> None:
    # Friday after hours -> Monday 08:00 summer time
    ee = outbound_verdict(TALLINN, POLICY, utc(2026, 3, 27, 16, 0))  # Fri 18:00 EET
    assert ee.next_allowed_at == utc(2026, 3, 30, 5, 0)  # Mon 08:00 EEST
    pl = outbound_verdict(WARSAW, POLICY, utc(2026, 3, 27, 19, 0))  # Fri 20:00 CET
    assert pl.next_allowed_at == utc(2026, 3, 30, 6, 0)  # Mon 08:00 CEST


def test_eu_fall_back_weekend_2026_10_25() -> None:
    ee = outbound_verdict(TALLINN, POLICY, utc(2026, 10, 23, 15, 0))  # Fri 18:00 EEST
    assert ee.next_allowed_at == utc(2026, 10, 26, 6, 0)  # Mon 08:00 EET
    pl = outbound_verdict(WARSAW, POLICY, utc(2026, 10, 23, 18, 0))  # Fri 20:00 CEST
    assert pl.next_allowed_at == utc(2026, 10, 26, 7, 0)  # Mon 08:00 CET


def test_estonian_number_with_a_warsaw_address_needs_both_clocks() -> None:
    target = OutboundTarget(e164="+3725123456", country="EE", zones=("Europe/Tallinn",),
                            stored_zone="Europe/Warsaw")
    verdict = outbound_verdict(target, POLICY, utc(2026, 11, 24, 6, 30))  # 08:30 Tallinn
    assert not verdict.allowed
    assert verdict.next_allowed_at == utc(2026, 11, 24, 7, 0)  # 08:00 Warsaw
    assert verdict.zones == ("Europe/Warsaw", "Europe/Tallinn")
    decides = outbound_verdict(target, STORED_DECIDES, utc(2026, 11, 24, 16, 30))
    assert decides.allowed and decides.zones == ("Europe/Warsaw",)  # 17:30 Warsaw


# --- multi-zone numbers -----------------------------------------------------------------------


def test_florida_panhandle_number_is_bound_by_both_clocks() -> None:
    target = numbers.outbound_target("+18508563658", None)
    assert target.zones == ("America/Chicago", "America/New_York")
    morning = outbound_verdict(target, POLICY, utc(2026, 11, 24, 13, 30))  # 08:30 ET, 07:30 CT
    assert not morning.allowed and morning.next_allowed_at == utc(2026, 11, 24, 14, 0)
    assert morning.next_allowed_local["America/New_York"].hour == 9
    assert outbound_verdict(target, POLICY, utc(2026, 11, 25, 0, 59)).allowed  # 19:59 ET
    assert not outbound_verdict(target, POLICY, utc(2026, 11, 25, 1, 0)).allowed  # FL: 20:00


def test_russian_mobile_is_callable_only_where_all_eleven_zones_overlap() -> None:
    target = numbers.outbound_target("+79161234567", None)
    verdict = outbound_verdict(target, POLICY, utc(2026, 11, 24, 12, 0))  # Tuesday
    assert not verdict.allowed  # 24:00 in Kamchatka
    assert verdict.next_allowed_at == utc(2026, 11, 25, 6, 0)  # 08:00 Kaliningrad, 18:00 Kamchatka
    with_address = numbers.outbound_target(
        "+79161234567", numbers.CardFacts(stored_zone="Europe/Moscow"))
    assert outbound_verdict(with_address, STORED_DECIDES, utc(2026, 11, 24, 12, 0)).allowed


# --- unknown zones ----------------------------------------------------------------------------


@pytest.mark.parametrize("zones", [(), ("Etc/Unknown",), ("Mars/Olympus",),
                                   ("Europe/Tallinn", "Etc/Unknown")])
def test_unknown_zone_is_blocked_without_a_stored_zone(zones: tuple[str, ...]) -> None:
    target = OutboundTarget(e164="+80012345678", country=None, zones=zones)
    verdict = outbound_verdict(target, POLICY, utc(2026, 11, 24, 12, 0))
    assert (verdict.allowed, verdict.reason, verdict.next_allowed_at) == (False, "unknown_zone", None)


def test_stored_zone_rescues_a_number_of_unknown_zone() -> None:
    target = OutboundTarget(e164="+80012345678", zones=("Etc/Unknown",),
                            stored_zone="Europe/Tallinn")
    verdict = outbound_verdict(target, POLICY, utc(2026, 11, 24, 12, 0))  # Tue 14:00 Tallinn
    assert verdict.allowed and verdict.zones == ("Europe/Tallinn",)


def test_unloadable_stored_zone_fails_closed() -> None:
    target = OutboundTarget(e164="+3725123456", country="EE", zones=("Europe/Tallinn",),
                            stored_zone="Not/AZone")
    assert outbound_verdict(target, POLICY, utc(2026, 11, 24, 12, 0)).reason == "unknown_zone"


def test_invalid_number() -> None:
    verdict = outbound_verdict(OutboundTarget(e164=None), POLICY, utc(2026, 11, 24, 12, 0))
    assert (verdict.allowed, verdict.reason, verdict.next_allowed_at) == (False, "invalid_number", None)


# --- holidays, regions, purposes --------------------------------------------------------------

UTAH = OutboundTarget(e164="+18015550123", country="US", subdivision="UT", zones=("America/Denver",))


def test_utah_independence_day_is_a_holiday_and_sunday_is_closed() -> None:
    verdict = outbound_verdict(UTAH, POLICY, utc(2026, 7, 4, 16, 0))  # Sat 10:00 MDT
    assert verdict.reason == "holiday"
    assert verdict.next_allowed_at == utc(2026, 7, 6, 14, 0)  # Mon 08:00 MDT


def test_texas_sunday_opens_at_noon() -> None:
    tx = OutboundTarget(e164="+15125550123", country="US", subdivision="TX", zones=("America/Chicago",))
    verdict = outbound_verdict(tx, POLICY, utc(2026, 11, 22, 16, 0))  # Sun 10:00 CST
    assert verdict.next_allowed_at == utc(2026, 11, 22, 18, 0)


def test_russian_non_working_holiday_uses_weekend_hours() -> None:
    moscow = OutboundTarget(e164="+74951234567", country="RU", zones=("Europe/Moscow",))
    verdict = outbound_verdict(moscow, POLICY, utc(2027, 1, 4, 5, 30))  # Mon 08:30, New Year
    assert verdict.reason == "holiday"
    assert verdict.next_allowed_at == utc(2027, 1, 4, 6, 0)  # 09:00 MSK


def test_extra_holiday_dates_from_the_rules() -> None:
    policy = OutboundPolicy(regions={"US-LA": Window(
        hours=(Span(days=("mon", "tue", "wed", "thu", "fri", "sat"), open="08:00", close="20:00"),),
        on_holiday="closed", extra_holidays=(date(2026, 11, 24),), source="LPSC")})
    la = OutboundTarget(e164="+15045550123", country="US", subdivision="LA", zones=("America/Chicago",))
    assert outbound_verdict(la, policy, utc(2026, 11, 24, 18, 0)).reason == "holiday"
    assert outbound_verdict(la, POLICY, utc(2026, 11, 24, 18, 0)).allowed


def test_requested_callback_may_use_the_clients_time_inside_the_wider_window() -> None:
    late = ConvenientWindow(start="21:00", end="22:00")
    target = OutboundTarget(e164="+12127365000", country="US", subdivision="NY",
                            zones=("America/New_York",), convenient=late, purpose="requested_callback")
    at = utc(2026, 11, 25, 2, 30)  # 21:30 EST
    assert outbound_verdict(target, POLICY, at).allowed
    plain = OutboundTarget(e164="+12127365000", country="US", subdivision="NY",
                           zones=("America/New_York",), convenient=late)
    assert outbound_verdict(plain, POLICY, at).reason == "outside_hours"
    no_time = OutboundTarget(e164="+12127365000", country="US", subdivision="NY",
                             zones=("America/New_York",), purpose="requested_callback")
    assert not outbound_verdict(no_time, POLICY, at).allowed
    opted = OutboundTarget(e164="+12127365000", country="US", zones=("America/New_York",),
                           convenient=late, purpose="requested_callback", number_opted_out=True)
    assert outbound_verdict(opted, POLICY, at).reason == "opted_out_number"


def test_client_window_narrows_the_legal_one() -> None:
    target = OutboundTarget(e164="+3725123456", country="EE", zones=("Europe/Tallinn",),
                            convenient=ConvenientWindow(start="16:00", end="17:00", days=("fri",)))
    verdict = outbound_verdict(target, POLICY, utc(2026, 11, 24, 12, 0))  # Tue 14:00
    assert verdict.next_allowed_at == utc(2026, 11, 27, 14, 0)  # Fri 16:00


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        outbound_verdict(NY, POLICY, datetime(2026, 11, 24, 12, 0))


def test_policy_merges_over_the_shipped_table() -> None:
    policy = OutboundPolicy(countries={"DE": Window(hours=(Span(open="09:00", close="19:00"),))})
    assert "DE" in policy.countries and "US" in policy.countries and "US-FL" in policy.regions
    assert OutboundPolicy.model_validate(policy.model_dump()) == policy
    assert OutboundPolicy(shipped_defaults=False).countries == {}
    with pytest.raises(ValueError):
        Span(open="20:00", close="08:00")
    with pytest.raises(ValueError):
        OutboundPolicy(regions={"Florida": Window(hours=())})
