"""The whole product on one machine: the app served over HTTP, a job worker, the local Twilio.

Used by `hotline demo`, `hotline simulate` and the end-to-end tests, so all three run the real
app, the real worker and the simulator exactly as Twilio would talk to them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from flask import Flask
from rq import Queue
from rq.registry import StartedJobRegistry
from werkzeug.serving import BaseWSGIServer, make_server

from routing_rules.engine import ring_seconds
from telephony.simulator import Simulator
from telephony.simulator.clock import SimClock

from . import create_app
from .runtime import stop_embedded_redis
from .settings import Settings, parse_api_tokens
from .worker import BackgroundWorker, start_background_worker

LOCAL_ACCOUNT_SID = "AC" + "d" * 32
LOCAL_AUTH_TOKEN = "local-twilio-auth-token"
LOCAL_API_TOKENS = "local-admin:admin,local-supervisor:supervisor"


def always_open(rules_text: str, *, wrap_up_seconds: int | None = None) -> str:
    """A copy of the rules with every queue open around the clock (demos must not depend on the hour)."""
    data = yaml.safe_load(rules_text)
    for queue in data["queues"].values():
        queue["hours"] = []
        queue["holidays"] = {}
    if wrap_up_seconds is not None:
        for agent in data["agents"].values():
            agent["wrap_up_seconds"] = wrap_up_seconds
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


class _LateApp:
    """A WSGI callable bound to the app once it exists (the app needs the server's URL first)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LocalStack:
    rules_path: Path
    data_dir: Path
    redis_url: str | None = None
    database_url: str | None = None
    redis_prefix: str = "hotline:"
    job_queue: str = "hotline"
    time_scale: float = 0.01
    pace: str = "queue"  # "all": talk time and pauses pass for real too (high-volume scenarios)
    app: Flask = field(init=False)
    sim: Simulator = field(init=False)
    url: str = field(init=False, default="")
    _server: BaseWSGIServer | None = field(init=False, default=None)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)
    _worker: BackgroundWorker | None = field(init=False, default=None)
    _sim_server: Any = field(init=False, default=None)

    def start(self) -> LocalStack:
        # virtual time starts now, so Twilio's Timestamps sit beside our own event times
        clock = SimClock(epoch=datetime.now(UTC))
        self.sim = Simulator(LOCAL_ACCOUNT_SID, LOCAL_AUTH_TOKEN, clock=clock, time_scale=self.time_scale,
                             pace=self.pace)
        self._sim_server = self.sim.serve()
        late = _LateApp()
        self._server = make_server("127.0.0.1", 0, late, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        settings = Settings(
            data_dir=self.data_dir,
            redis_url=self.redis_url,
            redis_prefix=self.redis_prefix,
            database_url=self.database_url,
            twilio_account_sid=LOCAL_ACCOUNT_SID,
            twilio_auth_token=LOCAL_AUTH_TOKEN,
            twilio_api_base=self._sim_server.url,
            public_base_url=self.url,
            rules_path=self.rules_path,
            api_tokens=parse_api_tokens(LOCAL_API_TOKENS),
            job_queue=self.job_queue,
            log_level="WARNING",
        )
        self.app = create_app(settings=settings)
        late.app = self.app
        server_thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="hotline-web")
        server_thread.start()
        self._threads.append(server_thread)
        self._worker, worker_thread = start_background_worker(self.app)
        self._threads.append(worker_thread)
        rules = self.rules
        self.sim.ring_seconds = ring_seconds(rules, rules.default_queue())
        self.sim.dial_buffer_seconds = rules.hotline.dial_buffer_seconds
        for number in rules.hotline.numbers:
            self.sim.add_number(number, f"{self.url}/voice/incoming", status_callback=f"{self.url}/voice/status",
                                fallback_url=f"{self.url}/voice/fallback")
        return self

    @property
    def rules(self) -> Any:
        return self.app.extensions["hotline"].rules.current()

    @property
    def runtime(self) -> Any:
        return self.app.extensions["hotline"]

    @property
    def hotline_number(self) -> str:
        return str(self.rules.hotline.numbers[0])

    def api(self, method: str, path: str, token: str = "local-admin", **kwargs: Any) -> Any:
        """Call our own REST API over HTTP, as an admin's script would."""
        import requests

        return requests.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"},
                                timeout=10, **kwargs)

    def wait_for_jobs(self, timeout: float = 10.0) -> bool:
        """Until the job queue and the card events' lists are empty and nothing is running
        (card events have landed)."""
        runtime = self.runtime
        queue: Queue = runtime.jobs
        started = StartedJobRegistry(queue.name, connection=queue.connection)
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            card_backlog = runtime.state.card_events_waiting()
            if queue.count == 0 and started.count == 0 and card_backlog == 0:
                quiet += 1
                if quiet >= 3:  # jobs enqueue jobs: make sure the chain has settled
                    return True
            else:
                quiet = 0
            time.sleep(0.05)
        return False

    def reset_agents(self) -> None:
        """Every agent available again (between demo scenarios), logged as done by the demo."""
        state = self.runtime.state
        now = time.time()
        for agent_id in self.rules.agents:
            state.set_status(agent_id, "away", now, by="demo")  # always accepted, ends a stale call
            state.set_status(agent_id, "available", now, by="demo")

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._server is not None:
            self._server.shutdown()
        if self._sim_server is not None:
            self._sim_server.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        app = getattr(self, "app", None)
        if self.redis_url is None and app is not None:  # the embedded Redis is the stack's own
            stop_embedded_redis(app.extensions["hotline"].settings.embedded_redis_file)
