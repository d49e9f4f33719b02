"""Phone numbers: E.164 normalisation, the number's zones, country and region.

phonenumbers' zone data is prefix based, dated and uses representative zones; the table
`data/zone_corrections.csv` overrides it under a prefix (longest prefix wins), each row
with its source. US/CA states come from `data/nanp_regions.csv` (area code -> subdivision),
because the holidays and the stricter state windows depend on them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol

import phonenumbers
from phonenumbers import PhoneNumber
from phonenumbers import timezone as pn_timezone

from routing_rules.outbound import ConvenientWindow, OutboundTarget

_TZ_PREFIX_DIGITS: int = getattr(pn_timezone, "TIMEZONE_LONGEST_PREFIX", 9)
UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers returns when it does not know
_NOT_A_NUMBER = {"anonymous", "unknown", "restricted", "private", "unavailable", "blocked", ""}
_NON_PHONE_SCHEMES = ("client:", "sip:", "sips:")


class CardLike(Protocol):
    """Anything carrying the card's facts (`recordings.card.OutboundFacts` does)."""

    @property
    def stored_zone(self) -> str | None: ...
    @property
    def opted_out(self) -> bool: ...
    @property
    def number_opted_out(self) -> bool: ...
    @property
    def window(self) -> ConvenientWindow | None: ...


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What the client card says about calling this person."""

    stored_zone: str | None = None
    opted_out: bool = False
    number_opted_out: bool = False
    window: ConvenientWindow | None = None


@dataclass(frozen=True, slots=True)
class Correction:
    prefix: str  # E.164 digits with '+'
    zones: tuple[str, ...]
    source: str
    note: str


def _data_lines(name: str) -> list[str]:
    text = resources.files("telephony.data").joinpath(name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def corrections() -> dict[str, Correction]:
    """The correction table, keyed by prefix ('+1850')."""
    out: dict[str, Correction] = {}
    for row in csv.DictReader(_data_lines("zone_corrections.csv")):
        prefix = row["prefix"].strip()
        if not prefix.startswith("+") or not prefix[1:].isdigit():
            raise ValueError(f"zone_corrections.csv: bad prefix {prefix!r}")
        out[prefix] = Correction(prefix, tuple(row["zones"].split()), row["source"], row["note"])
    return out


@lru_cache(maxsize=1)
def _correction_lengths() -> tuple[int, ...]:
    return tuple(sorted({len(p) for p in corrections()}, reverse=True))


def corrected_zones(e164: str, zones: tuple[str, ...]) -> tuple[str, ...]:
    """Apply the correction table (longest prefix wins) over phonenumbers' `zones`."""
    table = corrections()
    for n in _correction_lengths():
        row = table.get(e164[:n])
        if row is not None:
            return row.zones
    return zones


@lru_cache(maxsize=1)
def nanp_regions() -> dict[str, tuple[str, str | None]]:
    """NANP area code -> (country, subdivision or None)."""
    out: dict[str, tuple[str, str | None]] = {}
    for row in csv.DictReader(_data_lines("nanp_regions.csv")):
        out[row["npa"]] = (row["country"], row["subdivision"] or None)
    return out


# --- parsing -----------------------------------------------------------------------------


def parse(raw: str | None, default_region: str = "EE") -> PhoneNumber | None:
    """A valid parsed number, or None for anything that cannot be dialled."""
    number = parse_unchecked(raw, default_region)
    return number if number is not None and phonenumbers.is_valid_number(number) else None


def parse_unchecked(raw: str | None, default_region: str = "EE") -> PhoneNumber | None:
    """Parsed but not validated (validity costs as much as parsing: callers that also need
    the number's type get validity from it: valid <=> type is not UNKNOWN)."""
    if raw is None:
        return None
    text = raw.strip()
    low = text.lower()
    if low in _NOT_A_NUMBER or low.startswith(_NON_PHONE_SCHEMES):
        return None
    if low.startswith("tel:"):
        text = text[4:]
    try:
        return phonenumbers.parse(text, default_region.upper() if default_region else None)
    except phonenumbers.NumberParseException:
        return None


