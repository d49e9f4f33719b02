"""Numbers: E.164 normalisation, zones with the correction table, regions for the state rules."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import holidays
import phonenumbers
import pytest
from phonenumbers import timezone as pn_timezone

from routing_rules.outbound import ConvenientWindow
from telephony import numbers
from telephony.numbers import CardFacts

# one valid number under every row of telephony/data/zone_corrections.csv
CORRECTION_SAMPLES = {
    "+1250": "+12504363999",
    "+1236": "+12368539288",
    "+1672": "+16722965372",
    "+1778": "+17782228582",
    "+1270": "+12705995755",
    "+1364": "+13649628346",
    "+1308": "+13083785669",
    "+1418": "+14188295884",
    "+1581": "+15817739348",
    "+1367": "+13677929268",
    "+1423": "+14234452558",
    "+1448": "+14487796284",
    "+1458": "+14585829758",
    "+1541": "+15419787279",
    "+1620": "+16202544362",
    "+1785": "+17853329265",
    "+1807": "+18076347634",
    "+1812": "+18124646697",
    "+1930": "+19309932687",
    "+1850": "+18508563658",
    "+1867": "+18672528424",
    "+1906": "+19069859528",
    "+1915": "+19157826452",
    "+1928": "+19286336648",
    "+370": "+37064225942",
    "+371": "+37124574785",
    "+372": "+3726387953",
    "+7401": "+74012344456",
    "+7845": "+78457677736",
    "+79": "+79594372838",
}
SOURCES = ("NANPA area code database", "IANA zone1970.tab", "Russian numbering registry (Rossvyaz)")


def test_every_correction_row_has_a_test_number() -> None:
    assert set(CORRECTION_SAMPLES) == set(numbers.corrections())


@pytest.mark.parametrize("prefix", sorted(numbers.corrections()))
def test_correction_row_overrides_phonenumbers(prefix: str) -> None:
    row = numbers.corrections()[prefix]
    sample = CORRECTION_SAMPLES[prefix]
    assert sample.startswith(prefix)
    assert numbers.normalize(sample, "") == sample, "the sample must be a valid number"
    assert numbers.zones_for(sample) == row.zones
    for zone in row.zones:
        ZoneInfo(zone)  # every zone loads with the shipped tzdata
    assert row.note
    assert all(part.strip().startswith(SOURCES) for part in row.source.split(";"))


@pytest.mark.parametrize(("number", "zones"), [
    ("+74012344456", ("Europe/Kaliningrad",)),  # phonenumbers: Europe/Bucharest
    ("+78452123456", ("Europe/Saratov",)),  # phonenumbers: Europe/Moscow
    ("+3725123456", ("Europe/Tallinn",)),  # phonenumbers: Europe/Bucharest
    ("+3726387953", ("Europe/Tallinn",)),
    ("+19157826452", ("America/Denver",)),  # El Paso
    ("+15419787279", ("America/Los_Angeles", "America/Boise")),
    ("+14585829758", ("America/Los_Angeles", "America/Boise")),
    ("+12705995755", ("America/Chicago", "America/New_York")),
    ("+13649628346", ("America/Chicago", "America/New_York")),
    ("+18508563658", ("America/Chicago", "America/New_York")),
])
def test_compliance_cases(number: str, zones: tuple[str, ...]) -> None:
    assert numbers.zones_for(number) == zones


def test_numbers_without_a_row_keep_phonenumbers_zones() -> None:
    moscow = phonenumbers.parse("+74951234567")
    assert numbers.zones_for("+74951234567") == tuple(pn_timezone.time_zones_for_number(moscow))
    assert numbers.zones_for("+12127365000") == ("America/New_York",)


def test_longest_prefix_wins() -> None:
    assert numbers.corrected_zones("+74012000000", ("X",)) == ("Europe/Kaliningrad",)
    assert numbers.corrected_zones("+79161234567", ("X",))[0] == "Europe/Kaliningrad"
    assert numbers.corrected_zones("+74950000000", ("Europe/Moscow",)) == ("Europe/Moscow",)


def test_russian_mobile_zones_are_russian_only() -> None:
    zones = numbers.zones_for("+79161234567")
    assert "Europe/Bucharest" not in zones and "Asia/Almaty" not in zones
    assert zones[0] == "Europe/Kaliningrad" and zones[-1] == "Asia/Kamchatka"


def test_unknown_zone_is_dropped_and_invalid_has_no_zones() -> None:
    assert numbers.zones_for("+999123") == ()
    assert all(z != "Etc/Unknown" for z in numbers.zones_for("+80012345678"))


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+372 5123 4567", "EE", "+37251234567"),
    ("5123 4567", "EE", "+37251234567"),
    ("00372 5123 4567", "EE", "+37251234567"),
    ("+3725123-4567", "EE", "+37251234567"),
    ("  +372 (5) 123 4567 ", "EE", "+37251234567"),
    ("tel:+37251234567", "EE", "+37251234567"),
    ("+1 (212) 736-5000", "EE", "+12127365000"),
    ("1-212-736-5000", "US", "+12127365000"),
    ("(212) 736-5000", "US", "+12127365000"),
    ("212.736.5000", "US", "+12127365000"),
    ("+7 916 123-45-67", "EE", "+79161234567"),
    ("8 (495) 123-45-67", "RU", "+74951234567"),
    ("8 4012 34-44-56", "RU", "+74012344456"),
    ("0048 22 123 45 67", "EE", "+48221234567"),
    ("22 123 45 67", "PL", "+48221234567"),
    ("+44 (0)20 7946 0018", "EE", "+442079460018"),
    ("020 7946 0018", "GB", "+442079460018"),
    ("+61 412 345 678", "EE", "+61412345678"),
    ("0412 345 678", "AU", "+61412345678"),
    ("+12127365000", "", "+12127365000"),
])
def test_normalize_formats(raw: str, region: str, expected: str) -> None:
    assert numbers.normalize(raw, region) == expected
    assert numbers.caller_of(raw, region) == (expected, numbers.country_of(expected))  # one parse, same answer


@pytest.mark.parametrize("raw", [
    None, "", "   ", "anonymous", "Anonymous", "unknown", "UNKNOWN", "restricted", "private",
    "client:alice", "sip:alice@example.com", "12", "+999123", "+1 555", "not a number",
    "5123 4567 8901 2345", "+372 12",
])
def test_normalize_rejects_what_cannot_be_dialled(raw: str | None) -> None:
    assert numbers.normalize(raw, "EE") is None
    assert numbers.caller_of(raw, "EE") == (None, None)


def test_caller_of_keeps_only_short_texts() -> None:
    short, long = "+372 5123 4567", "+372 5123 4567" + " " * 40  # a text to read once, not to keep
    numbers.caller_of(short, "EE")
    kept = numbers._kept_caller.cache_info()
    assert numbers.caller_of(short, "EE") == ("+37251234567", "EE")
    assert numbers._kept_caller.cache_info().hits == kept.hits + 1  # the second read is the kept one
    assert numbers.caller_of(long, "EE") == ("+37251234567", "EE")
    assert numbers._kept_caller.cache_info().currsize == kept.currsize  # not kept


@pytest.mark.parametrize(("number", "expected"), [
    ("+13055550123", ("US", "FL")),
    ("+15125550123", ("US", "TX")),
    ("+14055550123", ("US", "OK")),
    ("+12065550123", ("US", "WA")),
    ("+14105550123", ("US", "MD")),
    ("+15045550123", ("US", "LA")),
    ("+16015550123", ("US", "MS")),
    ("+18015550123", ("US", "UT")),
    ("+12055550123", ("US", "AL")),
    ("+12155550123", ("US", "PA")),
    ("+12127365000", ("US", "NY")),
    ("+14165550123", ("CA", "ON")),
    ("+16045550123", ("CA", "BC")),
    ("+19025550123", ("CA", None)),  # Nova Scotia and PEI share 902
    ("+37251234567", ("EE", None)),
    ("+79161234567", ("RU", None)),
    ("+999123", (None, None)),
])
def test_region_of(number: str, expected: tuple[str | None, str | None]) -> None:
    assert numbers.region_of(number) == expected
    assert numbers.country_of(number) == expected[0]


def test_every_nanp_subdivision_is_known_to_the_holidays_package() -> None:
    pairs = {v for v in numbers.nanp_regions().values() if v[1] is not None}
    assert len(pairs) >= 59  # 50 states, DC, 8 provinces (902, 782 and 867 span several)
    for country, subdivision in pairs:
        holidays.country_holidays(country, subdiv=subdivision, years=2026)


def test_outbound_target_carries_the_card() -> None:
    window = ConvenientWindow(start="10:00", end="12:00", days=("mon",))
    card = CardFacts(stored_zone="America/Chicago", opted_out=True, number_opted_out=False,
                     window=window)
    target = numbers.outbound_target("+1 850 856 3658", card, "requested_callback")
    assert target.e164 == "+18508563658"
    assert (target.country, target.subdivision) == ("US", "FL")
    assert target.zones == ("America/Chicago", "America/New_York")
    assert target.stored_zone == "America/Chicago" and target.client_opted_out
    assert target.convenient == window and target.purpose == "requested_callback"


def test_outbound_target_for_an_invalid_number() -> None:
    target = numbers.outbound_target("anonymous", None, None)
    assert target.e164 is None and target.zones == () and target.purpose == "default"
