"""A document's history in words, and its processing history (its versions).

Built on the catalog's events (:meth:`conveyor.catalog.Catalog.events`): every
move between states, written with the move. A *version* is what one run made of
the document: the event that settled it in that run (``done``, ``skipped`` —
said ``unchanged`` —, or ``failed``), with the content hash read, when, chunks,
pages and the reason of a failure. ``conveyor documents ID --history``, the
API's ``GET /documents/{id}/history`` and the status page's detail view read
them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OUTCOMES = {"done": "done", "skipped": "unchanged", "failed": "failed"}
"""The states that settle a run, and what a version calls them."""


def versions(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run that settled the document, oldest first (a run that settled
    it twice — a failure redriven, a duplicate job — counts once, as it ended)."""
    last: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if event["to_state"] in OUTCOMES:
            key = event["run"] if event.get("run") is not None else f"#{event['id']}"
            last.pop(key, None)  # dict order: where the run ended
            last[key] = event
    return [
        {
            "version": n,
            "run": e.get("run"),
            "at": e["at"],
            "outcome": OUTCOMES[e["to_state"]],
            "content_hash": e.get("content_hash"),
            "chunks": e.get("chunks"),
            "pages": e.get("pages"),
            "attempt": e.get("attempt"),
            "reason": e.get("reason") if e["to_state"] == "failed" else None,
        }
        for n, e in enumerate(last.values(), start=1)
    ]


def describe(event: Mapping[str, Any]) -> str:
    """An event in words: ``queued → running (attempt 2)``, ``running → done: 12 chunks``."""
    source = event.get("from_state")
    target = event["to_state"]
    if source is None:
        words = f"submitted: {target}"
    elif source == target:
        words = f"{target} again"
    else:
        words = f"{source} → {target}"
    facts = []
    if event.get("run") and event.get("reason") == "submitted":
        facts.append(f"run {event['run']}")
    if target in ("done", "skipped") and event.get("chunks") is not None:
        facts.append(f"{event['chunks']} chunk{'s' if event['chunks'] != 1 else ''}")
        if event.get("pages"):
            facts.append(f"{event['pages']} page{'s' if event['pages'] != 1 else ''}")
    reason = event.get("reason")
    if reason and reason != "submitted":
        facts.insert(0, str(reason))
    return f"{words}: {', '.join(facts)}" if facts else words
