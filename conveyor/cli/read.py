"""Reading commands: status, documents, export, and the dead-letter queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..documents import RETRY, SEARCHABLE, State
from .common import (
    WORDS,
    _display_source,
    _iso,
    _iso_times,
    _open,
    _plural,
    handle_errors,
    home_option,
    main,
)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@home_option
@handle_errors
def status(as_json: bool, home: Path | None) -> None:
    """Documents by state, queue depth, collections.

    \b
    Examples:
      conveyor status
      conveyor status --json | jq .queue
    """
    with _open(home) as cv:
        data = cv.status()
    if as_json:
        click.echo(json.dumps(_iso_times(data), indent=2, default=str))
        return
    q, d = data["queue"], data["documents"]
    click.echo(f"home       {data['home']}")
    click.echo(
        f"queue      visible {q['visible']} · in flight {q['in_flight']} · "
        f"delayed {q['delayed']} · dead {q['dead']}"
    )
    searchable = sum(d.get(state, 0) for state in SEARCHABLE)
    click.echo(
        "documents  "
        + " · ".join(f"{WORDS[State(state)]} {n}" for state, n in d.items())
        + f"  ({searchable} searchable)"
    )
    click.echo(
        f"deltas     pending {data['deltas']['pending']} · applied {data['deltas']['applied']}"
        f" · failed {data['deltas']['failed']}"
    )
    for c in data["collections"]:
        click.echo(f"collection {c['name']}: {c['chunks']} chunks ({c['model']}, {c['dim']}d)")
    for g in data.get("generations", []):
        b = g["building"]
        click.echo(
            f"rebuild    {g['collection']}: generation {b['number']} ({b['model']}) "
            f"{g['settled']}/{g['of']} documents, {g['failed']} failed; search answers "
            f"from generation {g['active']} until it is complete"
        )
    for r in data["compactions"]:
        when = _iso(r["finished_at"]) or "running"
        click.echo(
            f"compaction {r['collection']}: {r['state']}, {r['deltas']} deltas, "
            f"{r['chunks']} chunks, {when}"
        )
    for d in data["running"]:
        click.echo(f"running    {_display_source(d['source'])}  [{d['stage'] or 'queued'}]")
    shown = [w for w in data["workers"] if w["state"] != "stopped" or w["heartbeat_age"] < 300]
    if len(shown) > 12:
        click.echo(f"workers    {len(shown) - 12} older ones not shown (see --json)")
        shown = shown[-12:]
    for w in shown:
        mark = "STALE (no heartbeat)" if w["stale"] else w["state"]
        click.echo(
            f"worker     {w['id']}  pid {w['pid']}  {w['in_flight']}/{w['concurrency']} in flight"
            f"  done {w['jobs_done']} failed {w['jobs_failed']}"
            f"  beat {w['heartbeat_age']:.0f}s ago  {mark}"
        )


@main.command()
@click.option(
    "--state",
    type=click.Choice([state.value for state in State]),
    default=None,
    help="Only documents in this state.",
)
@click.option("--collection", "-c", default=None, help="Only this collection.")
@click.option("--run", "run_name", default=None, help="Only this run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@home_option
@handle_errors
def documents(
    state: str | None,
    collection: str | None,
    run_name: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """List documents with their state, chunk count and last error.

    \b
    Examples:
      conveyor documents --state failed
      conveyor documents --json | jq '.[] | select(.chunks > 10) | .source'
    """
    with _open(home) as cv:
        docs = cv.documents(state=state, collection=collection, run=run_name)
    if as_json:
        click.echo(json.dumps(_iso_times(docs), indent=2, default=str, ensure_ascii=False))
        return
    if not docs:
        click.echo("no documents")
        return
    click.echo(f"{'STATE':<9} {'CHUNKS':>6}  SOURCE")
    for d in docs:
        line = f"{WORDS[State(d['state'])]:<9} {d['chunks']:>6}  {_display_source(d['source'])}"
        if d["state"] == State.RUNNING and d.get("stage"):
            line += f"  [{d['stage']}]"
        if d["error"] and d["state"] == State.FAILED:
            line += f"\n{'':<18}reason: {d['error']}"
        elif d["error"] and d["state"] == State.QUEUED and d.get("stage") == RETRY:
            line += f"\n{'':<18}retrying after: {d['error']}"
        click.echo(line)


@main.command()
@click.option("--collection", "-c", default=None, help="Collection to export [default 'default'].")
@home_option
@handle_errors
def export(collection: str | None, home: Path | None) -> None:
    """Write every chunk with its vector as JSON lines to stdout.

    \b
    Examples:
      conveyor export > chunks.jsonl
      conveyor export --collection reports | head -1 | jq .text
    """
    with _open(home) as cv:
        for record in cv.export(collection):
            click.echo(json.dumps(record, ensure_ascii=False))


@main.group()
def dlq() -> None:
    """The dead-letter queue: jobs that failed for good, with their reasons.

    \b
    Examples:
      conveyor dlq list
      conveyor dlq redrive --all
    """


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@home_option
@handle_errors
def dlq_list(limit: int, as_json: bool, home: Path | None) -> None:
    """List dead letters: job id, source, reason, attempts, first and last seen.

    \b
    Examples:
      conveyor dlq list
      conveyor dlq list --json | jq -r '.[].job_id'
    """
    with _open(home) as cv:
        letters = cv.dead_letters(limit)
    rows = [
        {
            "job_id": d.job_id,
            "source": d.body.get("source") if isinstance(d.body, dict) else None,
            "error": d.error,
            "attempts": d.receive_count,
            "first_seen": _iso(d.first_seen),
            "last_seen": _iso(d.last_seen),
            "body": d.body,
        }
        for d in letters
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("the dead-letter queue is empty")
    # a file that failed on every ingest has a letter each time: show it once
    earlier: dict[str, int] = {}
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = str(r["source"])
        if key in latest:
            earlier[key] = earlier.get(key, 0) + 1
            if (r["last_seen"] or "") <= (latest[key]["last_seen"] or ""):
                continue
        latest[key] = r
    for key, r in latest.items():
        also = f"  (and {_plural(earlier[key], 'earlier letter')})" if key in earlier else ""
        click.echo(
            f"{r['job_id']}  {r['attempts']}x  last {r['last_seen']}  {_display_source(key)}{also}"
        )
        click.echo(f"    reason: {r['error']}")


@dlq.command("redrive")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "redrive_all", is_flag=True, help="Every dead letter.")
@home_option
@handle_errors
def dlq_redrive(job_ids: tuple[str, ...], redrive_all: bool, home: Path | None) -> None:
    """Put dead letters back onto the queue, with their attempts reset.

    \b
    Examples:
      conveyor dlq redrive --all
      conveyor dlq redrive 3f2a9c... 77b1e0...
    """
    if not job_ids and not redrive_all:
        raise click.UsageError("give the job ids to redrive (see `conveyor dlq list`), or --all")
    if job_ids and redrive_all:
        raise click.UsageError("give job ids or --all, not both")
    with _open(home) as cv:
        moved = cv.redrive(None if redrive_all else list(job_ids))
    click.echo(
        f"moved {_plural(moved, 'job')} back onto the queue; `conveyor worker` "
        f"(or `conveyor ingest`) processes {'it' if moved == 1 else 'them'}"
    )
