"""PostgreSQL :class:`~conveyor.queue.JobQueue`: one queue for workers on many hosts.

The table and states are those of :mod:`conveyor.queue.sqlite` (``queued``,
``leased``, ``dead``; several named queues told apart by the ``queue``
column), in the URL's schema (``conveyor`` unless ``?schema=`` says otherwise;
see :mod:`conveyor._postgres`).

``receive`` selects visible rows ``FOR UPDATE SKIP LOCKED`` and leases them in
the same statement: a row another receiver is taking is skipped rather than
waited for, and one it took is no longer visible when the lock is released, so
concurrent receivers on any number of hosts never get the same job and never
queue up behind each other. Each operation is one statement, one round trip.

Times — when a job becomes visible, when a lease runs out — come from the
database server's clock, not the host's: hosts' clocks differ, and a host
whose clock runs ahead would otherwise see other hosts' leases as expired.
Tests may pass a ``clock`` instead.

Bodies are stored as ``json`` (not ``jsonb``), so a job comes back exactly as
sent, and stays readable in ``psql``: ``SELECT body->>'source' FROM
conveyor.queue_jobs``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from .._postgres import SERVER_NOW, Pool
from ..exceptions import safe_summary
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

# A test clock's time when one is given (a parameter), else the server's.
NOW = f"coalesce(%(now)s::float8, {SERVER_NOW})"
# send_many: one instant for every statement of its transaction.
TX_NOW = "coalesce(%(now)s::float8, extract(epoch FROM transaction_timestamp())::float8)"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS queue_jobs (
        id            text PRIMARY KEY,
        queue         text NOT NULL,
        body          json NOT NULL,
        state         text NOT NULL CHECK (state IN ('queued', 'leased', 'dead')),
        enqueued_at   double precision NOT NULL,
        visible_at    double precision NOT NULL,
        receive_count integer NOT NULL DEFAULT 0,
        receipt       text,
        last_error    text,
        dead_at       double precision,
        seq           bigint GENERATED ALWAYS AS IDENTITY
    )""",
    # receiving walks live jobs in FIFO order and stops after ``limit`` visible ones
    """CREATE INDEX IF NOT EXISTS queue_jobs_fifo
        ON queue_jobs (queue, enqueued_at, visible_at, seq) WHERE state <> 'dead'""",
    """CREATE INDEX IF NOT EXISTS queue_jobs_dead
        ON queue_jobs (queue, dead_at) WHERE state = 'dead'""",
]

RELATIONS = ["queue_jobs", "queue_jobs_fifo", "queue_jobs_dead"]

INSERT_JOB = f"""
INSERT INTO queue_jobs (id, queue, body, state, enqueued_at, visible_at)
VALUES (%(id)s, %(queue)s, %(body)s::json, 'queued', {NOW}, {NOW} + %(delay)s)"""

# One statement for a whole batch, rows numbered in the caller's order: FIFO
# among jobs sent at the same instant follows ``seq``.
INSERT_MANY = f"""
INSERT INTO queue_jobs (id, queue, body, state, enqueued_at, visible_at)
SELECT v.id, %(queue)s, v.body::json, 'queued', t.now, t.now
FROM unnest(%(ids)s::text[], %(bodies)s::text[]) WITH ORDINALITY AS v (id, body, n),
     (SELECT {TX_NOW} AS now) AS t
ORDER BY v.n"""
BATCH = 5000  # rows per INSERT_MANY statement

# The words of expired_message, the count filled in by the server.
EXPIRED = expired_message(987654321).replace("987654321", "%s")

# One statement, one round trip: pick visible jobs oldest first, skipping rows
# another receiver has locked, and lease them — or dead-letter those that already
# had ``max_receives`` deliveries. Receipts come from the caller, one per row in
# the pick's order.
RECEIVE = f"""
WITH t AS (SELECT {NOW} AS now),
picked AS (
    SELECT j.id, j.enqueued_at, j.visible_at, j.seq FROM queue_jobs AS j, t
    WHERE j.queue = %(queue)s AND j.state <> 'dead' AND j.visible_at <= t.now
    ORDER BY j.enqueued_at, j.visible_at, j.seq
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
),
numbered AS (
    SELECT id, row_number() OVER (ORDER BY enqueued_at, visible_at, seq) AS n FROM picked
)
UPDATE queue_jobs AS j
SET state = CASE WHEN j.receive_count >= %(max_receives)s THEN 'dead' ELSE 'leased' END,
    receipt = CASE WHEN j.receive_count >= %(max_receives)s THEN NULL
                   ELSE (%(receipts)s::text[])[numbered.n] END,
    receive_count = CASE WHEN j.receive_count >= %(max_receives)s THEN j.receive_count
                         ELSE j.receive_count + 1 END,
    visible_at = CASE WHEN j.receive_count >= %(max_receives)s THEN j.visible_at
                      ELSE t.now + %(timeout)s END,
    dead_at = CASE WHEN j.receive_count >= %(max_receives)s THEN t.now END,
    last_error = CASE WHEN j.receive_count >= %(max_receives)s
                      THEN coalesce(j.last_error, format(%(expired)s, j.receive_count))
                      ELSE j.last_error END
FROM numbered, t
WHERE j.id = numbered.id
RETURNING numbered.n, j.state, j.id, j.receipt, j.body, j.receive_count, j.last_error,
    j.visible_at, t.now"""

