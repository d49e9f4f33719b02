"""The card store's engine and sessions: SQLite embedded by default, PostgreSQL via psycopg 3.

One engine per process, built by `configure(url)` (the web app and the worker call it once);
web workers and RQ workers in other processes share the database, never the engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000  # writers queue behind each other instead of failing at once
_BEGIN_OPTION = "hotline_sqlite_begin"
MIGRATION_LOCK_KEY = 7_243_119  # pg_advisory lock id: two processes upgrading at once take turns

_lock = threading.Lock()
_engine: Engine | None = None
_reader: Engine | None = None
_url: str | None = None
_sessions: sessionmaker[Session] | None = None


def _is_sqlite(url: str | sa.URL) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; we emit BEGIN ourselves (see _begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, across processes
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commit
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front: a read-then-write transaction would otherwise hit
    # SQLITE_BUSY_SNAPSHOT on upgrade, which busy_timeout does not retry. Read-only work asks for
    # DEFERRED (see `session(readonly=True)`) so it never queues behind a writer under WAL.
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str) -> Engine:
    """An engine for `url` with the per-backend settings the card store relies on."""
    if not _is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True)
    parsed = sa.make_url(url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one in-memory database shared by every thread
    elif parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    eng = sa.create_engine(url, **kwargs)
    sa.event.listen(eng, "connect", _sqlite_pragmas)
    sa.event.listen(eng, "begin", _sqlite_begin)
    return eng


def make_reader_engine(url: str, main: Engine) -> Engine:
    """The engine of `read_first()`. On PostgreSQL its own small pool in autocommit, without the
    pre-ping: a webhook's one SELECT is then one round trip, not four (ping, BEGIN, SELECT,
    ROLLBACK). A connection that died with the server fails that one read (the caller
    degrades) and SQLAlchemy replaces the pool's connections. SQLite has no round trips: the
    main engine."""
    if _is_sqlite(url):
        return main
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8)


def configure(url: str) -> Engine:
    """Point this process at `url`; calling again with the same URL keeps the engine."""
    global _engine, _reader, _url, _sessions
    with _lock:
        if _engine is not None and _url == url:
            return _engine
        _dispose(close=True)
        _engine = make_engine(url)
        _reader = make_reader_engine(url, _engine)
        _url = url
        _sessions = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("recordings.db.configure(url) has not been called in this process")
    return _engine


@contextmanager
def session(readonly: bool = False) -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any exception.

    Objects stay readable after the block (expire_on_commit=False) so views can render them.
    On SQLite a writing session holds the write lock until it ends: keep it short and do not
    open a second writing session inside it in the same thread. `readonly=True` takes no lock.
    """
    if _sessions is None:
        raise RuntimeError("recordings.db.configure(url) has not been called in this process")
    s = _sessions()
    try:
        if readonly:
            s.connection(execution_options={_BEGIN_OPTION: "DEFERRED"})
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()


_READ_CURSOR = "hotline.read_cursor"


def read_first(stmt: sa.ClauseElement, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of `stmt` on the reader engine (`make_reader_engine`), for a webhook's
    hot read. Never write through it.

    The statement runs on the DBAPI cursor: it is compiled once per engine, and SQLAlchemy's
    per-execution machinery (context, result objects, events) cost more client CPU than the
    query's own round trip. On PostgreSQL the reader's connections are its own, so each keeps
    one cursor for these reads (in the pool's `info`, which a new connection starts empty): a
    psycopg cursor per read costs a third of the read. SQLite's reader is the main engine,
    whose cursors are closed after each read (an open one would hold its read snapshot).
    What SQLAlchemy does on a fault is kept: a connection that failed as a disconnect is
    invalidated, so the pool replaces it and the caller's fault is one read. Plain column
    types only: no result processing is applied.
    """
    eng = _reader
    if eng is None:
        raise RuntimeError("recordings.db.configure(url) has not been called in this process")
    sql, names = _compiled(eng, stmt)
    values: Any = tuple(params[name] for name in names) if names is not None else params
    keep = eng is not _engine
    raw = eng.raw_connection()
    try:
        cursor = raw.info.get(_READ_CURSOR) if keep else None
        if cursor is None or cursor.connection is not raw.dbapi_connection:
            cursor = raw.cursor()
            if keep:
                raw.info[_READ_CURSOR] = cursor
        try:
            cursor.execute(sql, values)
            return cursor.fetchone()  # type: ignore[no-any-return]
        except eng.dialect.loaded_dbapi.Error as error:
            raw.info.pop(_READ_CURSOR, None)
            if eng.dialect.is_disconnect(error, raw.dbapi_connection, cursor):
                raw.invalidate(error)
            raise
        finally:
            if not keep:
                cursor.close()
    finally:
        raw.close()  # back to the pool (or dropped, when invalidated)


def _compiled(eng: Engine, stmt: sa.ClauseElement) -> tuple[str, tuple[str, ...] | None]:
    """(SQL text, parameter order for a positional driver or None) of `stmt` on `eng`."""
    cache: dict[sa.ClauseElement, tuple[str, tuple[str, ...] | None]] = eng.__dict__.setdefault("_hotline_sql", {})
    found = cache.get(stmt)  # keyed by the statement itself: module constants, a handful
    if found is None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=eng.dialect))
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        found = cache[stmt] = (str(compiled), order)
    return found


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` with Alembic, no alembic.ini needed."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            if eng.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        eng.dispose()


def truncate_all() -> None:
    """Delete every row of every card table (tests). The schema and alembic_version stay."""
    from .models import Base

    tables = list(reversed(Base.metadata.sorted_tables))
    with engine().begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(conn.dialect.identifier_preparer.quote(t.name) for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


def ping() -> bool:
    """True when the database answers; for /healthz, so it never raises."""
    try:
        with engine().connect() as conn:
            conn.execution_options(**{_BEGIN_OPTION: "DEFERRED"}).execute(sa.text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any fault means "not healthy", never a 500
        return False


def _dispose(close: bool) -> None:
    for eng in {id(e): e for e in (_engine, _reader) if e is not None}.values():
        eng.dispose(close=close)


def dispose() -> None:
    """Close this process's pooled connections (shutdown, a benchmark's teardown)."""
    with _lock:
        _dispose(close=True)


def _after_fork_in_child() -> None:
    # A forked child (gunicorn --preload) must not share the parent's pooled sockets.
    _dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
