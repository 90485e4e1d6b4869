"""One job in this process, then exit: ``conveyor run-job`` for Step Functions and ECS RunTask.

The input (``INPUT_JSON``, or ``--input``) is one JSON object, in any of these forms:

* a job message — ``{"source": "s3://…" | "file://…", "collection": …, "run": …,
  "kind": …, "options": {…}}`` — or a receipt message, as the queue carries them;
* a Step Functions style object — ``{"FileURI": "s3://…" | "file://…",
  "collection": …, "execution_name": …}`` (``run``, ``kind``, ``options``
  optional; other keys, which a state machine often passes along, are ignored);
* an S3 event notification naming one new object (``{"Records": [one
  record]}``, one such record alone, or either inside an SNS envelope), read
  by :func:`conveyor.jobs.s3_event_jobs` (``collection`` and ``run`` beside
  ``Records`` are honoured).

The job runs through the ordinary :class:`~conveyor.worker.Processor` (by way of
:class:`~conveyor.aws.batch.BatchQueue`): transient errors are retried here,
with the usual backoff, up to ``CONVEYOR_MAX_RECEIVES`` attempts. Its delta is
merged by a compactor in this process (or by another that holds the
collection's lock — then this waits for it). The result — the document's
result manifest plus ``execution_name`` — is written to
``ingestion_output/{execution_name}/sf-results/{document_id}.json`` in the
blob store, for a failed document too.

The execution name comes from the input (``execution_name``), else from
``EXECUTION_NAME`` / ``--execution-name``, else it is the job's run. An
execution ARN is cut to its name, and characters a storage key cannot hold
become ``-``. When the input names no run, the run is the execution name, so
the execution's result manifests sit beside its sf-results.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..components import Components
from ..documents import SEARCHABLE, State
from ..exceptions import ConveyorError, PermanentError, safe_summary
from ..ids import document_id
from ..jobs import Job, check_name, s3_event_jobs
from ..manifests import MANIFEST_KEY, RESULT_KEY, Manifests, manifest
from ..worker import Processor
from .batch import BatchQueue

__all__ = ["RESULT_KEY", "BadInput", "JobResult", "OneJob", "parse_input", "run_one"]

log = logging.getLogger(__name__)
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9._-]+")


class BadInput(ConveyorError):
    """The input is not a job conveyor understands (exit status 2)."""


@dataclass(frozen=True)
class OneJob:
    job: Job
    execution_name: str

    @property
    def document_id(self) -> str:
        return document_id(self.job.collection, self.job.source)


@dataclass(frozen=True)
class JobResult:
    status: str  # done, skipped, failed, pending (merge not finished in time)
    result: dict[str, Any]
    key: str

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


def read_input(text: str) -> str:
    """``@path`` reads a file (``@-`` standard input); anything else is the JSON itself."""
    if not text.startswith("@"):
        return text
    import sys
    from pathlib import Path

    if text == "@-":
        return sys.stdin.read()
    try:
        return Path(text[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read the input file {text[1:]!r}: {exc.strerror}") from None


def execution_label(name: str) -> str:
    """A Step Functions execution name (or ARN) as a storage-key-safe name."""
    if name.startswith("arn:"):
        name = name.rsplit(":", 1)[-1]
    cleaned = _NOT_IN_NAMES.sub("-", name).lstrip("._-")[:128]
    if not cleaned:
        raise BadInput(f"execution name {name[:80]!r} has no letter or digit")
    return cleaned


def parse_input(text: str, *, default_collection: str, execution_name: str | None = None) -> OneJob:
    """The job and execution name of a run-job input (see the module docstring).
    :class:`BadInput` says what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"input is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"{safe_summary(text, 80)!r}"
        ) from None
    if not isinstance(data, dict):
        raise BadInput(
            'input must be a JSON object: a job message {"source": …}, '
            '{"FileURI": …, "collection": …, "execution_name": …} or an S3 event'
        )
    given = data.get("execution_name") or execution_name
    if given is not None and not isinstance(given, str):
        raise BadInput("'execution_name' must be a string")
    execution = execution_label(given) if given else None
    body = _job_body(data)
    if execution and not body.get("run"):
        body["run"] = execution
    try:
        job = Job.from_message(body, default_collection=default_collection)
    except PermanentError as exc:
        raise BadInput(safe_summary(exc)) from None
    return OneJob(job, execution or check_name("execution", job.run))


