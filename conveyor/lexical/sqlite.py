"""The lexical index in SQLite: one FTS5 table per collection, in the catalog's file.

Chunks (text, source, page, metadata: what a hit shows and filters read) are
rows of ``lexical_chunks``; each collection's ``lexical_fts_<id>`` is an FTS5
index over their text (external content: the text is stored once), with the
Porter stemmer on Unicode words, diacritics folded. One table per collection
keeps BM25's statistics (document frequencies, average length) per
collection, as each collection's vectors are its own. FTS5's ``bm25()`` ranks
(k1 = 1.2, b = 0.75); a hit's score is its negation, so higher is better.

A query leaves out the words that are in more than half of the collection's
chunks (when it has others): FTS5's BM25 gives such a word an IDF of 10⁻⁶,
so it changes no score by more than ~2·10⁻⁶, yet ranking the chunks that
hold it is most of the cost of a query (every chunk that holds any query
word is ranked). Document frequencies come from an ``fts5vocab`` table over
the collection's index, and a query's words are tokenized by FTS5 itself (a
temporary FTS5 table with the same tokenizer), so the stems looked up are
the index's own. Both tables are in the connection's ``temp`` schema: a
search writes nothing to the catalog. A connection remembers each word's
stem, and each stem's count until another connection commits to the file
(``PRAGMA data_version``). Without a filter the ranking reads the
FTS5 table alone and the chunks of the ``k`` best only; ties are broken by
rowid (the order chunks were indexed).
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
from ..vectorstore.sqlite_vec import chunk_fields
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
TOKENIZE = "tokenize='porter unicode61 remove_diacritics 2'"
FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS lexical_fts_{cid} USING fts5(text,"
    " content='lexical_chunks', content_rowid='rowid', " + TOKENIZE + ")"
)
SEARCH = """
SELECT c.id, c.document_id, c.chunk_index, c.source, c.page, c.text, c.metadata,
       bm25(lexical_fts_{cid}) AS rank
FROM lexical_fts_{cid} JOIN lexical_chunks c ON c.rowid = lexical_fts_{cid}.rowid
WHERE lexical_fts_{cid} MATCH :match AND {where}
ORDER BY rank, c.rowid LIMIT :k
"""
RANK = """
SELECT rowid, bm25(lexical_fts_{cid}) AS rank FROM lexical_fts_{cid}
WHERE lexical_fts_{cid} MATCH :match ORDER BY rank, rowid LIMIT :k
"""
CHUNKS = """
SELECT rowid, id, document_id, chunk_index, source, page, text, metadata
FROM lexical_chunks WHERE rowid IN (SELECT value FROM json_each(:rowids))
"""
QUERY_TABLES = [  # in the connection's temp schema: tokenizes a query's words
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_words USING fts5(word, " + TOKENIZE + ")",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_word_tokens"
    " USING fts5vocab(temp, lexical_words, instance)",
]
COMMON = 0.5
"""A word in more than this share of the chunks is left out of a query (see the module)."""
CACHED = 50_000
"""Words (and their counts) a connection remembers before it starts afresh."""


def match_expression(query: str | Sequence[str]) -> str | None:
    """An FTS5 query that matches any word of ``query`` (a text, or its words), each
    quoted (so it is a string to FTS5, never an operator); None when it has no words."""
    words = terms(query) if isinstance(query, str) else list(query)
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _hit(row: Row, rank: float, collection: str) -> Hit:
    return Hit(score=-float(rank), collection=collection, **chunk_fields(row))


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
        self._local.__dict__.pop("counts", None)  # its own commits leave data_version be
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
        self._local.__dict__.pop("counts", None)
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
        conn = self._conn()
        cid = self._id(conn, collection)
        words = terms(query)
        if not words or cid is None or k <= 0:
            return []
        match = match_expression(self._informative(conn, cid, words))
        if where:
            clause, params = sql_filter(where, "sqlite", prefix="c.")
            args: dict[str, Any] = {"match": match, "k": int(k), **params}
            rows = conn.execute(SEARCH.format(cid=cid, where=clause), args).fetchall()
            return [_hit(r, r["rank"], collection) for r in rows]
        ranked = conn.execute(RANK.format(cid=cid), {"match": match, "k": int(k)}).fetchall()
        found = {
            r["rowid"]: r
            for r in conn.execute(CHUNKS, {"rowids": json.dumps([r[0] for r in ranked])})
        }
        return [_hit(found[rowid], rank, collection) for rowid, rank in ranked if rowid in found]

    def _informative(self, conn: Connection, cid: int, words: list[str]) -> list[str]:
        """``words`` less those in more than :data:`COMMON` of the collection's chunks
        (all of them when every one is that common)."""
        if len(words) < 2:
            return words
        # what this connection knows of the collection's counts holds until another
        # connection commits (PRAGMA data_version: this one writes only to temp)
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        cache: dict[int, tuple[int, int, dict[str, int]]] = self._local.__dict__.setdefault(
            "counts", {}
        )
        known = cache.get(cid)
        if known is None or known[0] != version or len(known[2]) > CACHED:
            row = conn.execute("SELECT chunks FROM lexical_collections WHERE id = ?", (cid,))
            known = cache[cid] = (version, int(row.fetchone()[0]), {})
        _, chunks, counts = known
        stems = self._stems(conn, words)
        missing = [s for s in stems.values() if s is not None and s not in counts]
        if missing:
            vocab = f"lexical_vocab_{cid}"
            conn.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{vocab}"
                f" USING fts5vocab(main, lexical_fts_{cid}, row)"
            )
            counts.update(dict.fromkeys(missing, 0))
            counts.update(
                conn.execute(
                    f"SELECT term, doc FROM temp.{vocab}"
                    " WHERE term IN (SELECT value FROM json_each(?))",
                    (json.dumps(missing),),
                ).fetchall()
            )
        kept = [w for w in words if (stem := stems[w]) is None or counts[stem] <= COMMON * chunks]
        return kept or words

    def _stems(self, conn: Connection, words: list[str]) -> dict[str, str | None]:
        """Each word's one token as the index stores it (its stem), or None for a word
        that FTS5 reads as several tokens (a phrase) or none."""
        known: dict[str, str | None] = self._local.__dict__.setdefault("stems", {})
        missing = [w for w in words if w not in known]
        if missing:
            if len(known) > CACHED:
                known.clear()
            for statement in QUERY_TABLES:
                conn.execute(statement)
            conn.execute("DELETE FROM temp.lexical_words")
            conn.executemany(
                "INSERT INTO temp.lexical_words (rowid, word) VALUES (?, ?)",
                list(enumerate(missing)),
            )
            tokens: dict[int, list[str]] = {}
            for doc, term in conn.execute("SELECT doc, term FROM temp.lexical_word_tokens"):
                tokens.setdefault(int(doc), []).append(term)
            for i, w in enumerate(missing):
                found = tokens.get(i, [])
                known[w] = found[0] if len(found) == 1 else None
        return {w: known[w] for w in words}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
