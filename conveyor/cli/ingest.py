"""``conveyor ingest``: enqueue files, run the workers here, summarise."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..settings import env_var
from .common import (
    FINISHED_ORDER,
    WORDS,
    _display_source,
    _mmss,
    _open,
    _plural,
    _settings,
    _signals,
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
@click.option(
    "--sync",
    is_flag=True,
    help="Also delete the collection's documents under these folders whose file is gone.",
)
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
    sync: bool,
    no_wait: bool,
    concurrency: int | None,
    as_json: bool,
    home: Path | None,
) -> None:
    """Ingest files: every file under each PATH (folders recursively, globs too;
    s3://bucket/prefix/ for every object under a prefix).

    Each file becomes a job; unless --no-wait, workers and the compactor run
    here until all are searchable. Unchanged files are not embedded again (they
    stay searchable). A path that does not exist is reported as a failed
    document and the rest go on. Ctrl-C lets jobs in flight finish, hands the
    rest back to the queue, says so and exits 130 (a second Ctrl-C releases them
    at once). Exit status 0 only if every document is searchable, 1 if any
    failed, 2 for a usage error (nothing to ingest).

    \b
    Examples:
      conveyor ingest ./docs
      conveyor ingest 'reports/**/*.pdf' notes.md --collection reports
      conveyor ingest ./docs --force --run nightly-2026-11-23
      conveyor ingest ./docs --sync          # and forget files deleted from ./docs
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
                paths,
                collection=collection,
                run=run_name,
                force=force,
                sync=sync,
                wait=False,
                listed=listed,
            )
            _nothing_found(summary)
            click.echo(f"enqueued {summary.enqueued} files as run {summary.run}", err=as_json)
            if as_json:
                click.echo(json.dumps(summary.as_dict()))
            return
        stop, hurry = _signals()
        bar = Progress(cv, quiet=as_json)
        summary = cv.ingest(
            paths,
            collection=collection,
            run=run_name,
            force=force,
            sync=sync,
            progress=bar.start,
            listed=listed,
            stop=stop,
            hurry=hurry,
        )
        bar.close()
        _nothing_found(summary)
        if as_json:
            click.echo(json.dumps(summary.as_dict(), indent=2))
        else:
            _print_summary(summary)
        if summary.interrupted:
            # threads still inside the model cannot be joined; their jobs went back to
            # the queue, and closing the backends under them would only print tracebacks
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
    sys.exit(1 if summary.failed or summary.unfinished else 0)


def _nothing_found(summary: Any) -> None:
    """Say which paths named no file; stop (exit 2) when none of them named any."""
    for path in summary.empty:
        click.echo(
            f"warning: {path}: no files to ingest (an empty folder, or a pattern "
            "that matches nothing; hidden files are left out)",
            err=True,
        )
    if summary.enqueued == 0 and not summary.deleted:
        raise click.UsageError("nothing to ingest: " + ", ".join(summary.empty or ["no paths"]))


def _listing_progress(*, quiet: bool) -> Callable[[str, int], None]:
    """A line on stderr (terminals only) every 1,000 objects while a bucket is listed."""
    from rich.console import Console

    console = Console(stderr=True)

    def listed(url: str, count: int) -> None:
        if not quiet and console.is_terminal:
            console.print(f"listing {url}: {count:,} objects so far", highlight=False)

    return listed


LINE_EVERY_SECONDS = 5.0
"""How often a progress line is printed when stderr is not a terminal."""
BAR_EVERY_SECONDS = 0.5
"""How often the bar on a terminal reads the run's counts."""


