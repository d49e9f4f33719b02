"""`hotline demo` end to end: every scenario passes and the command exits 0 (as on a fresh clone)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from webhooks.cli import main


def test_demo_plays_every_scenario_and_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.chdir(tmp_path)  # nothing depends on being run from the repository
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output[-3000:]
    summary = result.output[result.output.index("Summary"):]
    assert summary.count("PASS") == 6 and "FAIL" not in summary
    assert "answered after 2 rings" in result.output
    assert "outbound_blocked" in result.output
