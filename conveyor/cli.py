"""The ``conveyor`` command: a thin layer over :mod:`conveyor.app`."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from .documents import State
from .exceptions import ConveyorError, safe_summary
from .settings import Settings, env_var

F = TypeVar("F", bound=Callable[..., Any])
FINISHED_ORDER = (State.DONE, State.SKIPPED, State.FAILED)


def _settings(home: Path | None) -> Settings:
    try:
        return Settings().with_home(home)
    except Exception as exc:  # pydantic's ValidationError: a bad environment variable
        raise click.UsageError(f"invalid setting: {safe_summary(exc, 600)}") from None


def home_option(func: F) -> F:
    """``--home DIR`` on every command."""
    return click.option(
        "--home",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help=f"Where conveyor keeps its data [env: {env_var('home')}; default ./conveyor-data].",
    )(func)


def concurrency_option(func: F) -> F:
    """``--concurrency/-j N``: jobs in flight in this process."""
    return click.option(
        "--concurrency",
        "-j",
        type=click.IntRange(1),
        default=None,
        help=f"Jobs in flight in this process [env: {env_var('concurrency')}; default 2].",
    )(func)


def handle_errors(func: F) -> F:
    """A ConveyorError ends the command with its one-line message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ._sqlite import OperationalError

        try:
            return func(*args, **kwargs)
        except ConveyorError as exc:
            click.echo(f"error: {safe_summary(exc, 1000)}", err=True)
            sys.exit(2)
        except OperationalError as exc:
            click.echo(
                f"error: database busy or unreadable ({safe_summary(exc)}); another "
                "process may hold it for a long write, try again",
                err=True,
            )
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _open(home: Path | None, *, must_exist: bool = True) -> Any:
    """The Conveyor of ``home``; reading commands refuse a home that does not exist
    rather than create an empty one where a path was mistyped."""
    from .app import Conveyor

    settings = _settings(home)
    in_home = not (settings.queue_url and settings.catalog_url and settings.vectors_url)
    if must_exist and in_home and not settings.database_path.exists():
        raise ConveyorError(
            f"no conveyor data in {settings.home} (nothing ingested there yet; "
            "check --home or CONVEYOR_HOME)"
        )
    return Conveyor(settings)


