"""The RQ worker process: the same wiring as the web process, jobs run inside the app context."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.timeouts import TimerDeathPenalty

from . import create_app
from .card_events import CardEventDrainer

log = logging.getLogger("hotline.worker")


class AppWorker(SimpleWorker):
    """Runs each job in-process inside the Flask app context (URLs, runtime, card store ready).

    In-process (not fork-per-job) because card events are small and frequent: forking a work
    horse for each would cap throughput far below the 300 events/s we must absorb.
    """

    app: Flask

    def perform_job(self, *args: Any, **kwargs: Any) -> bool:  # (job, queue[, execution]) by rq version
        with self.app.app_context():
            return super().perform_job(*args, **kwargs)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """The RQ loop, with the card events' batched writer beside it (a thread; in burst mode
        the card events waiting now are applied first)."""
        burst = bool(args[0] if args else kwargs.get("burst", False))
        drainer = card_event_drainer(self.app)
        if burst:
            drainer.drain()
            return super().work(*args, **kwargs)
        drainer.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            drainer.stop()


class BackgroundWorker(AppWorker):
    """The same worker on a thread of a process that already runs something (demo, tests).

    Signal handlers belong to the main thread, so job timeouts use a timer, not SIGALRM, and
    `stop()` ends the loop within a second.
    """

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def stop(self) -> None:
        self._stop_requested = True

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        # rq's idle loop only wakes to heartbeat; that is where a stop takes effect
        if self._stop_requested:
            raise StopRequested()
        super().heartbeat(*args, **kwargs)


def worker_connection(app: Flask) -> redis.Redis:
    """A connection without the web's short socket timeout: a worker blocks on BLPOP for long."""
    return redis.Redis.from_url(app.extensions["hotline"].redis_url)


def card_event_drainer(app: Flask) -> CardEventDrainer:
    return CardEventDrainer(app.extensions["hotline"], worker_connection(app))


def make_worker(app: Flask | None = None, *, forking: bool = False) -> Worker:
    app = app or create_app()
    runtime = app.extensions["hotline"]
    worker_class: type[Any] = Worker if forking else AppWorker
    conn = worker_connection(app)
    worker = worker_class([runtime.jobs.name], connection=conn)
    worker.app = app  # type: ignore[attr-defined]
    return worker


def start_background_worker(app: Flask) -> tuple[BackgroundWorker, threading.Thread]:
    runtime = app.extensions["hotline"]
    worker = BackgroundWorker([runtime.jobs.name], connection=worker_connection(app), worker_ttl=16)
    worker.app = app
    thread = threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True,
                              name="hotline-worker")
    thread.start()
    return worker, thread


CHAINS_WATCH_SECONDS = 15  # how soon a lost periodic chain is started again


def keep_chains(app: Flask) -> list[str]:
    """Start each periodic chain that is not alive (the dispatch tick, the overdue check);
    returns the ones started. A worker runs this when it starts and then every
    `CHAINS_WATCH_SECONDS` (`watch_chains`): a chain is a job that schedules its successor, so
    one lost with Redis's data, or with a worker killed between run and reschedule, would
    otherwise stay lost until a worker restarts."""
    from telephony.alerts import CHECK_JOB_ID, start_checks
    from telephony.dispatch import TICK_CHAIN, start_ticks

    runtime = app.extensions["hotline"]
    chains: list[tuple[str, Callable[[], bool]]] = [
        (CHECK_JOB_ID, lambda: start_checks(runtime.jobs, runtime.rules.current().alerts.check_every_seconds)),
        (TICK_CHAIN, lambda: start_ticks(runtime.jobs)),
    ]
    started = []
    for name, start in chains:
        try:  # one chain's fault (a rules file that does not load) does not keep the other down
            if start():
                started.append(name)
        except Exception:  # noqa: BLE001 — logged; the next round tries again
            log.warning("periodic chain %s not checked", name, exc_info=True)
    return started


def watch_chains(app: Flask, stop: threading.Event) -> threading.Thread:
    """`keep_chains` now, then every `CHAINS_WATCH_SECONDS` on a thread until `stop` is set.
    A restart after the first start is logged as a warning: something lost the chain."""

    def loop() -> None:
        while not stop.wait(CHAINS_WATCH_SECONDS):
            with app.app_context():
                restarted = keep_chains(app)
            if restarted:
                log.warning("periodic chains were lost and are started again: %s", ", ".join(restarted))

    with app.app_context():
        keep_chains(app)
    thread = threading.Thread(target=loop, daemon=True, name="hotline-chains")
    thread.start()
    return thread


def purge_queue(conn: redis.Redis, name: str) -> int:
    """Delete a job queue with its registries, its jobs and their results (test and benchmark
    teardown, a decommissioned hotline); returns how many keys. Other queues' keys are kept:
    a job's key does not name its queue, so jobs are matched by their `origin`."""
    keys = list(conn.scan_iter(match=f"rq:*{name}*", count=1000))
    for job_key in conn.scan_iter(match="rq:job:*", count=1000):
        if conn.hget(job_key, "origin") == name.encode():
            job_id = job_key.decode().removeprefix("rq:job:")
            keys += [job_key, *conn.scan_iter(match=f"rq:results:{job_id}*", count=1000)]
    for start in range(0, len(keys), 1000):
        conn.delete(*keys[start:start + 1000])
    conn.srem("rq:queues", f"rq:queue:{name}")  # rq's index of every queue
    return len(keys)


def run_burst(app: Flask) -> None:
    """Apply every job and card event waiting now (tests and the demo), then return."""
    runtime = app.extensions["hotline"]
    worker = BackgroundWorker([runtime.jobs.name], connection=worker_connection(app))
    worker.app = app
    drainer = card_event_drainer(app)
    for _ in range(10):  # jobs may record card events, a failed batch becomes jobs: until both settle
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")  # drains first
        if drainer.drain() == 0:
            break
