"""The lexical index in SQLite: one FTS5 table per collection, in the catalog's file.

Chunks (text, source, page, metadata: what a hit shows and filters read) are
rows of ``lexical_chunks``; each collection's ``lexical_fts_<id>`` is an FTS5
index over their text (external content: the text is stored once), with the
Porter stemmer on Unicode words, diacritics folded. One table per collection
keeps BM25's statistics (document frequencies, average length) per
collection, as each collection's vectors are its own. FTS5's ``bm25()`` ranks
(k1 = 1.2, b = 0.75); a hit's score is its negation, so higher is better.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._sqlite import Connection, Row, connect, table_exists, transaction
from ..filters import Filter
from ..filters import sql as sql_filter
from ..vectorstore import ChunkRecord, Hit
from . import terms

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lexical_collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        chunks INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS lexical_chunks (
        rowid INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        document_id TEXT NOT NULL,
        chunk_index INTEGER NOT NULL,
        source TEXT NOT NULL,
        page INTEGER,
        text TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        UNIQUE (collection_id, id)
    )""",
    "CREATE INDEX IF NOT EXISTS lexical_chunks_document"
    " ON lexical_chunks (collection_id, document_id)",
]
FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS lexical_fts_{cid} USING fts5(text,"
    " content='lexical_chunks', content_rowid='rowid',"
    " tokenize='porter unicode61 remove_diacritics 2')"
)
SEARCH = """
SELECT c.id, c.document_id, c.chunk_index, c.source, c.page, c.text, c.metadata,
       bm25(lexical_fts_{cid}) AS rank
FROM lexical_fts_{cid} JOIN lexical_chunks c ON c.rowid = lexical_fts_{cid}.rowid
WHERE lexical_fts_{cid} MATCH :match AND {where}
ORDER BY rank, c.id LIMIT :k
"""


def match_expression(query: str) -> str | None:
    """An FTS5 query that matches any word of ``query``, each quoted (so it is a
    string to FTS5, never an operator); None when ``query`` has no words."""
    words = terms(query)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


class FtsIndex:
    """See the module; ``path`` is the catalog's SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        if not table_exists(self._conn(), "lexical_chunks_document"):
            with transaction(self._conn()) as conn:
                for statement in SCHEMA:
                    conn.execute(statement)

    def __repr__(self) -> str:
        return f"FtsIndex({self.path!r})"

    def _conn(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, vec=False)
        return conn

    def _id(self, conn: Connection, collection: str, *, create: bool = False) -> int | None:
        row = conn.execute(
            "SELECT id FROM lexical_collections WHERE name = ?", (collection,)
        ).fetchone()
        if row is not None or not create:
            return None if row is None else int(row[0])
        cur = conn.execute("INSERT INTO lexical_collections (name) VALUES (?)", (collection,))
        cid = int(cur.lastrowid or 0)
        conn.execute(f"DROP TABLE IF EXISTS lexical_fts_{cid}")  # an orphan of a lost row
        conn.execute(FTS.format(cid=cid))
        return cid

    def _delete(self, conn: Connection, cid: int, rows: list[Row]) -> None:
        conn.executemany(
            f"INSERT INTO lexical_fts_{cid} (lexical_fts_{cid}, rowid, text)"
            " VALUES ('delete', ?, ?)",
            [(r["rowid"], r["text"]) for r in rows],
        )
        conn.executemany(
            "DELETE FROM lexical_chunks WHERE rowid = ?", [(r["rowid"],) for r in rows]
        )

    def _insert(self, conn: Connection, cid: int, records: Iterable[ChunkRecord]) -> int:
        n = 0
        for rec in records:
            cur = conn.execute(
                "INSERT INTO lexical_chunks (collection_id, id, document_id, chunk_index,"
                " source, page, text, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cid,
                    rec.id,
                    rec.document_id,
                    rec.chunk_index,
                    rec.source,
                    rec.page,
                    rec.text,
                    json.dumps(rec.metadata, ensure_ascii=False, default=str),
                ),
            )
            conn.execute(
                f"INSERT INTO lexical_fts_{cid} (rowid, text) VALUES (?, ?)",
                (cur.lastrowid, rec.text),
            )
            n += 1
        return n

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        self.replace_documents(collection, [(document_id, records)])

    def replace_documents(
        self, collection: str, documents: Sequence[tuple[str, Sequence[ChunkRecord]]]
    ) -> None:
        """:meth:`replace_document` for several documents, in order, in one transaction."""
        with transaction(self._conn()) as conn:
            cid = self._id(conn, collection, create=True)
            assert cid is not None
            change = 0
            for document_id, records in documents:
                old = conn.execute(  # a UNION: an OR here scans the whole collection
                    "SELECT rowid, text FROM lexical_chunks WHERE collection_id = :cid"
                    " AND document_id = :doc UNION SELECT rowid, text FROM lexical_chunks"
                    " WHERE collection_id = :cid AND id IN (SELECT value FROM json_each(:ids))",
                    {"cid": cid, "doc": document_id, "ids": json.dumps([r.id for r in records])},
                ).fetchall()
                self._delete(conn, cid, old)
                change += self._insert(conn, cid, records) - len(old)
            conn.execute(
                "UPDATE lexical_collections SET chunks = chunks + ? WHERE id = ?", (change, cid)
            )

    def indexed(self, collection: str) -> int | None:
        row = (
            self._conn()
            .execute("SELECT chunks FROM lexical_collections WHERE name = ?", (collection,))
            .fetchone()
        )
        return None if row is None else int(row[0])

    def rebuild(self, collection: str, records: Iterable[ChunkRecord]) -> int:
        with transaction(self._conn()) as conn:
            cid = self._id(conn, collection)
            if cid is not None:
                conn.execute(f"DROP TABLE IF EXISTS lexical_fts_{cid}")
                conn.execute("DELETE FROM lexical_chunks WHERE collection_id = ?", (cid,))
                conn.execute("DELETE FROM lexical_collections WHERE id = ?", (cid,))
            cid = self._id(conn, collection, create=True)
            assert cid is not None
            n = self._insert(conn, cid, records)
            conn.execute("UPDATE lexical_collections SET chunks = ? WHERE id = ?", (n, cid))
        return n

    def search(self, collection: str, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        match = match_expression(query)
        conn = self._conn()
        cid = self._id(conn, collection)
        if match is None or cid is None or k <= 0:
            return []
        clause, params = sql_filter(where or Filter(), "sqlite", prefix="c.")
        args: dict[str, Any] = {"match": match, "k": int(k), **params}
        rows = conn.execute(SEARCH.format(cid=cid, where=clause), args).fetchall()
        return [
            Hit(
                score=-float(r["rank"]),
                id=r["id"],
                document_id=r["document_id"],
                source=r["source"],
                chunk_index=r["chunk_index"],
                page=r["page"],
                text=r["text"],
                metadata=json.loads(r["metadata"]),
                collection=collection,
            )
            for r in rows
        ]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
