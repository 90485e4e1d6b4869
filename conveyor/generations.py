"""Generations: a collection rebuilt under new settings while search answers from the old.

A collection's chunks live in the vector store under a *physical* name: generation 0
is the collection's own name (every collection starts there), generation ``n`` is
``<collection>__g<n>``, and unit collections follow their collection
(``docs__g2_lines``). Which generation answers, and which is being built, is kept in
the blob store beside the manifests, ``generations/<collection>.json``: one small
object, replaced atomically, so the switch is one write that every reader sees whole.

``conveyor reindex`` starts generation ``n+1`` (:meth:`Generations.begin`) and sends a
job for every document of the collection through the queue — the same workers, the
same single writer. The compactor routes each delta (:meth:`Generations.targets`):
what a worker read after the rebuild began goes to the new generation, what it read
before to the old one, a deletion to both. The new generation is bound to the model
that built it, so a worker still running the old settings cannot mix its vectors in:
its delta is refused with a reason. When no document of the collection is waiting,
running or merging any more, :meth:`Generations.settle` switches (one write) and then
drops the old generation's collections and lexical index. Search resolves the name at
each query (:meth:`Generations.resolve`), so it answers from one generation: the old
one until the switch, the new one after.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .blobstore import BlobStore
from .catalog import Catalog
from .deltas import Header
from .documents import State
from .exceptions import ConveyorError, SourceNotFound
from .ids import NAMESPACE
from .lexical import LexicalIndex
from .vectorstore import ChunkRecord, VectorStore

log = logging.getLogger(__name__)

SEPARATOR = "__g"
UNITS = ("lines", "words", "pages")
"""Unit collections a document may fill beside its chunks (``<collection>_<unit>``)."""
GRACE = 5.0
"""Seconds an old generation outlives the switch: searches that resolved the name
just before it (each process caches the record for ``ttl``) still find it."""
UNSETTLED = (State.QUEUED, State.RUNNING)  # running includes merging


def physical(collection: str, number: int) -> str:
    """The vector store's name for generation ``number`` of ``collection``."""
    return collection if number == 0 else f"{collection}{SEPARATOR}{number}"


def key(collection: str) -> str:
    return f"generations/{collection}.json"


@dataclass(frozen=True)
class Building:
    number: int
    model: str
    """The model id the new generation is built with; a delta of another is refused."""
    run: str
    started: float
    """By the catalog's clock: deltas read from their source after this go here."""
    documents: int


@dataclass(frozen=True)
class Lineage:
    """A collection's generations: the one that answers and the one being built."""

    collection: str
    active: int = 0
    model: str | None = None
    building: Building | None = None
    switched_at: float | None = None
    retired: tuple[int, ...] = field(default_factory=tuple)
    dropping: tuple[int, ...] = field(default_factory=tuple)
    """Retired generations still to drop, once :data:`GRACE` has passed."""

    @property
    def name(self) -> str:
        """The physical name search reads."""
        return physical(self.collection, self.active)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["name"] = self.name
        data["retired"] = list(self.retired)
        data["dropping"] = list(self.dropping)
        if self.building is not None:
            data["building"]["name"] = physical(self.collection, self.building.number)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        building = data.get("building")
        if building:
            building = Building(
                **{k: building[k] for k in ("number", "model", "run", "started", "documents")}
            )
        return cls(
            collection=data["collection"],
            active=int(data.get("active", 0)),
            model=data.get("model"),
            building=building,
            switched_at=data.get("switched_at"),
            retired=tuple(data.get("retired") or ()),
            dropping=tuple(data.get("dropping") or ()),
        )


