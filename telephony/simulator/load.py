"""Load mode: many simulated calls at once against a running app, for the benchmark."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .calls import CallRecord
from .core import Simulator


@dataclass
class LatencyStats:
    count: int
    p50: float
    p95: float
    max: float
    mean: float


@dataclass
class LoadStats:
    calls: int
    wall_seconds: float
    outcomes: Counter[str]  # final CallStatus of each call
    errors: Counter[int]  # Twilio error codes raised (11200, 12100, ...)
    failed_webhooks: int
    latencies: dict[str, LatencyStats] = field(default_factory=dict)  # by "METHOD /path"

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.wall_seconds if self.wall_seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(sim: Simulator, from_numbers: Sequence[str], to: str, script: Any,
         concurrency: int, count: int) -> LoadStats:
    """Place `count` inbound calls, `concurrency` at a time; latencies are wall seconds."""
    started = time.perf_counter()

    def one(i: int) -> CallRecord:
        return sim.place_inbound(from_numbers[i % len(from_numbers)], to, script,
                                 at=sim.clock.now())

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        records = list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    by_path: dict[str, list[float]] = {}
    failed = 0
    for record in records:
        for hit in record.hits():
            by_path.setdefault(f"{hit.method} {urlsplit(hit.url).path}", []).append(hit.latency)
            failed += hit.error_code is not None
    latencies = {
        key: LatencyStats(len(v), _percentile(v, 0.5), _percentile(v, 0.95), max(v),
                          statistics.fmean(v))
        for key, v in sorted(by_path.items())
    }
    return LoadStats(
        calls=len(records), wall_seconds=wall,
        outcomes=Counter(r.status for r in records),
        errors=Counter(n.code for r in records for n in r.notifications),
        failed_webhooks=failed, latencies=latencies,
    )
