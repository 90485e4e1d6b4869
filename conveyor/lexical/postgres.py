"""The lexical index in PostgreSQL: full text (tsvector + GIN) in the catalog's schema.

Chunks are rows of ``lexical_chunks`` with their ``tsvector`` (the
``english`` configuration: stemmed, stop words out) under a GIN index;
``lexical_collections`` keeps each collection's chunk count and total length,
updated in the transaction that changes its chunks. PostgreSQL's own
``ts_rank`` is not BM25, so the score is computed here, as FTS5 computes it:
for each query term, IDF = ln(1 + (N − df + 0.5) / (df + 0.5)) with df counted
through the GIN index, times the term frequency saturated by k1 = 1.2 and
normalised by the chunk's length against the average (b = 0.75). Only chunks
that hold a query term are scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._postgres import Pool
from ..filters import Filter
from ..filters import sql as sql_filter
from ..vectorstore import ChunkRecord, Hit
from ..vectorstore.pgvector import chunk_fields
from . import terms

CONFIG = "english"
K1, B = 1.2, 0.75

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lexical_collections (
        name text PRIMARY KEY,
        chunks bigint NOT NULL DEFAULT 0,
        tokens bigint NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS lexical_chunks (
        collection text NOT NULL,
        id text NOT NULL,
        document_id text NOT NULL,
        chunk_index integer NOT NULL,
        source text NOT NULL,
        page integer,
        text text NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}',
        length integer NOT NULL,
        tsv tsvector NOT NULL,
        PRIMARY KEY (collection, id)
    )""",
    "CREATE INDEX IF NOT EXISTS lexical_chunks_document"
    " ON lexical_chunks (collection, document_id)",
    "CREATE INDEX IF NOT EXISTS lexical_chunks_tsv ON lexical_chunks USING gin (tsv)",
]
RELATIONS = [
    "lexical_collections",
    "lexical_chunks",
    "lexical_chunks_document",
    "lexical_chunks_tsv",
]

INSERT = f"""
INSERT INTO lexical_chunks (collection, id, document_id, chunk_index, source, page, text,
                            metadata, length, tsv)
SELECT %(collection)s, %(id)s, %(document_id)s, %(chunk_index)s, %(source)s, %(page)s,
       %(text)s, %(metadata)s::jsonb,
       (SELECT coalesce(sum(coalesce(array_length(x.positions, 1), 1)), 0) FROM unnest(v.tsv) x),
       v.tsv
FROM (SELECT to_tsvector('{CONFIG}', %(text)s) AS tsv) v
ON CONFLICT (collection, id) DO UPDATE SET
    document_id = EXCLUDED.document_id, chunk_index = EXCLUDED.chunk_index,
    source = EXCLUDED.source, page = EXCLUDED.page, text = EXCLUDED.text,
    metadata = EXCLUDED.metadata, length = EXCLUDED.length, tsv = EXCLUDED.tsv
"""

# a lexeme as a one-term tsquery, quoted (a quote or backslash in it doubled)
_TERM = "('''' || replace(replace({x}, '\\', '\\\\'), '''', '''''') || '''')::tsquery"

SEARCH = f"""
WITH q AS (
    SELECT DISTINCT t.lexeme FROM unnest(to_tsvector('{CONFIG}', %(text)s)) t
),
s AS (
    SELECT greatest(chunks, 1)::float8 AS n,
           greatest(tokens, 1)::float8 / greatest(chunks, 1) AS avgdl
    FROM lexical_collections WHERE name = %(collection)s
),
w AS (
    SELECT q.lexeme, ln(1 + (s.n - d.df + 0.5) / (d.df + 0.5)) AS idf
    FROM q CROSS JOIN s CROSS JOIN LATERAL (
        SELECT count(*)::float8 AS df FROM lexical_chunks c
        WHERE c.collection = %(collection)s AND c.tsv @@ {_TERM.format(x="q.lexeme")}
    ) d
)
SELECT c.id, c.document_id, c.chunk_index, c.source, c.page, c.text, c.metadata, (
    SELECT sum(w.idf * u.tf * {K1 + 1} / (u.tf + {K1} * ({1 - B} + {B} * c.length / s.avgdl)))
    FROM (SELECT x.lexeme, coalesce(array_length(x.positions, 1), 1)::float8 AS tf
          FROM unnest(c.tsv) x) u
    JOIN w ON w.lexeme = u.lexeme
) AS score
FROM lexical_chunks c CROSS JOIN s
WHERE c.collection = %(collection)s
  AND c.tsv @@ (SELECT string_agg({_TERM.format(x="lexeme")}::text, ' | ')::tsquery FROM q)
  AND {{where}}
ORDER BY score DESC, c.id LIMIT %(k)s
"""

