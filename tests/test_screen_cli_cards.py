"""`hotline screen` gives every number the verdict the dialler gives it: the card's stored zone
and the client's own window count, and a client's opt-out is reported as the client's.

The store is real (SQLite or PostgreSQL from conftest); the dialler's check is the reference.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from recordings import card
from recordings import db as card_db
from routing_rules.loading import load_rules_file
from telephony import screening
from telephony.numbers import CardFacts
from telephony.outbound import Dialler
from webhooks.cli import main

AT = "2026-11-24T13:30:00Z"  # Tuesday 08:30 in New York, 05:30 in Los Angeles
NOW = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
LA_ADDRESS = "+12127365000"  # a New York number whose client lives in Los Angeles
EVENINGS = "+12125550134"  # a client who asked to be called 18:00-19:00
QUIT = "+12125550135"  # a client who said "don't call me again"
NUMBER_QUIT = "+12125550136"  # a number on the do-not-call list, no card
NO_CARD = "+12125550137"
MOSCOW_CARD = "+79161234567"  # a Russian mobile (eleven zones) whose card says Moscow
LATE_FRIDAYS = "+13105550123"  # a Los Angeles client: Fridays 22:00-02:00


@pytest.fixture
def env(tmp_path: Path, db: str, example_rules_text: str) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(example_rules_text, encoding="utf-8")
    return {"DATABASE_URL": db, "HOTLINE_RULES": str(rules), "HOTLINE_DATA_DIR": str(tmp_path / "var")}


@pytest.fixture
def dialler(env: dict[str, str]) -> Dialler:
    return Dialler(twilio=lambda: None, rules=load_rules_file(env["HOTLINE_RULES"]),
                   status_callback="https://example.test/status",
                   recording_callback="https://example.test/recording",
                   bridge_url=lambda *args, **kwargs: "https://example.test/bridge")


@pytest.fixture
def cards(db: str) -> None:
    with card_db.session() as s:
        card.create_client(s, numbers=[LA_ADDRESS], name="Moved west", zone="America/Los_Angeles")
        card.create_client(s, numbers=[EVENINGS], name="Evenings", convenient_from="18:00",
                           convenient_to="19:00")
        quit_ = card.create_client(s, numbers=[QUIT], name="Quit", zone="America/New_York")
        card.opt_out_client(s, quit_.id, source="admin", reason="asked", by="test")
        card.opt_out_number(s, NUMBER_QUIT, source="admin", reason="dnc", by="test")
        card.create_client(s, numbers=[MOSCOW_CARD], name="Moscow", zone="Europe/Moscow")
        card.create_client(s, numbers=[LATE_FRIDAYS], name="Night owl", convenient_from="22:00",
                           convenient_to="02:00", convenient_days=["fri"])


ALL = [LA_ADDRESS, EVENINGS, QUIT, NUMBER_QUIT, NO_CARD, MOSCOW_CARD, LATE_FRIDAYS, "not a number"]


def run_screen(env: dict[str, str], tmp_path: Path, phones: list[str], *extra: str) -> dict[str, dict[str, str]]:
    src, out = tmp_path / "numbers.csv", tmp_path / "out.csv"
    src.write_text("phone\n" + "".join(f"{p}\n" for p in phones), encoding="utf-8")
    result = CliRunner(env=env).invoke(main, ["screen", str(src), "--out", str(out), "--at", AT, *extra])
    assert result.exit_code == 0, result.output
    return {r["number"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}


def test_a_card_in_los_angeles_is_blocked_until_eight_there_as_the_dialler_says(
        env: dict[str, str], tmp_path: Path, cards: None, dialler: Dialler) -> None:
    row = run_screen(env, tmp_path, [LA_ADDRESS])[LA_ADDRESS]
    expected = dialler.check(LA_ADDRESS, NOW)
    assert not expected.allowed and expected.reason == "outside_hours"
    assert row["verdict"] == "blocked" and row["reason"] == "outside_hours"
    assert row["next_allowed_at_utc"] == "2026-11-24T16:00:00Z"  # 11:00 New York, 08:00 LA
    assert expected.next_allowed_at == datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
    assert set(row["zones"].split()) == {"America/Los_Angeles", "America/New_York"}


def test_the_clients_own_window_holds_until_six_in_the_evening(
        env: dict[str, str], tmp_path: Path, cards: None, dialler: Dialler) -> None:
    row = run_screen(env, tmp_path, [EVENINGS])[EVENINGS]
    assert row["reason"] == "outside_hours"
    assert row["next_allowed_at_utc"] == "2026-11-24T23:00:00Z"  # 18:00 New York
    assert dialler.check(EVENINGS, NOW).next_allowed_at == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def test_a_client_opt_out_is_reported_as_the_clients_and_a_number_opt_out_as_the_numbers(
        env: dict[str, str], tmp_path: Path, cards: None, dialler: Dialler) -> None:
    rows = run_screen(env, tmp_path, [QUIT, NUMBER_QUIT])
    assert rows[QUIT]["reason"] == "opted_out_client" == dialler.check(QUIT, NOW).reason
    assert rows[NUMBER_QUIT]["reason"] == "opted_out_number" == dialler.check(NUMBER_QUIT, NOW).reason
    assert rows[QUIT]["next_allowed_at_utc"] == rows[NUMBER_QUIT]["next_allowed_at_utc"] == ""


@pytest.mark.parametrize("purpose", [None, "requested_callback"])
def test_every_row_gets_the_dialler_verdict(
        env: dict[str, str], tmp_path: Path, cards: None, dialler: Dialler, purpose: str | None) -> None:
    rows = run_screen(env, tmp_path, ALL, *(["--purpose", purpose] if purpose else []))
    assert list(rows) == ALL
    for phone in ALL:
        expected = dialler.check(phone, NOW, purpose)
        row = rows[phone]
        assert row["verdict"] == ("allowed" if expected.allowed else "blocked"), phone
        assert row["reason"] == (expected.reason or ""), phone
        assert row["zones"] == " ".join(expected.zones), phone
        nxt = expected.next_allowed_at
        assert row["next_allowed_at_utc"] == (
            nxt.astimezone(UTC).isoformat().replace("+00:00", "Z") if nxt else ""), phone


def opt_outs() -> tuple[set[str], set[str]]:
    with card_db.session() as s:
        return card.opted_out_sets(s)


def test_the_cards_are_read_per_batch_and_rows_keep_their_order(
        cards: None, dialler: Dialler) -> None:
    reads: list[set[str]] = []

    def read(e164s: Collection[str]) -> dict[str, CardFacts]:
        reads.append(set(e164s))
        return screening.stored_cards(e164s)

    policy = dialler.rules.outbound
    results = list(screening.screen(ALL, *opt_outs(), policy=policy, now=NOW, read_cards=read,
                                    card_batch=3, default_region="EE"))
    assert [r.number for r in results] == ALL
    assert reads == [{LA_ADDRESS, EVENINGS, QUIT}, {NUMBER_QUIT, NO_CARD, MOSCOW_CARD},
                     {LATE_FRIDAYS}]
    for result in results:
        assert result.verdict == dialler.check(result.number, NOW), result.number


def test_cards_of_finds_cards_across_query_chunks(cards: None) -> None:
    filler = [f"+1212555{n:04d}" for n in range(1000, 1000 + 2 * screening.CARD_BATCH)]
    wanted = [LA_ADDRESS, *filler[:screening.CARD_BATCH], LATE_FRIDAYS, *filler, NO_CARD, QUIT]
    with card_db.session() as s:
        found = screening.cards_of(s, wanted)
    assert found[LA_ADDRESS] == CardFacts(stored_zone="America/Los_Angeles")
    window = found[LATE_FRIDAYS].window
    assert window is not None and (window.start, window.end, window.days) == ("22:00", "02:00", ("fri",))
    assert found[QUIT] == CardFacts(stored_zone="America/New_York")  # opt-outs come as sets
    assert NO_CARD not in found and not set(filler) & set(found)


def test_screen_refuses_both_a_card_map_and_a_card_reader(dialler: Dialler) -> None:
    with pytest.raises(ValueError, match="not both"):
        list(screening.screen([LA_ADDRESS], policy=dialler.rules.outbound, now=NOW, cards={},
                              read_cards=lambda e164s: {}))
