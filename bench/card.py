"""Card benchmark: webhook → card event lag under load, and opening a card with 10,000 events.

    .venv/bin/python bench/card.py [--rate 300] [--seconds 10] [--events 10000] [--workers 1]

(1) Status callbacks (one card event each) are offered at `--rate`/s to the app under
gunicorn while `hotline worker` processes apply them; a poller reads new rows every 10 ms, so
lag = row visible in SQL − webhook answered (2xx). (2) One client gets `--events` events;
`GET /api/clients/{id}` (the card with the first timeline page) and walking the timeline by
cursor are timed against the bare Flask app's constant answer in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests
import sqlalchemy as sa
from calls import Run, percentile, post_status_callbacks, sync
from servers import ADMIN_TOKEN, Stack

from webhooks.settings import web_concurrency  # after servers: bench/webhooks.py is not `webhooks`


class RowWatcher(threading.Thread):
    """Notes when each new card event's key first becomes visible to another connection."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(database_url)
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0
        query = sa.text("SELECT id, key FROM card_events WHERE id > :last ORDER BY id")
        while not self.stop.is_set():
            with self.engine.connect() as conn:  # ids commit out of order with 2+ workers: look back
                rows = conn.execute(query, {"last": max(0, last - 2000)}).all()
            now = time.time()
            for row_id, key in rows:
                last = max(last, row_id)
                if key:
                    self.seen.setdefault(key, now)
            time.sleep(0.01)
        self.engine.dispose()


def timed_gets(url: str, count: int, headers: dict[str, str] | None = None) -> list[float]:
    session = requests.Session()
    out = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, headers=headers, timeout=10)
        out.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:200]
    return out


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f} ms"


def seed_card(database_url: str, events: int) -> int:
    """A client with `events` events over the last year (bulk insert, as a migration would)."""
    from recordings import card, db
    from recordings.models import CardEvent

    db.configure(database_url)
    with db.session() as s:
        client, _ = card.find_or_create_client(s, "+37251000000", name="Busy Client")
        client_id = client.id
    kinds = ["call_arrived", "menu_choice", "call_answered", "call_completed", "note", "agent_rung"]
    now = datetime.now(UTC)
    rng = random.Random(7)
    rows = [{"client_id": client_id, "kind": rng.choice(kinds), "at": now - timedelta(minutes=52 * i),
             "call_sid": "CA" + uuid.UUID(int=rng.getrandbits(128)).hex, "data": {"n": i}, "key": None}
            for i in range(events)]
    with db.session() as s:
        for start in range(0, len(rows), 2000):
            s.execute(sa.insert(CardEvent), rows[start:start + 2000])
    return client_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1, help="RQ worker processes")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()

    stack = Stack(agents=10, database=args.database).prepare()
    try:
        app = stack.start_app()
        baseline = stack.start_baseline()
        stack.start_workers(args.workers)
        print(f"hotline card bench — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, gunicorn -w {stack.web_workers or web_concurrency()}, {args.database}, "
              f"{args.workers} RQ worker(s)")
        warm = Run()
        sync(post_status_callbacks(app, 200, 200.0, warm, first=900_000))
        time.sleep(2)

        count = round(args.rate * args.seconds)
        watcher = RowWatcher(stack.database_url)
        watcher.start()
        run = Run()
        base = Run()
        sync(post_status_callbacks(baseline, count, args.rate, base))
        sync(post_status_callbacks(app, count, args.rate, run))
        deadline = time.time() + 120
        while time.time() < deadline and not all(k in watcher.seen for k in run.accepted):
            time.sleep(0.05)
        watcher.stop.set()
        watcher.join()
        lags = [watcher.seen[k] - t for k, t in run.accepted.items() if k in watcher.seen]
        missing = sum(1 for k in run.accepted if k not in watcher.seen)
        print(f"webhook → card event lag at {args.rate:.0f} events/s for {args.seconds:.0f} s ({count} events):")
        print(f"  webhooks: hotline {run.summary()}")
        print(f"            baseline {base.summary()}")
        print(f"  lag p50 {ms(lags, 0.5)}, p99 {ms(lags, 0.99)}, max {max(lags) * 1000:.0f} ms; "
              f"missing {missing}; accepted {len(run.accepted)}")

        client_id = seed_card(stack.database_url, args.events)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        # every gunicorn worker's first card costs tens of ms (SQL compile caches): warm them all
        timed_gets(f"{app}/api/clients/{client_id}", 20 * (stack.web_workers or web_concurrency()), auth)
        base_get = timed_gets(f"{baseline}/", args.gets)
        card_get = timed_gets(f"{app}/api/clients/{client_id}", args.gets, auth)
        page_get = timed_gets(f"{app}/api/clients/{client_id}?limit=200", args.gets // 2, auth)
        session = requests.Session()
        pages, cursor, walked = [], None, 0
        while walked < args.events:
            url = f"{app}/api/clients/{client_id}?limit=200" + (f"&before={cursor}" if cursor else "")
            started = time.perf_counter()
            body = session.get(url, headers=auth, timeout=10).json()
            pages.append(time.perf_counter() - started)
            walked += len(body["timeline"])
            cursor = body["next"]
            if not cursor:
                break
        print(f"opening a card with {args.events} events (sequential GETs, one connection):")
        print(f"  baseline GET /           p50 {ms(base_get, 0.5)}, p99 {ms(base_get, 0.99)}")
        print(f"  GET /api/clients/{{id}}   p50 {ms(card_get, 0.5)}, p99 {ms(card_get, 0.99)} "
              f"(×{percentile(card_get, 0.5) / percentile(base_get, 0.5):.1f} baseline p50)")
        print(f"  ... ?limit=200           p50 {ms(page_get, 0.5)}, p99 {ms(page_get, 0.99)}")
        print(f"  whole timeline by cursor: {len(pages)} pages, {walked} events, p50 {ms(pages, 0.5)}, "
              f"p99 {ms(pages, 0.99)}, total {sum(pages) * 1000:.0f} ms")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
