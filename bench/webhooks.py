"""Webhook benchmark: the app under gunicorn against a bare Flask TwiML app, in the same run.

    .venv/bin/python bench/webhooks.py [--calls 1200] [--rounds 3] [--rate 300] [--seconds 10]
                                       [--concurrent 1000] [--agents 100] [--database postgres]

Both run gunicorn as the Procfile's web process does (`webhooks.gunicorn_conf`: two workers per
core). The app has the real Redis server
(db 15, a fresh key prefix), PostgreSQL (a throwaway database) or SQLite and RQ workers
(`hotline worker`) applying the card events while the load runs. Whole signed call flows
(bench/calls.py) are offered (1) as fast as the server answers and (2) at a fixed rate, then
(3) `--concurrent` calls at once over `--agents` agents with talk time, counting double
bookings from the caller side and from the state's status log.

A shared 2-core machine changes speed from one minute to the next (±15% between two runs of the
same code), so phase (1) runs `--rounds` times, each round the baseline and then the app, and
the ratio quoted is the median of the rounds' ratios (every round is printed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

from calls import Run, double_bookings, percentile, run_calls, sync
from servers import Stack

from webhooks.settings import web_concurrency  # after servers: bench/webhooks.py is not `webhooks`


def wait_for_jobs(stack: Stack, timeout: float = 120.0) -> float:
    """Seconds until the job queue and the card events' lists are empty and nothing runs
    (the card caught up)."""
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from telephony.state import LiveState

    conn = stack.redis()
    queue = Queue(stack.job_queue, connection=conn)
    started = StartedJobRegistry(queue.name, connection=conn)
    state = LiveState(conn, stack.prefix)
    begin = time.perf_counter()
    while time.perf_counter() - begin < timeout:
        if queue.count == 0 and started.count == 0 and state.card_events_waiting() == 0:
            break
        time.sleep(0.05)
    conn.close()
    return time.perf_counter() - begin


def status_log_double_bookings(stack: Stack, since_ms: int) -> tuple[int, int]:
    """(entries read, double bookings): an agent taken for a call while holding another."""
    conn = stack.redis()
    entries: list[Any] = conn.xrange(stack.prefix + "status_log", min=f"{since_ms}-0", max="+")
    conn.close()
    holding: dict[str, str] = {}
    doubles = 0
    for _id, fields in entries:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        agent, to, call = f["agent"], f["to"], f.get("call_sid", "")
        if to in ("ringing", "on_call"):
            if holding.get(agent) not in (None, "", call):
                doubles += 1
            holding[agent] = call
        else:
            holding[agent] = ""
    return len(entries), doubles


def line(name: str, run: Run) -> str:
    return f"  {name:<36} {run.summary()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1200, help="calls per max-throughput phase (5 webhooks each)")
    parser.add_argument("--inflight", type=int, default=32, help="concurrent calls in the max-throughput phase")
    parser.add_argument("--rounds", type=int, default=3, help="max-throughput rounds (baseline, then app, each)")
    parser.add_argument("--rate", type=float, default=300.0, help="webhooks/s of the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fixed-rate phase")
    parser.add_argument("--concurrent", type=int, default=1000, help="calls at once in the booking phase")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="RQ worker processes (`hotline worker`)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()

    stack = Stack(agents=args.agents, database=args.database).prepare()
    try:
        app = stack.start_app()
        baseline = stack.start_baseline()
        stack.start_workers(args.workers)
        print(f"hotline webhooks bench — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, gunicorn -w {stack.web_workers or web_concurrency()}, "
              f"{args.database}, Redis db 15, {args.workers} RQ worker(s), {args.agents} agents")
        sync(run_calls(baseline, 100, 16))  # warm up both
        sync(run_calls(app, 100, 16))
        wait_for_jobs(stack)

        print(f"max throughput (closed loop, {args.inflight} calls in flight, {args.rounds} rounds):")
        ratios: list[float] = []
        for n in range(args.rounds):
            base_max = sync(run_calls(baseline, args.calls, args.inflight))
            print(line(f"round {n + 1} baseline (constant TwiML)", base_max))
            app_max = sync(run_calls(app, args.calls, args.inflight, first=100_000 + n * args.calls))  # new callers each round
            print(line(f"round {n + 1} hotline", app_max))
            drain = wait_for_jobs(stack)
            ratios.append(app_max.throughput / base_max.throughput)
            print(f"  round {n + 1} ratio hotline/baseline: {ratios[-1]:.2f} (card jobs drained {drain:.1f} s "
                  f"after the load)  outcomes {app_max.outcomes}")
        print(f"  throughput ratio hotline/baseline: {statistics.median(ratios):.2f} (median of "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")

        count = max(1, round(args.rate * args.seconds / 5))
        print(f"fixed offered rate {args.rate:.0f} webhooks/s for {args.seconds:.0f} s ({count} calls):")
        base_fixed = sync(run_calls(baseline, count, 400, rate=args.rate))
        print(line("baseline", base_fixed))
        app_fixed = sync(run_calls(app, count, 400, rate=args.rate, first=20_000))
        print(line("hotline", app_fixed))
        drain = wait_for_jobs(stack)
        p99_app, p99_base = percentile(app_fixed.latencies(), 0.99), percentile(base_fixed.latencies(), 0.99)
        print(f"  p99 hotline {p99_app * 1000:.1f} ms vs baseline {p99_base * 1000:.1f} ms "
              f"(ratio {p99_app / p99_base:.1f}); card jobs drained {drain:.1f} s after the load; "
              f"errors {app_fixed.errors()}")

        print(f"{args.concurrent} concurrent calls over {args.agents} agents (talk 0.5-3 s):")
        since_ms = int(time.time() * 1000)
        booking = sync(run_calls(app, args.concurrent, args.concurrent, talk=(0.5, 3.0), first=30_000))
        print(line("hotline", booking))
        read, doubles_log = status_log_double_bookings(stack, since_ms)
        print(f"  outcomes {booking.outcomes}; agent holds {len(booking.bookings)} over "
              f"{len({b.agent for b in booking.bookings})} agents")
        print(f"  double bookings: caller side {double_bookings(booking.bookings)}, "
              f"status log {doubles_log} ({read} entries)")
        drain = wait_for_jobs(stack)
        print(f"  card jobs drained {drain:.1f} s after the load")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
