"""Judged sets for retrieval quality, and nDCG@k with binary relevance.

* CISI (``../shared/data/cisi``): ~1,460 library-science abstracts, 76 queries with
  judgments (about 41 relevant documents each).
* Debian packages (``bench/data/debian_packages.json.gz``, built for conveyor from
  the ``/var/lib/dpkg/status`` of its build image and frozen here): 801 long package
  descriptions; each of 801 queries is a package's one-line synopsis, relevant: its
  own description (several packages sharing one description share the document).
  Short technical queries against mid-sized documents, unlike CISI's long queries.

Each loader returns ``(document ids, document texts, queries, relevant id sets)``;
``ndcg_at_k`` is ``bench/_metrics.py``'s.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from _metrics import ndcg_at_k
from cisi import read_judgments, read_records

HERE = Path(__file__).resolve().parent
DEBIAN = HERE / "data" / "debian_packages.json.gz"
Judged = tuple[list[str], list[str], list[str], list[set[str]]]
__all__ = ["Judged", "cisi", "debian", "ndcg_at_k"]


def cisi(folder: Path) -> Judged:
    """CISI: title + abstract per document (as ``bench/cisi.py`` writes them); the
    queries that have judgments."""
    docs = read_records(folder / "CISI.ALL")
    queries = read_records(folder / "CISI.QRY")
    relevant = read_judgments(folder / "CISI.REL")
    ids = list(docs)
    texts = [f"{docs[i].get('T', '')}\n\n{docs[i].get('W', '')}\n" for i in ids]
    judged = [q for q in queries if relevant.get(q)]
    return ids, texts, [queries[q]["W"] for q in judged], [relevant[q] for q in judged]


def debian(path: Path = DEBIAN) -> Judged:
    """Debian package synopses → descriptions (see the module's docstring)."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    ids = list(data["documents"])
    texts = [data["documents"][i] for i in ids]
    queries = [q["text"] for q in data["queries"]]
    return ids, texts, queries, [set(q["relevant"]) for q in data["queries"]]
