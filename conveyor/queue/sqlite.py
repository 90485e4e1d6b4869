"""SQLite :class:`~conveyor.queue.JobQueue`: the default, one file, no server.

Several named queues share one table, ``queue_jobs``, told apart by its
``queue`` column; dead letters are rows in state ``dead``. A row is in one of
three states:

* ``queued`` — visible once ``visible_at`` has passed (delayed before);
* ``leased`` — ``visible_at`` is when the lease runs out (``leased_until``);
  after that the row is visible again and the next receive redelivers it;
* ``dead`` — in the dead-letter queue since ``dead_at``.

``receive`` picks and leases rows in one ``BEGIN IMMEDIATE`` transaction, which
takes SQLite's write lock first, so concurrent receivers — threads or processes
opening the same file — never get the same job. Every other write is a single
statement. Each thread uses its own connection (WAL mode, busy timeout).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._sqlite import Connection, connect, sqlite3, table_exists, transaction
from ..exceptions import ConfigurationError, safe_summary
from . import (
    DEFAULT_MAX_RECEIVES,
    DeadLetter,
    Lease,
    LeaseLost,
    QueueDepth,
    _check_timeout,
    _encode,
    expired_message,
)

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS queue_jobs (
    id            TEXT PRIMARY KEY,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'dead')),
    enqueued_at   REAL NOT NULL,
    visible_at    REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    last_error    TEXT,
    dead_at       REAL
)"""

CREATE_INDEX = """
CREATE INDEX IF NOT EXISTS queue_jobs_visible ON queue_jobs (queue, state, visible_at)"""

# Receiving walks the live jobs in FIFO order and stops after ``limit`` visible
# ones, instead of sorting the whole backlog while holding the write lock.
CREATE_FIFO_INDEX = """
CREATE INDEX IF NOT EXISTS queue_jobs_fifo ON queue_jobs (queue, enqueued_at, visible_at)
WHERE state != 'dead'"""

INSERT_JOB = """
INSERT INTO queue_jobs (id, queue, body, state, enqueued_at, visible_at)
VALUES (:id, :queue, :body, 'queued', :now, :visible_at)"""

SELECT_VISIBLE = """
SELECT id, body, receive_count, last_error FROM queue_jobs
WHERE queue = :queue AND state != 'dead' AND visible_at <= :now
ORDER BY enqueued_at, visible_at, rowid
LIMIT :limit"""

LEASE_JOB = """
UPDATE queue_jobs
SET state = 'leased', receipt = :receipt, receive_count = receive_count + 1,
    visible_at = :leased_until
WHERE id = :id"""

KILL_EXHAUSTED = """
UPDATE queue_jobs SET state = 'dead', receipt = NULL, dead_at = :now, last_error = :error
WHERE id = :id"""

# The statements below act only while the lease's receipt is current.
_HELD = "WHERE id = :id AND queue = :queue AND state = 'leased' AND receipt = :receipt"

EXTEND_LEASE = f"UPDATE queue_jobs SET visible_at = :leased_until {_HELD}"

ACK_JOB = f"DELETE FROM queue_jobs {_HELD}"

RELEASE_JOB = f"""
UPDATE queue_jobs
SET state = 'queued', receipt = NULL, visible_at = :visible_at, last_error = :error,
    receive_count = max(0, receive_count - :refund)
{_HELD}"""

DEAD_LETTER_JOB = f"""
UPDATE queue_jobs SET state = 'dead', receipt = NULL, dead_at = :now, last_error = :error
{_HELD}"""

COUNT_STATES = """
SELECT
    coalesce(sum(state != 'dead' AND visible_at <= :now), 0) AS visible,
    coalesce(sum(state = 'leased' AND visible_at > :now), 0) AS in_flight,
    coalesce(sum(state = 'queued' AND visible_at > :now), 0) AS delayed,
    coalesce(sum(state = 'dead'), 0) AS dead
FROM queue_jobs WHERE queue = :queue"""

# the fleet-wide cap (CONVEYOR_MAX_IN_FLIGHT): leases not yet run out
COUNT_IN_FLIGHT = """
SELECT count(*) FROM queue_jobs WHERE queue = :queue AND state = 'leased' AND visible_at > :now"""

