"""PostgreSQL with pgvector: ``pgvector+postgresql://user:password@host:5432/db``.

What teams on RDS / Aurora / Cloud SQL use when they would rather not run a
vector database. The URL after ``pgvector+`` is a libpq URL, plus one
parameter of ours, ``schema`` (default ``conveyor``, as for the PostgreSQL
queue and catalog), the schema that holds the tables.

Tables: ``vs_collections`` (name, model, dimension: the catalog that binds a
collection to its model) and one ``vs_chunks_<id>`` per collection, because
an HNSW index needs a column of one fixed dimension (``vector(384)``). Each
chunk table has an HNSW index with ``vector_cosine_ops`` (up to 2,000
dimensions, pgvector's limit; beyond that search is exact) and B-tree
indexes on ``(document_id, chunk_index)`` and ``source``. ``document_id``
sorts bytewise (``COLLATE "C"``) so export order matches the other backends.

``CREATE EXTENSION IF NOT EXISTS vector`` runs on first use, under an
advisory lock with the rest of the schema; a user without the right to
create it needs an administrator to run it once (the error says so). The
extension may live in any schema: connections put it on their
``search_path`` after conveyor's.

``replace_document`` is one transaction. Unfiltered queries use the HNSW
index with ``hnsw.ef_search`` raised to ``k`` (approximate, like every HNSW
store); queries filtered by document or source are exact over the matching
rows (:func:`conveyor.filters.sql`), so a filter never returns fewer hits
than exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from .._postgres import OutageGuard
from ..exceptions import ConfigurationError, ConveyorError, safe_summary
from ..filters import sql as sql_filter
from . import ChunkRecord, CollectionInfo, Hit, Where
from ._common import check_model, filters, missing_extra, query_vector, require_vector

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import DictRow, TupleRow

SCHEMES = ("pgvector+postgresql://", "pgvector+postgres://")
HNSW_MAX_DIM = 2000
EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search

COLUMNS = "id, document_id, chunk_index, source, page, text, metadata"

CATALOG = """
CREATE TABLE IF NOT EXISTS vs_collections (
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    dim integer NOT NULL,
    model_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

CHUNKS = """
CREATE TABLE IF NOT EXISTS vs_chunks_{cid} (
    id text PRIMARY KEY,
    document_id text COLLATE "C" NOT NULL,
    chunk_index integer NOT NULL,
    source text NOT NULL,
    page integer,
    text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}',
    embedding vector({dim}) NOT NULL
);
CREATE INDEX IF NOT EXISTS vs_chunks_{cid}_document ON vs_chunks_{cid} (document_id, chunk_index);
CREATE INDEX IF NOT EXISTS vs_chunks_{cid}_source ON vs_chunks_{cid} (source)
"""

HNSW = """
CREATE INDEX IF NOT EXISTS vs_chunks_{cid}_embedding
    ON vs_chunks_{cid} USING hnsw (embedding vector_cosine_ops)
"""

UPSERT = """
INSERT INTO vs_chunks_{cid} (id, document_id, chunk_index, source, page, text, metadata, embedding)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::vector)
ON CONFLICT (id) DO UPDATE SET
    document_id = EXCLUDED.document_id, chunk_index = EXCLUDED.chunk_index,
    source = EXCLUDED.source, page = EXCLUDED.page, text = EXCLUDED.text,
    metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding
"""

NEAREST = """
SELECT {columns}, embedding <=> %(q)s::vector AS distance FROM vs_chunks_{cid}
ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s
"""

NEAREST_EXACT = """
WITH matching AS MATERIALIZED (
    SELECT {columns}, embedding <=> %(q)s::vector AS distance FROM vs_chunks_{cid} {where}
)
SELECT * FROM matching ORDER BY distance LIMIT %(k)s
"""


def split_url(url: str) -> tuple[str, str]:
    """``(libpq URL, schema)`` of a ``pgvector+postgresql://`` URL, parsed as the
    PostgreSQL queue and catalog parse theirs (``?schema=``, timeouts)."""
    if not url.startswith(SCHEMES):
        raise ConfigurationError(
            f"not a pgvector URL: {safe_summary(url)!r}; use pgvector+postgresql://…"
        )
    from .._postgres import split_url as split_postgres_url

    return split_postgres_url(url[len("pgvector+") :])


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(map(str, vector.tolist())) + "]"


def _parse_vector(text: str) -> np.ndarray:
    return np.array(text[1:-1].split(","), dtype=np.float32)


def chunk_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a chunk row says of its chunk (metadata as jsonb gives it): shared by hits,
    exported records and the lexical index's hits (:mod:`conveyor.lexical.postgres`)."""
    return {
        "id": row["id"],
        "document_id": row["document_id"],
        "chunk_index": row["chunk_index"],
        "text": row["text"],
        "source": row["source"],
        "page": row["page"],
        "metadata": row["metadata"],
    }


class PgvectorStore:
    """conveyor's vector store contract on PostgreSQL + pgvector, safe across threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            import psycopg
            import psycopg_pool
            from psycopg.rows import DictRow, dict_row
            from psycopg.types.json import Jsonb
        except ImportError as exc:
            raise missing_extra("psycopg and psycopg-pool", "postgres", url) from exc
        self._Jsonb = Jsonb
        libpq, self.schema = split_url(url)
        try:
            with psycopg.connect(libpq, autocommit=True) as conn:
                ext_schema = self._prepare(conn)
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot open the pgvector store {safe_summary(url)!r}: {safe_summary(exc)}"
            ) from exc
        from psycopg.conninfo import conninfo_to_dict

        own = str(conninfo_to_dict(libpq).get("options") or "")
        path = ",".join(dict.fromkeys([self.schema, ext_schema]))
        self._collections: dict[str, tuple[int, CollectionInfo]] = {}
        self._pool = psycopg_pool.ConnectionPool(
            libpq,
            connection_class=psycopg.Connection[DictRow],
            min_size=1,
            max_size=4,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": f"{own} -c search_path={path}".strip(),
            },
            name="conveyor-vectors",
            timeout=30.0,
            open=True,
        )
        self._guard = OutageGuard("vector store")

    def _connection(self) -> AbstractContextManager[psycopg.Connection[DictRow]]:
        """A pooled connection; a server gone away is :class:`BackendUnavailable`."""
        return self._guard.connection(self._pool)

    def _prepare(self, conn: psycopg.Connection[TupleRow]) -> str:
        """Create the extension, schema and catalog table unless they exist; returns the
        schema the extension lives in."""
        import psycopg

        state = self._state(conn)
        if state[0] is None or not state[1]:
            try:
                with conn.transaction():
                    key = f"conveyor vectors {self.schema}"
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    conn.execute(CATALOG.replace("vs_collections", f"{self.schema}.vs_collections"))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise ConfigurationError(
                    f"the pgvector store {safe_summary(self.url)!r} needs the vector extension "
                    f"and the schema {self.schema!r}, which this user may not create: ask an "
                    f"administrator to run CREATE EXTENSION vector ({safe_summary(exc)})"
                ) from exc
            except psycopg.errors.UndefinedFile as exc:
                raise ConfigurationError(
                    f"the server of {safe_summary(self.url)!r} has no pgvector installed "
                    f"({safe_summary(exc)})"
                ) from exc
            state = self._state(conn)
        return str(state[0])

    def _state(self, conn: psycopg.Connection[TupleRow]) -> tuple[str | None, bool]:
        """The extension's schema (None if not installed) and whether the catalog exists."""
        row = conn.execute(
            "SELECT (SELECT n.nspname FROM pg_extension e"
            "        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'),"
            " to_regclass(%s) IS NOT NULL",
            (f"{self.schema}.vs_collections",),
        ).fetchone()
        assert row is not None  # a SELECT without FROM: one row
        return row[0], bool(row[1])

    # -- collections ---------------------------------------------------------

    def _info(self, name: str) -> tuple[int, CollectionInfo] | None:
        """A collection's table id and binding; never changes once created, so cached."""
        if name in self._collections:
            return self._collections[name]
        with self._connection() as conn:
            row = conn.execute(
                "SELECT id, dim, model_id FROM vs_collections WHERE name = %s", (name,)
            ).fetchone()
        if row is None:
            return None
        found = self._collections[name] = (
            row["id"],
            CollectionInfo(name, row["dim"], row["model_id"], 0),
        )
        return found

    def _require(self, name: str) -> int:
        found = self._info(name)
        if found is None:
            raise ConveyorError(f"collection {name!r} does not exist")
        return found[0]

    def ensure_collection(self, name: str, *, dim: int, model_id: str) -> None:
        if self._info(name) is None:
            with self._connection() as conn, conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    (f"conveyor vectors {self.schema}",),
                )
                row = conn.execute(
                    "INSERT INTO vs_collections (name, dim, model_id) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO NOTHING RETURNING id",
                    (name, dim, model_id),
                ).fetchone()
                if row is not None:
                    cid = int(row["id"])
                    ddl = CHUNKS + (";" + HNSW if dim <= HNSW_MAX_DIM else "")
                    for statement in ddl.format(cid=cid, dim=int(dim)).split(";"):
                        conn.execute(statement)
        found = self._info(name)
        assert found is not None
        info = found[1]
        check_model(name, info.dim, info.model_id, dim, model_id)

    def drop_collection(self, name: str) -> bool:
        self._collections.pop(name, None)
        found = self._info(name)
        if found is None:
            return False
        with self._connection() as conn, conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS vs_chunks_{int(found[0])}")
            conn.execute("DELETE FROM vs_collections WHERE id = %s", (found[0],))
        self._collections.pop(name, None)
        return True

    def collection(self, name: str) -> CollectionInfo | None:
        found = self._info(name)
        if found is None:
            return None
        cid, info = found
        return CollectionInfo(name, info.dim, info.model_id, self._count(cid))

    def collections(self) -> list[CollectionInfo]:
        with self._connection() as conn:
            names = [r["name"] for r in conn.execute("SELECT name FROM vs_collections")]
        return [c for n in sorted(names) if (c := self.collection(n)) is not None]

    # -- writes --------------------------------------------------------------

    def _upsert(
        self, conn: psycopg.Connection[DictRow], cid: int, records: Sequence[ChunkRecord]
    ) -> None:
        rows = [
            (
                r.id,
                r.document_id,
                int(r.chunk_index),
                r.source,
                r.page,
                r.text,
                self._Jsonb(r.metadata),
                _vector_text(require_vector(r)),
            )
            for r in records
        ]
        if rows:
            with conn.cursor() as cur:
                cur.executemany(UPSERT.format(cid=cid), rows)

    def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        cid = self._require(collection)
        with self._connection() as conn, conn.transaction():
            self._upsert(conn, cid, records)

    def delete(self, collection: str, *, document_id: str) -> int:
        found = self._info(collection)
        if found is None:
            return 0
        with self._connection() as conn:
            cur = conn.execute(
                f"DELETE FROM vs_chunks_{found[0]} WHERE document_id = %s", (document_id,)
            )
            return int(cur.rowcount)

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        cid = self._require(collection)
        with self._connection() as conn, conn.transaction():
            conn.execute(f"DELETE FROM vs_chunks_{cid} WHERE document_id = %s", (document_id,))
            self._upsert(conn, cid, records)

    # -- reads ---------------------------------------------------------------

    def query(self, collection: str, vector: np.ndarray, k: int, where: Where = None) -> list[Hit]:
        found = self._info(collection)
        if found is None or k <= 0:
            return []
        cid, info = found
        query = query_vector(collection, vector, info.dim, info.model_id)
        match = filters(where)
        args: dict[str, Any] = {"q": _vector_text(query), "k": int(k)}
        with self._connection() as conn, conn.transaction():
            if match or k > EF_SEARCH_MAX:
                clause, params = sql_filter(match, "postgres")
                args.update(params)
                sql = NEAREST_EXACT.format(columns=COLUMNS, cid=cid, where=f"WHERE {clause}")
            else:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(max(40, k)),))
                sql = NEAREST.format(columns=COLUMNS, cid=cid)
            rows = conn.execute(sql, args).fetchall()
        return [
            Hit(score=1.0 - float(r["distance"]), collection=collection, **chunk_fields(r))
            for r in rows
        ]

    def _count(self, cid: int, document_id: str | None = None) -> int:
        sql, args = f"SELECT count(*) AS n FROM vs_chunks_{cid}", []
        if document_id is not None:
            sql += " WHERE document_id = %s"
            args.append(document_id)
        with self._connection() as conn:
            row = conn.execute(sql, args).fetchone()
        assert row is not None  # an aggregate: one row
        return int(row["n"])

    def count(self, collection: str, *, document_id: str | None = None) -> int:
        found = self._info(collection)
        return 0 if found is None else self._count(found[0], document_id)

    def iter_chunks(self, collection: str, *, vectors: bool = True) -> Iterator[ChunkRecord]:
        """A server-side cursor: the collection streams, it is never held in memory."""
        found = self._info(collection)
        if found is None:
            return
        cols = COLUMNS + (", embedding::text AS embedding" if vectors else "")
        sql = f"SELECT {cols} FROM vs_chunks_{found[0]} ORDER BY document_id, chunk_index"
        with (
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(name="conveyor_export") as cur,
        ):
            cur.itersize = 500
            cur.execute(sql)
            for r in cur:
                yield ChunkRecord(
                    **chunk_fields(r),
                    vector=_parse_vector(r["embedding"]) if vectors else None,
                )

    def close(self) -> None:
        self._pool.close()
