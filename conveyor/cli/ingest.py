"""``conveyor ingest``: enqueue files, run the workers here, summarise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..settings import env_var
from .common import (
    FINISHED_ORDER,
    _display_source,
    _settings,
    concurrency_option,
    handle_errors,
    home_option,
    main,
)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--collection",
    "-c",
    default=None,
    help=f"Collection to ingest into [env: {env_var('collection')}; default 'default'].",
)
@click.option(
    "--run",
    "run_name",
    default=None,
    help="Name of this run (groups result manifests); default: a timestamp.",
)
@click.option("--force", is_flag=True, help="Re-embed files even if unchanged.")
@click.option("--no-wait", is_flag=True, help="Only enqueue; `conveyor worker` processes later.")
@concurrency_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@home_option
@handle_errors
def ingest(
    paths: tuple[str, ...],
    collection: str | None,
    run_name: str | None,
    force: bool,
    no_wait: bool,
    concurrency: int | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Ingest files: every file under each PATH (folders recursively, globs too;
    s3://bucket/prefix/ for every object under a prefix).

    Each file becomes a job; unless --no-wait, workers and the compactor run
    here until all are searchable. Unchanged files are skipped. Exit status 0
    only if no document failed.

    \b
    Examples:
      conveyor ingest ./docs
      conveyor ingest 'reports/**/*.pdf' notes.md --collection reports
      conveyor ingest ./docs --force --run nightly-2026-11-23
      conveyor ingest s3://my-bucket/source-pdfs/ --no-wait
    """
    from ..app import Conveyor

    settings = _settings(home)
    if concurrency:
        settings = settings.model_copy(update={"concurrency": concurrency})
    listed = _listing_progress(quiet=as_json)
    with Conveyor(settings) as cv:
        if no_wait:
            summary = cv.ingest(
                paths, collection=collection, run=run_name, force=force, wait=False, listed=listed
            )
            click.echo(f"enqueued {summary.enqueued} files as run {summary.run}", err=as_json)
            if as_json:
                click.echo(json.dumps(summary.as_dict()))
            return
        summary = cv.ingest(
            paths,
            collection=collection,
            run=run_name,
            force=force,
            progress=_progress_factory(cv, quiet=as_json),
            listed=listed,
        )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_summary(summary)
    sys.exit(1 if summary.failed or summary.unfinished else 0)


def _listing_progress(*, quiet: bool) -> Callable[[str, int], None]:
    """A line on stderr (terminals only) every 1,000 objects while a bucket is listed."""
    from rich.console import Console

    console = Console(stderr=True)

    def listed(url: str, count: int) -> None:
        if not quiet and console.is_terminal:
            console.print(f"listing {url}: {count:,} objects so far", highlight=False)

    return listed


def _progress_factory(cv: Any, *, quiet: bool) -> Callable[[Any], Callable[[], None]]:
    """A rich progress bar on stderr, advanced from the catalog's counts."""

    def factory(queued: Any) -> Callable[[], None]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        progress = Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
            transient=False,
        )
        task = progress.add_task("ingest", total=queued.jobs, detail="")
        progress.start()
        catalog = cv.components.catalog

        def tick() -> None:
            counts = catalog.counts(run=queued.run)
            finished = sum(counts[state] for state in FINISHED_ORDER)
            detail = " · ".join(f"{state} {counts[state]}" for state in FINISHED_ORDER)
            progress.update(task, completed=finished, detail=detail)
            if finished >= queued.jobs:
                progress.stop()

        return tick

    return factory


def _print_summary(s: Any) -> None:
    click.echo(
        f"run {s.run}: {s.done} done, {s.skipped} skipped, {s.failed} failed "
        f"of {s.enqueued} · {s.chunks} chunks in {s.seconds:.1f}s "
        f"({s.chunks_per_second:.1f} chunks/s) · collection {s.collection!r}"
    )
    if s.tokens:
        click.echo(f"  {s.tokens} tokens sent to the embedding provider")
    for f in s.failures:
        click.echo(f"  failed: {_display_source(f['source'])}: {f['error']}")
    if s.unfinished:
        click.echo(
            f"  {s.unfinished} document(s) did not finish: see `conveyor documents --run {s.run}`"
        )