# The statements below act only while the lease's receipt is current.
_HELD = "WHERE id = %(id)s AND queue = %(queue)s AND state = 'leased' AND receipt = %(receipt)s"

EXTEND_LEASE = f"""
UPDATE queue_jobs SET visible_at = {NOW} + %(timeout)s {_HELD}
RETURNING visible_at"""

ACK_JOB = f"DELETE FROM queue_jobs {_HELD} RETURNING id"

RELEASE_JOB = f"""
UPDATE queue_jobs
SET state = 'queued', receipt = NULL, visible_at = {NOW} + %(delay)s, last_error = %(error)s,
    receive_count = greatest(0, receive_count - %(refund)s)
{_HELD}
RETURNING id"""

DEAD_LETTER_JOB = f"""
UPDATE queue_jobs SET state = 'dead', receipt = NULL, dead_at = {NOW}, last_error = %(error)s
{_HELD}
RETURNING id"""

COUNT_STATES = f"""
SELECT
    count(*) FILTER (WHERE state <> 'dead' AND visible_at <= t.now) AS visible,
    count(*) FILTER (WHERE state = 'leased' AND visible_at > t.now) AS in_flight,
    count(*) FILTER (WHERE state = 'queued' AND visible_at > t.now) AS delayed,
    count(*) FILTER (WHERE state = 'dead') AS dead
FROM queue_jobs, (SELECT {NOW} AS now) AS t
WHERE queue = %(queue)s"""

# the fleet-wide cap (CONVEYOR_MAX_IN_FLIGHT): receivers count the leases not yet run
# out under one advisory lock per queue, so two hosts cannot both take the last place
CAP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('conveyor queue cap ' || %(queue)s))"
COUNT_IN_FLIGHT = f"""
SELECT count(*) FROM queue_jobs
WHERE queue = %(queue)s AND state = 'leased' AND visible_at > {NOW}"""

OLDEST_VISIBLE = f"""
SELECT {NOW} - min(enqueued_at) FROM queue_jobs
WHERE queue = %(queue)s AND state <> 'dead' AND visible_at <= {NOW}"""

SELECT_DEAD = """
SELECT id, body, receive_count, last_error, enqueued_at, dead_at FROM queue_jobs
WHERE queue = %(queue)s AND state = 'dead'
ORDER BY dead_at DESC, seq DESC
LIMIT %(limit)s"""

_REDRIVE = f"""
UPDATE queue_jobs
SET state = 'queued', receive_count = 0, last_error = NULL, dead_at = NULL, visible_at = {NOW}
WHERE queue = %(queue)s AND state = 'dead'"""

REDRIVE_ALL = _REDRIVE

REDRIVE_SOME = _REDRIVE + " AND id = ANY(%(ids)s::text[])"


def _capped(conn: Any, cap: int | None) -> AbstractContextManager[Any]:
    """A transaction around a capped receive (the cap's lock lasts until it ends)."""
    return conn.transaction() if cap else nullcontext()