OLDEST_VISIBLE = """
SELECT min(enqueued_at) FROM queue_jobs WHERE queue = :queue AND state != 'dead'
AND visible_at <= :now"""

SELECT_DEAD = """
SELECT id, body, receive_count, last_error, enqueued_at, dead_at FROM queue_jobs
WHERE queue = :queue AND state = 'dead'
ORDER BY dead_at DESC, rowid DESC
LIMIT :limit"""

_REDRIVE = """
UPDATE queue_jobs
SET state = 'queued', receive_count = 0, last_error = NULL, dead_at = NULL, visible_at = :now
WHERE queue = :queue AND state = 'dead'"""

REDRIVE_ALL = _REDRIVE

REDRIVE_ONE = _REDRIVE + " AND id = :id"


class SqliteQueue:
    """A :class:`~conveyor.queue.JobQueue` in a SQLite file.

    ``path_or_conn_factory`` is the database file, or a callable returning a
    new autocommit connection (``isolation_level=None``, e.g. a
    :func:`conveyor._sqlite.connect` partial); it is called once per thread.
    ``name`` picks the queue within the file.
    """

    def __init__(
        self,
        path_or_conn_factory: str | Path | Callable[[], Connection],
        name: str = "default",
        *,
        max_receives: int = DEFAULT_MAX_RECEIVES,
        clock: Callable[[], float] = time.time,
        max_in_flight: int | None = None,
    ) -> None:
        """``max_in_flight``: at most this many jobs leased at once from this queue, by
        every process that opens it (``CONVEYOR_MAX_IN_FLIGHT``); None: no cap."""
        if max_receives < 1:
            raise ValueError(f"max_receives must be >= 1, got {max_receives!r}")
        if not name:
            raise ValueError("a queue name must not be empty")
        if callable(path_or_conn_factory):
            self._factory: Callable[[], Connection] = path_or_conn_factory
            self._where = getattr(path_or_conn_factory, "__name__", "connection factory")
        else:
            path = str(path_or_conn_factory)
            if path == ":memory:" or path.startswith("file::memory:"):
                raise ConfigurationError(
                    "an in-memory SQLite database is private to one connection; "
                    "use a file path, or memory:// for the in-memory queue"
                )
            self._factory = lambda: connect(path, vec=False)
            self._where = path
        self.name = name
        self.max_receives = max_receives
        self.max_in_flight = max_in_flight or None
        self._clock = clock
        self._closed = False
        self._reset_connections()
        try:
            conn = self._conn()
            if not table_exists(conn, "queue_jobs_fifo"):  # read-only users take no lock
                conn.execute(CREATE_TABLE)
                conn.execute(CREATE_INDEX)
                conn.execute(CREATE_FIFO_INDEX)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open the queue database {self._where}: {safe_summary(exc)}"
            ) from exc

    def __repr__(self) -> str:
        return f"SqliteQueue({self._where!r}, name={self.name!r})"

    # -- connections -----------------------------------------------------

    def _reset_connections(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()

    def _conn(self) -> Connection:
        """This thread's connection, opened on first use."""
        if os.getpid() != self._pid:  # forked: never share the parent's connections
            self._reset_connections()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            conn = self._factory()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    # -- sending ---------------------------------------------------------

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        job_id = uuid.uuid4().hex
        now = self._clock()
        self._conn().execute(
            INSERT_JOB,
            {
                "id": job_id,
                "queue": self.name,
                "body": _encode(body),
                "now": now,
                "visible_at": now + max(0.0, delay),
            },
        )
        return job_id

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        rows = [{"id": uuid.uuid4().hex, "queue": self.name, "body": _encode(b)} for b in bodies]
        if not rows:
            return []
        conn = self._conn()
        with transaction(conn):
            now = self._clock()
            conn.executemany(INSERT_JOB, [{**row, "now": now, "visible_at": now} for row in rows])
        return [row["id"] for row in rows]

    # -- leasing ---------------------------------------------------------

    def receive(self, max_jobs: int = 1, visibility_timeout: float = 60.0) -> list[Lease]:
        _check_timeout(visibility_timeout)
        leases: list[Lease] = []
        if max_jobs < 1:
            return leases
        conn = self._conn()
        with transaction(conn):
            now = self._clock()  # read after taking the write lock
            leased_until = now + visibility_timeout
            if self.max_in_flight:  # the write lock makes count-then-lease atomic
                held = conn.execute(COUNT_IN_FLIGHT, {"queue": self.name, "now": now})
                max_jobs = min(max_jobs, self.max_in_flight - int(held.fetchone()[0]))
            while len(leases) < max_jobs:
                rows = conn.execute(
                    SELECT_VISIBLE,
                    {"queue": self.name, "now": now, "limit": max_jobs - len(leases)},
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    count = row["receive_count"]
                    if count >= self.max_receives:
                        error = row["last_error"] or expired_message(count)
                        conn.execute(KILL_EXHAUSTED, {"id": row["id"], "now": now, "error": error})
                        continue
                    receipt = uuid.uuid4().hex
                    conn.execute(
                        LEASE_JOB,
                        {"id": row["id"], "receipt": receipt, "leased_until": leased_until},
                    )
                    leases.append(
                        Lease(
                            job_id=row["id"],
                            receipt=receipt,
                            body=json.loads(row["body"]),
                            receive_count=count + 1,
                            leased_until=leased_until,
                            last_error=row["last_error"],
                        )
                    )
        return leases

    def _held(self, sql: str, lease: Lease, **params: Any) -> None:
        """Run ``sql`` on the job ``lease`` holds; :class:`LeaseLost` if it holds none."""
        cursor = self._conn().execute(
            sql, {"id": lease.job_id, "queue": self.name, "receipt": lease.receipt, **params}
        )
        if cursor.rowcount != 1:
            raise LeaseLost(f"lease on job {lease.job_id} is no longer current")

    def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        _check_timeout(visibility_timeout)
        leased_until = self._clock() + visibility_timeout
        self._held(EXTEND_LEASE, lease, leased_until=leased_until)
        return replace(lease, leased_until=leased_until)

    def ack(self, lease: Lease) -> None:
        self._held(ACK_JOB, lease)

    def ack_many(self, leases: list[Lease]) -> list[Lease]:
        """:meth:`ack` each of ``leases`` in one transaction; returns those whose lease
        was no longer current (left alone)."""
        lost = []
        with transaction(self._conn()):  # _held runs on this thread's connection
            for lease in leases:
                try:
                    self._held(ACK_JOB, lease)
                except LeaseLost:
                    lost.append(lease)
        return lost

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        visible_at = self._clock() + max(0.0, delay)
        self._held(RELEASE_JOB, lease, visible_at=visible_at, error=error, refund=int(refund))

    def dead_letter(self, lease: Lease, error: str) -> None:
        self._held(DEAD_LETTER_JOB, lease, now=self._clock(), error=error)

    # -- inspecting ------------------------------------------------------

    def depth(self) -> QueueDepth:
        row = (
            self._conn()
            .execute(COUNT_STATES, {"queue": self.name, "now": self._clock()})
            .fetchone()
        )
        return QueueDepth(
            visible=row["visible"],
            in_flight=row["in_flight"],
            delayed=row["delayed"],
            dead=row["dead"],
        )

    def oldest_visible_age(self) -> float | None:
        """Seconds since the oldest visible job was sent; None when none is visible."""
        now = self._clock()
        row = self._conn().execute(OLDEST_VISIBLE, {"queue": self.name, "now": now}).fetchone()
        return None if row[0] is None else max(0.0, now - float(row[0]))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = (
            self._conn()
            .execute(SELECT_DEAD, {"queue": self.name, "limit": max(0, limit)})
            .fetchall()
        )
        return [
            DeadLetter(
                job_id=row["id"],
                body=json.loads(row["body"]),
                receive_count=row["receive_count"],
                error=row["last_error"],
                first_seen=row["enqueued_at"],
                last_seen=row["dead_at"],
            )
            for row in rows
        ]

    def redrive(self, job_ids: list[str] | None = None) -> int:
        conn = self._conn()
        now = self._clock()
        if job_ids is None:
            return int(conn.execute(REDRIVE_ALL, {"queue": self.name, "now": now}).rowcount)
        moved = 0
        with transaction(conn):
            for job_id in dict.fromkeys(job_ids):
                params = {"queue": self.name, "now": now, "id": job_id}
                moved += conn.execute(REDRIVE_ONE, params).rowcount
        return moved
