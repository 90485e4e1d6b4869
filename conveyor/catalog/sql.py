"""The catalog's SQL, written once for SQLite and PostgreSQL.

Statements use named parameters (``:name``) and a few portable constructs
that both engines share: ``INSERT … ON CONFLICT … DO UPDATE``, ``RETURNING``,
``coalesce``. ``:now`` means "the current time": SQLite binds the host's
clock, PostgreSQL reads its own (see :mod:`conveyor.catalog.postgres`). Where
the engines really differ, a backend supplies a small hook: how to open a
connection and a transaction, how to encode JSON, and how to serialise the
completions of one document. No statement reads inside a JSON column: what
the SQL filters on (a delta's delivery, part and read time) has a column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..documents import State
from .events import SqlEvents, event_row
from .measurements import SqlMeasurements
from .parts import NewDelta, Part

STATES = tuple(s.value for s in State)

DELTA_STATES = ("pending", "applied", "failed")
_DOC_JSON = ("metadata", "timings")
_CACHE_BATCH = 500


class Session(Protocol):
    """One connection (inside a transaction or not), as the shared SQL sees it."""

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql``; its result rows as dicts."""
        ...

    def run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Run ``sql``; how many rows it changed."""
        ...

    def run_many(self, sql: str, params: Sequence[dict[str, Any]]) -> None:
        """Run ``sql`` once per parameter set."""
        ...


def _decode(value: Any) -> Any:
    """A JSON column's value: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _row(row: dict[str, Any]) -> dict[str, Any]:
    for key in _DOC_JSON:
        if key in row:
            row[key] = _decode(row[key])
    return row


_INSERT_DELTA = (
    "INSERT INTO deltas (collection, document_id, header, chunks, vectors, created_at,"
    " read_at, delivery, part) VALUES (:collection, :document_id, :header, :chunks,"
    " :vectors, :now, :read_at, :delivery, :part) RETURNING id"
)


