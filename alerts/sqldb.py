"""One SQL database under the alert store: a SQLite file (one hub, the default) or a PostgreSQL schema (hubs share it).

The store writes its SQL once, in what both engines take: ``?`` placeholders, ``INSERT … ON CONFLICT``, ``excluded.``,
partial indexes, ``LIMIT ?`` with a non-negative limit. This module opens either engine and gives the store the same
four things: a write transaction that is the only writer of its database while it runs (the audit log is one hash
chain, so its rows need one order), a read, a streamed read, and rows read by column name or position.

On PostgreSQL each community has its own schema (``anju_{community}``): the tables, the audit chain and the write lock
are that community's, so a standby hub that takes a community over (hub/lease.py) opens exactly what the dead one
wrote, and one community's writes never wait for another's. Writers of one schema are serialised by a transaction
advisory lock, PostgreSQL's counterpart of SQLite's ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = [
    "CHAIN_SQLSTATE",
    "FENCE_SQLSTATE",
    "Database",
    "DatabaseError",
    "Fence",
    "FencedOut",
    "InvalidValue",
    "Row",
    "Session",
    "append_only_ddl",
    "chained_ddl",
    "is_integrity_error",
    "is_postgres_url",
    "open_database",
    "postgres_ddl",
]

_SCHEMA_NAME = re.compile(r"^[a-z0-9_-]{1,63}$")


class DatabaseError(Exception):
    """The database could not be opened or reached; the message names which one and why (never its password)."""


class InvalidValue(ValueError):
    """A value the database will not store or compare — text with a NUL character (PostgreSQL refuses it), a number
    out of its column's range: SQLSTATE class 22, the caller's input at fault, not the database. Nothing was
    written (the transaction rolled back); the API answers 422."""


class FencedOut(DatabaseError):
    """A write was refused because this process no longer holds the right to write (its lease, hub/lease.py)."""


Fence = Callable[[], Sequence[tuple[str, Sequence[Any]]]]
"""Statements (with their parameters) run first in every write transaction; one of them raises an error with SQLSTATE
``FENCE_SQLSTATE`` when the write must not happen, and the transaction ends with :class:`FencedOut`. No row is read,
so in pipeline mode the check costs no round trip of its own. The hub passes its lease check (hub/lease.py): the
lease lock, shared, then the lease's epoch."""

FENCE_SQLSTATE = "AJ001"
"""The SQLSTATE of a fence's refusal (class ``AJ``: Anju's own)."""
CHAIN_SQLSTATE = "AJ002"
"""The SQLSTATE of an audit row whose ``prev_hash`` is not the chain's head (``chained_ddl``)."""


class Row(Protocol):
    """A result row read as ``row["column"]`` or ``row[0]`` (``sqlite3.Row``'s reading interface)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...


class Session(Protocol):
    """The connection inside a transaction: what the store's statements run on."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


