"""The catalog in a SQLite file: the default, in the same file as the queue.

Each thread has its own connection (WAL mode, busy timeout); multi-statement
writes take SQLite's write lock first (``BEGIN IMMEDIATE``), which also
serialises the completion of a document's parts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._sqlite import connect, table_exists, transaction
from ..lexical.sqlite import SCHEMA as LEXICAL_SCHEMA
from .measurements import ensure_sqlite
from .sql import SqlCatalog

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS documents (
        id TEXT PRIMARY KEY,
        collection TEXT NOT NULL,
        source TEXT NOT NULL,
        run TEXT,
        state TEXT NOT NULL,
        stage TEXT,
        content_hash TEXT,
        fingerprint TEXT,
        kind TEXT,
        mime TEXT,
        size INTEGER,
        chunks INTEGER NOT NULL DEFAULT 0,
        model TEXT,
        error TEXT,
        error_kind TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL DEFAULT '{}',
        timings TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS documents_state ON documents (state, collection)",
    "CREATE INDEX IF NOT EXISTS documents_run ON documents (run)",
    # the API's live view reads the documents changed last, and done ones by time
    "CREATE INDEX IF NOT EXISTS documents_updated ON documents (updated_at)",
    "CREATE INDEX IF NOT EXISTS documents_state_updated ON documents (state, updated_at)",
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        collection TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        enqueued INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS deltas (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL,
        document_id TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        header TEXT NOT NULL,
        chunks TEXT NOT NULL,
        vectors BLOB NOT NULL,
        created_at REAL NOT NULL,
        applied_at REAL,
        error TEXT,
        read_at REAL,
        delivery TEXT,
        part INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS deltas_pending ON deltas (state, collection, id)",
    "CREATE INDEX IF NOT EXISTS deltas_document ON deltas (document_id, collection)",
    "CREATE INDEX IF NOT EXISTS deltas_delivery ON deltas (document_id, delivery)",
    """CREATE TABLE IF NOT EXISTS compaction_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL,
        state TEXT NOT NULL,
        deltas INTEGER NOT NULL DEFAULT 0,
        chunks INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS embedding_cache (
        model TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL,
        state TEXT NOT NULL,
        in_flight INTEGER NOT NULL DEFAULT 0,
        jobs_done INTEGER NOT NULL DEFAULT 0,
        jobs_failed INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        leased_until REAL NOT NULL
    )""",
    *LEXICAL_SCHEMA,  # the lexical index (conveyor.lexical.sqlite)
]

NEWEST = "lexical_chunks_document"  # created last: when it exists, so does everything else


def _add_delta_columns(conn: Any) -> None:
    """A file from before deltas had ``read_at``, ``delivery`` and ``part`` columns:
    add them, filled from the headers of the deltas already there."""
    if not table_exists(conn, "deltas"):
        return
    columns = {row[1] for row in conn.execute("PRAGMA table_info(deltas)")}
    if "delivery" in columns:
        return
    for column, kind in (("read_at", "REAL"), ("delivery", "TEXT"), ("part", "INTEGER")):
        conn.execute(f"ALTER TABLE deltas ADD COLUMN {column} {kind}")
    conn.execute(
        "UPDATE deltas SET read_at = json_extract(header, '$.read_at'),"
        " delivery = json_extract(header, '$.delivery'),"
        " part = coalesce(json_extract(header, '$.part'), 0)"
    )


class _Session:
    """A SQLite connection as :class:`~conveyor.catalog.sql.Session`; ``:now`` is
    bound to the catalog's clock."""

    def __init__(self, conn: Any, clock: Callable[[], float]) -> None:
        self.conn = conn
        self.clock = clock

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, {"now": self.clock(), **(params or {})})
        return [dict(r) for r in cursor.fetchall()]

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        cursor = self.conn.execute(sql, {"now": self.clock(), **(params or {})})
        return int(cursor.rowcount)

    def run_many(self, sql: str, params: Sequence[dict[str, Any]]) -> None:
        now = self.clock()
        self.conn.executemany(sql, [{"now": now, **p} for p in params])


class SqliteCatalog(SqlCatalog):
    """The catalog in a SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.clock = clock
        self._local = threading.local()
        # read-only users take no lock; the newest index tells an older file to catch up
        if not table_exists(self._conn(), NEWEST):
            with transaction(self._conn()) as conn:
                _add_delta_columns(conn)
                for statement in SCHEMA:
                    conn.execute(statement)
        ensure_sqlite(self._conn())  # jobs' measurements (conveyor.catalog.measurements)

    def __repr__(self) -> str:
        return f"SqliteCatalog({self.path!r})"

    def _conn(self) -> Any:
        """This thread's connection, opened on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, vec=False)
        return conn

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        yield _Session(self._conn(), self.clock)

    @contextmanager
    def _transaction(self) -> Iterator[_Session]:
        with transaction(self._conn()) as conn:
            yield _Session(conn, self.clock)

    def _json(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
