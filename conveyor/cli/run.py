"""Long-running processes: worker, compactor, run-job, the HTTP servers; model export."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..exceptions import ConveyorError
from ..settings import env_var
from .common import (
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
        f"worker stopped: {_plural(result['done'], 'job')} done, {result['failed']} failed, "
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
    from ..aws.run_job import parse_input, read_input, run_one

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
    type=click.Choice(["torch", "onnx", "onnx-int8", "openvino-int8"]),
    default=None,
    help=f"Model backend [env: {env_var('embedding_backend')}; default openvino-int8].",
)
@home_option
@handle_errors
def embed_server(host: str, port: int, backend: str | None, home: Path | None) -> None:
    """Serve the embedding model over HTTP: one model in memory for every worker and app.

    GET /health (503 while the model loads), POST /embed {"texts": [...]},
    OpenAI-compatible POST /v1/embeddings, GET /metrics. Workers use it when
    EMBEDDING_SERVICE_URL is set, and fall back to the local model when it is down.
    With CONVEYOR_EMBEDDER naming a remote provider it fronts that provider: one
    place holding the key and the rate limit for a fleet.

    \b
    Examples:
      conveyor embed-server --host 0.0.0.0 --port 8003
      conveyor embed-server --backend torch         # sentence-transformers instead
      EMBEDDING_SERVICE_URL=http://localhost:8003 conveyor ingest ./docs
      CONVEYOR_EMBEDDER=openai://text-embedding-3-small conveyor embed-server
    """
    try:
        import uvicorn
    except ImportError:
        raise ConveyorError(
            "embed-server needs the server extra: pip install 'conveyor[server]'"
        ) from None
    from ..server.embed import create_app

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
    from ..server.api import serve as serve_api

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
    """Embedding model files: export to ONNX, quantise for OpenVINO.

    \b
    Examples:
      conveyor models export              # model.onnx, model-int8.onnx, OpenVINO's int8
      CONVEYOR_EMBEDDING_BACKEND=onnx-int8 conveyor ingest ./docs
    """


@models.command("export")
@click.option("--no-int8", is_flag=True, help="Only the fp32 graph.")
@click.option("--openvino", is_flag=True, help="Also quantise for OpenVINO.")
@click.option("--force", is_flag=True, help="Export (and quantise) again, even if current.")
@home_option
@handle_errors
def models_export(no_int8: bool, openvino: bool, force: bool, home: Path | None) -> None:
    """Export the configured model to ONNX (fp32, and int8 quantised per channel).

    The backends export (and quantise) by themselves on first use; this does
    it ahead of time (e.g. while building a container image). NNCF also
    quantises it for OpenVINO (a minute) when the configured backend is
    openvino-int8 (the default), or with --openvino. Files already made by
    this version are kept (--force makes them again).

    \b
    Examples:
      conveyor models export --home /data
      CONVEYOR_MODEL=/models/my-minilm conveyor models export
      CONVEYOR_EMBEDDING_BACKEND=onnx conveyor models export --no-int8
    """
    from ..app import onnx_folder
    from ..embedding.onnx import export, is_current

    settings = _settings(home)
    folder = onnx_folder(settings)
    wanted = ["model.onnx"] if no_int8 else ["model.onnx", "model-int8.onnx"]
    if force or not all(is_current(folder, name) for name in wanted):
        export(settings.model, folder, int8=not no_int8)
        click.echo(f"exported {settings.model} to {folder}")
    else:
        click.echo(f"{settings.model} is exported in {folder} (--force to redo)")
    if openvino or settings.embedding_backend == "openvino-int8":
        from ..embedding.openvino import is_quantised, quantise

        if not force and is_quantised(folder):
            click.echo(f"{settings.model} is quantised for OpenVINO in {folder}")
            return
        quantise(settings.model, folder)
        click.echo(f"quantised {settings.model} for OpenVINO in {folder}")
