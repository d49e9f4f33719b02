"""Bulk screening: which numbers of a list may be called now, and when the others may.

A list of a million numbers collapses into a few thousand groups: zones depend only on a
number's first 9 digits and its type, the region on the area code, and the verdict on
(zones, region, card facts) at one `now`. Each number is parsed and typed once (that part is
per number by nature); everything after it is looked up. Same decisions as
`outbound_verdict` per number, which the benchmark checks.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType

from routing_rules.outbound import OutboundPolicy, OutboundTarget, Verdict, outbound_verdict

from . import numbers
from .numbers import CardFacts

CSV_COLUMNS = ["number", "e164", "verdict", "reason", "zones", "next_allowed_at_utc",
               "next_allowed_local"]
_NUMBER_HEADERS = {"number", "phone", "e164", "to", "msisdn"}
PROGRESS_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class ScreenResult:
    number: str  # as given
    e164: str | None
    verdict: Verdict


class _Resolver:
    """Raw string -> (e164, country, subdivision, zones), memoised by prefix, not by number."""

    def __init__(self, default_region: str) -> None:
        self.default_region = default_region
        self.zones: dict[tuple[str, bool], tuple[str, ...]] = {}
        self.regions: dict[str, tuple[str | None, str | None]] = {}

    def resolve(self, raw: str) -> tuple[str | None, str | None, str | None, tuple[str, ...]]:
        number = numbers.parse_unchecked(raw, self.default_region)
        if number is None:
            return None, None, None, ()
        kind = phonenumbers.number_type(number)
        if kind == PhoneNumberType.UNKNOWN:  # the same test as is_valid_number, done once
            return None, None, None, ()
        e164 = numbers.e164_of(number)
        key = numbers.zones_key(number, e164, kind)
        zones = self.zones.get(key)
        if zones is None:
            zones = self.zones[key] = numbers.zones_of(number)
        return e164, *self.region(number, e164), zones

    def region(self, number: phonenumbers.PhoneNumber, e164: str) -> tuple[str | None, str | None]:
        """NANP: by area code; single-country codes: by code; shared codes: per number."""
        cc = number.country_code or 0
        if cc == 1:
            key = e164[:5]
        elif len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())) == 1:
            key = e164[:1 + len(str(cc))]
        else:  # +7 RU/KZ, +44 GB/JE/GG/IM, ...: decided by the number's patterns
            return numbers.region_of_number(number)
        found = self.regions.get(key)
        if found is None:
            found = self.regions[key] = numbers.region_of_number(number)
        return found


def screen(
    rows: Iterable[str],
    opted_out_numbers: Collection[str] = frozenset(),
    opted_out_clients: Collection[str] = frozenset(),
    *,
    policy: OutboundPolicy,
    now: datetime,
    cards: Mapping[str, CardFacts] | None = None,
    purpose: str | None = None,
    default_region: str = "EE",
) -> Iterator[ScreenResult]:
    """Verdicts for many numbers at one `now`, in input order.

    `opted_out_numbers` are E.164 numbers opted out themselves; `opted_out_clients` are E.164
    numbers whose client opted out; `cards` maps E.164 to a card's facts (zone, window).
    """
    resolver = _Resolver(default_region)
    verdicts: dict[tuple[object, ...], Verdict] = {}
    purpose_name = purpose or "default"
    for raw in rows:
        e164, country, subdivision, zones = resolver.resolve(raw)
        card = cards.get(e164) if cards is not None and e164 is not None else None
        client_out = e164 is not None and e164 in opted_out_clients or bool(card and card.opted_out)
        number_out = e164 is not None and e164 in opted_out_numbers or bool(
            card and card.number_opted_out)
        key = (e164 is None, country, subdivision, zones, client_out, number_out,
               card.stored_zone if card else None, card.window if card else None)
        verdict = verdicts.get(key)
        if verdict is None:
            target = OutboundTarget(
                e164=e164, country=country, subdivision=subdivision, zones=zones,
                stored_zone=card.stored_zone if card else None, client_opted_out=client_out,
                number_opted_out=number_out, convenient=card.window if card else None,
                purpose=purpose_name)
            verdict = verdicts[key] = outbound_verdict(target, policy, now)
        yield ScreenResult(raw, e164, verdict)


def screen_csv(
    in_path: str | Path,
    out_path: str | Path,
    policy: OutboundPolicy,
    opted_out: Collection[str],
    now: datetime,
    progress: Callable[[int], None] | None = None,
    *,
    purpose: str | None = None,
    default_region: str = "EE",
) -> dict[str, int]:
    """Screen a CSV of numbers into a CSV of verdicts (`hotline screen FILE.csv`).

    The number is taken from a column named number/phone/e164/to/msisdn when the first row is
    such a header, else from the first column. Returns counts: rows, allowed, and per reason.
    """
    counts: dict[str, int] = {"rows": 0, "allowed": 0}
    with open(in_path, newline="", encoding="utf-8") as src, \
            open(out_path, "w", newline="", encoding="utf-8") as dst:
        raws = _numbers_column(csv.reader(src))
        writer = csv.writer(dst)
        writer.writerow(CSV_COLUMNS)
        for result in screen(raws, opted_out, policy=policy, now=now, purpose=purpose,
                             default_region=default_region):
            writer.writerow(csv_row(result))
            counts["rows"] += 1
            v = result.verdict
            if v.allowed:
                counts["allowed"] += 1
            else:
                counts[v.reason or "blocked"] = counts.get(v.reason or "blocked", 0) + 1
            if progress is not None and counts["rows"] % PROGRESS_EVERY == 0:
                progress(counts["rows"])
    if progress is not None:
        progress(counts["rows"])
    return counts


def csv_row(result: ScreenResult) -> list[str]:
    v = result.verdict
    return [
        result.number,
        result.e164 or "",
        "allowed" if v.allowed else "blocked",
        v.reason or "",
        " ".join(v.zones),
        _iso(v.next_allowed_at.astimezone(UTC)) if v.next_allowed_at else "",
        ";".join(f"{zone}={_iso(at)}" for zone, at in v.next_allowed_local.items()),
    ]


def _iso(at: datetime) -> str:
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _numbers_column(reader: Iterator[list[str]]) -> Iterator[str]:
    first = next(reader, None)
    if first is None:
        return
    column = 0
    header = [cell.strip().lower() for cell in first]
    named = [i for i, cell in enumerate(header) if cell in _NUMBER_HEADERS]
    if named:
        column = named[0]
    else:
        yield first[0] if first else ""
    for row in reader:
        if row:
            yield row[column] if column < len(row) else ""
