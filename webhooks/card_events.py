"""The batched writer's drainer: webhook card events from a Redis list to the card store.

Webhooks RPUSH one compact JSON payload per card event (`encode`) onto
`Keys.card_events("pending")`, a request's events together: carried by its last live-state
write (`LiveState`'s carrier scripts) or by `Runtime.push_card_payloads` at its end. A drainer in the worker
process moves up to `BATCH` of them at a time, atomically (Lua), onto
`Keys.card_events("processing")`, applies them in one transaction
(`recordings.jobs.apply_event_batch`), then removes them from `processing`. A drainer that dies
mid-batch leaves its payloads in `processing`; the next drainer to start re-applies them, and
a running drainer does too once they have sat there for `ORPHAN_SECONDS` (every payload has a
key, so nothing lands twice).

A batch that fails to apply is judged by whether the database answers. If it does not (down,
unreachable, failing over), the batch stays in `processing` and the drainer backs off, then
re-applies it: events wait in Redis for as long as the outage lasts and land once it is over,
in order. If it does (a bad payload), the batch is handed to RQ one payload per job with the
usual retries, so one bad event cannot hold up the others and ends in the failed-job registry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis as redis_lib

from recordings import db as card_db
from recordings import jobs as card_jobs

log = logging.getLogger("hotline.card_events")

BATCH = 200  # payloads per transaction: ~1 ms of SQL each at most, far below the lag target
BLOCK_SECONDS = 1  # an idle drainer waits this long for a payload; also how soon stop() acts
# After the first payload of a batch, wait this long for more: in a busy hour one transaction then
# carries many events instead of a few (each transaction has a fixed cost: connection, number
# lookup, commit). Bounds the added card lag; the target is 1 s.
LINGER_SECONDS = 0.1
ORPHAN_SECONDS = 30  # payloads this long at the head of `processing` belong to a drainer that died
OUTAGE_BACKOFF_SECONDS = (1, 2, 5, 10, 30)  # between tries while the database is down, then the last


class DatabaseUnavailable(Exception):
    """A batch could not be applied and the database does not answer: the batch stays queued."""


def encode(payloads: list[dict[str, Any]]) -> list[str]:
    """Card event payloads as the list holds them: compact JSON, one string each."""
    return [json.dumps(p, separators=(",", ":"), default=str) for p in payloads]


# Move up to ARGV[1] payloads from the head of KEYS[1] to the tail of KEYS[2]; return them.
_MOVE = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  for i = 1, #items, 500 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 499, #items)))
  end
end
return items
"""

# Remove each of ARGV (once) from KEYS[1]: the applied payloads leave `processing`.
_DONE = """
for i = 1, #ARGV do
  redis.call('LREM', KEYS[1], 1, ARGV[i])
end
return #ARGV
"""


class CardEventDrainer:
    """Moves, applies and acknowledges batches of card-event payloads; one per worker process."""

    def __init__(self, runtime: Any, conn: redis_lib.Redis, batch: int = BATCH) -> None:
        self.runtime = runtime
        self.conn = conn
        self.batch = batch
        keys = runtime.state.keys
        self.pending = keys.card_events("pending")
        self.processing = keys.card_events("processing")
        self._move = conn.register_script(_MOVE)
        self._done = conn.register_script(_DONE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe: tuple[float, list[Any]] | None = None  # (when, head of `processing`) last seen

    # --- one step ----------------------------------------------------------------------------

    def _apply(self, raw: list[Any]) -> None:
        """Apply `raw` (already in `processing`), then take it out of `processing`."""
        payloads = []
        for item in raw:
            try:
                payloads.append(json.loads(item))
            except ValueError:
                log.error("dropping an unreadable card event payload: %r", item[:200])
        try:
            card_jobs.apply_event_batch(payloads)
        except Exception as error:
            if not card_db.ping():  # an outage, not a bad payload: keep the batch where it is
                raise DatabaseUnavailable(f"{len(payloads)} card event(s) wait: {type(error).__name__}") from error
            log.exception("card event batch of %d failed; handing it to RQ job by job", len(payloads))
            from . import runtime as runtime_module

            for payload in payloads:
                self.runtime.jobs.enqueue(card_jobs.apply_event_batch, [payload],
                                          retry=runtime_module.JOB_RETRY)
        self._done(keys=[self.processing], args=raw)

    def recover(self) -> int:
        """Re-apply what a drainer that died left in `processing` (idempotent by key)."""
        raw: list[Any] = self.conn.lrange(self.processing, 0, -1)
        for start in range(0, len(raw), self.batch):
            self._apply(raw[start:start + self.batch])
        return len(raw)

    def check_orphans(self, now: float) -> int:
        """Re-apply `processing` when the same payloads have sat at its head for ORPHAN_SECONDS:
        a drainer applies a batch in well under a second, so they are a dead drainer's (a worker
        killed mid-batch while others keep running, which would otherwise wait for the next
        worker to start). Returns how many payloads were re-applied."""
        head: list[Any] = self.conn.lrange(self.processing, 0, self.batch - 1)
        if not head:
            self._probe = None
            return 0
        if self._probe is None or self._probe[1] != head:
            self._probe = (now, head)
            return 0
        if now - self._probe[0] < ORPHAN_SECONDS:
            return 0
        self._probe = None
        log.warning("card event drainer: re-applying a batch left in processing by a drainer that stopped")
        return self.recover()

    def drain_once(self, block: int = 0) -> int:
        """Apply one batch; with `block`, wait up to that many seconds for the first payload."""
        raw: list[Any] = []
        if block:
            first = self.conn.blmove(self.pending, self.processing, block, "LEFT", "RIGHT")
            if first is None:
                return 0
            raw.append(first)
            self._stop.wait(LINGER_SECONDS)
        raw.extend(self._move(keys=[self.pending, self.processing], args=[self.batch - len(raw)]))
        if raw:
            self._apply(raw)
        return len(raw)

    def drain(self) -> int:
        """Apply everything waiting now (tests, `run_burst`); returns how many payloads. With the
        database down, what waits stays queued (logged): the count is of those applied before."""
        total = 0
        try:
            total = self.recover()
            while count := self.drain_once():
                total += count
        except DatabaseUnavailable as outage:
            log.warning("card event drainer: database unavailable; %s", outage)
        return total

    def backlog(self) -> int:
        return int(self.runtime.state.card_events_waiting())

    # --- the loop beside the RQ worker --------------------------------------------------------

    def run(self) -> None:
        recovered = False
        outages = 0  # consecutive tries that found the database down
        probed = 0.0
        while not self._stop.is_set():
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                self.drain_once(block=BLOCK_SECONDS)
                outages = 0
                if time.monotonic() - probed >= ORPHAN_SECONDS / 2:
                    probed = time.monotonic()
                    self.check_orphans(probed)
            except DatabaseUnavailable as outage:
                pause = OUTAGE_BACKOFF_SECONDS[min(outages, len(OUTAGE_BACKOFF_SECONDS) - 1)]
                log.warning("card event drainer: database unavailable; %s; retrying in %d s", outage, pause)
                outages += 1
                recovered = False  # the batch is still in `processing`: re-applied first when back
                self._stop.wait(pause)
            except redis_lib.RedisError:
                log.warning("card event drainer: redis unavailable; retrying in 1 s")
                recovered = False  # a batch may be stuck in `processing`: re-apply it when back
                self._stop.wait(1)
            except Exception:
                log.exception("card event drainer: unexpected fault; retrying in 1 s")
                recovered = False
                self._stop.wait(1)

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, daemon=True, name="hotline-card-events")
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else BLOCK_SECONDS + 5)