class Database(ABC):
    """Base of the two engines; ``dialect`` is ``"sqlite"`` or ``"postgresql"``."""

    dialect: ClassVar[str]
    where: str
    """The file or ``host:port/database/schema`` this is, for messages (no password)."""

    @abstractmethod
    def transaction(self, *, durable: bool = True, pipelined: bool = False) -> AbstractContextManager[Session]:
        """One write transaction. ``pipelined``: the statements may be sent without waiting for each one's answer
        (PostgreSQL's pipeline mode), for a caller that reads no row count and catches no error of a single statement
        (an error still aborts the transaction, raised by the time the block ends)."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @abstractmethod
    def stream(self, sql: str, params: Sequence[Any] = (), *, page: int = 500) -> Generator[list[Any], None, None]:
        """The rows of ``sql`` in pages of ``page``, without holding them all in memory (the audit walk)."""

    @abstractmethod
    def script(self, ddl: str) -> None:
        """Run several DDL statements (the schema) as one transaction."""

    @abstractmethod
    def close(self) -> None: ...


class SqliteDatabase(Database):
    """A SQLite file in WAL mode, synchronous FULL; one connection guarded by a lock serves every thread."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.where = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.where, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: an alert that was committed must survive a power cut of the hub box.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")

    @contextmanager
    def transaction(self, *, durable: bool = True, pipelined: bool = False) -> Iterator[Session]:
        """One write transaction (``BEGIN IMMEDIATE``: the only writer; ``pipelined`` changes nothing here).
        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``): a power cut may lose it, a
        crash of the hub does not — only for records whose loss repeats harmless work."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def stream(self, sql: str, params: Sequence[Any] = (), *, page: int = 500) -> Generator[list[Any], None, None]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            try:
                while rows := cursor.fetchmany(page):
                    yield rows
            finally:
                cursor.close()

    def script(self, ddl: str) -> None:
        with self._lock:
            self._db.executescript(ddl)

    def columns(self, table: str) -> set[str]:
        with self._lock:
            return {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def has_foreign_keys(self, table: str) -> bool:
        with self._lock:
            return bool(self._db.execute(f"PRAGMA foreign_key_list({table})").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PgRow(tuple[Any, ...]):
    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[_PgRow]:
    return type("Row", (_PgRow,), {"__slots__": (), "_index": {name: i for i, name in enumerate(names)}})


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(column.name for column in description))


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); the store's SQL has no ``?`` in a string."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgSession:
    def __init__(self, connection: Any, memo: dict[str, Any], *, pipelined: bool = False) -> None:
        self._connection = connection
        self._pipelined = pipelined
        self.memo = memo
        """Values the store keeps from one of its transactions to the next (the audit chain's head), valid while this
        process is the schema's only writer; kept only when the transaction commits (``PostgresDatabase``)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._connection.execute(_pg_sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if not batch:
            return
        if self._pipelined:
            # Queued one by one: psycopg's executemany opens a nested pipeline, whose end is a sync — a round trip
            # each time, where the whole transaction otherwise waits once, at its commit.
            for row in batch:
                self._connection.execute(_pg_sql(sql), row)
            return
        with self._connection.cursor() as cursor:
            cursor.executemany(_pg_sql(sql), batch)


def postgres_ddl(sqlite_ddl: str) -> str:
    """The store's SQLite DDL in PostgreSQL's words: 64-bit integers (times are milliseconds) and identity keys."""
    ddl = sqlite_ddl.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
    return re.sub(r"\bINTEGER\b", "BIGINT", ddl)


IDLE_IN_TRANSACTION_S = 10
"""Seconds a session may wait inside a transaction before the server ends it; the store's transactions take
milliseconds."""


class PostgresDatabase(Database):
    """One schema of a PostgreSQL database over two connections, each guarded by its lock and opened again at the next
    call after the server dropped it: one for write transactions, one for reads (autocommit: each read sees every
    committed write), so a read never queues behind a write's round trips and flush."""

    dialect = "postgresql"

    def __init__(self, url: str, *, schema: str, fence: Fence | None = None, read_only: bool = False) -> None:
        import psycopg

        if not _SCHEMA_NAME.match(schema):
            raise DatabaseError(f"schema name {schema!r}: use 1-63 of a-z, 0-9, '_' and '-'")
        self._psycopg = psycopg
        self._url = url
        self.schema = schema
        self._fence = fence
        info = psycopg.conninfo.conninfo_to_dict(url)
        self.where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}/{schema}"
        digest = hashlib.sha256(f"anju-writer:{schema}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer: Any = None
        self._reader: Any = None
        self._closed = False
        self._memo: dict[str, Any] = {}
        self.read_only = read_only
        if read_only:
            return
        with self._lock:
            self._writer = self._connect(create_schema=True)

    def _connect(self, *, create_schema: bool = False) -> Any:
        psycopg = self._psycopg
        try:
            connection = psycopg.connect(self._url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatabaseError(f"PostgreSQL {self.where}: {_first_line(exc)}") from None
        identifier = psycopg.sql.Identifier(self.schema)
        if create_schema:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                connection.execute(psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(identifier))
        connection.execute(psycopg.sql.SQL("SET search_path TO {}").format(identifier))
        # A process frozen inside a transaction (stopped, swapped out) would hold its locks — a standby's takeover
        # waits for them — until its session ends: the server ends it after this long idle in a transaction.
        connection.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S}s'")
        if self.read_only:
            # The server refuses every write of this session: a reader of another process's schema cannot alter it.
            connection.execute("SET default_transaction_read_only = on")
        return connection

    @staticmethod
    def _usable(connection: Any) -> bool:
        return connection is not None and not connection.closed and not connection.broken

    def _write_connection(self) -> Any:
        """The writer, opened again when the last one broke (a server restart, a network cut); under ``_lock``."""
        if self._closed:
            raise DatabaseError(f"PostgreSQL {self.where}: the database was closed")
        if self.read_only:
            raise DatabaseError(f"PostgreSQL {self.where}: opened read-only, nothing may be written")
        if not self._usable(self._writer):
            self._writer = self._connect()
        return self._writer

    def _read_connection(self) -> Any:
        """The reader, opened at first use and again when it broke; under ``_read_lock``."""
        if self._closed:
            raise DatabaseError(f"PostgreSQL {self.where}: the database was closed")
        if not self._usable(self._reader):
            self._reader = self._connect()
        return self._reader

    @contextmanager
    def transaction(self, *, durable: bool = True, pipelined: bool = False) -> Iterator[Session]:
        """One write transaction holding the schema's writer lock until it ends. ``durable=False``: committed
        without waiting for the WAL flush (``synchronous_commit off``), as SQLite's ``synchronous=NORMAL``.
        ``pipelined``: in pipeline mode, where a transaction waits for the server only where it reads a row and at its
        commit — the fence reads none, and the audit chain's head is read once and then kept in the session's memo —
        so a hot write is one round trip; but a row count or a statement's error arrives only at the next wait."""
        with self._lock:
            connection = self._write_connection()
            session = _PgSession(connection, dict(self._memo), pipelined=pipelined)
            try:
                with connection.pipeline() if pipelined else nullcontext(), connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    if self._fence is not None:
                        for sql, params in self._fence():
                            session.execute(sql, params)
                    if not durable:
                        connection.execute("SET LOCAL synchronous_commit TO off")
                    yield session
            except self._psycopg.Error as exc:
                self._memo = {}
                refused = self._refusal(exc)
                if refused is None:
                    raise
                raise refused from None
            except BaseException:
                self._memo = {}
                raise
            self._memo = session.memo

    def _refusal(self, exc: BaseException) -> DatabaseError | InvalidValue | None:
        """The error to raise for a write the server refused on purpose (the fence, the audit chain) or for a value
        it cannot take (class 22), else None."""
        state = getattr(exc, "sqlstate", None)
        if state is not None and state.startswith("22"):
            return InvalidValue(_first_line(exc))
        if state == FENCE_SQLSTATE:
            return FencedOut(f"PostgreSQL {self.where}: write refused, this hub no longer holds the lease")
        if state == CHAIN_SQLSTATE:
            return DatabaseError(
                f"PostgreSQL {self.where}: the audit chain moved under this writer (another process appended to it); "
                "nothing was written, and the next write reads the chain's head again"
            )
        return None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._read_lock:
            try:
                return list(self._read_connection().execute(_pg_sql(sql), params).fetchall())
            except self._psycopg.DataError as exc:
                raise InvalidValue(_first_line(exc)) from None

    def stream(self, sql: str, params: Sequence[Any] = (), *, page: int = 500) -> Generator[list[Any], None, None]:
        with self._read_lock:
            connection = self._read_connection()
            with connection.transaction(), connection.cursor(name="anju_stream") as cursor:
                cursor.itersize = page
                cursor.execute(_pg_sql(sql), params)
                while rows := cursor.fetchmany(page):
                    yield rows

    def script(self, ddl: str) -> None:
        with self._lock:
            connection = self._write_connection()
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                connection.execute(ddl)

    def close(self) -> None:
        """Close both connections; a later call raises instead of opening new ones."""
        with self._lock, self._read_lock:
            self._closed = True
            for connection in (self._writer, self._reader):
                if connection is not None:
                    connection.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_database(
    target: str | Path, *, schema: str = "anju", fence: Fence | None = None, read_only: bool = False
) -> Database:
    """A SQLite file at ``target`` (``":memory:"`` for one process), or the ``schema`` of the PostgreSQL database at a
    ``postgresql://`` URL (its password best from libpq's ``PGPASSFILE``, not the URL), every write there checked by
    ``fence`` first. ``read_only`` (PostgreSQL only: another process's schema, read by the district node) creates
    nothing and refuses every write, in this process and at the server."""
    if is_postgres_url(target):
        return PostgresDatabase(str(target), schema=schema, fence=fence, read_only=read_only)
    if read_only:
        raise DatabaseError(f"{target}: a read-only view is for a PostgreSQL schema, not a SQLite file")
    return SqliteDatabase(target)


def is_integrity_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a constraint refusing a write (a UNIQUE name taken, a NOT NULL, a foreign key), from either
    engine: ``sqlite3.IntegrityError`` or ``psycopg.errors.IntegrityError``. psycopg is looked for only once loaded
    (it is imported when a PostgreSQL database opens), so SQLite-only hubs never import it."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    import sys

    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.errors.IntegrityError)


