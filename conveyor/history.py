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


def facts(event: Mapping[str, Any]) -> list[str]:
    """What an event adds to its move: the reason, a settled document's chunks and pages."""
    found = []
    reason = event.get("reason")
    if reason and reason != "submitted":
        found.append(str(reason))
    if event.get("reason") == "submitted" and event.get("run"):
        found.append(f"run {event['run']}")
    if event["to_state"] in ("done", "skipped") and event.get("chunks") is not None:
        found.append(_count(int(event["chunks"]), "chunk"))
        if event.get("pages"):
            found.append(_count(int(event["pages"]), "page"))
    return found


def describe(event: Mapping[str, Any]) -> str:
    """An event in words: ``queued → running: attempt 2``, ``running → done: merged, 12
    chunks``; a document's first, ``submitted: queued: run r1``."""
    source, target = event.get("from_state"), event["to_state"]
    if source is None:
        words = f"submitted: {target}"
    elif source == target:
        words = f"{target} again"
    else:
        words = f"{source} → {target}"
    told = facts(event)
    return f"{words}: {', '.join(told)}" if told else words


def entries(doc: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A document's history as the status page lists it, oldest first: ``first
    submitted`` first, each move between, ``now <state>`` last (the last move, when it
    led to the state the document is in). A document from before histories were kept
    has the first and the last only, from its row."""
    out: list[dict[str, Any]] = []
    moves = list(events)
    if not moves or moves[0].get("from_state") is not None:
        out.append({"at": doc["created_at"], "what": "first submitted"})
    for n, event in enumerate(moves):
        what = describe(event)
        if n == 0 and event.get("from_state") is None:
            what = ", ".join(["first submitted", *facts(event)])
        out.append({"at": event["at"], "what": what, **_fields(event)})
    now = f"now {doc['state']}"
    last = moves[-1] if moves else None
    if last is not None and last["to_state"] == doc["state"] and len(moves) > 1:
        told = facts(last)
        where = [f"from {last['from_state']}"] if last.get("from_state") else []
        if doc.get("stage"):  # a running document: where it is now
            where.append(f"stage {doc['stage']}")
        source = f" ({', '.join(where)})" if where else ""
        out[-1]["what"] = now + source + (f": {', '.join(told)}" if told else "")
        return out
    if doc.get("stage"):
        now += f" (stage {doc['stage']})"
    if doc.get("attempts"):
        now += f" after {_count(int(doc['attempts']), 'attempt')}"
    out.append({"at": doc["updated_at"], "what": now})
    return out


def _fields(event: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("from_state", "to_state", "reason", "run", "attempt")
    return {k: event.get(k) for k in keys}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
