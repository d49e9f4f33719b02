"""The Redis client of the live state: one connection kept for the process's commands."""

from __future__ import annotations

import os
from typing import Any

import redis


class KeptConnection(redis.Redis):
    """A client that keeps one connection of `pool` for all its commands (pipelines still
    borrow from the pool).

    A pooled client borrows and returns a connection around every command: two locked pool
    updates and their bookkeeping, about a third of a short command's client CPU. A webhook
    sends several, one at a time, so the live state keeps its connection instead. Like the
    pool, it looks at the connection before each command (one `poll()`): one the server
    closed (a restart, `CLIENT KILL`, an idle timeout) is made anew before the command is
    sent, never retried after. It connects on the first command, not when built, so a web
    process starts while Redis is down; after a fork the child takes a connection of its own
    (the parent's socket is never shared). Threads take turns on the connection: keep
    blocking commands on a pooled client.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        super().__init__(connection_pool=pool)
        self._single_connection_client = True  # redis-py then locks and uses self.connection
        self._owner_pid = os.getpid()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        with self.single_connection_lock:  # re-entrant: redis-py takes it again inside
            conn = self.connection
            if conn is None or self._owner_pid != os.getpid():
                self.connection = self.connection_pool.get_connection()  # checked by the pool
                self._owner_pid = os.getpid()
            elif not conn.is_connected:
                conn.connect()
            else:
                try:
                    stale = conn.can_read()  # data nobody asked for, or the server's close
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    stale = True
                if stale:
                    conn.disconnect()
                    conn.connect()
            return super().execute_command(*args, **options)
