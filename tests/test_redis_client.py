"""The live state's client keeps one connection: lazily made, per process, recovered when lost."""

from __future__ import annotations

import os
import select
import socket
import threading

import pytest
import redis as redis_lib

from telephony.redis_client import KeptConnection


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_command_goes_over_one_connection(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    ids = {kept.client_id() for _ in range(20)}
    kept.set(f"{redis_prefix}k", "v")
    assert kept.get(f"{redis_prefix}k") == b"v"
    assert len(ids) == 1
    assert kept.client_id() in ids
    assert kept.connection is not None and kept.connection not in redis_conn.connection_pool._available_connections


def test_built_while_redis_is_down_and_fails_only_when_used() -> None:
    pool = redis_lib.ConnectionPool(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1)
    kept = KeptConnection(pool)  # a web process starts without Redis
    for _ in range(2):  # each command tries again, none hangs
        with pytest.raises(redis_lib.ConnectionError):
            kept.ping()
    assert kept.connection is None  # nothing half-made is kept


def test_a_connection_the_server_dropped_is_replaced(redis_conn: redis_lib.Redis) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    first = kept.client_id()
    assert redis_conn.client_kill_filter(_id=first) == 1
    assert kept.connection is not None
    select.select([kept.connection._sock], [], [], 5)  # the server's close has reached us
    assert kept.ping()  # made anew before the command is sent
    assert kept.client_id() != first


def test_threads_take_turns_on_the_connection(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    key = f"{redis_prefix}counter"

    def bump() -> None:
        for _ in range(200):
            kept.incr(key)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(redis_conn.get(key) or 0) == 1600
    assert len({kept.client_id() for _ in range(5)}) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_takes_its_own_connection(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    parent_id = kept.client_id()  # connected before the fork, as a preloaded app would be
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, never return into pytest
        code = 1
        try:
            os.write(write, str(kept.client_id()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    child_id = int(os.read(read, 64) or b"0")
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id and child_id != parent_id
    assert kept.client_id() == parent_id  # the parent's connection was left alone


def test_an_error_reply_is_raised_and_the_connection_kept(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    first = kept.client_id()
    kept.set(f"{redis_prefix}text", "not a number")
    with pytest.raises(redis_lib.ResponseError, match="not an integer"):
        kept.incr(f"{redis_prefix}text")
    assert kept.get(f"{redis_prefix}text") == b"not a number"  # the answer after the error is its own
    assert kept.client_id() == first


def test_answers_are_parsed_as_redis_py_parses_them(redis_conn: redis_lib.Redis, redis_prefix: str) -> None:
    kept = KeptConnection(redis_conn.connection_pool)
    key = f"{redis_prefix}parsed"
    assert kept.set(key, bytearray(b"raw")) is True and kept.get(key) == b"raw"  # redis-py's own packer
    assert kept.set(key, "1") is True
    assert kept.expire(key, 60) is True
    assert kept.hset(f"{key}:h", mapping={"a": "1", "b": "2"}) == 2
    assert kept.hgetall(f"{key}:h") == {b"a": b"1", b"b": b"2"}
    kept.zadd(f"{key}:z", {"x": 1.5})
    assert kept.zrange(f"{key}:z", 0, -1, withscores=True) == [(b"x", 1.5)]  # options reach the parser
    script = kept.register_script("return redis.call('GET', KEYS[1])")
    assert script(keys=[key]) == b"1"


def test_a_command_cut_off_mid_answer_drops_the_connection(redis_url: str, redis_prefix: str) -> None:
    pool = redis_lib.ConnectionPool.from_url(redis_url, socket_timeout=0.2)
    kept = KeptConnection(pool)
    first = kept.client_id()
    with pytest.raises(redis_lib.TimeoutError):
        kept.blpop([f"{redis_prefix}empty"], timeout=2)  # the answer comes after the socket gives up
    assert kept.connection is not None and not kept.connection.is_connected  # never read half an answer
    assert kept.ping()  # sent once, on a new connection: no retry of the command that failed
    assert kept.client_id() != first
    pool.disconnect()