class SqlCatalog(SqlEvents, SqlMeasurements):
    """The catalog's methods over a :class:`Session`; see :class:`conveyor.catalog.Catalog`."""

    # -- what a backend supplies -----------------------------------------

    def _session(self) -> AbstractContextManager[Session]:
        """A connection for a few autocommitted statements."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Session]:
        """A connection inside a transaction that holds the write lock (SQLite) or
        the row locks it takes (PostgreSQL); committed at the end, rolled back on error."""
        raise NotImplementedError

    def _json(self, value: Any) -> Any:
        """What to bind for a JSON column."""
        return json.dumps(value, ensure_ascii=False, default=str)

    def _lock_document(self, db: Session, document_id: str) -> None:
        """Inside a transaction: wait until no other transaction completes parts of
        ``document_id``. A no-op where a transaction already excludes all others."""

    # -- helpers ---------------------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._session() as db:
            return db.rows(sql, params)

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> int:
        with self._session() as db:
            return db.run(sql, params)

    def _scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        [row] = self._rows(sql, params)
        return next(iter(row.values()))

    # -- documents -------------------------------------------------------

    def now(self) -> float:
        """The catalog's clock (unix seconds): what every host compares times by — the
        server's on PostgreSQL, so hosts whose clocks differ still agree on an order."""
        return float(self._scalar("SELECT :now"))

    def enqueued(self, docs: Sequence[tuple[str, str, str]], run: str) -> None:
        """Record ``(document_id, collection, source)`` as queued in ``run``."""
        rows = [
            {"id": d, "collection": c, "source": s, "run": run}
            for d, c, s in sorted(docs)  # one order for every writer: no deadlocks
        ]
        with self._transaction() as db:
            before = self._before(db, [r["id"] for r in rows])
            db.run_many(
                "INSERT INTO documents (id, collection, source, run, state, stage,"
                " created_at, updated_at) VALUES (:id, :collection, :source, :run, 'queued',"
                " NULL, :now, :now)"
                " ON CONFLICT(id) DO UPDATE SET state = 'queued', stage = NULL, run = excluded.run,"
                " error = NULL, error_kind = NULL, attempts = 0, updated_at = excluded.updated_at",
                rows,
            )
            queued = {"state": State.QUEUED.value, "run": run, "attempts": 0}
            self._record(
                db, [event_row(r["id"], before.get(r["id"]), queued, "submitted") for r in rows]
            )

    def update(self, document_id: str, **fields: Any) -> None:
        """Set columns of a document (``metadata``/``timings`` as dicts)."""
        with self._session() as db:
            self._update(db, document_id, fields)

    def _update(self, db: Session, document_id: str, fields: dict[str, Any]) -> None:
        if not fields:
            return
        params: dict[str, Any] = {"document_id": document_id}
        assignments = []
        for key, value in fields.items():
            if key == "updated_at":  # always now
                continue
            params[f"f_{key}"] = self._json(value) if key in _DOC_JSON else value
            assignments.append(f"{key} = :f_{key}")
        assignments.append("updated_at = :now")
        db.run(f"UPDATE documents SET {', '.join(assignments)} WHERE id = :document_id", params)

    def get(self, document_id: str) -> dict[str, Any] | None:
        found = self._rows("SELECT * FROM documents WHERE id = :id", {"id": document_id})
        return _row(found[0]) if found else None

    def documents(
        self,
        *,
        state: str | None = None,
        collection: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM documents WHERE 1 = 1", {}
        for column, value in (("state", state), ("collection", collection), ("run", run)):
            if value is not None:
                sql += f" AND {column} = :{column}"
                params[column] = value
        sql += " ORDER BY updated_at DESC, source"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row(r) for r in self._rows(sql, params)]

    def counts(self, *, run: str | None = None) -> dict[str, int]:
        sql, params = "SELECT state, count(*) AS n FROM documents", {}
        if run is not None:
            sql += " WHERE run = :run"
            params["run"] = run
        found = {r["state"]: r["n"] for r in self._rows(sql + " GROUP BY state", params)}
        return {state: int(found.get(state, 0)) for state in STATES}

    def chunk_total(self, *, run: str | None = None) -> int:
        sql = "SELECT coalesce(sum(chunks), 0) AS n FROM documents WHERE state = 'done'"
        params = {}
        if run is not None:
            sql += " AND run = :run"
            params["run"] = run
        return int(self._scalar(sql, params))

    # -- runs ------------------------------------------------------------

    def start_run(self, run: str, collection: str, enqueued: int) -> None:
        self._run(
            "INSERT INTO runs (id, collection, started_at, enqueued)"
            " VALUES (:id, :collection, :now, :enqueued)"
            " ON CONFLICT(id) DO UPDATE SET enqueued = runs.enqueued + excluded.enqueued",
            {"id": run, "collection": collection, "enqueued": enqueued},
        )

    # -- deltas ----------------------------------------------------------

    def add_delta(
        self,
        collection: str,
        document_id: str,
        header: dict[str, Any],
        chunks: list[dict[str, Any]],
        vectors: bytes,
        *,
        read_at: float,
        delivery: str,
        part: int,
        document: Mapping[str, Any] | None = None,
    ) -> int:
        """A pending delta; with ``document``, the document's columns in the same
        transaction (one commit, and the compactor never finds a delivery complete
        before its document says so)."""
        delta = NewDelta(
            collection, document_id, header, chunks, vectors, read_at, delivery, part, document
        )
        return self.add_deltas([delta])[0]

    def add_deltas(self, deltas: Sequence[NewDelta]) -> list[int]:
        """:meth:`add_delta` for each of ``deltas`` (a worker's wave), in one
        transaction; their ids, in order."""
        ids = []
        with self._transaction() as db:
            for d in deltas:
                [row] = db.rows(
                    _INSERT_DELTA,
                    {
                        "collection": d.collection,
                        "document_id": d.document_id,
                        "header": self._json(d.header),
                        "chunks": self._json(d.chunks),
                        "vectors": bytes(d.vectors),
                        "read_at": d.read_at,
                        "delivery": d.delivery,
                        "part": d.part,
                    },
                )
                if d.document:
                    self._update(db, d.document_id, dict(d.document))
                ids.append(int(row["id"]))
        return ids

    def pending_deltas(
        self, collection: str | None = None, limit: int = 64
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM deltas WHERE state = 'pending'", {}
        if collection is not None:
            sql += " AND collection = :collection"
            params["collection"] = collection
        out = []
        for d in self._rows(sql + f" ORDER BY id LIMIT {int(limit)}", params):
            d["header"] = _decode(d["header"])
            d["chunks"] = _decode(d["chunks"])
            d["vectors"] = bytes(d["vectors"])
            out.append(d)
        return out

    def complete_part(
        self,
        delta_id: int,
        document_id: str,
        delivery: str,
        parts: int,
        done: dict[str, Any] | None,
    ) -> bool:
        """Mark a delta applied; when it was the last part of its delivery still
        missing, set the document's ``done`` fields in the same transaction (so two
        compactors finishing two parts at once cannot both think the other is last).
        True when the document is complete."""
        with self._transaction() as db:
            return self._complete(db, Part(delta_id, document_id, delivery, parts, done))

    def complete_parts(self, parts: Sequence[Part]) -> list[bool]:
        """:meth:`complete_part` for each of ``parts``, in one transaction (a compactor's
        batch); what each returns, in order."""
        if not parts:
            return []
        complete: dict[int, bool] = {}
        with self._transaction() as db:
            for part in sorted(parts, key=lambda p: p.document_id):  # one order: no deadlocks
                complete[part.delta_id] = self._complete(db, part)
        return [complete[part.delta_id] for part in parts]

    def _complete(self, db: Session, part: Part) -> bool:
        delta_id, document_id, delivery, parts, done = part
        self._lock_document(db, document_id)
        db.run(
            "UPDATE deltas SET state = 'applied', applied_at = :now, error = NULL,"
            " chunks = :no_chunks, vectors = :no_vectors WHERE id = :id",
            {"id": delta_id, "no_chunks": self._json([]), "no_vectors": b""},
        )
        merged = parts
        if parts > 1:
            merged = int(
                db.rows(
                    "SELECT count(DISTINCT part) AS n FROM deltas"
                    " WHERE document_id = :document_id AND state = 'applied'"
                    " AND error IS NULL AND delivery = :delivery",
                    {"document_id": document_id, "delivery": delivery},
                )[0]["n"]
            )
        if merged < parts:
            return False
        if done is None:  # a deletion: the document and its history leave the catalog
            db.run("DELETE FROM documents WHERE id = :id", {"id": document_id})
            db.run("DELETE FROM document_events WHERE document_id = :id", {"id": document_id})
        else:
            before = self._before(db, [document_id]).get(document_id)
            self._update(db, document_id, done)
            if before is not None:
                self._record(db, [event_row(document_id, before, done, "merged")])
        return True

    def newest_applied_read(self, document_id: str, collection: str) -> float:
        """When the source was read for the newest delta merged into ``collection``."""
        newest = self._scalar(
            "SELECT max(read_at) AS t FROM deltas WHERE document_id = :document_id"
            " AND collection = :collection AND state = 'applied' AND error IS NULL",
            {"document_id": document_id, "collection": collection},
        )
        return float(newest or 0.0)

    def pending_collections(self) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT collection FROM deltas WHERE state = 'pending' ORDER BY collection"
        )
        return [r["collection"] for r in rows]

    def delta_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, count(*) AS n FROM deltas GROUP BY state")
        found = {r["state"]: r["n"] for r in rows}
        return {s: int(found.get(s, 0)) for s in DELTA_STATES}

    def finish_delta(self, delta_id: int, state: str, error: str | None = None) -> None:
        """Mark a delta applied or failed; its chunk payload is dropped once applied."""
        self._run(
            "UPDATE deltas SET state = :state, applied_at = :now, error = :error,"
            " chunks = CASE WHEN :state = 'applied' THEN :no_chunks ELSE chunks END,"
            " vectors = CASE WHEN :state = 'applied' THEN :no_vectors ELSE vectors END"
            " WHERE id = :id",
            {
                "id": delta_id,
                "state": state,
                "error": error,
                "no_chunks": self._json([]),
                "no_vectors": b"",
            },
        )

    def start_compaction(self, collection: str) -> int:
        """A compaction run record in state ``pending``; returns its id."""
        new_id = self._scalar(
            "INSERT INTO compaction_runs (collection, state, started_at)"
            " VALUES (:collection, 'pending', :now) RETURNING id",
            {"collection": collection},
        )
        return int(new_id)

    def finish_compaction(
        self, run: int, state: str, deltas: int, chunks: int, error: str | None = None
    ) -> None:
        """``applied`` or ``failed``; a run that merged nothing is not kept."""
        if state == "applied" and deltas == 0:
            self._run("DELETE FROM compaction_runs WHERE id = :id", {"id": run})
            return
        self._run(
            "UPDATE compaction_runs SET state = :state, deltas = :deltas, chunks = :chunks,"
            " finished_at = :now, error = :error WHERE id = :id",
            {"id": run, "state": state, "deltas": deltas, "chunks": chunks, "error": error},
        )

    def compactions(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._rows(f"SELECT * FROM compaction_runs ORDER BY id DESC LIMIT {int(limit)}")

    # -- embedding cache -------------------------------------------------

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._session() as db:
            for i in range(0, len(hashes), _CACHE_BATCH):
                part = list(hashes[i : i + _CACHE_BATCH])
                params: dict[str, Any] = {f"h{j}": h for j, h in enumerate(part)}
                params["model"] = model_id
                marks = ", ".join(f":h{j}" for j in range(len(part)))
                rows = db.rows(
                    "SELECT text_hash, vector FROM embedding_cache WHERE model = :model"
                    f" AND text_hash IN ({marks})",
                    params,
                )
                found.update((r["text_hash"], bytes(r["vector"])) for r in rows)
        return found

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        # in one order for every writer, so two writers of overlapping texts never deadlock
        unique = dict(items)
        rows = [{"model": model_id, "hash": h, "vector": bytes(unique[h])} for h in sorted(unique)]
        with self._transaction() as db:
            db.run_many(
                "INSERT INTO embedding_cache (model, text_hash, vector)"
                " VALUES (:model, :hash, :vector) ON CONFLICT DO NOTHING",
                rows,
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
        self._run(
            "INSERT INTO workers (id, host, pid, concurrency, state, in_flight, jobs_done,"
            " jobs_failed, started_at, heartbeat_at) VALUES (:id, :host, :pid, :concurrency,"
            " :state, :in_flight, :jobs_done, :jobs_failed, :now, :now)"
            " ON CONFLICT(id) DO UPDATE SET state = excluded.state,"
            " in_flight = excluded.in_flight, jobs_done = excluded.jobs_done,"
            " jobs_failed = excluded.jobs_failed, heartbeat_at = excluded.heartbeat_at",
            {
                "id": worker_id,
                "host": host,
                "pid": pid,
                "concurrency": concurrency,
                "state": state,
                "in_flight": in_flight,
                "jobs_done": jobs_done,
                "jobs_failed": jobs_failed,
            },
        )

    def workers(self, *, stale_after: float, keep: float = 3600.0) -> list[dict[str, Any]]:
        """Workers seen in the last ``keep`` seconds; ``stale`` when a running one has not
        beaten for ``stale_after`` seconds (killed, hung, or its host is gone)."""
        rows = self._rows(
            "SELECT *, :now AS now_ FROM workers WHERE heartbeat_at > :now - :keep"
            " ORDER BY started_at",
            {"keep": keep},
        )
        for w in rows:
            now = w.pop("now_")
            w["heartbeat_age"] = round(now - w["heartbeat_at"], 1)
            w["stale"] = w["state"] == "running" and now - w["heartbeat_at"] > stale_after
        return rows

    # -- locks -----------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``owner`` until now+ttl; False if someone else holds it.
        One statement, so two hosts taking a free lock at once cannot both win."""
        taken = self._rows(
            "INSERT INTO locks (name, owner, leased_until) VALUES (:name, :owner, :now + :ttl)"
            " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
            " leased_until = excluded.leased_until"
            " WHERE locks.owner = excluded.owner OR locks.leased_until <= :now"
            " RETURNING owner",
            {"name": name, "owner": owner, "ttl": ttl},
        )
        return bool(taken)

    def release_lock(self, name: str, owner: str) -> None:
        self._run(
            "DELETE FROM locks WHERE name = :name AND owner = :owner",
            {"name": name, "owner": owner},
        )
