"""The RQ worker process: the same wiring as the web process, jobs run inside the app context."""

from __future__ import annotations

from typing import Any

from flask import Flask
from rq import SimpleWorker, Worker

from . import create_app


class AppWorker(SimpleWorker):
    """Runs each job in-process inside the Flask app context (URLs, runtime, card store ready).

    In-process (not fork-per-job) because card events are small and frequent: forking a work
    horse for each would cap throughput far below the 300 events/s we must absorb.
    """

    app: Flask

    def perform_job(self, *args: Any, **kwargs: Any) -> bool:  # (job, queue[, execution]) by rq version
        with self.app.app_context():
            return super().perform_job(*args, **kwargs)


def make_worker(app: Flask | None = None, *, forking: bool = False) -> Worker:
    app = app or create_app()
    runtime = app.extensions["hotline"]
    worker_class = Worker if forking else AppWorker
    worker = worker_class([runtime.jobs], connection=runtime.redis)
    worker.app = app  # type: ignore[attr-defined]
    return worker


def run_burst(app: Flask) -> None:
    """Apply every job waiting now (tests and the demo), then return."""
    make_worker(app).work(burst=True, with_scheduler=False, logging_level="WARNING")
