"""Judged sets for retrieval quality, and nDCG@k with binary relevance.

* CISI (``../shared/data/cisi``): ~1,460 library-science abstracts, 76 queries with
  judgments (about 41 relevant documents each).
* Debian packages (``bench/data/debian_packages.json.gz``, built for conveyor from
  the ``/var/lib/dpkg/status`` of its build image and frozen here): 801 long package
  descriptions; each of 801 queries is a package's one-line synopsis, relevant: its
  own description (several packages sharing one description share the document).
  Short technical queries against mid-sized documents, unlike CISI's long queries.

Each loader returns ``(document ids, document texts, queries, relevant id sets)``.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence, Set
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEBIAN = HERE / "data" / "debian_packages.json.gz"
Judged = tuple[list[str], list[str], list[str], list[set[str]]]


def _records(path: Path) -> dict[str, dict[str, str]]:
    """SMART-format records: ``.I id`` starts one, a ``.T``/``.W``/... line a field."""
    records: dict[str, dict[str, list[str]]] = {}
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith(".I "):
            fields = records[line[3:].strip()] = {}
            current = None
        elif len(line) == 2 and line[0] == "." and line[1].isalpha():
            current = fields.setdefault(line[1], [])
        elif current is not None:
            current.append(line.strip())
    return {rid: {k: " ".join(v).strip() for k, v in rec.items()} for rid, rec in records.items()}


def cisi(folder: Path) -> Judged:
    """CISI: title + abstract per document; the queries that have judgments."""
    docs = _records(folder / "CISI.ALL")
    queries = _records(folder / "CISI.QRY")
    relevant: dict[str, set[str]] = {}
    for line in (folder / "CISI.REL").read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            relevant.setdefault(parts[0], set()).add(parts[1])
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


def ndcg_at_k(ranked: Sequence[str], relevant: Set[str], k: int = 10) -> float:
    """DCG@k over the DCG@k of an ideal ranking (binary relevance)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal
