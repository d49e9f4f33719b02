"""`hotline simulate SCENARIO.yaml`: the shipped scenario plays against the local app and passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from webhooks.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_scenario_plays_and_prints_the_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("HOTLINE_RULES", str(ROOT / "examples" / "rules.yaml"))
    scenario = ROOT / "examples" / "scenarios" / "missed-then-answered.yaml"
    result = CliRunner().invoke(main, ["simulate", str(scenario)])
    assert result.exit_code == 0, result.output[-3000:]
    assert "presses 1" in result.output
    assert "call_answered" in result.output and "agent_rung" in result.output