class Progress:
    """How far the run is, from the catalog's counts: a bar on a terminal, a line every
    few seconds elsewhere (a pipe, a CI log), nothing with ``--json``."""

    def __init__(self, cv: Any, *, quiet: bool) -> None:
        from rich.console import Console

        self.cv = cv
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.bar: Any = None
        self.queued: Any = None
        self.started = self.last_line = time.monotonic()
        self.last_count = 0.0

    def start(self, queued: Any) -> Callable[[], None]:
        """For :meth:`Conveyor.ingest`: called once the files are enqueued."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self.queued = queued
        if not self.quiet and self.console.is_terminal:
            self.bar = Bar(
                TextColumn("[bold]ingest[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task("ingest", total=queued.jobs, detail="")
            self.bar.start()
        return self.tick

    def tick(self) -> None:
        if self.quiet or self.queued is None:
            return
        now = time.monotonic()
        if self.bar is None and now - self.last_line < LINE_EVERY_SECONDS:
            return  # no line due: the counts are not read (a query over the run)
        if self.bar is not None and now - self.last_count < BAR_EVERY_SECONDS:
            return
        self.last_count = now
        counts = self.cv.components.catalog.counts(run=self.queued.run)
        finished = sum(counts[state] for state in FINISHED_ORDER)
        detail = " · ".join(f"{WORDS[state]} {counts[state]}" for state in FINISHED_ORDER)
        if self.bar is not None:
            self.bar.update(self.task, completed=finished, detail=detail)
        else:
            self.last_line = now
            click.echo(
                f"ingest: {finished}/{self.queued.jobs} · {detail} · "
                f"{_mmss(time.monotonic() - self.started)}",
                err=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.last_count = 0.0  # the bar's last counts: the run's end
            self.tick()
            self.bar.stop()
            self.bar = None


def _print_summary(s: Any) -> None:
    click.echo(
        f"run {s.run}: {s.done} done, {s.skipped} unchanged, {s.failed} failed "
        f"of {s.enqueued} · {s.searchable} searchable · {s.chunks} chunks in {s.seconds:.1f}s "
        f"({s.chunks_per_second:.1f} chunks/s) · collection {s.collection!r}"
    )
    if s.tokens:
        click.echo(f"  {s.tokens} tokens sent to the embedding provider")
    for f in s.failures:
        click.echo(f"  failed: {_display_source(f['source'])}: {f['error']}")
    if s.deleted:
        click.echo(f"  deleted {_plural(s.deleted, 'document')} whose file is gone (--sync)")
    if s.interrupted:
        click.echo(
            f"interrupted: {s.released} job(s) in flight went back to the queue, "
            f"{s.unfinished} document(s) of this run are not finished; "
            "`conveyor worker` (or the same `conveyor ingest` again) finishes them"
        )
    elif s.unfinished:
        click.echo(
            f"  {s.unfinished} document(s) did not finish: see `conveyor documents --run {s.run}`"
        )


@main.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--document",
    "-d",
    "document_ids",
    multiple=True,
    help="A document id (from `conveyor documents --json`) instead of a source.",
)
@click.option(
    "--collection",
    "-c",
    default=None,
    help=f"Collection of the SOURCES [env: {env_var('collection')}; default 'default'].",
)
@click.option(
    "--no-wait", is_flag=True, help="Only record the deletion; a running compactor applies it."
)
@home_option
@handle_errors
def delete(
    sources: tuple[str, ...],
    document_ids: tuple[str, ...],
    collection: str | None,
    no_wait: bool,
    home: Path | None,
) -> None:
    """Remove documents: their chunks from the vector store (every collection they
    fill), then the documents from the catalog. SOURCE is a path as it was ingested
    (or a URI such as s3://bucket/key). Deleting a file does not delete its document;
    this does, and so does `conveyor ingest DIR --sync` for every file gone from DIR.

    The deletion goes through the compactor, the single writer: here (unless
    --no-wait), or in any running `conveyor worker` / `conveyor compactor`.

    \b
    Examples:
      conveyor delete ./docs/old-policy.pdf
      conveyor delete -d 0f3a8c1e-…  --no-wait
    """
    if not sources and not document_ids:
        raise click.UsageError("give the SOURCES to delete, or --document ID")
    with _open(home) as cv:
        ids = cv.delete([*document_ids]) if document_ids else []
        if sources:
            ids += cv.delete_sources(list(sources), collection=collection)
        if no_wait:
            click.echo(
                f"deletion of {_plural(len(ids), 'document')} recorded; a running compactor "
                "applies it"
            )
            return
        cv.merge()
    click.echo(f"deleted {_plural(len(ids), 'document')}")
