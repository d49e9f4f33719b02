"""A client's convenient window that wraps past midnight belongs to the evening it starts on.

"Fri 22:00-02:00" is Friday 22:00 to Saturday 02:00: Saturday 01:00 is inside it (Friday
night), Friday 01:00 is not (that is Thursday night). A purpose window open all day keeps the
legal windows out of the way, so only the client's own window decides.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from routing_rules.outbound import (
    ConvenientWindow,
    OutboundPolicy,
    OutboundTarget,
    PurposeRule,
    Span,
    Window,
    clear_caches,
    outbound_verdict,
    reference_verdict,
)

NEW_YORK = ZoneInfo("America/New_York")
ALL_DAY = PurposeRule(window=Window(hours=(Span(open="00:00", close="24:00"),), on_holiday="open",
                                    source="test: open all day"))
POLICY = OutboundPolicy(purposes={"requested_callback": ALL_DAY})


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    """A New York wall time in November 2026 (Fri 20, Sat 21, Sun 22, Mon 23, ... Fri 27)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=NEW_YORK)


def client(start: str, end: str, *days: str) -> OutboundTarget:
    window = ConvenientWindow(start=start, end=end, days=days or None)  # type: ignore[arg-type]
    return OutboundTarget(e164="+12127365000", country="US", subdivision="NY",
                          zones=("America/New_York",), convenient=window,
                          purpose="requested_callback")


FRIDAY_NIGHT = client("22:00", "02:00", "fri")


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def test_saturday_one_am_is_friday_night_and_allowed() -> None:
    verdict = outbound_verdict(FRIDAY_NIGHT, POLICY, ny(21, 1))
    assert verdict.allowed and verdict.reason is None


def test_friday_one_am_is_thursday_night_and_blocked_until_friday_22() -> None:
    verdict = outbound_verdict(FRIDAY_NIGHT, POLICY, ny(20, 1))
    assert not verdict.allowed and verdict.reason == "outside_hours"
    assert verdict.next_allowed_at == ny(20, 22)
    assert verdict.next_allowed_local["America/New_York"] == ny(20, 22)


def test_friday_late_evening_is_allowed_and_the_window_closes_at_two_on_saturday() -> None:
    assert outbound_verdict(FRIDAY_NIGHT, POLICY, ny(20, 23, 59)).allowed
    assert outbound_verdict(FRIDAY_NIGHT, POLICY, ny(21, 1, 59)).allowed
    closed = outbound_verdict(FRIDAY_NIGHT, POLICY, ny(21, 2))
    assert not closed.allowed
    assert closed.next_allowed_at == ny(27, 22)  # next Friday evening


def test_thursday_evening_is_blocked_until_friday_22() -> None:
    verdict = outbound_verdict(FRIDAY_NIGHT, POLICY, ny(26, 23))
    assert not verdict.allowed
    assert verdict.next_allowed_at == ny(27, 22)


def test_sunday_night_window_runs_into_monday_across_the_week_boundary() -> None:
    sunday_night = client("23:00", "01:00", "sun")
    assert outbound_verdict(sunday_night, POLICY, ny(23, 0, 30)).allowed  # Mon 00:30
    blocked = outbound_verdict(sunday_night, POLICY, ny(22, 0, 30))  # Sun 00:30: Saturday night
    assert not blocked.allowed
    assert blocked.next_allowed_at == ny(22, 23)


def test_two_listed_evenings_each_carry_their_own_small_hours() -> None:
    target = client("22:00", "02:00", "fri", "sat")
    assert outbound_verdict(target, POLICY, ny(21, 1)).allowed  # Sat 01:00: Friday night
    assert outbound_verdict(target, POLICY, ny(22, 1)).allowed  # Sun 01:00: Saturday night
    assert not outbound_verdict(target, POLICY, ny(20, 1)).allowed  # Fri 01:00: Thursday night
    assert not outbound_verdict(target, POLICY, ny(23, 1)).allowed  # Mon 01:00: Sunday night


def test_a_window_ending_at_midnight_does_not_spill_into_the_next_day() -> None:
    target = client("22:00", "00:00", "fri")
    assert outbound_verdict(target, POLICY, ny(20, 23, 30)).allowed
    verdict = outbound_verdict(target, POLICY, ny(21, 0, 30))
    assert not verdict.allowed and verdict.next_allowed_at == ny(27, 22)


def test_without_days_the_wrapping_window_is_every_night() -> None:
    target = client("22:00", "02:00")
    for day in range(20, 28):
        assert outbound_verdict(target, POLICY, ny(day, 1)).allowed
        assert not outbound_verdict(target, POLICY, ny(day, 3)).allowed


@pytest.mark.parametrize("at", [ny(20, 1), ny(20, 22), ny(21, 1), ny(21, 2), ny(26, 23)])
def test_cached_and_reference_verdicts_agree_on_a_wrapping_window(at: datetime) -> None:
    assert outbound_verdict(FRIDAY_NIGHT, POLICY, at) == reference_verdict(FRIDAY_NIGHT, POLICY, at)