class PostgresQueue:
    """A :class:`~conveyor.queue.JobQueue` in a PostgreSQL database.

    ``url`` is a ``postgresql://`` URL (see :mod:`conveyor._postgres`); ``name``
    picks the queue within its table. ``clock`` replaces the server's clock
    (tests only). ``pool_size`` bounds the connections this object opens.
    A database that cannot be reached raises
    :class:`~conveyor.exceptions.ConfigurationError` here, not on first use.
    """

    def __init__(
        self,
        url: str,
        name: str = "default",
        *,
        max_receives: int = DEFAULT_MAX_RECEIVES,
        clock: Callable[[], float] | None = None,
        pool_size: int = 8,
        max_in_flight: int | None = None,
    ) -> None:
        if max_receives < 1:
            raise ValueError(f"max_receives must be >= 1, got {max_receives!r}")
        if not name:
            raise ValueError("a queue name must not be empty")
        self.name = name
        self.max_receives = max_receives
        self.max_in_flight = max_in_flight or None
        """At most this many jobs leased at once, across every host (None: no cap)."""
        self._clock = clock
        self._pool = Pool(url, what="queue", ddl=SCHEMA, relations=RELATIONS, max_size=pool_size)

    def __repr__(self) -> str:
        return f"PostgresQueue({safe_summary(self._pool.url)!r}, name={self.name!r})"

    def _params(self, **params: Any) -> dict[str, Any]:
        return {"queue": self.name, "now": self._clock() if self._clock else None, **params}

    def close(self) -> None:
        self._pool.close()

    # -- sending ---------------------------------------------------------

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        job_id = uuid.uuid4().hex
        params = self._params(id=job_id, body=_encode(body), delay=max(0.0, delay))
        with self._pool.connection() as conn:
            conn.execute(INSERT_JOB, params)
        return job_id

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        encoded = [_encode(b) for b in bodies]  # refuse a bad body before writing any
        ids = [uuid.uuid4().hex for _ in encoded]
        if not ids:
            return []
        with self._pool.connection() as conn, conn.transaction():
            now = self._clock() if self._clock else None
            for i in range(0, len(ids), BATCH):
                params = self._params(
                    ids=ids[i : i + BATCH], bodies=encoded[i : i + BATCH], now=now
                )
                conn.execute(INSERT_MANY, params)
        return ids

    # -- leasing ---------------------------------------------------------

    def receive(self, max_jobs: int = 1, visibility_timeout: float = 60.0) -> list[Lease]:
        _check_timeout(visibility_timeout)
        leases: list[Lease] = []
        params = self._params(
            max_receives=self.max_receives, timeout=visibility_timeout, expired=EXPIRED
        )
        with self._pool.connection() as conn, _capped(conn, self.max_in_flight):
            if self.max_in_flight:
                conn.execute(CAP_LOCK, params)  # held until this transaction ends
                row = conn.execute(COUNT_IN_FLIGHT, params).fetchone()
                max_jobs = min(max_jobs, self.max_in_flight - int(row[0] if row else 0))
            while len(leases) < max_jobs:
                params["limit"] = max_jobs - len(leases)
                params["receipts"] = [uuid.uuid4().hex for _ in range(params["limit"])]
                rows = sorted(conn.execute(RECEIVE, params).fetchall())
                killed = 0
                for _, state, job_id, receipt, body, count, last_error, until, now in rows:
                    params["now"] = now  # one instant for the whole receive
                    if state == "dead":
                        killed += 1
                        continue
                    leases.append(
                        Lease(
                            job_id=job_id,
                            receipt=receipt,
                            body=body if isinstance(body, dict) else json.loads(body),
                            receive_count=count,
                            leased_until=until,
                            last_error=last_error,
                        )
                    )
                if not killed:  # fewer rows than asked for: nothing more is visible
                    break
        return leases

    def _held(self, sql: str, lease: Lease, **params: Any) -> Any:
        """Run ``sql`` on the job ``lease`` holds and return its row;
        :class:`LeaseLost` if it holds none."""
        args = self._params(id=lease.job_id, receipt=lease.receipt, **params)
        with self._pool.connection() as conn:
            row = conn.execute(sql, args).fetchone()
        if row is None:
            raise LeaseLost(f"lease on job {lease.job_id} is no longer current")
        return row

    def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        _check_timeout(visibility_timeout)
        row = self._held(EXTEND_LEASE, lease, timeout=visibility_timeout)
        return replace(lease, leased_until=float(row[0]))

    def ack(self, lease: Lease) -> None:
        self._held(ACK_JOB, lease)

    def ack_many(self, leases: list[Lease]) -> list[Lease]:
        """:meth:`ack` each of ``leases`` in one transaction; returns those whose lease
        was no longer current (left alone)."""
        lost = []
        with self._pool.connection() as conn, conn.transaction():
            for lease in leases:
                args = self._params(id=lease.job_id, receipt=lease.receipt)
                if conn.execute(ACK_JOB, args).fetchone() is None:
                    lost.append(lease)
        return lost

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        self._held(RELEASE_JOB, lease, delay=max(0.0, delay), error=error, refund=int(refund))

    def dead_letter(self, lease: Lease, error: str) -> None:
        self._held(DEAD_LETTER_JOB, lease, error=error)

    # -- inspecting ------------------------------------------------------

    def depth(self) -> QueueDepth:
        with self._pool.connection() as conn:
            row = conn.execute(COUNT_STATES, self._params()).fetchone()
        assert row is not None  # aggregates: always one row
        visible, in_flight, delayed, dead = (int(n) for n in row)
        return QueueDepth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def oldest_visible_age(self) -> float | None:
        """Seconds since the oldest visible job was sent; None when none is visible."""
        with self._pool.connection() as conn:
            row = conn.execute(OLDEST_VISIBLE, self._params()).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._pool.connection() as conn:
            rows = conn.execute(SELECT_DEAD, self._params(limit=max(0, limit))).fetchall()
        return [
            DeadLetter(
                job_id=job_id,
                body=body if isinstance(body, dict) else json.loads(body),
                receive_count=count,
                error=error,
                first_seen=enqueued_at,
                last_seen=dead_at,
            )
            for job_id, body, count, error, enqueued_at, dead_at in rows
        ]

    def redrive(self, job_ids: list[str] | None = None) -> int:
        with self._pool.connection() as conn:
            if job_ids is None:
                cursor = conn.execute(REDRIVE_ALL, self._params())
            else:
                cursor = conn.execute(REDRIVE_SOME, self._params(ids=list(job_ids)))
            return int(cursor.rowcount)