def _display_source(source: str) -> str:
    return source[len("file://") :] if source.startswith("file://") else source


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="conveyor")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Turn files into searchable embeddings, reliably.

    \b
    Examples:
      conveyor ingest ./docs                     # ingest, then wait until searchable
      conveyor search "how do I rotate the keys?" -k 5
      conveyor status                            # documents by state, queue depth
      conveyor documents --state failed          # what failed, and why
      conveyor worker --concurrency 3            # long-running; as many as you like
      conveyor serve --port 8000                 # HTTP API and live status page

    Backends by URL (CONVEYOR_QUEUE_URL, _CATALOG_URL, _BLOBS_URL, _VECTORS_URL):
    see docs/DEPLOY.md.
    """
    from .logs import configure

    configure(max(logging.WARNING - 10 * verbose, logging.DEBUG))


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
    from .app import Conveyor

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
    for f in s.failures:
        click.echo(f"  failed: {_display_source(f['source'])}: {f['error']}")
    if s.unfinished:
        click.echo(
            f"  {s.unfinished} document(s) did not finish: see `conveyor documents --run {s.run}`"
        )


@main.command()
@click.argument("query", required=False)
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Number of hits."
)
@click.option("--collection", "-c", default=None, help="Collection to search [default 'default'].")
@click.option(
    "--batch",
    "batch",
    type=click.File("r"),
    default=None,
    help="Read one query a line from FILE ('-' for stdin); print one JSON line each.",
)
@click.option("--json", "as_json", is_flag=True, help="Print hits as a JSON array.")
@home_option
@handle_errors
def search(
    query: str | None,
    k: int,
    collection: str | None,
    batch: Any,
    as_json: bool,
    home: Path | None,
) -> None:
    """Find the chunks closest in meaning to QUERY.

    \b
    Examples:
      conveyor search "how do I rotate the keys?" -k 5
      conveyor search "refund policy" --json | jq '.[0].source'
      printf 'first question\\nsecond question\\n' | conveyor search --batch - -k 3
    """
    if (query is None) == (batch is None):
        raise click.UsageError("give a QUERY or --batch FILE (not both)")
    with _open(home) as cv:
        if batch is not None:
            queries = [line.strip() for line in batch if line.strip()]
            for q, hits in zip(
                queries, cv.search_many(queries, k, collection=collection), strict=True
            ):
                click.echo(
                    json.dumps(
                        {"query": q, "hits": [h.as_dict() for h in hits]}, ensure_ascii=False
                    )
                )
            return
        hits = cv.search(query, k, collection=collection)
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("no hits")
    for rank, hit in enumerate(hits, 1):
        where = _display_source(hit.source)
        if hit.page is not None:
            where += f" (page {hit.page})"
        if hit.metadata.get("start_s") is not None:
            where += f" ({_mmss(hit.metadata['start_s'])}–{_mmss(hit.metadata['end_s'])})"
        click.secho(f"{rank}. {hit.score:.3f}  {where}  #{hit.chunk_index}", bold=True)
        text = " ".join(hit.text.split())
        click.echo("   " + (text[:300] + "…" if len(text) > 300 else text))


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
        click.echo(json.dumps(data, indent=2, default=str))
        return
    q, d = data["queue"], data["documents"]
    click.echo(f"home       {data['home']}")
    click.echo(
        f"queue      visible {q['visible']} · in flight {q['in_flight']} · "
        f"delayed {q['delayed']} · dead {q['dead']}"
    )
    click.echo("documents  " + " · ".join(f"{state} {n}" for state, n in d.items()))
    click.echo(
        f"deltas     pending {data['deltas']['pending']} · applied {data['deltas']['applied']}"
        f" · failed {data['deltas']['failed']}"
    )
    for c in data["collections"]:
        click.echo(f"collection {c['name']}: {c['chunks']} chunks ({c['model']}, {c['dim']}d)")
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
        click.echo(json.dumps(docs, indent=2, default=str, ensure_ascii=False))
        return
    if not docs:
        click.echo("no documents")
    for d in docs:
        line = f"{d['state']:<8} {d['chunks']:>5}  {_display_source(d['source'])}"
        if d["state"] == State.RUNNING and d.get("stage"):
            line += f"  [{d['stage']}]"
        if d["error"] and d["state"] in (State.FAILED, State.QUEUED):
            line += f"\n         reason: {d['error']}"
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


def _signals() -> tuple[threading.Event, threading.Event]:
    """SIGTERM / Ctrl-C set ``stop``; a second one sets ``hurry`` too."""
    from .runner import stop_on_signals

    return stop_on_signals(lambda message: click.echo(message, err=True))


@main.command()
@concurrency_option
@click.option(
    "--no-compactor",
    is_flag=True,
    help="Do not run the compactor (the single writer) in this process.",
)
@click.option(
    "--grace-seconds",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="On SIGTERM / Ctrl-C, how long jobs in flight may take to finish "
    "before they are released back to the queue.",
)
@click.option("--exit-when-idle", is_flag=True, help="Exit once the queue is empty.")
@home_option
@handle_errors
def worker(
    concurrency: int | None,
    no_compactor: bool,
    grace_seconds: float,
    exit_when_idle: bool,
    home: Path | None,
) -> None:
    """Run a long-lived worker: take jobs from the queue until stopped.

    Start as many as you like, in terminals, containers or on other hosts
    sharing the home. A job has no time limit: heartbeats keep its lease.
    SIGTERM or Ctrl-C stops taking work, lets jobs in flight finish within
    --grace-seconds, releases the rest and exits 0; a killed worker's jobs
    come back when their leases expire.

    \b
    Examples:
      conveyor ingest ./docs --no-wait && conveyor worker --concurrency 3
      conveyor worker --no-compactor -j 2      # and `conveyor compactor` elsewhere
    """
    stop, hurry = _signals()
    with _open(home, must_exist=False) as cv:
        result = cv.serve_worker(
            concurrency=concurrency,
            compactor=not no_compactor,
            grace=grace_seconds,
            stop=stop,
            hurry=hurry,
            until_idle=exit_when_idle,
        )
    click.echo(
        f"worker stopped: {result['done']} jobs done, {result['failed']} failed, "
        f"{result['released']} released back to the queue",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads still inside the model cannot be joined; their jobs were released


@main.command()
@home_option
@handle_errors
def compactor(home: Path | None) -> None:
    """Run the compactor alone: the single writer that merges deltas into the vector store.

    `conveyor worker` runs one inside unless --no-compactor; several compactors
    are safe (one writes each collection at a time), and a killed one resumes
    where it stopped.

    \b
    Examples:
      conveyor compactor
      CONVEYOR_HOME=/data conveyor compactor
    """
    stop, _ = _signals()
    with _open(home, must_exist=False) as cv:
        cv.serve_compactor(stop=stop)


@main.command("run-job")
@click.option(
    "--input",
    "input_json",
    envvar="INPUT_JSON",
    metavar="JSON|@FILE",
    default=None,
    help='The job: a job message, {"FileURI": …, "collection": …, "execution_name": …} '
    "or an S3 event; @path reads a file, @- standard input [env: INPUT_JSON].",
)
@click.option(
    "--execution-name",
    envvar="EXECUTION_NAME",
    default=None,
    help="Names the results folder when the input has no execution_name "
    "[env: EXECUTION_NAME; default: the job's run].",
)
@click.option(
    "--merge-timeout",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the document's delta to be merged (another compactor "
    "may hold the collection's lock).",
)
@home_option
@handle_errors
def run_job(
    input_json: str | None, execution_name: str | None, merge_timeout: float, home: Path | None
) -> None:
    """Run one job in this process and exit: for Step Functions and ECS RunTask.

    Processes the document (transient errors retried here), merges it into
    the vector store, writes the result to
    ingestion_output/{execution_name}/sf-results/{document_id}.json in the blob
    store as {"FileURI": …, "EmbeddingsGenerated": …, …} and prints it. Exit
    status: 0 done or skipped (unchanged), 1 the document failed (the reason on
    stderr), 2 bad input.

    \b
    Examples:
      INPUT_JSON='{"FileURI": "s3://bucket/in/a.pdf", "execution_name": "exec-42"}' \\
        conveyor run-job
      conveyor run-job --input '{"source": "file:///data/a.pdf", "collection": "reports"}'
      conveyor run-job --input @job.json --execution-name nightly
    """
    from .aws.run_job import parse_input, read_input, run_one

    if not input_json:
        raise click.UsageError("no job: set INPUT_JSON or pass --input JSON|@FILE")
    settings = _settings(home)
    one = parse_input(
        read_input(input_json),
        default_collection=settings.collection,
        execution_name=execution_name,
    )
    with _open(home, must_exist=False) as cv:
        outcome = run_one(cv.components, one, merge_timeout=merge_timeout)
    click.echo(json.dumps(outcome.result, indent=2, ensure_ascii=False, default=str))
    if not outcome.ok:
        click.echo(f"error: {outcome.status}: {outcome.result.get('error')}", err=True)
        sys.exit(1)


@main.command("embed-server")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 for every interface).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8003, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default=None,
    help=f"Model backend [env: {env_var('embedding_backend')}; default torch].",
)
@home_option
@handle_errors
def embed_server(host: str, port: int, backend: str | None, home: Path | None) -> None:
    """Serve the embedding model over HTTP: one model in memory for every worker and app.

    GET /health (503 while the model loads), POST /embed {"texts": [...]},
    OpenAI-compatible POST /v1/embeddings, GET /metrics. Workers use it when
    EMBEDDING_SERVICE_URL is set, and fall back to the local model when it is down.

    \b
    Examples:
      conveyor embed-server --host 0.0.0.0 --port 8003
      conveyor embed-server --backend onnx-int8     # ~4x torch's speed on CPU
      EMBEDDING_SERVICE_URL=http://localhost:8003 conveyor ingest ./docs
    """
    try:
        import uvicorn
    except ImportError:
        raise ConveyorError(
            "embed-server needs the server extra: pip install 'conveyor[server]'"
        ) from None
    from .server.embed import create_app

    settings = _settings(home)
    if backend:
        settings = settings.model_copy(update={"embedding_backend": backend})
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=30,
    )


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 for every interface; needs CONVEYOR_API_KEYS).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Worker slots (plus the compactor) to run beside the API; 0: it only enqueues "
    "and reads, and `conveyor worker` does the work.",
)
@home_option
@handle_errors
def serve(host: str, port: int, workers: int, home: Path | None) -> None:
    """Serve the HTTP API, the live status page (/) and Prometheus metrics (/metrics).

    Upload files, follow each document until searchable, search, list and redrive
    dead letters; OpenAPI at /docs. Requests need a key from CONVEYOR_API_KEYS
    (x-api-key or Authorization: Bearer) except /health and /metrics
    (CONVEYOR_METRICS_NEED_KEY=1 closes that too). With no keys it listens on
    127.0.0.1 only, whatever --host says. Uploads over CONVEYOR_MAX_UPLOAD_BYTES
    (default CONVEYOR_MAX_FILE_BYTES) get 413.

    \b
    Examples:
      CONVEYOR_API_KEYS=secret1 conveyor serve --host 0.0.0.0 --port 8000 --workers 3
      curl -H 'x-api-key: secret1' -F file=@report.pdf -F collection=docs localhost:8000/documents
      curl -H 'x-api-key: secret1' localhost:8000/documents/<id>
      curl -H 'x-api-key: secret1' 'localhost:8000/search?q=refund+policy&k=5'
      open http://localhost:8000/                  # the live status page
    """
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConveyorError(
            "serve needs the server extra: pip install 'conveyor[server]'"
        ) from None
    from .server.api import serve as serve_api

    serve_api(
        _settings(home),
        host=host,
        port=port,
        workers=workers,
        echo=lambda line: click.echo(line, err=True),
    )
    if workers:  # threads still inside the model cannot be joined; their jobs were released
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@main.group()
def models() -> None:
    """Embedding model files: export to ONNX for the faster backends.

    \b
    Examples:
      conveyor models export              # model.onnx and model-int8.onnx
      CONVEYOR_EMBEDDING_BACKEND=onnx-int8 conveyor ingest ./docs
    """


@models.command("export")
@click.option("--no-int8", is_flag=True, help="Only the fp32 graph.")
@home_option
@handle_errors
def models_export(no_int8: bool, home: Path | None) -> None:
    """Export the configured model to ONNX (fp32, and int8 quantised per channel).

    The ONNX backends export by themselves on first use; this does it ahead
    of time (e.g. while building a container image).

    \b
    Examples:
      conveyor models export --home /data
      CONVEYOR_MODEL=/models/my-minilm conveyor models export
    """
    from .app import onnx_folder
    from .embedding.onnx import export

    settings = _settings(home)
    folder = export(settings.model, onnx_folder(settings), int8=not no_int8)
    click.echo(f"exported {settings.model} to {folder}")


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
    for r in rows:
        click.echo(
            f"{r['job_id']}  {r['attempts']}x  last {r['last_seen']}  "
            f"{_display_source(str(r['source']))}"
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
    if bool(job_ids) == redrive_all:
        raise click.UsageError("give job ids or --all (not both)")
    with _open(home) as cv:
        moved = cv.redrive(None if redrive_all else list(job_ids))
    click.echo(
        f"redrove {moved} job{'s' if moved != 1 else ''}; run `conveyor worker` "
        "(or `conveyor ingest`) to process them"
    )


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
        if minutes >= 60
        else f"{minutes:02d}:{secs:02d}"
    )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


if __name__ == "__main__":  # pragma: no cover
    main()
