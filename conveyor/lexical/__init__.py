"""The lexical index: BM25 over each collection's chunk texts, beside the vectors.

It lives in the catalog's database — SQLite FTS5 (:mod:`.sqlite`) where the
catalog is SQLite, PostgreSQL full text (tsvector + GIN, :mod:`.postgres`)
where it is PostgreSQL — whatever holds the vectors. Only the compactor
writes it, in the same merge as the vectors (:meth:`LexicalIndex.replace_document`
right after the vector store's), so the two hold the same chunks; a crash
between the two writes is repaired by the compactor's replay, as for the
vectors themselves. A collection that has vectors but no lexical index yet (a
home from before it existed) is indexed from the vector store by the
compactor (:meth:`LexicalIndex.rebuild`).

A catalog that cannot hold one (a key-value catalog) has none:
:func:`open_lexical` returns None and search there is dense only.

Queries are plain text, never the engine's query syntax: :func:`terms` keeps
the words (letters and digits) and each engine is given those words quoted,
so ``"``, ``*``, ``NEAR``, ``-`` and ``:`` are searched as text and can never
be an error or an injection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from ..filters import Filter
from ..vectorstore import ChunkRecord, Hit

if TYPE_CHECKING:
    from ..catalog import Catalog

MAX_TERMS = 64
_WORD = re.compile(r"\w+", re.UNICODE)
# the most common English words: matched by nearly every chunk, they cost time and add
# nothing to BM25 (whose IDF gives them ~0); a query made only of them keeps them
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves""".split()
)


def terms(query: str) -> list[str]:
    """The words of ``query`` to look up: letters and digits only, lower-cased, each
    once, common English words left out (unless nothing else is left), at most
    ``MAX_TERMS``."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))
    content = [w for w in words if w not in STOPWORDS]
    return (content or words)[:MAX_TERMS]


class LexicalIndex(Protocol):
    """BM25 over chunk texts, one collection at a time; written by the compactor only."""

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        """The document's chunks in ``collection`` become exactly ``records``, atomically."""
        ...

    def indexed(self, collection: str) -> int | None:
        """Chunks indexed in ``collection``, or None when it has never been indexed."""
        ...

    def rebuild(self, collection: str, records: Iterable[ChunkRecord]) -> int:
        """Index ``collection`` afresh from ``records`` (every chunk it holds); returns
        how many were indexed."""
        ...

    def search(self, collection: str, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The ``k`` chunks that best match the words of ``query`` (BM25, higher is
        better) and meet ``where``, best first; none when no word matches."""
        ...

    def close(self) -> None: ...


def open_lexical(catalog: Catalog) -> LexicalIndex | None:
    """The lexical index in ``catalog``'s database, or None where the catalog cannot
    hold one (then search is dense only)."""
    from ..catalog.sqlite import SqliteCatalog

    if isinstance(catalog, SqliteCatalog):
        from .sqlite import FtsIndex

        return FtsIndex(catalog.path)
    if type(catalog).__name__ == "PostgresCatalog":  # psycopg is imported only then
        from ..catalog.postgres import PostgresCatalog
        from .postgres import TextSearchIndex

        assert isinstance(catalog, PostgresCatalog)
        return TextSearchIndex(catalog.pool)
    return None
