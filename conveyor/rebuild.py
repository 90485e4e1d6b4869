"""``conveyor reindex``: a collection's next generation, built through the queue.

See :mod:`conveyor.generations` for how deltas are routed and the switch is made;
this module starts a rebuild (every document of the collection becomes a job of one
run, read again from its source and embedded with the settings of now) and ends one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .documents import DELETE, Documents
from .exceptions import ConveyorError
from .generations import GRACE, Lineage
from .intake import Enqueued, new_run_name
from .jobs import Job, check_name

if TYPE_CHECKING:
    from .components import Components


def begin(c: Components, collection: str, *, run: str | None = None) -> tuple[Enqueued, Lineage]:
    """Start building the next generation of ``collection``: one forced job for each of
    its documents (their ``user`` metadata kept), search still answering from the
    generation it answers from."""
    collection = check_name("collection", collection)
    run = check_name("run", run or f"reindex-{new_run_name()}")
    docs = [d for d in c.catalog.documents(collection=collection) if d.get("stage") != DELETE]
    if not docs:
        raise ConveyorError(
            f"collection {collection!r} has no documents to rebuild "
            "(`conveyor status` lists the collections)"
        )
    model = c.embedder.model_id or c.local_embedder.model_id
    lineage = c.generations.begin(
        collection, model=model, run=run, started=c.catalog.now(), documents=len(docs)
    )
    jobs = [
        Job(source=d["source"], collection=collection, run=run, options=_options(d)) for d in docs
    ]
    c.catalog.start_run(run, collection, len(jobs))
    Documents(c.catalog).queued([(d["id"], collection, d["source"]) for d in docs], run)
    c.queue.send_many([j.message() for j in jobs])
    return Enqueued(run, collection, len(jobs), [d["id"] for d in docs]), lineage


def _options(doc: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"force": True}
    user = (doc.get("metadata") or {}).get("user")
    if isinstance(user, dict):
        options["metadata"] = user
    return options


def finish(c: Components, collection: str) -> Lineage | None:
    """Switch to the new generation if it is complete and drop the old one once the
    searches that may still read it are over; the lineage as it stands after."""
    g = c.generations
    g.settle(c.catalog, c.vectors, c.lexical, [collection])
    lineage = g.lineage(collection, fresh=True)
    if lineage is not None and lineage.dropping:
        time.sleep(max(0.0, (lineage.switched_at or 0) + GRACE - c.catalog.now()))
        g.settle(c.catalog, c.vectors, c.lexical, [collection])
        lineage = g.lineage(collection, fresh=True)
    return lineage
