"""Bulk screening: which numbers of a list may be called now, and when the others may.

A list of a million numbers collapses into a few thousand groups: zones depend only on a
number's first 9 digits and its type, the region on the area code, and the verdict on
(zones, region, card facts) at one `now`. Each number is parsed and typed once (that part is
per number by nature); everything after it is looked up. Same decisions as
`outbound_verdict` per number, which the benchmark checks.

`hotline screen` passes the store's opt-out sets and `stored_cards`, which reads the cards'
zones and windows for each batch of rows in one query, so a screened number gets the verdict
the dialler (`Dialler.check`) gives it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType
from sqlalchemy.orm import Session

from recordings import card as card_store
from recordings import db
from routing_rules.outbound import (
    OutboundPolicy,
    OutboundTarget,
    Verdict,
    outbound_verdict,
)

from . import numbers
from .numbers import CardFacts

CSV_COLUMNS = ["number", "e164", "verdict", "reason", "zones", "next_allowed_at_utc",
               "next_allowed_local"]
_NUMBER_HEADERS = {"number", "phone", "e164", "to", "msisdn"}
PROGRESS_EVERY = 10_000
CARD_BATCH = 500  # numbers per card read: one IN (...) query, under SQLite's oldest 999-parameter cap

CardReader = Callable[[Collection[str]], Mapping[str, CardFacts]]


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
    read_cards: CardReader | None = None,
    card_batch: int = CARD_BATCH,
    purpose: str | None = None,
    default_region: str = "EE",
) -> Iterator[ScreenResult]:
    """Verdicts for many numbers at one `now`, in input order.

    `opted_out_numbers` are E.164 numbers opted out themselves; `opted_out_clients` are E.164
    numbers whose client opted out; `cards` maps E.164 to a card's facts (zone, window).
    `read_cards` replaces `cards` for lists too long to look up at once: it is called with the
    E.164s of every `card_batch` rows and returns the cards among them (`stored_cards`).
    """
    if cards is not None and read_cards is not None:
        raise ValueError("pass cards or read_cards, not both")
    resolver = _Resolver(default_region)
    verdicts: dict[tuple[object, ...], Verdict] = {}
    purpose_name = purpose or "default"

    def judge(raw: str, e164: str | None, country: str | None, subdivision: str | None,
              zones: tuple[str, ...], card: CardFacts | None) -> ScreenResult:
        client_out = e164 is not None and e164 in opted_out_clients or bool(card and card.opted_out)
        number_out = e164 is not None and e164 in opted_out_numbers or bool(
            card and card.number_opted_out)
        stored_zone = (card.stored_zone or None) if card else None  # as numbers.outbound_target
        window = card.window if card else None
        key = (e164 is None, country, subdivision, zones, client_out, number_out, stored_zone,
               window)
        verdict = verdicts.get(key)
        if verdict is None:
            target = OutboundTarget(
                e164=e164, country=country, subdivision=subdivision, zones=zones,
                stored_zone=stored_zone, client_opted_out=client_out,
                number_opted_out=number_out, convenient=window, purpose=purpose_name)
            verdict = verdicts[key] = outbound_verdict(target, policy, now)
        return ScreenResult(raw, e164, verdict)

    resolved = ((raw, *resolver.resolve(raw)) for raw in rows)
    if read_cards is None:
        for raw, e164, country, subdivision, zones in resolved:
            card = cards.get(e164) if cards is not None and e164 is not None else None
            yield judge(raw, e164, country, subdivision, zones, card)
        return
    while batch := list(islice(resolved, max(1, card_batch))):
        found = read_cards({row[1] for row in batch if row[1] is not None})
        for raw, e164, country, subdivision, zones in batch:
            yield judge(raw, e164, country, subdivision, zones,
                        found.get(e164) if e164 is not None else None)


def cards_of(s: Session, e164s: Collection[str]) -> dict[str, CardFacts]:
    """The stored zone and convenient window of the cards holding these numbers
    (`card.zones_and_windows`, `CARD_BATCH` numbers a query); numbers whose card sets neither
    are left out. Opt-outs are not read here: bulk screening takes them as sets
    (`card.opted_out_sets`). The window is built as the dialler's `card.outbound_facts` builds
    it, so a screened number gets the dialler's verdict."""
    wanted = list(e164s)
    found: dict[str, CardFacts] = {}
    for i in range(0, len(wanted), CARD_BATCH):
        for e164, (zone, window) in card_store.zones_and_windows(s, wanted[i:i + CARD_BATCH]).items():
            if zone or window is not None:
                found[e164] = CardFacts(stored_zone=zone or None, window=window)
    return found


def stored_cards(e164s: Collection[str]) -> dict[str, CardFacts]:
    """`cards_of` in a short read-only session of its own: a `read_cards` for `screen`, so a
    screening of millions of rows holds no transaction open between batches."""
    with db.session(readonly=True) as s:
        return cards_of(s, e164s)


def screen_csv(
    in_path: str | Path,
    out_path: str | Path,
    policy: OutboundPolicy,
    opted_out: Collection[str],
    now: datetime,
    progress: Callable[[int], None] | None = None,
    *,
    opted_out_clients: Collection[str] = frozenset(),
    read_cards: CardReader | None = None,
    purpose: str | None = None,
    default_region: str = "EE",
) -> dict[str, int]:
    """Screen a CSV of numbers into a CSV of verdicts (`hotline screen FILE.csv`).

    `opted_out` are numbers opted out themselves, `opted_out_clients` numbers whose client
    opted out; `read_cards` (e.g. `stored_cards`) reads the cards' zones and windows per batch.
    The number is taken from a column named number/phone/e164/to/msisdn when the first row is
    such a header, else from the first column. Returns counts: rows, allowed, and per reason.
    """
    counts: dict[str, int] = {"rows": 0, "allowed": 0}
    with open(in_path, newline="", encoding="utf-8") as src, \
            open(out_path, "w", newline="", encoding="utf-8") as dst:
        raws = _numbers_column(csv.reader(src))
        writer = csv.writer(dst)
        writer.writerow(CSV_COLUMNS)
        for result in screen(raws, opted_out, opted_out_clients, policy=policy, now=now,
                             read_cards=read_cards, purpose=purpose,
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