def e164_of(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize(raw: str | None, default_region: str = "EE") -> str | None:
    """E.164 ('+3725123456'), or None for invalid, anonymous, `client:` and SIP callers."""
    number = parse(raw, default_region)
    return e164_of(number) if number is not None else None


# --- zones and regions ------------------------------------------------------------------------


def zones_of(number: PhoneNumber) -> tuple[str, ...]:
    """Every zone of a parsed number: phonenumbers, then corrections; unknown dropped.

    Not cached: the per-number step of the naive pipeline, and of `zones_for`.
    """
    raw = tuple(pn_timezone.time_zones_for_number(number))
    zones = corrected_zones(e164_of(number), raw)
    return tuple(z for z in zones if z != UNKNOWN_ZONE)


@lru_cache(maxsize=65536)
def zones_for(e164: str) -> tuple[str, ...]:
    """Zones of an E.164 number; () for invalid or unknown."""
    number = parse(e164, "")
    return zones_of(number) if number is not None else ()


def region_of_number(number: PhoneNumber) -> tuple[str | None, str | None]:
    country = phonenumbers.region_code_for_number(number)
    if country in (None, "ZZ", "001"):
        return None, None
    if number.country_code == 1:
        national = str(number.national_number)
        known = nanp_regions().get(national[:3])
        if known is not None and known[0] == country:
            return country, known[1]
    return country, None


@lru_cache(maxsize=65536)
def region_of(e164: str) -> tuple[str | None, str | None]:
    """(ISO country, ISO subdivision or None): ('US', 'FL'), ('EE', None)."""
    number = parse(e164, "")
    return region_of_number(number) if number is not None else (None, None)


def country_of(e164: str) -> str | None:
    return region_of(e164)[0]


CALLERS_KEPT = 4096
CALLER_KEPT_LENGTH = 32  # a phone number, formatted; longer texts are parsed each time


def caller_of(raw: str | None, default_region: str = "EE") -> tuple[str | None, str | None]:
    """(E.164, ISO country) of a caller's number from one parse: what a greeting needs;
    (None, None) as `normalize` gives None.

    Short texts are kept per process (bounded): a call's webhooks read the same `From` again
    (the menu after the greeting), and a parse costs as much as a Redis round trip's client
    side."""
    if raw is not None and len(raw) <= CALLER_KEPT_LENGTH:
        return _kept_caller(raw, default_region)
    return _caller(raw, default_region)


def _caller(raw: str | None, default_region: str) -> tuple[str | None, str | None]:
    number = parse(raw, default_region)
    if number is None:
        return None, None
    return e164_of(number), region_of_number(number)[0]


_kept_caller = lru_cache(maxsize=CALLERS_KEPT)(_caller)


def zones_key(number: PhoneNumber, e164: str, kind: int) -> tuple[str, bool]:
    """What a number's zones depend on: its first 9 digits and whether its type is geographic.

    That is how phonenumbers computes them (and the corrections are shorter prefixes), so bulk
    screening may cache `zones_of` under this key instead of per number.
    """
    geographic = phonenumbers.is_number_type_geographical(kind, number.country_code or 0)
    return e164[:1 + _TZ_PREFIX_DIGITS], geographic


# --- the guard's input ------------------------------------------------------------------------


def outbound_target(number: str | None, card: CardLike | None, purpose: str | None = None,
                    *, default_region: str = "EE") -> OutboundTarget:
    """Resolve a number (E.164 or raw) and the card's facts into the guard's input."""
    e164 = normalize(number, default_region)
    facts: CardLike = card or CardFacts()
    country, subdivision = region_of(e164) if e164 else (None, None)
    return OutboundTarget(
        e164=e164,
        country=country,
        subdivision=subdivision,
        zones=zones_for(e164) if e164 else (),
        stored_zone=facts.stored_zone or None,
        client_opted_out=facts.opted_out,
        number_opted_out=facts.number_opted_out,
        convenient=facts.window,
        purpose=purpose or "default",
    )
