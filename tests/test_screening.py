"""Bulk screening gives, row by row, the verdict the dialler would get for that number."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from routing_rules.outbound import ConvenientWindow, OutboundPolicy, outbound_verdict
from telephony import numbers, screening
from telephony.numbers import CardFacts

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday
POLICY = OutboundPolicy()
MIXED = [
    "+12127365000", "+1 (850) 856-3658", "+15125550123", "+18015550123", "+14165550123",
    "+12504363999", "+18672528424", "+447911123456", "+442079460018", "+79161234567",
    "+74012344456", "+78452123456", "+74951234567", "+48221234567", "+48601234567",
    "+3725123456", "00372 6387953", "+61412345678", "+61212345678", "+80012345678",
    "anonymous", "client:bob", "12", "+1555", "+12127365000",
]


def test_screen_matches_the_per_number_verdict() -> None:
    opted_numbers = {"+15125550123"}
    opted_clients = {"+3725123456"}
    results = list(screening.screen(MIXED, opted_numbers, opted_clients, policy=POLICY, now=NOW))
    assert [r.number for r in results] == MIXED
    for result in results:
        e164 = numbers.normalize(result.number)
        card = CardFacts(opted_out=e164 in opted_clients, number_opted_out=e164 in opted_numbers)
        expected = outbound_verdict(numbers.outbound_target(result.number, card), POLICY, NOW)
        assert result.e164 == e164
        assert result.verdict == expected, result.number


def test_screen_reasons() -> None:
    by_number = {r.number: r.verdict for r in screening.screen(
        MIXED, {"+15125550123"}, {"+3725123456"}, policy=POLICY, now=NOW)}
    assert by_number["+15125550123"].reason == "opted_out_number"
    assert by_number["+3725123456"].reason == "opted_out_client"
    assert by_number["anonymous"].reason == "invalid_number"
    assert by_number["client:bob"].reason == "invalid_number"
    assert by_number["+79161234567"].reason == "outside_hours"
    assert by_number["+12127365000"].allowed


def test_screen_uses_cards_for_stored_zone_and_window() -> None:
    cards = {"+79161234567": CardFacts(stored_zone="Europe/Moscow"),
             "+12127365000": CardFacts(window=ConvenientWindow(start="18:00", end="19:00"))}
    policy = OutboundPolicy(zone_mode="stored_zone_decides")
    got = {r.number: r.verdict for r in screening.screen(
        ["+79161234567", "+12127365000"], policy=policy, now=NOW, cards=cards)}
    assert got["+79161234567"].allowed and got["+79161234567"].zones == ("Europe/Moscow",)
    assert got["+12127365000"].next_allowed_at == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def test_screen_csv_writes_one_row_per_number(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("name,phone\nAnn,+12127365000\nBob,+79161234567\nEve,anonymous\n"
                   "Opt,+48221234567\n", encoding="utf-8")
    seen: list[int] = []
    counts = screening.screen_csv(src, dst, POLICY, {"+48221234567"}, NOW, seen.append)
    rows = list(csv.DictReader(dst.open(encoding="utf-8")))
    assert list(rows[0]) == screening.CSV_COLUMNS
    assert [r["number"] for r in rows] == ["+12127365000", "+79161234567", "anonymous",
                                           "+48221234567"]
    assert rows[0]["verdict"] == "allowed" and rows[0]["zones"] == "America/New_York"
    assert rows[1]["reason"] == "outside_hours"
    assert rows[1]["next_allowed_at_utc"] == "2026-11-25T06:00:00Z"
    assert "Europe/Moscow=2026-11-25T09:00:00+03:00" in rows[1]["next_allowed_local"].split(";")
    assert rows[2]["e164"] == "" and rows[2]["reason"] == "invalid_number"
    assert rows[3]["reason"] == "opted_out_number"
    assert counts == {"rows": 4, "allowed": 1, "outside_hours": 1, "invalid_number": 1,
                      "opted_out_number": 1}
    assert seen == [4]


def test_screen_csv_without_a_header_reads_the_first_column(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("+12127365000,Ann\n+3725123456,Mari\n", encoding="utf-8")
    counts = screening.screen_csv(src, dst, POLICY, set(), NOW)
    assert counts["rows"] == 2
    assert [r["e164"] for r in csv.DictReader(dst.open(encoding="utf-8"))] == [
        "+12127365000", "+3725123456"]
