"""The catalog: what happened to every document, run and delta.

Documents (source, content hash, state, stage, chunk count, collection,
model, last error), runs, deltas waiting for the compactor, compaction runs,
the embedding cache and writer locks. In the same SQLite file as the queue
by default; PostgreSQL comes later with the same methods.

Document states: ``queued`` → ``running`` → ``done`` | ``skipped`` | ``failed``.
A running document's ``stage`` says where it is: fetch, extract, chunk,
embed, merge (waiting for the compactor).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._sqlite import connect, table_exists, transaction

STATES = ("queued", "running", "done", "skipped", "failed")

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
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS deltas_pending ON deltas (state, collection, id)",
    "CREATE INDEX IF NOT EXISTS deltas_document ON deltas (document_id, collection)",
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
]

_DOC_JSON = ("metadata", "timings")


def _row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in _DOC_JSON:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


class SqliteCatalog:
    """The catalog in a SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = str(path)
        self.clock = clock
        self._local = threading.local()
        if not table_exists(self._conn(), "workers"):
            with transaction(self._conn()) as conn:
                for statement in SCHEMA:
                    conn.execute(statement)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, vec=False)
        return conn

    # -- documents -------------------------------------------------------

    def enqueued(self, docs: Sequence[tuple[str, str, str]], run: str) -> None:
        """Record ``(document_id, collection, source)`` as queued in ``run``."""
        now = self.clock()
        with transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT INTO documents (id, collection, source, run, state, stage,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 'queued', NULL, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET state = 'queued', stage = NULL, run = excluded.run,"
                " error = NULL, error_kind = NULL, attempts = 0, updated_at = excluded.updated_at",
                [(d, c, s, run, now, now) for d, c, s in docs],
            )

    def update(self, document_id: str, **fields: Any) -> None:
        """Set columns of a document (``metadata``/``timings`` as dicts)."""
        self._update(self._conn(), document_id, fields)

    def _update(self, conn: Any, document_id: str, fields: dict[str, Any]) -> None:
        if not fields:
            return
        fields = {**fields, "updated_at": self.clock()}
        for key in _DOC_JSON:
            if key in fields:
                fields[key] = json.dumps(fields[key], ensure_ascii=False, default=str)
        assignments = ", ".join(f"{key} = ?" for key in fields)
        conn.execute(
            f"UPDATE documents SET {assignments} WHERE id = ?", [*fields.values(), document_id]
        )

    def get(self, document_id: str) -> dict[str, Any] | None:
        row = self._conn().execute("SELECT * FROM documents WHERE id = ?", (document_id,))
        found = row.fetchone()
        return _row(found) if found else None

    def documents(
        self,
        *,
        state: str | None = None,
        collection: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM documents WHERE 1 = 1", []
        for column, value in (("state", state), ("collection", collection), ("run", run)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        sql += " ORDER BY updated_at DESC, source"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self._conn().execute(sql, args)]

    def counts(self, *, run: str | None = None) -> dict[str, int]:
        sql, args = "SELECT state, count(*) FROM documents", []
        if run is not None:
            sql += " WHERE run = ?"
            args.append(run)
        found = dict(self._conn().execute(sql + " GROUP BY state", args).fetchall())
        return {state: int(found.get(state, 0)) for state in STATES}

    def chunk_total(self, *, run: str | None = None) -> int:
        sql, args = "SELECT coalesce(sum(chunks), 0) FROM documents WHERE state = 'done'", []
        if run is not None:
            sql += " AND run = ?"
            args.append(run)
        return int(self._conn().execute(sql, args).fetchone()[0])

    # -- runs ------------------------------------------------------------

    def start_run(self, run: str, collection: str, enqueued: int) -> None:
        self._conn().execute(
            "INSERT INTO runs (id, collection, started_at, enqueued) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET enqueued = runs.enqueued + excluded.enqueued",
            (run, collection, self.clock(), enqueued),
        )

    # -- deltas ----------------------------------------------------------

    def add_delta(
        self,
        collection: str,
        document_id: str,
        header: dict[str, Any],
        chunks: list[dict[str, Any]],
        vectors: bytes,
    ) -> int:
        cur = self._conn().execute(
            "INSERT INTO deltas (collection, document_id, header, chunks, vectors, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                collection,
                document_id,
                json.dumps(header, ensure_ascii=False, default=str),
                json.dumps(chunks, ensure_ascii=False),
                vectors,
                self.clock(),
            ),
        )
        return int(cur.lastrowid)

    def pending_deltas(
        self, collection: str | None = None, limit: int = 64
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM deltas WHERE state = 'pending'", []
        if collection is not None:
            sql += " AND collection = ?"
            args.append(collection)
        rows = self._conn().execute(sql + f" ORDER BY id LIMIT {int(limit)}", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["header"] = json.loads(d["header"])
            d["chunks"] = json.loads(d["chunks"])
            out.append(d)
        return out

    def complete_part(
        self,
        delta_id: int,
        document_id: str,
        delivery: str | None,
        parts: int,
        done: dict[str, Any],
    ) -> bool:
        """Mark a delta applied; when it was the last part of its delivery still
        missing, set the document's ``done`` fields in the same transaction (so two
        compactors finishing two parts at once cannot both think the other is last).
        True when the document is complete."""
        with transaction(self._conn()) as conn:
            conn.execute(
                "UPDATE deltas SET state = 'applied', applied_at = ?, error = NULL,"
                " chunks = '[]', vectors = x'' WHERE id = ?",
                (self.clock(), delta_id),
            )
            merged = parts
            if parts > 1:
                merged = conn.execute(
                    "SELECT count(DISTINCT json_extract(header, '$.part')) FROM deltas"
                    " WHERE document_id = ? AND state = 'applied' AND error IS NULL"
                    " AND json_extract(header, '$.delivery') = ?",
                    (document_id, delivery),
                ).fetchone()[0]
            if merged >= parts:
                self._update(conn, document_id, done)
                return True
            return False

    def newest_applied_read(self, document_id: str, collection: str) -> float:
        """When the source was read for the newest delta merged into ``collection``."""
        row = (
            self._conn()
            .execute(
                "SELECT max(json_extract(header, '$.read_at')) FROM deltas"
                " WHERE document_id = ? AND collection = ? AND state = 'applied' AND error IS NULL",
                (document_id, collection),
            )
            .fetchone()
        )
        return float(row[0] or 0.0)

    def pending_collections(self) -> list[str]:
        rows = self._conn().execute(
            "SELECT DISTINCT collection FROM deltas WHERE state = 'pending' ORDER BY collection"
        )
        return [r[0] for r in rows]

    def delta_counts(self) -> dict[str, int]:
        found = dict(
            self._conn().execute("SELECT state, count(*) FROM deltas GROUP BY state").fetchall()
        )
        return {s: int(found.get(s, 0)) for s in ("pending", "applied", "failed")}

    def finish_delta(self, delta_id: int, state: str, error: str | None = None) -> None:
        """Mark a delta applied or failed; its chunk payload is dropped once applied."""
        self._conn().execute(
            "UPDATE deltas SET state = ?, applied_at = ?, error = ?,"
            " chunks = CASE WHEN ? = 'applied' THEN '[]' ELSE chunks END,"
            " vectors = CASE WHEN ? = 'applied' THEN x'' ELSE vectors END WHERE id = ?",
            (state, self.clock(), error, state, state, delta_id),
        )

    def start_compaction(self, collection: str) -> int:
        """A compaction run record in state ``pending``; returns its id."""
        cur = self._conn().execute(
            "INSERT INTO compaction_runs (collection, state, started_at) VALUES (?, 'pending', ?)",
            (collection, self.clock()),
        )
        return int(cur.lastrowid)

    def finish_compaction(
        self, run: int, state: str, deltas: int, chunks: int, error: str | None = None
    ) -> None:
        """``applied`` or ``failed``; a run that merged nothing is not kept."""
        conn = self._conn()
        if state == "applied" and deltas == 0:
            conn.execute("DELETE FROM compaction_runs WHERE id = ?", (run,))
            return
        conn.execute(
            "UPDATE compaction_runs SET state = ?, deltas = ?, chunks = ?, finished_at = ?,"
            " error = ? WHERE id = ?",
            (state, deltas, chunks, self.clock(), error, run),
        )

    def compactions(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            f"SELECT * FROM compaction_runs ORDER BY id DESC LIMIT {int(limit)}"
        )
        return [dict(r) for r in rows]

    # -- embedding cache -------------------------------------------------

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        conn = self._conn()
        for i in range(0, len(hashes), 500):
            part = list(hashes[i : i + 500])
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT text_hash, vector FROM embedding_cache WHERE model = ?"
                f" AND text_hash IN ({marks})",
                [model_id, *part],
            )
            found.update((r[0], bytes(r[1])) for r in rows)
        return found

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        with transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO embedding_cache (model, text_hash, vector) VALUES (?, ?, ?)",
                [(model_id, h, v) for h, v in items],
            )

    # -- workers ---------------------------------------------------------

    def worker_beat(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        concurrency: int,
        state: str = "running",
        in_flight: int = 0,
        jobs_done: int = 0,
        jobs_failed: int = 0,
    ) -> None:
        """Register or refresh a worker process (its heartbeat)."""
        now = self.clock()
        self._conn().execute(
            "INSERT INTO workers (id, host, pid, concurrency, state, in_flight, jobs_done,"
            " jobs_failed, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state,"
            " in_flight = excluded.in_flight, jobs_done = excluded.jobs_done,"
            " jobs_failed = excluded.jobs_failed, heartbeat_at = excluded.heartbeat_at",
            (worker_id, host, pid, concurrency, state, in_flight, jobs_done, jobs_failed, now, now),
        )

    def workers(self, *, stale_after: float, keep: float = 3600.0) -> list[dict[str, Any]]:
        """Workers seen in the last ``keep`` seconds; ``stale`` when a running one has not
        beaten for ``stale_after`` seconds (killed, hung, or its host is gone)."""
        now = self.clock()
        rows = self._conn().execute(
            "SELECT * FROM workers WHERE heartbeat_at > ? ORDER BY started_at", (now - keep,)
        )
        out = []
        for r in rows:
            w = dict(r)
            w["heartbeat_age"] = round(now - w["heartbeat_at"], 1)
            w["stale"] = w["state"] == "running" and now - w["heartbeat_at"] > stale_after
            out.append(w)
        return out

    # -- locks -----------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``owner`` until now+ttl; False if someone else holds it."""
        now = self.clock()
        with transaction(self._conn()) as conn:
            row = conn.execute("SELECT owner, leased_until FROM locks WHERE name = ?", (name,))
            held = row.fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                return False
            conn.execute(
                "INSERT INTO locks (name, owner, leased_until) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
                " leased_until = excluded.leased_until",
                (name, owner, now + ttl),
            )
            return True

    def release_lock(self, name: str, owner: str) -> None:
        self._conn().execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
