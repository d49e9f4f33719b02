"""The `hotline` command: rules check, bulk screening, opt-out import, against the real store."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from recordings import card, db
from webhooks.cli import main


@pytest.fixture
def env(tmp_path: Path, db: str, example_rules_text: str) -> dict[str, str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(example_rules_text, encoding="utf-8")
    return {"DATABASE_URL": db, "HOTLINE_RULES": str(rules), "HOTLINE_DATA_DIR": str(tmp_path / "var")}


def test_rules_check_says_ok_for_the_example(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["rules", "check", env["HOTLINE_RULES"]])
    assert result.exit_code == 0 and result.output.strip() == "ok"


def test_rules_check_names_every_error_by_path(tmp_path: Path, example_rules_text: str) -> None:
    broken = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 0", 1)
    broken = broken.replace("strategy: round_robin", "strategy: fastest", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    assert "queues.support.answer_within_rings:" in result.output
    assert "queues.billing.strategy:" in result.output


def test_rules_check_prints_a_ring_target_twilio_cannot_keep_as_a_warning_and_passes(
        tmp_path: Path, example_rules_text: str) -> None:
    one_ring = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    path = tmp_path / "one-ring.yaml"
    path.write_text(one_ring, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "warning: queues.support.answer_within_rings: 1 ring of 5 s (5 s) is shorter than Twilio's "
        "shortest dial (5 s timeout + 5 s buffer = 10 s): agents will ring about 10 s (2 rings)",
        "ok",
    ]


def test_rules_check_prints_warnings_after_the_errors(tmp_path: Path, example_rules_text: str) -> None:
    both = example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 1", 1)
    both = both.replace("agents: [anna, dmitri, mart, kasia]", "agents: [anna, dmitri, mart, zed]", 1)
    path = tmp_path / "both.yaml"
    path.write_text(both, encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "queues.support.agents.3: unknown agent 'zed'"
    assert lines[1].startswith("warning: queues.support.answer_within_rings: 1 ring of 5 s")
    assert "ok" not in lines


def test_rules_check_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rules", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0 and "no such file" in result.output


def test_screen_writes_a_verdict_per_number_and_honours_opt_outs(env: dict[str, str], tmp_path: Path) -> None:
    with db.session() as s:
        card.opt_out_number(s, "+37255511111", source="admin", reason="test", by="test")
    src = tmp_path / "numbers.csv"
    src.write_text("number\n+37255511111\n+1 212 555 0134\nnot a number\n+48601234567\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = CliRunner(env=env).invoke(main, ["screen", str(src), "--out", str(out),
                                              "--at", "2026-11-24T03:00:00Z"])
    assert result.exit_code == 0, result.output
    rows = {r["number"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows["+37255511111"]["reason"] == "opted_out_number"
    assert rows["not a number"]["reason"] == "invalid_number"
    assert rows["+1 212 555 0134"]["reason"] == "outside_hours"  # 22:00 in New York
    assert rows["+1 212 555 0134"]["next_allowed_at_utc"].startswith("2026-11-24T13:00")


def test_screen_rejects_a_time_without_offset(env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "numbers.csv"
    src.write_text("+37255511111\n", encoding="utf-8")
    result = CliRunner(env=env).invoke(main, ["screen", str(src), "--at", "2026-11-24T03:00:00"])
    assert result.exit_code != 0 and "--at" in result.output


def test_opt_out_import_blocks_numbers_and_names_bad_lines(env: dict[str, str], tmp_path: Path) -> None:
    with db.session() as s:
        card.find_or_create_client(s, "+37255522222", name="Has a card")
    src = tmp_path / "dnc.csv"
    src.write_text("phone,reason\n+372 5552 2222,complained\nrubbish,x\n+48601234567,\n", encoding="utf-8")
    result = CliRunner(env=env).invoke(main, ["opt-outs", "import", str(src)])
    assert result.exit_code == 0, result.output
    assert "imported 2 opt-outs, skipped 1" in result.output
    with db.session() as s:
        assert card.is_opted_out(s, "+37255522222")[1] is True
        assert card.is_opted_out(s, "+48601234567")[1] is True
        client = card.find_client_by_phone(s, "+37255522222")
        events, _ = card.timeline(s, client.id)
        assert any(e.kind == "opted_out" and e.data.get("source") == "import" for e in events)
