"""The web process as the Procfile starts it: gunicorn with `webhooks.gunicorn_conf`."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import AUTH_TOKEN, ROOT, always_open_rules
from webhooks.settings import web_concurrency


def test_web_concurrency_is_two_workers_per_core_unless_set() -> None:
    assert web_concurrency({}) == 2 * (os.cpu_count() or 1)
    assert web_concurrency({"WEB_CONCURRENCY": " 3 "}) == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
            web_concurrency({"WEB_CONCURRENCY": bad})


def procfile_command(process: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return shlex.split(command)
    raise AssertionError(f"no {process} process in the Procfile")


def test_the_procfiles_web_command_serves_the_app_with_its_workers(
        redis_url: str, redis_prefix: str, db: str, tmp_path: Path, example_rules_text: str) -> None:
    command = procfile_command("web")
    assert command[0] == "gunicorn"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rules = tmp_path / "rules.yaml"
    rules.write_text(always_open_rules(example_rules_text), encoding="utf-8")
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "3", "REDIS_URL": redis_url,
           "HOTLINE_REDIS_PREFIX": redis_prefix, "DATABASE_URL": db, "HOTLINE_RULES": str(rules),
           "HOTLINE_DATA_DIR": str(tmp_path / "var"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "HOTLINE_LOG_LEVEL": "WARNING", "HOTLINE_JOB_QUEUE": f"{redis_prefix}jobs"}
    server = subprocess.Popen([sys.executable, "-m", *command], env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still booting
                time.sleep(0.1)
        assert health is not None, server.stderr.read().decode() if server.stderr else "no output"
        assert health.status_code == 200 and health.json()["status"] == "ok"
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        while time.monotonic() < deadline and len(children.read_text().split()) < 3:
            time.sleep(0.1)
        assert len(children.read_text().split()) == 3  # WEB_CONCURRENCY workers
        # Twilio reaches it like any webhook: an unsigned request is refused, not a 500
        assert requests.post(f"http://127.0.0.1:{port}/voice/incoming", data={"CallSid": "CA1"},
                             timeout=5).status_code == 403
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def test_the_app_asks_once_per_function_whether_it_must_be_made_synchronous(make_app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Flask asks `ensure_sync` of every hook and view on every request; the app keeps the answer."""
    import flask

    app = make_app()
    asked: list[object] = []
    original = flask.Flask.ensure_sync

    def counting(self, func):  # type: ignore[no-untyped-def]
        asked.append(func)
        return original(self, func)

    monkeypatch.setattr(flask.Flask, "ensure_sync", counting)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/healthz").status_code in (200, 503)
    per_request = len(set(map(id, asked)))
    assert per_request >= 2  # the hooks and the view were each asked about once...
    assert len(asked) == per_request  # ...not once per request

    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view


def test_a_rules_file_loaded_from_disk_logs_its_warnings_once(tmp_path: Path, example_rules_text: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A file deployed or edited by hand never passes through the editor or `rules check`: its
    warnings go to the log when a process loads it, and not again until it changes."""
    import logging

    from webhooks.runtime import RulesSource

    path = tmp_path / "rules.yaml"
    path.write_text(example_rules_text.replace("answer_within_rings: 3", "answer_within_rings: 1", 1), encoding="utf-8")
    source = RulesSource(path)
    with caplog.at_level(logging.WARNING, logger="hotline.runtime"):
        source.current()
        source._checked = 0.0  # the next read looks at the file again: unchanged
        source.current()
    (logged,) = [r.getMessage() for r in caplog.records if "answer_within_rings" in r.getMessage()]
    assert "queues.support.answer_within_rings: 1 ring of" in logged and "shorter than Twilio's shortest dial" in logged
