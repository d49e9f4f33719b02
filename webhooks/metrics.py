"""`/metrics` in Prometheus text: live state from Redis, today's tallies from SQL, request latency.

Web (several gunicorn workers, several machines) and RQ workers are separate processes, so
nothing is counted in process memory: at scrape time a collector reads the live gauges from
Redis and today's tallies from the card events (deduplicated by key, so a retried job is never
counted twice), and each process adds its request durations to histogram buckets kept in
Redis. Any process can answer a scrape with the same figures. See docs/decisions.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib
from flask import Flask, Response, current_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from recordings import dashboard, overdue, tallies
from recordings import db as card_db
from routing_rules import engine

from .auth import requires
from .runtime import Runtime

log = logging.getLogger("hotline.metrics")

# Twilio gives up on a TwiML answer after 15 s; our target is p99 < 30 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
RINGS_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)  # ring targets are 1..20 rings
REDIS_PAUSE_SECONDS = 5.0  # after a failed write, skip latency writes so a dead Redis costs nothing
FLUSH_SECONDS = 1.0  # latency sums reach Redis this long after the request at most
SQL_CACHE_SECONDS = 5.0  # today's tallies scan a day of events: at most once per 5 s per process


def latency_key(prefix: str, endpoint: str) -> str:
    """One hash per endpoint: a field per bucket (not cumulative) plus `sum`."""
    return f"{prefix}metrics:latency:{endpoint}"


def bucket_label(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


class LatencyRecorder:
    """Adds request durations to the shared Redis histogram; never fails or slows a request.

    Observations are summed in process and flushed by a timer thread at most `FLUSH_SECONDS`
    later (one pipeline for every endpoint seen), so a request costs a dict update, not a
    Redis round trip; a scrape may lag by that second.
    """

    def __init__(self, conn: redis_lib.Redis, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self._pending: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._paused_until = 0.0

    def observe(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            for field_name, value in ((bucket_label(seconds), 1.0), ("sum", seconds)):
                self._pending[(endpoint, field_name)] = self._pending.get((endpoint, field_name), 0.0) + value
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._timer = self._pending, {}, None
        if not pending or time.monotonic() < self._paused_until:
            return  # a dead Redis loses these figures, never a request
        try:
            pipe = self.conn.pipeline(transaction=False)
            for (endpoint, field_name), value in pending.items():
                key = latency_key(self.prefix, endpoint)
                if field_name == "sum":
                    pipe.hincrbyfloat(key, field_name, value)
                else:
                    pipe.hincrby(key, field_name, int(value))
            pipe.execute()
        except redis_lib.RedisError:
            self._paused_until = time.monotonic() + REDIS_PAUSE_SECONDS


def read_latency(conn: redis_lib.Redis, prefix: str, endpoints: Iterable[str]) -> dict[str, dict[str, float]]:
    """{endpoint: {bucket label or "sum": value}} for endpoints with at least one request."""
    names = sorted(endpoints)
    pipe = conn.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(latency_key(prefix, name))
    found: dict[str, dict[str, float]] = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        if raw:
            found[name] = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}
    return found


class HotlineCollector(Collector):
    """Reads every figure at scrape time; a source that is down is reported, not raised."""

    def __init__(self, runtime: Runtime, endpoints: Iterable[str], cache: dict[str, Any]) -> None:
        self.runtime = runtime
        self.endpoints = list(endpoints)
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hotline_metrics_source_up", "1 if the source answered this scrape",
                               labels=["source"])
        redis_ok = True
        try:
            yield from self._live()
            yield from self._latency()
        except redis_lib.RedisError:
            log.warning("metrics: redis unavailable")
            redis_ok = False
        db_ok = True
        try:
            yield from self._cards()
        except Exception:  # noqa: BLE001 - a down database is a figure (source_up 0), not a 500
            log.warning("metrics: database unavailable")
            db_ok = False
        up.add_metric(["redis"], float(redis_ok))
        up.add_metric(["database"], float(db_ok))
        yield up

    def _live(self) -> Iterator[Metric]:
        rules = self.runtime.rules.current()
        state = self.runtime.state
        waiting = GaugeMetricFamily("hotline_waiting_calls", "Callers waiting in line now", labels=["queue"])
        callbacks = GaugeMetricFamily("hotline_waiting_callbacks", "Callbacks holding a place in line",
                                      labels=["queue"])
        for queue in rules.queues:
            members = [m for m, _ in state.line(queue)]
            calls = sum(1 for m in members if m.startswith("call:"))
            waiting.add_metric([queue], calls)
            callbacks.add_metric([queue], len(members) - calls)
        agents = GaugeMetricFamily("hotline_agents", "Agents by status now", labels=["status"])
        for status, count in state.agents_by_status(list(rules.agents), time.time()).items():
            agents.add_metric([status], count)
        backlog = GaugeMetricFamily("hotline_card_events_waiting", "Card events queued in Redis, not yet in "
                                    "the card store (grows while the database is down)")
        backlog.add_metric([], state.card_events_waiting())
        yield waiting
        yield callbacks
        yield agents
        yield backlog

    def _latency(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("hotline_request_duration_seconds",
                                       "Time to answer a request (webhooks: voice.*), all processes",
                                       labels=["endpoint"])
        settings = self.runtime.settings
        for endpoint, fields in read_latency(self.runtime.redis, settings.redis_prefix, self.endpoints).items():
            cumulative, buckets = 0.0, []
            for bound in LATENCY_BUCKETS:
                cumulative += fields.get(repr(bound), 0.0)
                buckets.append((repr(bound), cumulative))
            cumulative += fields.get("+Inf", 0.0)
            buckets.append(("+Inf", cumulative))
            family.add_metric([endpoint], buckets, fields.get("sum", 0.0))
        yield family

    def _sql_figures(self) -> tuple[tallies.DayTallies, dict[str, int]]:
        cached = self.cache.get("sql")
        if cached and time.monotonic() - cached[0] < SQL_CACHE_SECONDS:
            return cached[1], cached[2]
        now = datetime.now(UTC)
        start, end = dashboard.local_day(now, engine.zone(self.runtime.rules.current()))
        with card_db.session(readonly=True) as s:
            day = tallies.day_tallies(s, start.astimezone(UTC), end)
            late = overdue.overdue_counts(s, now)
        self.cache["sql"] = (time.monotonic(), day, late)
        return day, late

    def _cards(self) -> Iterator[Metric]:
        day, late = self._sql_figures()
        calls = CounterMetricFamily("hotline_calls", "Calls today by outcome (card events; resets at local "
                                    "midnight)", labels=["outcome"])
        for outcome, count in sorted(day.outcomes.items()):
            calls.add_metric([outcome], count)
        blocked = CounterMetricFamily("hotline_blocked_dials", "Outbound dials the guard blocked today, by "
                                      "reason", labels=["reason"])
        for reason, count in sorted(day.blocked.items()):
            blocked.add_metric([reason], count)
        buckets = [(str(float(bound)), float(sum(c for r, c in day.rings.items() if r <= bound)))
                   for bound in RINGS_BUCKETS]
        total = sum(day.rings.values())
        buckets.append(("+Inf", float(total)))
        rings = HistogramMetricFamily("hotline_rings_to_answer", "Rings before an agent answered, calls "
                                      "answered today", buckets=buckets,
                                      sum_value=float(sum(r * c for r, c in day.rings.items())))
        late_family = GaugeMetricFamily("hotline_overdue", "Open work past its deadline", labels=["kind"])
        for kind in ("voicemails", "callbacks", "complaints"):
            late_family.add_metric([kind.rstrip("s")], late.get(kind, 0))
        unsent = GaugeMetricFamily("hotline_alerts_unsent", "Overdue alerts not delivered yet",
                                   value=late.get("alerts_unsent", 0))
        yield from (calls, blocked, rings, late_family, unsent)


def flush_latency(runtime: Runtime) -> None:
    """Write what the recorder still holds now (shutdown, tests), not a second later."""
    recorder = getattr(runtime, "_latency_recorder", None)
    if recorder is not None:
        recorder.flush()


def _recorder(runtime: Runtime) -> LatencyRecorder:
    """One recorder per runtime (per app), created on first use after gunicorn forks."""
    recorder = getattr(runtime, "_latency_recorder", None)
    if recorder is None:
        recorder = LatencyRecorder(runtime.redis, runtime.settings.redis_prefix)
        object.__setattr__(runtime, "_latency_recorder", recorder)
    return recorder


def init_app(app: Flask) -> None:
    """Time every request into the shared histogram and serve `/metrics` (any API role)."""
    cache: dict[str, Any] = {}
    runtime = app.extensions["hotline"]
    inner = app.wsgi_app

    def timed(environ: dict[str, Any], start_response: Any) -> Any:
        """The app's time for each request with a route, by endpoint: from the WSGI call to its
        answer's start (hooks and view included). Timed around the WSGI call rather than by a
        before- and an after-request hook: those two calls and their context lookups cost a
        webhook more than the rest of the metric. The endpoint is read off the request
        werkzeug leaves in the environ, which Flask clears after the answer has started."""
        started = time.perf_counter()

        def starting(status: str, headers: Any, exc_info: Any = None) -> Any:
            handled = environ.get("werkzeug.request")
            rule = getattr(handled, "url_rule", None)
            if rule is not None and rule.endpoint != "metrics":
                _recorder(runtime).observe(rule.endpoint, time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        return inner(environ, starting)

    app.wsgi_app = timed  # type: ignore[method-assign]

    @requires("agent")
    def metrics() -> Response:
        runtime = current_app.extensions["hotline"]
        _recorder(runtime).flush()  # this process's last second, so one process is exact
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HotlineCollector(runtime, current_app.view_functions, cache))
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
