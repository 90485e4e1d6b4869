"""sqlite-vec: chunks in a plain table, vectors in one ``vec0`` table per collection.

Beside each ``vec0`` table, ``vs_coarse_<id>`` holds every vector again with
its sign bits (sqlite-vec's ``vec_quantize_binary``: 48 bytes for 384
dimensions), indexed so that a scan reads the bits only. A query first ranks
every chunk (that meets the filter) by Hamming distance between its bits and
the query's — a scan of ~5 MB per 100,000 chunks instead of ~150 MB of
floats — then re-ranks the best :data:`COARSE_MIN` (at least 8 × ``k``) by
exact cosine on their float vectors, read by rowid from the same table
(sqlite-vec's own point reads cost ~0.5 ms each). A collection with no more
chunks than that is therefore searched exactly; a larger one may miss a chunk
whose bits put it past the candidates though its cosine would rank it (see
the README's latency section for how often). A collection written before
this table existed is searched exactly (the ``vec0`` scan) until a writer's
:meth:`SqliteVecStore.ensure_collection` — the compactor's next merge —
builds it. Vectors of fewer than :data:`COARSE_MIN_DIM` dimensions (too few
bits to rank by, and cheap to scan exactly) or of a dimension that is not a
multiple of 8 (bits are packed in whole bytes) have no coarse table: they are
always searched exactly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._sqlite import Connection, Row, connect, table_exists, transaction
from ..exceptions import ConveyorError
from ..filters import sql as sql_filter
from . import ChunkRecord, CollectionInfo, Hit, Where
from ._common import check_model, filters, query_vector

SCHEMA = """
CREATE TABLE IF NOT EXISTS vs_collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    dim INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    created_at REAL NOT NULL DEFAULT (unixepoch('subsec'))
);
CREATE TABLE IF NOT EXISTS vs_chunks (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection_id INTEGER NOT NULL REFERENCES vs_collections(id),
    document_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    page INTEGER,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS vs_chunks_document
    ON vs_chunks (collection_id, document_id, chunk_index);
"""

MAX_K = 4096  # sqlite-vec's bound on k
COARSE_MIN = 400
"""Candidates the bit scan hands to the exact re-rank (at least 8 × ``k``)."""
COARSE_MIN_DIM = 256


def coarse_dim(dim: int) -> bool:
    """Whether vectors of ``dim`` dimensions get the coarse table (see the module)."""
    return dim >= COARSE_MIN_DIM and dim % 8 == 0


COARSE = """
CREATE TABLE vs_coarse_{cid} (
    rowid INTEGER PRIMARY KEY,
    bits BLOB NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX vs_coarse_{cid}_bits ON vs_coarse_{cid} (bits)
"""
COARSE_SCAN = (
    "SELECT rowid FROM vs_coarse_{cid} INDEXED BY vs_coarse_{cid}_bits {where}"
    " ORDER BY vec_distance_hamming(vec_bit(bits), vec_quantize_binary(:q)) LIMIT :n"
)

SELECT_CHUNKS = """
SELECT rowid, id, document_id, chunk_index, source, page, text, metadata
FROM vs_chunks WHERE rowid IN ({marks})
"""


def chunk_fields(row: Row) -> dict[str, Any]:
    """What a ``vs_chunks`` row says of its chunk (shared by hits, exported records and
    the lexical index's hits, whose ``lexical_chunks`` rows have the same columns)."""
    return {
        "id": row["id"],
        "document_id": row["document_id"],
        "chunk_index": row["chunk_index"],
        "text": row["text"],
        "source": row["source"],
        "page": row["page"],
        "metadata": json.loads(row["metadata"]),
    }


class SqliteVecStore:
    """The default vector store: a bit scan then exact cosine re-rank (see the module)."""

    def __init__(self, path: str | Path, *, candidates: int = COARSE_MIN) -> None:
        self.path = str(path)
        self.candidates = candidates
        """Candidates the bit scan hands to the exact re-rank (at least 8 × k); 0 searches
        every vector exactly (``CONVEYOR_SEARCH_CANDIDATES``)."""
        self._local = threading.local()
        self._collections: dict[str, CollectionInfo] = {}
        if not table_exists(self._conn(), "vs_chunks"):
            with transaction(self._conn()) as conn:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, vec=True)
        return conn

    def _info(self, name: str) -> tuple[int, CollectionInfo] | None:
        row = (
            self._conn()
            .execute("SELECT id, name, dim, model_id FROM vs_collections WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None:
            return None
        return row["id"], CollectionInfo(row["name"], row["dim"], row["model_id"], 0)

    def _require(self, name: str) -> int:
        found = self._info(name)
        if found is None:
            raise ConveyorError(f"collection {name!r} does not exist")
        return found[0]

    def ensure_collection(self, name: str, *, dim: int, model_id: str) -> None:
        found = self._info(name)
        if found is not None:
            cid, info = found
            check_model(name, info.dim, info.model_id, dim, model_id)
            if coarse_dim(info.dim) and not self._coarse(cid):  # from before the coarse table
                with transaction(self._conn()) as conn:
                    self._create_coarse(conn, cid, fill=True)
            return
        with transaction(self._conn()) as conn:
            cur = conn.execute(
                "INSERT INTO vs_collections (name, dim, model_id) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO NOTHING",
                (name, dim, model_id),
            )
            if cur.rowcount:
                new = cur.lastrowid
                assert new is not None  # a row was inserted
                conn.execute(
                    f"CREATE VIRTUAL TABLE IF NOT EXISTS vs_vec_{int(new)} USING vec0("
                    f"embedding float[{int(dim)}] distance_metric=cosine)"
                )
                if coarse_dim(dim):
                    self._create_coarse(conn, int(new), fill=False)
        self.ensure_collection(name, dim=dim, model_id=model_id)

    def _coarse(self, cid: int) -> bool:
        """Whether collection ``cid`` has its coarse table (older ones have none)."""
        return table_exists(self._conn(), f"vs_coarse_{int(cid)}")

    def _create_coarse(self, conn: Connection, cid: int, *, fill: bool) -> None:
        if table_exists(conn, f"vs_coarse_{cid}"):  # another writer built it first
            return
        for statement in COARSE.format(cid=cid).split(";"):
            conn.execute(statement)
        if fill:
            conn.execute(
                f"INSERT INTO vs_coarse_{cid} (rowid, bits, vector) SELECT rowid,"
                f" vec_quantize_binary(embedding), embedding FROM vs_vec_{cid}"
            )

    def collection(self, name: str) -> CollectionInfo | None:
        found = self._info(name)
        if found is None:
            return None
        cid, info = found
        n = (
            self._conn()
            .execute("SELECT count(*) FROM vs_chunks WHERE collection_id = ?", (cid,))
            .fetchone()[0]
        )
        return CollectionInfo(info.name, info.dim, info.model_id, n)

    def collections(self) -> list[CollectionInfo]:
        rows = self._conn().execute("SELECT name FROM vs_collections ORDER BY name").fetchall()
        return [c for r in rows if (c := self.collection(r["name"])) is not None]

    def drop_collection(self, name: str) -> bool:
        found = self._info(name)
        if found is None:
            return False
        cid = int(found[0])
        with transaction(self._conn()) as conn:
            conn.execute(f"DROP TABLE IF EXISTS vs_vec_{cid}")
            conn.execute(f"DROP TABLE IF EXISTS vs_coarse_{cid}")
            conn.execute("DELETE FROM vs_chunks WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM vs_collections WHERE id = ?", (cid,))
        return True

    def _delete(self, conn: Connection, cid: int, document_id: str) -> int:
        rows = conn.execute(
            "SELECT rowid FROM vs_chunks WHERE collection_id = ? AND document_id = ?",
            (cid, document_id),
        ).fetchall()
        if rows:
            ids = [(r[0],) for r in rows]
            conn.executemany(f"DELETE FROM vs_vec_{cid} WHERE rowid = ?", ids)
            if table_exists(conn, f"vs_coarse_{cid}"):
                conn.executemany(f"DELETE FROM vs_coarse_{cid} WHERE rowid = ?", ids)
            conn.executemany("DELETE FROM vs_chunks WHERE rowid = ?", ids)
        return len(rows)

    def _upsert(self, conn: Connection, cid: int, records: Sequence[ChunkRecord]) -> None:
        coarse = table_exists(conn, f"vs_coarse_{cid}")
        for rec in records:
            if rec.vector is None:
                raise ConveyorError(f"chunk {rec.id} has no vector")
            old = conn.execute("SELECT rowid FROM vs_chunks WHERE id = ?", (rec.id,)).fetchone()
            if old is not None:
                conn.execute(f"DELETE FROM vs_vec_{cid} WHERE rowid = ?", (old[0],))
                if coarse:
                    conn.execute(f"DELETE FROM vs_coarse_{cid} WHERE rowid = ?", (old[0],))
                conn.execute("DELETE FROM vs_chunks WHERE rowid = ?", (old[0],))
            cur = conn.execute(
                "INSERT INTO vs_chunks (id, collection_id, document_id, chunk_index, source,"
                " page, text, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    cid,
                    rec.document_id,
                    rec.chunk_index,
                    rec.source,
                    rec.page,
                    rec.text,
                    json.dumps(rec.metadata, ensure_ascii=False),
                ),
            )
            vector = np.asarray(rec.vector, dtype=np.float32).tobytes()
            conn.execute(
                f"INSERT INTO vs_vec_{cid} (rowid, embedding) VALUES (?, ?)",
                (cur.lastrowid, vector),
            )
            if coarse:
                conn.execute(
                    f"INSERT INTO vs_coarse_{cid} (rowid, bits, vector)"
                    " VALUES (?, vec_quantize_binary(?), ?)",
                    (cur.lastrowid, vector, vector),
                )

    def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        cid = self._require(collection)
        with transaction(self._conn()) as conn:
            self._upsert(conn, cid, records)

    def delete(self, collection: str, *, document_id: str) -> int:
        found = self._info(collection)
        if found is None:
            return 0
        with transaction(self._conn()) as conn:
            return self._delete(conn, found[0], document_id)

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        self.replace_documents(collection, [(document_id, records)])

    def replace_documents(
        self, collection: str, documents: Sequence[tuple[str, Sequence[ChunkRecord]]]
    ) -> None:
        """:meth:`replace_document` for several documents, in order, in one transaction
        (the compactor merges a batch of small deltas so)."""
        cid = self._require(collection)
        with transaction(self._conn()) as conn:
            for document_id, records in documents:
                self._delete(conn, cid, document_id)
                self._upsert(conn, cid, records)

    def query(
        self,
        collection: str,
        vector: np.ndarray,
        k: int,
        where: Where = None,
        *,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` nearest chunks that meet ``where``: by the bit scan and exact
        re-rank where the collection has its coarse table (see the module), else — or
        with ``exact`` — by sqlite-vec's exact scan of every float vector."""
        found = self._info(collection)
        if found is None or k <= 0:
            return []
        cid, info = found
        query = query_vector(collection, vector, info.dim, info.model_id)
        match = filters(where)
        args: dict[str, Any] = {"q": query.tobytes(), "k": min(k, MAX_K), "cid": cid}
        subset = ""
        if match:  # the scan itself runs over the matching rows only
            clause, params = sql_filter(match, "sqlite")
            subset = (
                f"rowid IN (SELECT rowid FROM vs_chunks WHERE collection_id = :cid AND {clause})"
            )
            args.update(params)
        conn = self._conn()
        if not exact and self.candidates and self._coarse(cid):
            rows = self._coarse_query(conn, cid, query, args, subset)
        else:
            sql = f"SELECT rowid, distance FROM vs_vec_{cid} WHERE embedding MATCH :q AND k = :k"
            rows = conn.execute(sql + (f" AND {subset}" if subset else ""), args).fetchall()
        return self._hits(conn, collection, rows)

    def _coarse_query(
        self,
        conn: Connection,
        cid: int,
        query: np.ndarray,
        args: dict[str, Any],
        subset: str,
    ) -> list[tuple[int, float]]:
        """``(rowid, cosine distance)`` of the ``k`` best of the bit scan's candidates."""
        args = {**args, "n": max(self.candidates, 8 * args["k"])}
        where = f"WHERE {subset}" if subset else ""
        candidates = [r[0] for r in conn.execute(COARSE_SCAN.format(cid=cid, where=where), args)]
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        rows = conn.execute(
            f"SELECT rowid, vector FROM vs_coarse_{cid} WHERE rowid IN ({marks})", candidates
        ).fetchall()
        ids = [r[0] for r in rows]
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        vectors = vectors.reshape(len(rows), -1).astype(np.float64)
        q = query.astype(np.float64)
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(q)
        distance = 1.0 - (vectors @ q) / np.where(norms > 0, norms, 1.0)
        best = np.argsort(distance, kind="stable")[: args["k"]]
        return [(ids[i], float(distance[i])) for i in best]

    def _hits(
        self, conn: Connection, collection: str, rows: Sequence[Row | tuple[int, float]]
    ) -> list[Hit]:
        if not rows:
            return []
        distance = {r[0]: float(r[1]) for r in rows}
        marks = ",".join("?" * len(distance))
        found = {
            r["rowid"]: r for r in conn.execute(SELECT_CHUNKS.format(marks=marks), list(distance))
        }
        hits = [
            Hit(score=1.0 - dist, collection=collection, **chunk_fields(found[rowid]))
            for rowid, dist in distance.items()
            if rowid in found
        ]
        hits.sort(key=lambda h: -h.score)
        return hits

    def count(self, collection: str, *, document_id: str | None = None) -> int:
        found = self._info(collection)
        if found is None:
            return 0
        sql = "SELECT count(*) FROM vs_chunks WHERE collection_id = ?"
        args: list[int | str] = [found[0]]
        if document_id is not None:
            sql += " AND document_id = ?"
            args.append(document_id)
        return int(self._conn().execute(sql, args).fetchone()[0])

    def iter_chunks(self, collection: str, *, vectors: bool = True) -> Iterator[ChunkRecord]:
        found = self._info(collection)
        if found is None:
            return
        cid = found[0]
        cols = "c.rowid, c.id, c.document_id, c.chunk_index, c.source, c.page, c.text, c.metadata"
        join = ""
        if vectors:
            cols += ", v.embedding"
            join = f" JOIN vs_vec_{cid} v ON v.rowid = c.rowid"
        cur = self._conn().execute(
            f"SELECT {cols} FROM vs_chunks c{join} WHERE c.collection_id = ?"
            " ORDER BY c.document_id, c.chunk_index",
            (cid,),
        )
        for r in cur:
            yield ChunkRecord(
                **chunk_fields(r),
                vector=np.frombuffer(r["embedding"], dtype=np.float32) if vectors else None,
            )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