STATS = """
SELECT count(*) AS n, coalesce(sum(length), 0) AS tokens FROM lexical_chunks
WHERE collection = %(collection)s AND document_id = %(document_id)s
"""


class TextSearchIndex:
    """See the module; ``pool`` is the PostgreSQL catalog's (whose schema has the tables)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def __repr__(self) -> str:
        return f"TextSearchIndex(schema={self._pool.schema!r})"

    def _rows(self, records: Iterable[ChunkRecord], collection: str) -> list[dict[str, Any]]:
        from psycopg.types.json import Json

        from ..catalog.postgres import _clean  # what PostgreSQL refuses (NUL, NaN), out

        return [
            {
                "collection": collection,
                "id": r.id,
                "document_id": r.document_id,
                "chunk_index": int(r.chunk_index),
                "source": _clean(r.source),
                "page": r.page,
                "text": _clean(r.text),
                "metadata": Json(_clean(r.metadata)),
            }
            for r in records
        ]

    def _stats(self, conn: Any, collection: str, document_id: str) -> tuple[int, int]:
        row = conn.execute(STATS, {"collection": collection, "document_id": document_id}).fetchone()
        return int(row[0]), int(row[1])

    def _add(self, conn: Any, collection: str, chunks: int, tokens: int) -> None:
        conn.execute(
            "INSERT INTO lexical_collections (name, chunks, tokens) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET chunks = lexical_collections.chunks"
            " + EXCLUDED.chunks, tokens = lexical_collections.tokens + EXCLUDED.tokens",
            (collection, chunks, tokens),
        )

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lexical {collection}",))
            before = self._stats(conn, collection, document_id)
            conn.execute(
                "DELETE FROM lexical_chunks WHERE collection = %s AND document_id = %s",
                (collection, document_id),
            )
            rows = self._rows(records, collection)
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(INSERT, rows)
            after = self._stats(conn, collection, document_id)
            self._add(conn, collection, after[0] - before[0], after[1] - before[1])

    def indexed(self, collection: str) -> int | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT chunks FROM lexical_collections WHERE name = %s", (collection,)
            ).fetchone()
        return None if row is None else int(row[0])

    def rebuild(self, collection: str, records: Iterable[ChunkRecord]) -> int:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lexical {collection}",))
            conn.execute("DELETE FROM lexical_chunks WHERE collection = %s", (collection,))
            conn.execute("DELETE FROM lexical_collections WHERE name = %s", (collection,))
            batch: list[ChunkRecord] = []
            for rec in records:
                batch.append(rec)
                if len(batch) == 500:
                    self._insert_batch(conn, collection, batch)
                    batch = []
            self._insert_batch(conn, collection, batch)
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length), 0) FROM lexical_chunks"
                " WHERE collection = %s",
                (collection,),
            ).fetchone()
            assert row is not None  # an aggregate: one row
            n, tokens = int(row[0]), int(row[1])
            self._add(conn, collection, n, tokens)
        return n

    def _insert_batch(self, conn: Any, collection: str, batch: list[ChunkRecord]) -> None:
        if batch:
            with conn.cursor() as cur:
                cur.executemany(INSERT, self._rows(batch, collection))

    def search(self, collection: str, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        words = terms(query)
        if not words or k <= 0:
            return []
        clause, params = sql_filter(where or Filter(), "postgres", prefix="c.")
        args = {"text": " ".join(words), "collection": collection, "k": int(k), **params}
        from psycopg.rows import dict_row

        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(SEARCH.format(where=clause), args).fetchall()
        return [
            Hit(score=float(r["score"] or 0.0), collection=collection, **chunk_fields(r))
            for r in rows
        ]

    def close(self) -> None:
        """Nothing: the pool is the catalog's, closed with it."""
