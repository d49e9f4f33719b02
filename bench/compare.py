"""Before/after on a noisy machine: this tree against another revision, rounds interleaved.

    .venv/bin/python bench/compare.py --against 4c22e5d [--rounds 3] [--calls 800] [--rate 300 --seconds 10]

Shared 2-core machines change speed from minute to minute, so two runs of bench/webhooks.py
minutes apart can differ by 2× for the same code. This script checks the other revision out into
a temporary git worktree, starts both apps (gunicorn as in the Procfile, each with its own
`hotline worker`, fresh Redis prefix and database) and the bare baseline, then runs the
max-throughput phase of bench/webhooks.py round by round: baseline, then both apps in an order
that alternates each round. Per round it prints each app's throughput as a ratio of the
baseline measured just before, and the CPU its web processes and its worker spent per webhook
(utime + stime from /proc), and the Redis and PostgreSQL servers during its phase (shared, so
read around each phase). The medians are the figures to quote. With `--rate`, each phase is
bench/webhooks.py's fixed-rate one instead (open loop, `--rate` webhooks/s for `--seconds`):
each app's p50 and p99 are printed beside the baseline's, with the same CPU figures.

Both apps use the schema of this tree (migrations only add), so the other revision must not
predate a migration that removed something it needs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calls import Run, percentile, run_calls, sync
from servers import ROOT, Stack

from webhooks.settings import web_concurrency

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (gunicorn's workers), 0 if it is gone."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def redis_cpu() -> float:
    """The local Redis server's CPU seconds (shared by both sides: read around each phase), 0 if
    it is not a local process we can read."""
    found = subprocess.run(["pidof", "redis-server"], capture_output=True, text=True).stdout.split()
    return sum(cpu_seconds(int(pid)) for pid in found)


def postgres_cpu() -> float:
    """The local PostgreSQL server's CPU seconds: its postmaster and the backends running now
    (shared by both sides, read around each phase like Redis), 0 if it is not local."""
    found = subprocess.run(["pidof", "postgres"], capture_output=True, text=True).stdout.split()
    pids = {int(pid) for pid in found}
    roots = []
    for pid in pids:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent not in pids:
            roots.append(pid)
    return sum(cpu_seconds(pid) for pid in roots)


class Side:
    """One revision's app and worker."""

    def __init__(self, name: str, root: Path, agents: int, web_workers: int) -> None:
        self.name = name
        self.stack = Stack(agents=agents, root=root, web_workers=web_workers).prepare()
        self.url = self.stack.start_app()
        self.stack.start_workers(1)
        self.web_pid, self.worker_pid = self.stack.procs[0].pid, self.stack.procs[1].pid
        self.ratios: list[float] = []
        self.web_ms: list[float] = []
        self.worker_ms: list[float] = []
        self.redis_ms: list[float] = []
        self.postgres_ms: list[float] = []
        self.driver_ms: list[float] = []
        self.p50_ms: list[float] = []
        self.p99_ms: list[float] = []

    def measure(self, calls: int, first: int, baseline: float, rate: float | None = None) -> str:
        web0, worker0 = cpu_seconds(self.web_pid), cpu_seconds(self.worker_pid)
        redis0, postgres0, driver0 = redis_cpu(), postgres_cpu(), time.process_time()
        run = sync(run_calls(self.url, calls, 400 if rate else 32, rate=rate, first=first))
        driver = time.process_time() - driver0
        time.sleep(1.0)  # the worker applies the last card events
        count = len(run.hits)
        self.ratios.append(run.throughput / baseline)
        self.web_ms.append((cpu_seconds(self.web_pid) - web0) / count * 1000)
        self.worker_ms.append((cpu_seconds(self.worker_pid) - worker0) / count * 1000)
        self.redis_ms.append((redis_cpu() - redis0) / count * 1000)
        self.postgres_ms.append((postgres_cpu() - postgres0) / count * 1000)
        self.driver_ms.append(driver / count * 1000)
        self.p50_ms.append(percentile(run.latencies(), 0.5) * 1000)
        self.p99_ms.append(percentile(run.latencies(), 0.99) * 1000)
        speed = (f"p50 {self.p50_ms[-1]:.1f} ms, p99 {self.p99_ms[-1]:.1f} ms" if rate else
                 f"{run.throughput:.0f}/s = {self.ratios[-1]:.2f}×")
        return (f"{self.name} {speed}, CPU per webhook: web "
                f"{self.web_ms[-1]:.2f} ms, worker {self.worker_ms[-1]:.2f} ms, Redis server "
                f"{self.redis_ms[-1]:.2f} ms, PostgreSQL {self.postgres_ms[-1]:.2f} ms, load driver {self.driver_ms[-1]:.2f} ms, errors {run.errors()}")

    def summary(self, rate: float | None = None) -> str:
        speed = (f"p99 {statistics.median(self.p99_ms):.1f} ms (rounds {', '.join(f'{p:.1f}' for p in self.p99_ms)}), "
                 f"p50 {statistics.median(self.p50_ms):.1f} ms" if rate else
                 f"ratio {statistics.median(self.ratios):.2f}× (rounds {', '.join(f'{r:.2f}' for r in self.ratios)})")
        return (f"{self.name:>10}: {speed}; "
                f"CPU per webhook web {statistics.median(self.web_ms):.2f} ms, "
                f"worker {statistics.median(self.worker_ms):.2f} ms, Redis server "
                f"{statistics.median(self.redis_ms):.2f} ms, PostgreSQL {statistics.median(self.postgres_ms):.2f} ms, "
                f"load driver {statistics.median(self.driver_ms):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the other revision (commit, tag, branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=800, help="calls per app per round (5 webhooks each)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rate", type=float, help="webhooks/s: compare latency at this fixed rate instead")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a fixed-rate phase")
    parser.add_argument("--web-workers", type=int, default=web_concurrency(),
                        help="gunicorn -w, for the apps and the baseline (default: the Procfile's count here)")
    args = parser.parse_args()

    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.against], check=True,
                              capture_output=True, text=True).stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="hotline-compare-")) / revision
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), revision],
                   check=True)
    sides: list[Side] = []
    calls = max(1, round(args.rate * args.seconds / 5)) if args.rate else args.calls
    base_stack = Stack(agents=1, database="sqlite", web_workers=args.web_workers)
    try:
        sides = [Side(revision, tree, args.agents, args.web_workers),
                 Side("this tree", ROOT, args.agents, args.web_workers)]
        baseline = base_stack.prepare().start_baseline()
        print(f"hotline compare — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
              f"{sys.version.split()[0]}, "
              + (f"open loop at {args.rate:.0f} webhooks/s, {calls} calls" if args.rate else
                 f"closed loop, 32 calls in flight, {calls} calls") + " per app per round, "
              f"gunicorn -w {args.web_workers}")
        sync(run_calls(baseline, 100, 16))
        for side in sides:
            sync(run_calls(side.url, 100, 16))  # warm up
        base_pid = base_stack.procs[0].pid
        for n in range(args.rounds):
            web0, driver0 = cpu_seconds(base_pid), time.process_time()
            base: Run = sync(run_calls(baseline, calls, 400 if args.rate else 32, rate=args.rate))
            count = len(base.hits)
            speed = (f"p50 {percentile(base.latencies(), 0.5) * 1000:.1f} ms, p99 "
                     f"{percentile(base.latencies(), 0.99) * 1000:.1f} ms" if args.rate else f"{base.throughput:.0f}/s")
            print(f"round {n + 1}: baseline {speed}, CPU per webhook: web "
                  f"{(cpu_seconds(base_pid) - web0) / count * 1000:.2f} ms, load driver "
                  f"{(time.process_time() - driver0) / count * 1000:.2f} ms")
            for side in sides if n % 2 == 0 else sides[::-1]:
                print("  " + side.measure(calls, 100_000 * (n + 1), base.throughput, args.rate))
        print("medians:")
        for side in sides:
            print("  " + side.summary(args.rate))
    finally:
        for stack in [side.stack for side in sides] + [base_stack]:
            try:
                stack.close()
            except Exception as error:  # noqa: BLE001 — close the others all the same
                print(f"could not clean up {stack.prefix}: {error}", file=sys.stderr)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