def chained_ddl(table: str, genesis: str) -> str:
    """PostgreSQL: a trigger that refuses a row of the audit log ``table`` whose ``prev_hash`` is not the hash of the
    chain's head (``genesis`` for the first), with SQLSTATE ``CHAIN_SQLSTATE``. The store may then keep the head
    between its transactions instead of reading it in each (a round trip): should another process have appended
    meanwhile, the write fails whole instead of forking the chain."""
    return f"""
CREATE OR REPLACE FUNCTION {table}_chained() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE head TEXT;
BEGIN
    IF NEW.hash IS NULL THEN RETURN NEW; END IF;
    SELECT hash INTO head FROM {table} WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1;
    IF NEW.prev_hash IS DISTINCT FROM COALESCE(head, '{genesis}') THEN
        RAISE EXCEPTION 'audit row does not follow the head of the chain' USING ERRCODE = '{CHAIN_SQLSTATE}';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER {table}_chained BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_chained();
"""


def append_only_ddl(table: str, dialect: str) -> str:
    """Triggers that refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE, which skips row triggers) of ``table``, an
    audit log. The SQLite text is the one the first databases were made with, so their files open unchanged. The
    owner of the database can still drop them: the hash chain is what makes such a change detectable."""
    if dialect == "sqlite":
        return f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
    return f"""
CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only();
"""
