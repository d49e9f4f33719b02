"""The Redis client of the live state: one connection kept for the process's commands."""

from __future__ import annotations

import os
from typing import Any

import hiredis  # a dependency (redis[hiredis])
import redis
from redis.client import EMPTY_RESPONSE, NEVER_DECODE


class KeptConnection(redis.Redis):
    """A client that keeps one connection of `pool` for all its commands (pipelines still
    borrow from the pool).

    A pooled client borrows and returns a connection around every command: two locked pool
    updates and their bookkeeping, about a third of a short command's client CPU. A webhook
    sends several, one at a time, so the live state keeps its connection instead. Like the
    pool, it looks at the connection before each command (one `poll()`): one the server
    closed (a restart, `CLIENT KILL`, an idle timeout) is made anew before the command is
    sent; a command is never retried after. It connects on the first command, not when
    built, so a web process starts while Redis is down; after a fork the child takes a
    connection of its own (the parent's socket is never shared). Threads take turns on the
    connection: keep blocking commands on a pooled client.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        super().__init__(connection_pool=pool)
        self._single_connection_client = True  # redis-py then locks and uses self.connection
        self._owner_pid = os.getpid()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and read its answer on the kept connection.

        redis-py's own path wraps each command in a retry loop, observability hooks and
        closures, as much client CPU as the round trip itself; this is the part of it the
        live state needs. No retry: a command is sent once (a script that claims an agent must
        not run twice), and a connection that fails mid-command is dropped, not reused.
        """
        with self.single_connection_lock:
            conn = self._ready_connection()
            try:
                conn.send_packed_command(_pack(conn, args))
                response = conn.read_response(disable_decoding=NEVER_DECODE in options)
            except redis.ResponseError:
                if EMPTY_RESPONSE in options:
                    return options[EMPTY_RESPONSE]
                raise
            except BaseException:
                conn.disconnect()  # half a command may be on the wire: never reuse it
                raise
        callback = self.response_callbacks.get(args[0])
        if callback is None:
            return response
        for option in (NEVER_DECODE, EMPTY_RESPONSE, "keys"):
            options.pop(option, None)
        return callback(response, **options)

    def _ready_connection(self) -> Any:
        """The kept connection, connected and with nothing unread (caller holds the lock)."""
        conn = self.connection
        if conn is None or self._owner_pid != os.getpid():
            self.connection = conn = self.connection_pool.get_connection()  # checked by the pool
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
        return conn


def _pack(conn: Any, args: tuple[Any, ...]) -> Any:
    """The command in RESP. hiredis packs str, bytes, int and float itself: redis-py's packer
    first copies every argument through a generator, which for a routing snapshot (two
    arguments an agent) costs more than the packing."""
    if isinstance(args[0], str) and " " not in args[0]:  # "CLIENT ID" and the like: redis-py splits them
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a bytearray or memoryview: redis-py converts it
            pass
    return conn.pack_command(*args)
