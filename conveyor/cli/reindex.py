"""``conveyor reindex``: rebuild a collection under the settings of now, without downtime."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..settings import env_var
from .common import _open, _plural, _signals, concurrency_option, handle_errors, home_option, main
from .ingest import Progress, _print_summary


@main.command()
@click.option(
    "--collection",
    "-c",
    default=None,
    help=f"The collection to rebuild [env: {env_var('collection')}; default 'default'].",
)
@click.option("--no-wait", is_flag=True, help="Only enqueue; the fleet's workers rebuild it.")
@click.option(
    "--abandon", is_flag=True, help="Stop a rebuild under way and drop what it built so far."
)
@concurrency_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@home_option
@handle_errors
def reindex(
    collection: str | None,
    no_wait: bool,
    abandon: bool,
    concurrency: int | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Rebuild a collection with the model, backend and chunking configured now,
    while search keeps answering from the collection as it is.

    Every document of the collection is read again from its source and embedded
    through the queue (the same workers, the same single writer) into a new
    generation. Search answers from the old generation, with its own model,
    until every document of the new one has settled; then it switches at once
    and the old generation is dropped. A collection never mixes vectors of two
    models: a worker still running the old settings has its documents refused
    with a reason. `conveyor status` shows the rebuild's progress.

    Documents that fail (a source gone) are not in the new generation; the
    summary lists them.

    \b
    Examples:
      CONVEYOR_EMBEDDING_BACKEND=onnx conveyor reindex --collection manuals
      CONVEYOR_CHUNK_SIZE=128 conveyor reindex -c manuals --no-wait   # the fleet builds it
      conveyor reindex -c manuals --abandon
    """
    from .. import rebuild

    with _open(home) as cv:
        c = cv.components
        name = collection or cv.settings.collection
        if abandon:
            number = c.generations.abandon(name, c.vectors, c.lexical)
            click.echo(f"abandoned generation {number} of {name!r}; search is unchanged")
            return
        started = time.perf_counter()
        queued, lineage = rebuild.begin(c, name)
        building = lineage.building
        assert building is not None
        click.echo(
            f"rebuilding {name!r} as generation {building.number} with {building.model}: "
            f"{_plural(queued.jobs, 'document')} as run {queued.run}; search answers from "
            f"generation {lineage.active} meanwhile",
            err=True,
        )
        if no_wait:
            if as_json:
                click.echo(json.dumps({"run": queued.run, **lineage.as_dict()}))
            return
        stop, hurry = _signals()
        bar = Progress(cv, quiet=as_json)
        released = cv.work(
            concurrency=concurrency, progress=bar.start(queued), stop=stop, hurry=hurry
        ).released
        bar.close()
        after = rebuild.finish(c, name)
        summary = cv.summary(queued, time.perf_counter() - started)
        summary.released = released
        summary.interrupted = stop.is_set()
        switched = after is not None and after.active == building.number
        if as_json:
            out = {**summary.as_dict(), "switched": switched}
            click.echo(json.dumps({**out, "generation": after.as_dict() if after else None}))
        else:
            _print_summary(summary)
            if switched:
                click.echo(
                    f"switched: {name!r} answers from generation {building.number} "
                    f"({building.model}); generation {lineage.active} dropped"
                )
            else:
                click.echo(
                    f"generation {building.number} is not complete yet; search answers from "
                    f"generation {lineage.active} until it is (`conveyor status`)"
                )
        if summary.interrupted:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
    sys.exit(0 if switched and not summary.failed else 1)