class Generations:
    """Reads and moves collections' generations; see the module."""

    def __init__(self, blobs: BlobStore, *, ttl: float = 1.0) -> None:
        self.blobs = blobs
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Lineage | None]] = {}
        self._lock = threading.Lock()

    # -- reading -----------------------------------------------------------

    def lineage(self, collection: str, *, fresh: bool = False) -> Lineage | None:
        """The collection's record, or None for one never rebuilt (generation 0).
        Cached for ``ttl`` seconds unless ``fresh``."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(collection)
        if cached is not None and not fresh and now - cached[0] < self.ttl:
            return cached[1]
        try:
            found: Lineage | None = Lineage.from_dict(json.loads(self.blobs.get(key(collection))))
        except SourceNotFound:
            found = None
        with self._lock:
            self._cache[collection] = (now, found)
        return found

    def _split(self, name: str, *, fresh: bool = False) -> tuple[Lineage | None, str]:
        """The lineage ``name`` belongs to, and its unit suffix (``""``, ``"_lines"``)."""
        own = self.lineage(name, fresh=fresh)
        if own is not None:
            return own, ""
        for unit in UNITS:
            if name.endswith(f"_{unit}") and len(name) > len(unit) + 1:
                base = self.lineage(name[: -len(unit) - 1], fresh=fresh)
                if base is not None:
                    return base, f"_{unit}"
        return None, ""

    def resolve(self, name: str, *, fresh: bool = False) -> str:
        """The physical collection search reads for ``name`` (a unit collection too);
        ``fresh``: read the record again rather than trust this process's copy."""
        lineage, suffix = self._split(name, fresh=fresh)
        return name if lineage is None else lineage.name + suffix

    def target(self, name: str) -> str:
        """The physical collection a delivery for ``name`` fills now."""
        lineage, suffix = self._split(name)
        if lineage is None:
            return name
        if lineage.building is not None:
            return physical(lineage.collection, lineage.building.number) + suffix
        return lineage.name + suffix

    def report(self, catalog: Catalog) -> list[dict[str, Any]]:
        """Each generation being built, with its progress (for ``status``)."""
        out = []
        for collection in self.building():
            lineage = self.lineage(collection)
            if lineage is None or lineage.building is None:  # only an old one to drop
                continue
            counts = catalog.counts(run=lineage.building.run)
            settled = sum(counts.get(s, 0) for s in (State.DONE, State.SKIPPED, State.FAILED))
            out.append(
                {
                    **lineage.as_dict(),
                    "settled": settled,
                    "failed": counts.get(State.FAILED, 0),
                    "of": lineage.building.documents,
                }
            )
        return out

    def targets(self, name: str, header: Header) -> list[str]:
        """Where the compactor merges a delta for ``name``: the generation being built
        when the worker read the source after the rebuild began, else the one that
        answers; a deletion leaves both. :class:`ConveyorError` for a delta of a model
        that the new generation is not built with."""
        lineage, suffix = self._split(name, fresh=True)
        if lineage is None:
            return [name]
        active = lineage.name + suffix
        building = lineage.building
        if building is None:
            return [active]
        new = physical(lineage.collection, building.number) + suffix
        if header.deleted:
            return [active, new]
        if header.read_at < building.started:
            return [active]
        if header.model != building.model:
            raise ConveyorError(
                f"collection {lineage.collection!r} is being rebuilt with {building.model}, "
                f"but this document was embedded with {header.model}: restart the workers "
                "with the new settings (the document can then be redriven)"
            )
        return [new]

    @staticmethod
    def records_in(records: list[ChunkRecord], physical_name: str, name: str) -> list[ChunkRecord]:
        """``records`` as ``physical_name`` holds them: in another generation than the
        collection's own name, each with its own id (ids are unique across collections);
        else as they are, not copied."""
        if physical_name == name:
            return records
        return [
            replace(r, id=str(uuid.uuid5(NAMESPACE, f"{r.id}\n{physical_name}"))) for r in records
        ]

    # -- moving ------------------------------------------------------------

    def _write(self, lineage: Lineage) -> None:
        self.blobs.put(key(lineage.collection), json.dumps(lineage.as_dict()).encode())
        with self._lock:
            self._cache[lineage.collection] = (time.monotonic(), lineage)

    def begin(
        self, collection: str, *, model: str, run: str, started: float, documents: int
    ) -> Lineage:
        """Start building the next generation; :class:`ConveyorError` if one is being
        built already (finish it, or :meth:`abandon` it)."""
        lineage = self.lineage(collection, fresh=True) or Lineage(collection)
        if lineage.building is not None:
            raise ConveyorError(
                f"generation {lineage.building.number} of {collection!r} is being built "
                f"already (run {lineage.building.run}); wait for it, or "
                f"`conveyor reindex --collection {collection} --abandon`"
            )
        number = max([lineage.active, *lineage.retired]) + 1
        begun = replace(lineage, building=Building(number, model, run, started, documents))
        self._write(begun)
        return begun

    def abandon(self, collection: str, vectors: VectorStore, lexical: LexicalIndex | None) -> int:
        """Stop building: the generation built so far is dropped. Returns its number."""
        lineage = self.lineage(collection, fresh=True)
        if lineage is None or lineage.building is None:
            raise ConveyorError(f"no generation of {collection!r} is being built")
        number = lineage.building.number
        self._write(replace(lineage, building=None))
        _drop(physical(collection, number), vectors, lexical)
        return number

    def complete(self, collection: str, catalog: Catalog, run: str) -> bool:
        """Whether the generation being built holds every document: none of the
        collection waits, runs or merges, no delta of it is pending, and none of the
        rebuild's documents failed (redrive or delete them, or abandon the rebuild:
        a generation missing documents never answers)."""
        if any(catalog.documents(collection=collection, state=s, limit=1) for s in UNSETTLED):
            return False
        if catalog.counts(run=run).get(State.FAILED, 0):
            return False
        names = {collection, *(f"{collection}_{u}" for u in UNITS)}
        return not names & set(catalog.pending_collections())

    def settle(
        self,
        catalog: Catalog,
        vectors: VectorStore,
        lexical: LexicalIndex | None,
        collections: Sequence[str] | None = None,
    ) -> list[Lineage]:
        """Switch every collection whose new generation is complete, and drop the old
        generations whose grace has passed; returns the lineages switched."""
        switched = []
        for collection in collections if collections is not None else self.building():
            lineage = self.lineage(collection, fresh=True)
            if lineage is None:
                continue
            lock = f"generations:{collection}"
            owner = uuid.uuid4().hex
            if not catalog.acquire_lock(lock, owner, 60.0):
                continue
            try:
                building = lineage.building
                if building is not None and self.complete(collection, catalog, building.run):
                    lineage = self._switch(lineage, catalog)
                    switched.append(lineage)
                if lineage.dropping and (lineage.switched_at or 0) + GRACE <= catalog.now():
                    for number in lineage.dropping:
                        _drop(physical(collection, number), vectors, lexical)
                    self._write(replace(lineage, dropping=()))
            finally:
                catalog.release_lock(lock, owner)
        return switched

    def _switch(self, lineage: Lineage, catalog: Catalog) -> Lineage:
        building = lineage.building
        assert building is not None
        old = lineage.active
        new = Lineage(
            collection=lineage.collection,
            active=building.number,
            model=building.model,
            building=None,
            switched_at=catalog.now(),
            retired=(*lineage.retired, old),
            dropping=(*lineage.dropping, old),
        )
        self._write(new)  # the switch: one atomic write
        log.info(
            "generation %d of %s answers now (model %s); generation %d is dropped in %g s",
            building.number,
            lineage.collection,
            building.model,
            old,
            GRACE,
            extra={"collection": lineage.collection},
        )
        return new

    def building(self) -> list[str]:
        """Collections with a generation being built, or an old one still to drop."""
        found = []
        for info in self.blobs.list("generations/"):
            name = info.key.removeprefix("generations/").removesuffix(".json")
            lineage = self.lineage(name, fresh=True)
            if lineage is not None and (lineage.building is not None or lineage.dropping):
                found.append(name)
        return found


def _drop(name: str, vectors: VectorStore, lexical: LexicalIndex | None) -> None:
    """A generation's collection and its units, from the vector store and the index."""
    for each in (name, *(f"{name}_{u}" for u in UNITS)):
        vectors.drop_collection(each)
        if lexical is not None and lexical.indexed(each) is not None:
            lexical.rebuild(each, [])