def _job_body(data: dict[str, Any]) -> dict[str, Any]:
    """A job message for each accepted form."""
    if "FileURI" in data:
        uri = data["FileURI"]
        if not isinstance(uri, str) or not uri:
            raise BadInput("'FileURI' must be a non-empty string (s3://…, file://… or a path)")
        return {
            "source": uri,
            "collection": data.get("collection"),
            "run": data.get("run"),
            "kind": data.get("kind"),
            "options": data.get("options") or {},
        }
    try:
        events = s3_event_jobs(data)
    except PermanentError as exc:
        raise BadInput(safe_summary(exc)) from None
    if events is not None:
        if len(events) != 1:
            raise BadInput(
                f"the S3 event names {len(events)} new objects; run-job takes exactly one "
                "(send such events to the queue, where each object becomes a job)"
            )
        return {**events[0], "collection": data.get("collection"), "run": data.get("run")}
    return {k: v for k, v in data.items() if k != "execution_name"}


def run_one(
    c: Components, one: OneJob, *, merge_timeout: float = 300.0, poll: float = 0.2
) -> JobResult:
    """Process ``one`` here, wait for its merge, write and return its result. ``c`` is
    built without a queue of its own: the job goes through a :class:`BatchQueue`."""
    job, doc_id = one.job, one.document_id
    queue = BatchQueue(max_receives=c.settings.max_receives)
    job_id = uuid.uuid4().hex
    queue.deliver(job_id, job.message())
    processor = Processor(c.pipeline(), queue)
    processor.runtime = "run-job"  # in its measurements (conveyor.measure)
    extra = {"job": job_id, "document": doc_id, "run": job.run}
    while True:
        leases = queue.receive(1, visibility_timeout=c.settings.visibility_timeout)
        if leases:
            outcome = processor.process(leases[0])
            if outcome.status == "retry":
                log.info("attempt failed, retrying: %s", outcome.error, extra=extra)
            continue
        if queue.delayed():  # a transient failure waits out its backoff
            time.sleep(poll)
            continue
        break

    status = _wait_for_merge(c, doc_id, merge_timeout, poll, extra)
    doc = c.catalog.get(doc_id) or {}
    manifests = Manifests(c.blobs)
    if status in SEARCHABLE:
        data = manifests.read(job.run, doc_id) or manifest(
            source=job.source,
            document_id=doc_id,
            collection=job.collection,
            run=job.run,
            status=status,
            embeddings=int(doc.get("chunks") or 0) if status == State.DONE else 0,
            chunks=int(doc.get("chunks") or 0),
        )
    else:
        error = str(doc.get("error") or "the job did not finish")
        if status == "pending":
            error = (
                f"the document's delta was not merged within {merge_timeout:g}s; "
                "a running compactor (any worker, Lambda or `conveyor compactor`) merges it"
            )
        data = manifest(
            source=job.source,
            document_id=doc_id,
            collection=job.collection,
            run=job.run,
            status=status,
            embeddings=0,
            error=error,
            error_kind=doc.get("error_kind"),
        )
    result = {**data, "execution_name": one.execution_name, "result_manifest": None}
    if status in SEARCHABLE:
        result["result_manifest"] = MANIFEST_KEY.format(run=job.run, document_id=doc_id)
    key = manifests.write_result(one.execution_name, result)
    return JobResult(status, result, key)


def _wait_for_merge(
    c: Components, doc_id: str, timeout: float, poll: float, extra: dict[str, Any]
) -> str:
    """Merge pending deltas until the document is settled: its state, or
    ``pending`` when ``timeout`` passed first (another compactor holding the
    lock for longer, or merges failing)."""
    compactor = c.compactor()
    deadline = time.monotonic() + timeout
    never = threading.Event()

    def state() -> str:
        return str((c.catalog.get(doc_id) or {}).get("state"))

    while True:
        now = state()
        if now in (State.DONE, State.SKIPPED, State.FAILED):
            return now
        if now != State.RUNNING:  # queued: the processor never settled it
            return State.FAILED.value
        compactor.drain(
            never,
            deadline=deadline,
            wait_locked=timeout,
            until=lambda: state() in (State.DONE, State.FAILED),
        )
        if state() in (State.DONE, State.FAILED):
            return state()
        if time.monotonic() >= deadline:
            return "pending"
        time.sleep(poll)  # compaction failed: retried until the deadline
