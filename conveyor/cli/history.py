"""``conveyor documents DOCUMENT --history``: a document's versions and its moves."""

from __future__ import annotations

import json
from typing import Any

import click

from ..deletion import ids_of_sources
from ..exceptions import ConveyorError
from ..history import entries, versions
from .common import _display_source, _iso


def find(cv: Any, document: str, collection: str | None) -> dict[str, Any]:
    """The catalog row of ``document``: a document id, or a source (a path as ingested,
    or a URI) in ``collection``."""
    catalog = cv.components.catalog
    doc = catalog.get(document) if len(document) <= 200 else None
    if doc is None:
        try:
            [doc_id] = ids_of_sources(catalog, [document], collection or cv.settings.collection)
        except ConveyorError:
            raise ConveyorError(
                f"no document {document!r}: give a document id (`conveyor documents --json`)"
                " or a source as ingested (with --collection if not the default)"
            ) from None
        doc = catalog.get(doc_id)
    assert doc is not None
    return dict(doc)


def show(cv: Any, document: str, collection: str | None, as_json: bool) -> None:
    doc = find(cv, document, collection)
    events = cv.components.catalog.events(doc["id"])
    found = versions(events)
    if as_json:
        out = {
            "id": doc["id"],
            "source": doc["source"],
            "collection": doc["collection"],
            "state": doc["state"],
            "versions": [{**v, "at": _iso(v["at"])} for v in found],
            "events": [{**e, "at": _iso(e["at"])} for e in events],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    click.echo(f"{_display_source(doc['source'])}  ({doc['id']}, {doc['collection']})")
    if not found:
        click.echo("no version yet: no run has settled it")
    else:
        click.echo(
            f"{'VERSION':<8} {'WHEN':<25} {'OUTCOME':<9} {'CHUNKS':>6} {'PAGES':>5}"
            f"  {'HASH':<12}  RUN"
        )
    for v in found:
        chunks = "-" if v["chunks"] is None else v["chunks"]
        pages = "-" if v["pages"] is None else v["pages"]
        digest = (v["content_hash"] or "-").removeprefix("sha256:")[:12]
        click.echo(
            f"{v['version']:<8} {_iso(v['at']):<25} {v['outcome']:<9} {chunks:>6} {pages:>5}"
            f"  {digest:<12}  {v['run'] or '-'}"
        )
        if v["reason"]:
            click.echo(f"{'':<9}reason: {v['reason']}")
    click.echo("moves:")
    for entry in entries(doc, events):
        click.echo(f"  {_iso(entry['at'])}  {entry['what']}")
